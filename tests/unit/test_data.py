"""The prepare stage on tiny local files: validation, bad rows, duplicates, splits and outputs."""
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from distillery.config import DataConfig, Params, TransferSetConfig, DistillConfig
from distillery.prepared import load_labels, load_split
from distillery.stages.prepare import prepare
from distillery.errors import DataError
from distillery.sources import read_file
from tiny import make_texts


def _params(source, **data) -> Params:
    transfer = data.pop("transfer", TransferSetConfig())
    data.setdefault("min_rows_per_class", 1)  # the tiny frames here have a few rows per class in each split
    data.setdefault("label_column", "sentiment")
    return Params(seed=0, data=DataConfig(source=str(source), **data),
                  distill=DistillConfig(transfer_set=transfer))


def _csv(tmp_path, frame: pd.DataFrame, name="data.csv") -> Path:
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def test_split_sizes_stratified_and_written(tmp_path):
    source = _csv(tmp_path, make_texts(300))
    out = tmp_path / "prepared"
    report = prepare(_params(source), out)
    assert report["rows"] == {"test": 30, "validation": 30, "train": 240}
    for split in ("train", "validation", "test"):
        frame = load_split(split, out)
        assert list(frame.columns) == ["text", "label"]
        assert frame["label"].value_counts().max() - frame["label"].value_counts().min() <= 1  # stratified
    assert load_labels(out) == ["negative", "neutral", "positive"]
    texts = [set(load_split(s, out)["text"]) for s in ("train", "validation", "test")]
    assert not (texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2])
    assert (out / "data_report.json").is_file() and (out / "rejected.csv").is_file()


def test_the_rows_a_cap_left_out_are_counted_per_split(tmp_path):
    """1,199 rows in, 180 + 150 + 600 out and 239 transfer rows: the 30 validation rows over its cap were nowhere."""
    report = prepare(_params(_csv(tmp_path, make_texts(300)), max_samples={"train": 200, "validation": 25,
                                                                          "test": None}), tmp_path / "prepared")
    assert report["rows"] == {"test": 30, "validation": 25, "train": 200}
    assert report["rows_over_cap"] == {"train": 40, "validation": 5}
    assert json.loads((tmp_path / "prepared" / "data_report.json").read_text())["rows_over_cap"] == \
        {"train": 40, "validation": 5}


def test_split_is_seeded(tmp_path):
    source = _csv(tmp_path, make_texts(120))
    prepare(_params(source), tmp_path / "a")
    prepare(_params(source), tmp_path / "b")
    assert load_split("test", tmp_path / "a").equals(load_split("test", tmp_path / "b"))


def test_bad_rows_dropped_and_counted(tmp_path):
    frame = make_texts(60)
    frame.loc[3, "text"] = "   "
    frame.loc[7, "sentiment"] = None
    frame.loc[11, "sentiment"] = "angry"
    frame.loc[20, "text"] = frame.loc[21, "text"]  # a duplicate
    source = _csv(tmp_path, frame)
    out = tmp_path / "prepared"
    report = prepare(_params(source, labels=["negative", "neutral", "positive"]), out)
    assert report["rows_rejected"] == 3
    assert report["rejected_by_reason"] == {"empty text": 1, "missing label": 1, "unknown label 'angry'": 1}
    assert sum(report["duplicates_dropped"].values()) == 1
    rejected = pd.read_csv(out / "rejected.csv")
    assert sorted(rejected["row"]) == [4, 8, 12]  # 1-based data rows


def test_an_undeclared_label_is_counted_once_however_it_is_spelt(tmp_path):
    """Ratings 1-4 declared and a 5 in the data, some rows "5" and some "5.0": the summary counted 51 "unknown label
    '5'" and 9 "unknown label '5.0'", though labels compare by value and it is one label."""
    frame = pd.DataFrame({"text": [f"review number {i}" for i in range(90)],
                          "stars": [1, 2, 3, 4, 5, 1, 2, 3, 4] * 10}).astype({"stars": object})
    frame.loc[frame.index[frame["stars"] == 5][:3], "stars"] = "5.0"
    report = prepare(_params(_csv(tmp_path, frame), label_column="stars", labels=[1, 2, 3, 4]), tmp_path / "prepared")
    assert report["rejected_by_reason"] == {"unknown label '5'": 10}


@pytest.mark.parametrize("column, value, reason", [("text", "", "empty text"),
                                                   # no visible character: zero-width space, NUL, no-break space
                                                   ("text", "\u200b \x00\u00a0", "empty text"),
                                                   ("sentiment", "angry", "unknown label 'angry'")])
def test_bad_rows_fail_names_the_row(tmp_path, column, value, reason):
    frame = make_texts(30)
    frame.loc[4, column] = value
    source = _csv(tmp_path, frame)
    out = tmp_path / "prepared"
    with pytest.raises(DataError) as error:
        prepare(_params(source, on_bad_rows="fail", labels=["negative", "neutral", "positive"]), out)
    assert f"row 5: {reason}" in str(error.value) and str(source) in str(error.value)
    assert not out.exists()  # nothing half-written


def test_missing_column_is_named(tmp_path):
    source = _csv(tmp_path, make_texts(30).rename(columns={"sentiment": "label"}))
    with pytest.raises(DataError, match=r"data.label_column 'sentiment' not found.*\['text', 'label'\]"):
        prepare(_params(source), tmp_path / "prepared")
    with pytest.raises(DataError, match="data.text_column 'body' not found"):
        prepare(_params(source, text_column="body"), tmp_path / "prepared")
    # a name spelled in another case gets the data's spelling
    with pytest.raises(DataError, match=r"data.label_column 'Label' not found; the columns are \['text', 'label'\] "
                                        r"\(did you mean 'label'\? column names are matched exactly\)$"):
        prepare(_params(source, label_column="Label"), tmp_path / "prepared")
    # a .csv of other separators (a European Excel's semicolons, tabs) or with Excel's "sep=" line first
    one_column = r"the header was read as one column: its fields look separated by {}; save the file with commas " \
        r"as .csv or with tabs as .tsv\)$"
    excel = r"the first line \(sep=...\) is Excel's separator line, not a header: remove it and save the file with " \
        r"commas as .csv or with tabs as .tsv\)$"
    for name, text, hint in (("semi.csv", "text;sentiment\ngood day;positive\n", one_column.format("semicolons")),
                             ("semi.tsv", "text;sentiment\ngood day;positive\n", one_column.format("semicolons")),
                             ("tabs.csv", "text\tsentiment\ngood day\tpositive\n", one_column.format("tabs")),
                             ("bars.csv", "text|sentiment\ngood day|positive\n", one_column.format("vertical bars")),
                             ("excel.csv", "sep=;\ntext;sentiment\ngood day;positive\n", excel),
                             ("comma.csv", "sep=,\ntext,sentiment\ngood day,positive\n", excel)):  # 2 columns
        (tmp_path / name).write_text(text)
        with pytest.raises(DataError, match=r"data.text_column 'text' not found; the columns are \[.*\] \(" + hint):
            prepare(_params(tmp_path / name), tmp_path / "prepared")
    # a first column named PAR1 is a CSV's, not a Parquet file's magic number
    (tmp_path / "par.csv").write_text("PAR1,text,sentiment\n" + "".join(f"{i},good day {i},positive\n"
                                                                       for i in range(3)))
    assert read_file(tmp_path / "par.csv")["text"].tolist() == ["good day 0", "good day 1", "good day 2"]
    # a header a macOS export wrote in NFD ("E" + U+0301) against params.yaml's NFC: the two look alike in the line
    # (full-width letters are another matter: no hint that would not fix them)
    source = _csv(tmp_path, make_texts(30).rename(columns={"sentiment": "\uff4c\uff41\uff42\uff45\uff4c"}))
    with pytest.raises(DataError, match=r"data.label_column 'label' not found; the columns are \[.*\]$"):
        prepare(_params(source, label_column="label"), tmp_path / "prepared")
    source = _csv(tmp_path, make_texts(30).rename(columns={"sentiment": "E\u0301tiquette"}))
    with pytest.raises(DataError, match=r"data.label_column '\u00c9tiquette' not found; .* \(did you mean "
                                        r"'E\u0301tiquette'\? It looks alike but is spelt with other Unicode code "
                                        r"points .* save its header in NFC form\)$"):
        prepare(_params(source, label_column="\u00c9tiquette"), tmp_path / "prepared")


def test_a_label_declared_twice_is_named():
    """data.labels [0, 1, 1, 2, ...] was told "list at least two distinct labels", though it listed twelve."""
    from distillery.errors import ConfigError

    with pytest.raises(ConfigError, match=r"data.labels.*1 is listed twice; list each label once"):
        DataConfig(labels=[0, 1, 1, 2, 3])


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="nope.csv: data file does not exist"):
        prepare(_params(tmp_path / "nope.csv"), tmp_path / "prepared")


def test_a_directory_is_not_a_text_data_file(tmp_path):
    (tmp_path / "reviews").mkdir()
    _csv(tmp_path / "reviews", make_texts(30), "train.csv")
    with pytest.raises(DataError, match=r"reviews: is a directory; a text data source is one file \(.csv, .tsv, "
                                        r".json, .jsonl, .parquet, .pq\), and files already split go in data.files"):
        prepare(_params(tmp_path / "reviews"), tmp_path / "prepared")


def test_non_utf8_names_the_line(tmp_path):
    source = tmp_path / "latin1.csv"
    lines = ["text,sentiment"] + [f"row {i} good,positive" for i in range(3)] + \
        [f"row {i} bad,negative" for i in range(2)] + ["caf\xe9 bad,negative"]
    source.write_bytes("\n".join(lines).encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1.csv: line 7 is not valid UTF-8"):
        prepare(_params(source), tmp_path / "prepared")
    report = prepare(_params(source, encoding_errors="replace", split_fractions={"train": 0.4, "validation": 0.3,
                                                                                 "test": 0.3}), tmp_path / "ok")
    assert sum(report["rows"].values()) == 6
    utf16 = tmp_path / "excel.csv"  # Excel's "Unicode text": UTF-16 with its byte-order mark
    utf16.write_bytes("\n".join(lines).encode("utf-16"))
    for errors in ("strict", "replace"):  # replacing bad bytes does not make UTF-16 text (it was "3 fields ...")
        with pytest.raises(DataError, match=r"excel.csv: not UTF-8 \(it starts with a UTF-16 byte-order mark: save "
                                            r"it as UTF-8\)$"):
            prepare(_params(utf16, encoding_errors=errors), tmp_path / "prepared")
    # a binary file under a text suffix is named for what it is (a Parquet file was "line 1 is not valid UTF-8 ...;
    # or set data.encoding_errors: replace", and with replace "Expected 3 fields in line 103, saw 32")
    import gzip
    import zipfile

    make_texts(30).to_parquet(tmp_path / "data.parquet")
    with zipfile.ZipFile(tmp_path / "book.zip", "w") as book:
        book.writestr("xl/workbook.xml", "<workbook/>")
    binaries = {"parquet.csv": (tmp_path / "data.parquet").read_bytes(),
                "book.csv": (tmp_path / "book.zip").read_bytes(),
                "packed.csv": gzip.compress("\n".join(lines).encode()),
                "array.csv": b"\x93NUMPY\x01\x00v\x00" + bytes(200)}
    hints = {"parquet.csv": r"it is a Parquet file: give it the suffix .parquet",
             "book.csv": r"it is a ZIP archive, as an Excel workbook \(.xlsx\) is: save the sheet as CSV UTF-8",
             "packed.csv": r"it is gzip-compressed: decompress it first \(gunzip\)",
             "array.csv": r"a binary file, not text: a tenth of its first bytes are NUL"}
    from distillery import sources

    for name, raw in binaries.items():
        (tmp_path / name).write_bytes(raw)
        for errors, streamed in (("strict", False), ("replace", False), ("strict", True)):
            sources.STREAM_THRESHOLD_BYTES, threshold = (10 if streamed else 10 ** 9), sources.STREAM_THRESHOLD_BYTES
            try:
                with pytest.raises(DataError, match=rf"{name}: not UTF-8 \({hints[name]}\)$"):
                    prepare(_params(tmp_path / name, encoding_errors=errors), tmp_path / "prepared")
            finally:
                sources.STREAM_THRESHOLD_BYTES = threshold
    assert not (tmp_path / "prepared").exists()


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".parquet"])
def test_other_file_types(tmp_path, suffix):
    frame = make_texts(60)
    path = tmp_path / f"data{suffix}"
    if suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    elif suffix == ".json":
        frame.to_json(path, orient="records")
    else:
        frame.to_parquet(path)
    report = prepare(_params(path), tmp_path / "prepared")
    assert sum(report["rows"].values()) == 60


def test_existing_splits_and_text_pairs(tmp_path):
    frame = make_texts(90)
    frame["hypothesis"] = frame["text"].str.split().str[0]
    files = {"train": str(_csv(tmp_path, frame.iloc[:60], "train.csv")),
             "test": str(_csv(tmp_path, frame.iloc[60:], "test.csv"))}
    out = tmp_path / "prepared"
    report = prepare(_params("unused", files=files, text_pair_column="hypothesis"), out)
    assert report["rows"]["test"] == 30  # the source's own test split is kept whole
    assert report["rows"]["train"] + report["rows"]["validation"] == 60  # validation carved from train
    assert list(load_split("train", out).columns) == ["text", "text_pair", "label"]


def test_a_training_file_whose_rows_are_all_rejected_says_so(tmp_path):
    """It said "the source has no train split; it has ['test', 'train']"."""
    frame = make_texts(90)
    train = frame.iloc[:60].assign(sentiment="angry")
    files = {"train": str(_csv(tmp_path, train, "train.csv")), "test": str(_csv(tmp_path, frame.iloc[60:], "test.csv"))}
    with pytest.raises(DataError, match=r"^\S*train.csv: no training row is left after cleaning: 60 rejected, all "
                                        r"unknown label 'angry': 60; the first, row 1: unknown label 'angry'$"):
        prepare(_params("unused", files=files, labels=["negative", "neutral", "positive"]), tmp_path / "prepared")
    assert not (tmp_path / "prepared").exists()


def test_a_test_or_validation_file_whose_rows_are_all_rejected_is_an_error_not_carved_from_train(tmp_path):
    """A test.csv labelled "5 stars" where the labels are 1-5 was replaced by rows carved from train.csv, prepare
    exited 0, and the reports called training rows the test split."""
    frame = make_texts(120)
    files = {"train": str(_csv(tmp_path, frame.iloc[:60], "train.csv")),
             "validation": str(_csv(tmp_path, frame.iloc[60:90], "valid.csv")),
             "test": str(_csv(tmp_path, frame.iloc[90:].assign(sentiment="angry"), "test.csv"))}
    params = _params("unused", files=files, labels=["negative", "neutral", "positive"])
    with pytest.raises(DataError, match=r"^\S*test.csv: no test row is left after cleaning: 30 rejected, all "
                                        r"unknown label 'angry': 30; the first, row 1: unknown label 'angry'; fix the "
                                        r"file, or leave the split out of data.files \(or data.splits\) to carve it "
                                        r"from train$"):
        prepare(params, tmp_path / "prepared")
    assert not (tmp_path / "prepared").exists()
    files["test"] = str(_csv(tmp_path, frame.iloc[90:], "test.csv"))
    files["validation"] = str(_csv(tmp_path, frame.iloc[:0], "valid.csv"))  # a header and no row
    with pytest.raises(DataError, match=r"^\S*valid.csv: no validation row is left after cleaning; fix the file"):
        prepare(params, tmp_path / "prepared")
    del files["validation"]  # left out: carved from train, as documented
    assert prepare(_params("unused", files=files, labels=["negative", "neutral", "positive"]),
                   tmp_path / "prepared")["rows"]["test"] == 30


def test_every_split_short_of_a_class_is_named_in_one_error(tmp_path):
    """It named only the first short split: a fix of that file then failed on the next one."""
    frame = make_texts(150)
    validation = frame.iloc[90:120]
    validation = validation[validation["sentiment"] != "neutral"]   # 0 neutral
    test = frame.iloc[120:]
    test = test[test["sentiment"] == "positive"].iloc[:4]            # 0 negative, 0 neutral
    files = {"train": str(_csv(tmp_path, frame.iloc[:90], "train.csv")),
             "validation": str(_csv(tmp_path, validation, "validation.csv")),
             "test": str(_csv(tmp_path, test, "test.csv"))}
    with pytest.raises(DataError) as raised:
        prepare(_params("unused", files=files, labels=["negative", "neutral", "positive"], min_rows_per_class=2),
                tmp_path / "prepared")
    message = str(raised.value)
    assert "\n" not in message and "split 'train'" not in message
    assert "split 'validation' has too few rows of 1 of 3 classes ('neutral' 0); split 'test' has too few rows " \
           "of 2 of 3 classes ('negative' 0, 'neutral' 0); data.min_rows_per_class = 2; check the data refresh" \
           in message, message
    # splits given as files are not sized by data.split_fractions: a trial was told to change that key, which does
    # nothing to data.files (before it: only "check the data refresh")
    assert message.endswith("; 'validation', 'test' are read as the data gives them (data.files, or the source's own "
                            "splits), not carved by data.split_fractions: add rows of those classes there, or lower "
                            "data.min_rows_per_class"), message
    assert not (tmp_path / "prepared").exists()
    # a validation split carved from train is: a small dataset (90 + 4 rows) is told the two keys that fix it
    del files["validation"]
    with pytest.raises(DataError) as raised:
        prepare(_params("unused", files=files, labels=["negative", "neutral", "positive"], min_rows_per_class=5),
                tmp_path / "prepared")
    assert "split 'validation' has too few rows" in str(raised.value)
    assert str(raised.value).endswith("a small dataset, give the smaller splits more rows (data.split_fractions) or "
                                      "lower data.min_rows_per_class"), str(raised.value)
    # small only because data.max_samples cut it: said so (a trial's 3,020 rows were called "1,800 rows in all, a
    # small dataset")
    from distillery.class_checks import check_classes
    from distillery.prepared import LABEL

    splits = {"train": pd.DataFrame({LABEL: [0] * 10 + [1]}), "test": pd.DataFrame({LABEL: [0, 0, 1]})}
    with pytest.raises(DataError) as raised:
        check_classes(splits, ["a", "b"], 2, "data.csv", capped={"train": {0: 500, 1: 1}})
    assert str(raised.value).endswith("; with 14 rows in all (490 more before data.max_samples), give the smaller "
                                      "splits more rows (data.split_fractions) or lower data.min_rows_per_class"), \
        str(raised.value)
    # a class the cap took out of train entirely is the cap's doing, not a class the data has no train rows of
    splits = {"train": pd.DataFrame({LABEL: [0] * 50 + [1] * 50}), "validation": pd.DataFrame({LABEL: [0, 1, 2] * 2}),
              "test": pd.DataFrame({LABEL: [0, 1, 2] * 2})}
    with pytest.raises(DataError) as raised:
        check_classes(splits, ["a", "b", "c"], 2, "data.csv", capped={"train": {0: 5000, 1: 4997, 2: 3}})
    assert str(raised.value).endswith("; data.max_samples caps 'train' at 100 of its 10,000 rows: raise the cap (or "
                                      "set it to null), or lower data.min_rows_per_class"), str(raised.value)
    with pytest.raises(DataError) as raised:  # without rows of it before the cap either: it is never trained on
        check_classes(splits, ["a", "b", "c"], 2, "data.csv", capped={"train": {0: 5000, 1: 5000}})
    assert str(raised.value).endswith("; 'c' has rows in 'validation', 'test' but none in 'train': no model learns a "
                                      "class it never trains on; add training rows of it, or remove its rows"), \
        str(raised.value)


def test_a_source_that_data_files_overrides_is_named_as_not_read(tmp_path, capsys):
    """data.files wins over data.source: it did so without a word, and the user read the wrong file's figures."""
    frame = make_texts(150)
    files = {"train": str(_csv(tmp_path, frame.iloc[:120], "train.csv")),
             "test": str(_csv(tmp_path, frame.iloc[120:], "test.csv"))}
    prepare(_params(tmp_path / "other.csv", files=files), tmp_path / "prepared")
    assert capsys.readouterr().out.splitlines()[0] == (
        f"prepare: note: data.files is set, so data.source = {tmp_path / 'other.csv'} is not read; the splits come "
        f"from train: {files['train']}, test: {files['test']}")
    # the default source (a params.yaml that only added data.files) and a source that is one of the files: no note
    for source in ("bundled:tweets", files["train"]):
        prepare(_params(source, files=files), tmp_path / "again")
        assert "data.source" not in capsys.readouterr().out


def test_a_split_file_that_repeats_a_more_held_out_one_is_refused_naming_both(tmp_path):
    """The test file given as validation too vanished into "duplicates dropped 30" (validation carved from train
    instead, without a word); given as train, the error said the source had no train split."""
    frame = make_texts(150)
    train, test = _csv(tmp_path, frame.iloc[:120], "train.csv"), _csv(tmp_path, frame.iloc[120:], "test.csv")
    for files, split in (({"train": str(train), "validation": str(test), "test": str(test)}, "validation"),
                         ({"train": str(test), "test": str(test)}, "train")):
        with pytest.raises(DataError) as raised:
            prepare(_params("unused", files=files), tmp_path / "prepared")
        assert str(raised.value) == (f"{test}: every one of its 30 rows is also in the test split ({test}), which "
                                     f"keeps them: the same file given for two splits? Give the {split} split its "
                                     "own rows")
        assert not (tmp_path / "prepared").exists()


def test_max_samples_and_remainder_transfer_set(tmp_path):
    source = _csv(tmp_path, make_texts(300))
    out = tmp_path / "prepared"
    report = prepare(_params(source, max_samples={"train": 100, "test": 20},
                             transfer=TransferSetConfig(source="remainder", max_rows=50)), out)
    assert report["rows"]["train"] == 100 and report["rows"]["test"] == 20 and report["transfer_rows"] == 50
    transfer = set(load_split("transfer", out)["text"])
    labelled = set().union(*(set(load_split(s, out)["text"]) for s in ("train", "validation", "test")))
    assert not transfer & labelled


def test_transfer_set_from_file_excludes_labelled_texts(tmp_path):
    frame = make_texts(90)
    source = _csv(tmp_path, frame)
    extra = pd.DataFrame({"body": list(frame["text"][:10]) + [f"unlabelled tweet {i}" for i in range(15)]
                          + ["unlabelled tweet 3", "", "   "] + [f"more {i}" for i in range(4)]})
    transfer_file = _csv(tmp_path, extra, "extra.csv")
    report = prepare(_params(source, transfer=TransferSetConfig(source=str(transfer_file), text_column="body",
                                                                max_rows=17)), tmp_path / "prepared")
    assert report["transfer_rows"] == 17
    # what was left out of the rows read, and why (the report counted none of it); pandas skips the "" of a
    # one-column CSV as a blank line, but it is a row of the file, with a blank text, as "   " is: 32 rows read
    assert report["transfer_source_rows"] == {"read": 32, "dropped": {
        "empty or not text": 2, "repeated": 1, "also in a labelled split": 10, "over distill.transfer_set.max_rows": 2}}
    # a transfer file of a header alone (a broken export): "transfer: 0 unlabelled rows", the student distilled on
    # its labels alone, without a word
    extra.iloc[:0].to_csv(transfer_file, index=False)
    with pytest.raises(DataError, match=r"extra.csv: the transfer set \(distill.transfer_set.source\) has no rows \(an "
                                        r"empty file, or a header alone\); give it rows, or set the source to none$"):
        prepare(_params(source, transfer=TransferSetConfig(source=str(transfer_file), text_column="body")),
                tmp_path / "prepared-again")


def test_single_class_is_refused(tmp_path):
    frame = make_texts(30)
    frame["sentiment"] = "positive"
    with pytest.raises(DataError, match="two or more"):
        prepare(_params(_csv(tmp_path, frame)), tmp_path / "prepared")


def test_numeric_labels_agree_across_spellings(tmp_path):
    frame = make_texts(60)
    frame["sentiment"] = frame["sentiment"].map({"negative": "1.0", "neutral": "2", "positive": 3.0})
    report = prepare(_params(_csv(tmp_path, frame), labels=[1, 2, 3], on_bad_rows="fail"), tmp_path / "prepared")
    assert report["labels"] == ["1", "2", "3"] and report["rows_rejected"] == 0


def test_decimal_labels_agree_by_value_and_large_integers_stay_apart(tmp_path):
    """0.50 in a CSV and 0.5 in JSON lines were two classes; 9007199254740993 and ...992 went through float() and
    became one; a digit-like label such as '²' crashed the numeric sort."""
    frame = make_texts(90)
    train = frame.iloc[:60].copy()
    train["sentiment"] = train["sentiment"].map({"negative": "0.50", "neutral": "1.50", "positive": "10"})
    test = frame.iloc[60:].copy()
    test["sentiment"] = test["sentiment"].map({"negative": 0.5, "neutral": 1.5, "positive": 10})
    test.to_json(tmp_path / "test.jsonl", orient="records", lines=True)
    files = {"train": str(_csv(tmp_path, train, "train.csv")), "test": str(tmp_path / "test.jsonl")}
    report = prepare(_params("unused", files=files, on_bad_rows="fail"), tmp_path / "decimals")
    assert report["labels"] == ["0.5", "1.5", "10"] and report["rows_rejected"] == 0  # by value: 10 last

    big = frame.copy()
    big["sentiment"] = big["sentiment"].map({"negative": "9007199254740993", "neutral": "9007199254740992",
                                             "positive": "3"})
    report = prepare(_params(_csv(tmp_path, big, "big.csv")), tmp_path / "big")
    assert report["labels"] == ["3", "9007199254740992", "9007199254740993"]

    digits = frame.copy()
    digits["sentiment"] = digits["sentiment"].map({"negative": "\u00b2", "neutral": "\u00b3", "positive": "1"})
    report = prepare(_params(_csv(tmp_path, digits, "digits.csv")), tmp_path / "digits")
    assert report["labels"] == ["1", "\u00b2", "\u00b3"]


def test_declared_boolean_labels_match_true_and_false_in_a_file(tmp_path):
    """data.labels: [true, false] is YAML's booleans ("True" as text), the CSV's "true": every row was unknown."""
    frame = make_texts(90)
    frame["sentiment"] = frame["sentiment"].map({"negative": "false", "neutral": "TRUE", "positive": "True"})
    report = prepare(_params(_csv(tmp_path, frame), labels=[True, False], on_bad_rows="fail"), tmp_path / "prepared")
    assert report["labels"] == ["true", "false"] and report["rows_rejected"] == 0


def test_a_csv_text_opening_with_a_quote_that_closes_lines_later_is_refused_naming_both_lines(tmp_path):
    """pandas joined lines 3 to 5 into one row of a wrong label, the rows between lost, and prepare said nothing."""
    lines = ["text,sentiment"] + [f"good text {i},{'positive' if i % 2 else 'negative'}" for i in range(30)]
    lines[2] = '"Best. Movie. Ever,positive'
    lines[4] = 'he said 5" screen,negative'
    path = tmp_path / "stray_quote.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError) as raised:
        prepare(_params(path, min_rows_per_class=1), tmp_path / "prepared")
    assert str(raised.value) == (f'{path}: line 3: a quote (") at the start of a field opened a quoted field that ran '
                                 'to line 5 and joined those lines into one row; write such a quote as two quotes ("") '
                                 'or quote the whole field')
    assert not (tmp_path / "prepared").exists()
    # the same texts written by a CSV writer (the quotes doubled) read as 30 rows
    pd.DataFrame([line.rsplit(",", 1) for line in lines[1:]], columns=["text", "sentiment"]).to_csv(path, index=False)
    assert len(read_file(path)) == 30


def test_a_quote_no_quote_closes_is_named_by_its_line_not_pandas_eof_message(tmp_path):
    """pandas said "Error tokenizing data. C error: EOF inside string starting at row 1" (a record, not a line)."""
    for suffix, sep in ((".csv", ","), (".tsv", "\t")):
        lines = ["text" + sep + "sentiment"] + [f"text {i}{sep}{['positive', 'negative'][i % 2]}" for i in range(20)]
        lines[7] = '"an unclosed quote' + sep + 'positive'
        path = tmp_path / f"unclosed{suffix}"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        with pytest.raises(DataError) as raised:
            prepare(_params(path, min_rows_per_class=1), tmp_path / "prepared")
        assert str(raised.value) == (f'{path}: line 8: a quote (") opens a field that no quote closes, to the end of '
                                     'the file; write such a quote as two quotes ("") or quote the whole field')
        assert not (tmp_path / "prepared").exists()


def test_a_bad_row_after_blank_lines_is_named_by_its_row_as_a_spreadsheet_shows_it(tmp_path):
    """pandas skips blank lines, and the rows after them were named up to 3 too low."""
    for suffix, sep in ((".csv", ","), (".tsv", "\t")):
        lines = ["text" + sep + "sentiment"] + [f"text {i}{sep}{['positive', 'negative'][i % 2]}" for i in range(40)]
        lines[5:5] = ["", ""]      # two blank lines: rows 5 and 6
        lines[12] = sep + "negative"  # an empty text: line 13 of the file, row 12 after the header
        path = tmp_path / f"blank_lines{suffix}"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        with pytest.raises(DataError, match=r"row 12: empty text"):
            prepare(_params(path, on_bad_rows="fail"), tmp_path / "prepared")


def test_a_label_in_another_unicode_form_is_the_same_label(tmp_path):
    frame = make_texts(60)
    composed, decomposed = "caf\u00e9 \u2615", "cafe\u0301 \u2615"  # "café ☕" both: é, or e + combining accent
    frame["sentiment"] = frame["sentiment"].replace({"positive": composed})
    frame.loc[frame.index[frame["sentiment"] == composed][::2], "sentiment"] = decomposed
    source = _csv(tmp_path, frame)
    report = prepare(_params(source), tmp_path / "inferred")
    assert report["labels"] == ["caf\u00e9 \u2615", "negative", "neutral"]
    declared = prepare(_params(source, labels=[decomposed, "negative", "neutral"], on_bad_rows="fail"),
                       tmp_path / "declared")
    assert declared["labels"] == [composed, "negative", "neutral"] and declared["rows_rejected"] == 0


def test_class_label_ids_map_through_source_names_even_with_declared_labels():
    from distillery.task_types.text_classification.rows import clean

    frame = pd.DataFrame({"text": ["a", "b", "c", "d"], "sentiment": [0, 1, -1, 1], "_row": [1, 2, 3, 4]})
    cfg = DataConfig(label_column="sentiment", labels=["positive", "negative"])
    out, rejected = clean(frame, cfg, ["positive", "negative"], ["negative", "positive"], "hub [train]")
    assert out["label"].tolist() == [1, 0, 0]  # ids 0/1 are the source's negative/positive
    assert rejected == [{"source": "hub [train]", "row": 3, "reason": "missing label"}]


def test_unlabelled_source_test_split_is_replaced(tmp_path):
    frame = make_texts(90)
    test = make_texts(20, seed=5)
    test["sentiment"] = None
    files = {"train": str(_csv(tmp_path, frame, "train.csv")), "test": str(_csv(tmp_path, test, "test.csv"))}
    report = prepare(_params("unused", files=files, on_bad_rows="fail"), tmp_path / "prepared")
    assert report["unlabelled_source_splits_replaced"] == ["test"]
    assert sum(report["rows"].values()) == 90  # test carved from the labelled rows


# --- large files are streamed ----------------------------------------------------------------------------

def _awkward_frame(n: int) -> pd.DataFrame:
    """Quoted commas and newlines, non-ASCII, empty labels: what a chunk boundary could get wrong."""
    return pd.DataFrame({"text": [f'tweet "{i}", with a comma\nand a newline, café' if i % 7 == 0 else f"t{i}"
                                  for i in range(n)],
                         "sentiment": ["positive", "", "negative", "neutral"] * (n // 4)})


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl"])
def test_a_file_over_the_threshold_is_read_in_chunks_with_the_same_result(tmp_path, monkeypatch, suffix):
    from distillery import sources

    frame, path = _awkward_frame(2000), tmp_path / f"big{suffix}"
    if suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True, force_ascii=False)
    else:
        frame.to_csv(path, sep="\t" if suffix == ".tsv" else ",", index=False)
    whole = sources.read_file(path)
    chunks = []
    real_concat = pd.concat

    def counting_concat(objs, *args, **kwargs):
        objs = list(objs)
        chunks.append(len(objs))
        return real_concat(objs, *args, **kwargs)

    monkeypatch.setattr(sources, "STREAM_THRESHOLD_BYTES", path.stat().st_size - 1)
    monkeypatch.setattr(sources, "CHUNK_ROWS", 128)
    monkeypatch.setattr(sources.pd, "concat", counting_concat)
    monkeypatch.setattr(sources, "decode", lambda *a: pytest.fail("the file was decoded whole"))
    chunked = sources.read_file(path)
    assert chunks == [16]  # 2000 rows in chunks of 128
    pd.testing.assert_frame_equal(chunked, whole)
    assert len(whole) == 2000 and whole["_row"].tolist() == list(range(1, 2001))


def test_a_streamed_file_that_is_not_utf8_still_names_the_line(tmp_path, monkeypatch, capsys):
    from distillery import sources

    path = tmp_path / "big.csv"
    path.write_bytes(b"text,sentiment\n" + b"good day,positive\n" * 500 + b"na\xefve take,neutral\n")
    # data.encoding_errors: replace says how much it replaced, read whole or streamed (a U+FFFD in the file is not
    # counted)
    line = "caf\xe9 na\xefve ".encode("cp1252") + "\ufffd".encode() + b",positive\n"  # two cp1252 bytes, one U+FFFD
    literal = "good \ufffd,positive\n".encode()  # a U+FFFD of the file's own: its line is not counted
    (tmp_path / "cp1252.csv").write_bytes(b"text,sentiment\n" + literal + line * 3 + literal)
    (tmp_path / "clean.csv").write_bytes(b"text,sentiment\n" + "good \ufffd".encode() + b",positive\n")
    for streamed in (False, True):
        monkeypatch.setattr(sources, "STREAM_THRESHOLD_BYTES", 10 if streamed else 10 ** 9)
        assert sources.read_file(tmp_path / "cp1252.csv", "replace")["text"].tolist() == \
            ["good \ufffd"] + ["caf\ufffd na\ufffdve \ufffd"] * 3 + ["good \ufffd"]
        assert f"{tmp_path / 'cp1252.csv'}: 6 byte sequence(s) that are not UTF-8, on 3 line(s), became \ufffd " \
               "(data.encoding_errors: replace)" in capsys.readouterr().err, streamed
        assert sources.read_file(tmp_path / "clean.csv", "replace")["text"].tolist() == ["good \ufffd"]
        assert "byte sequence" not in capsys.readouterr().err, streamed
    monkeypatch.setattr(sources, "STREAM_THRESHOLD_BYTES", 10 ** 9)
    with pytest.raises(DataError) as whole:
        sources.read_file(path)
    monkeypatch.setattr(sources, "STREAM_THRESHOLD_BYTES", 100)
    monkeypatch.setattr(sources, "CHUNK_ROWS", 64)
    with pytest.raises(DataError, match=r"big.csv: line 502 is not valid UTF-8 \(byte 0xef at offset 9017\)") as streamed:
        sources.read_file(path)
    assert str(streamed.value) == str(whole.value)  # the same message as when read whole
    assert sources.read_file(path, "replace")["text"].iloc[-1] == "na\ufffdve take"


# --- byte-order marks and TSV quotes -------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".json"])
@pytest.mark.parametrize("streamed", [False, True])
def test_a_byte_order_mark_is_not_part_of_the_data(tmp_path, monkeypatch, suffix, streamed):
    from distillery import sources

    frame = make_texts(30)
    plain, marked = tmp_path / f"plain{suffix}", tmp_path / f"marked{suffix}"
    if suffix in (".jsonl", ".json"):
        frame.to_json(plain, orient="records", lines=suffix == ".jsonl")
    else:
        frame.to_csv(plain, sep="\t" if suffix == ".tsv" else ",", index=False)
    marked.write_bytes(b"\xef\xbb\xbf" + plain.read_bytes())
    if streamed and suffix != ".json":  # a JSON array is always read whole
        monkeypatch.setattr(sources, "STREAM_THRESHOLD_BYTES", 10)
    read = sources.read_file(marked)
    assert list(read.columns) == ["text", "sentiment", "_row"]
    pd.testing.assert_frame_equal(read, sources.read_file(plain))


def test_a_tsv_text_opening_with_a_quote_is_named_not_joined_to_the_next_lines(tmp_path):
    from distillery import sources

    lines = ["text\tsentiment", "so great\tpositive", '"we lost" he said\tnegative', "the car\tneutral",
             'bad day\tnegative', 'he said hi" nice\tpositive', "the road\tneutral"]
    path = tmp_path / "quotes.tsv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    read = sources.read_file(path)  # a quoted field closed on its own line: one row, as CSV quoting reads it
    assert read["sentiment"].tolist() == ["positive", "negative", "neutral", "negative", "positive", "neutral"]
    lines[2] = '"we lost, he said\tnegative'  # the quote closes 3 lines later: 3 rows would become one
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"quotes.tsv: row 2 \(column 'text'\) holds a tab: a quote"):
        sources.read_file(path)
    # a text holding a tab, quoted whole as pandas and spreadsheets write it, is read as written (it was refused)
    frame = pd.DataFrame({"text": ["broken screen\tdefect", "fine"], "sentiment": ["negative", "positive"]})
    frame.to_csv(path, sep="\t", index=False)
    assert '"broken screen\tdefect"' in path.read_text(encoding="utf-8")
    assert sources.read_file(path)["text"].tolist() == ["broken screen\tdefect", "fine"]


@pytest.mark.parametrize("suffix, separator", [(".csv", ","), (".tsv", "\t")])
@pytest.mark.parametrize("streamed", [False, True])
def test_an_extra_field_on_the_first_data_line_is_named_not_read_as_an_index(tmp_path, monkeypatch, suffix,
                                                                              separator, streamed):
    """pandas read the first field of every row as an index when the first data line had one field more than
    the header: each row shifted, and prepare said "found 1 label value(s) ['positive']"."""
    from distillery import sources

    path = tmp_path / f"shifted{suffix}"
    rows = [f"so{separator} that wonderful", "positive"], ["bad", "negative"], ["fine", "neutral"]
    path.write_text("\n".join(separator.join(r) for r in (["text", "sentiment"], *rows)) + "\n", encoding="utf-8")
    if streamed:
        monkeypatch.setattr(sources, "STREAM_THRESHOLD_BYTES", 10)
    with pytest.raises(DataError, match=rf"^.*shifted{suffix}: line 2 has 3 fields but the header has 2: a text "
                                        rf"holding a {'tab' if suffix == '.tsv' else 'comma'} must be quoted"):
        sources.read_file(path)
    # a comma in a text further down, after a text over two lines: named by its row as a spreadsheet shows it (it
    # was pandas' "Error tokenizing data. C error: Expected 2 fields in line 6, saw 3")
    rows = ["good", "positive"], ["bad", "negative"], ['"two\nlines"', "neutral"], ["ok", "positive"], \
        [f"so{separator} that", "positive"]
    path.write_text(f"text{separator}sentiment\n" + "".join(separator.join(r) + "\n" for r in rows), encoding="utf-8")
    with pytest.raises(DataError, match=rf"^.*shifted{suffix}: row 5 has 3 fields but the header has 2: a text "
                                        rf"holding a {'tab' if suffix == '.tsv' else 'comma'} must be quoted"):
        sources.read_file(path)  # row 5 as prepare numbers rows (from 1 after the header), in rejected.csv too
    # an extra field on line 2 and more on a later line: pandas expected the header's fields and one (it took the
    # first for an index); the first problem is line 2, and the header's count is the header's
    rows = [f"so{separator} that", "positive"], ["good", "positive"], \
        [f"very{separator} very{separator} bad", "negative"]
    path.write_text(f"text{separator}sentiment\n" + "".join(separator.join(r) + "\n" for r in rows), encoding="utf-8")
    with pytest.raises(DataError, match=rf"^.*shifted{suffix}: line 2 has 3 fields but the header has 2: a text "
                                        rf"holding a {'tab' if suffix == '.tsv' else 'comma'} must be quoted"):
        sources.read_file(path)
    # trailing commas on some lines only, and a comma in a text: not "each line ends with a comma"
    rows = [f"so{separator} that", "positive", ""], ["good", "positive", ""], ["bad", "negative", ""]
    path.write_text(f"text{separator}sentiment{separator}note\n" + "".join(separator.join(r) + "\n" for r in rows),
                    encoding="utf-8")
    with pytest.raises(DataError, match=rf"^.*shifted{suffix}: line 2 has 4 fields but the header has 3: a text "
                                        rf"holding a {'tab' if suffix == '.tsv' else 'comma'} must be quoted"):
        sources.read_file(path)
    # every line ending in a separator (a spreadsheet's empty last column) is named as that, not as a missing quote
    rows = ["so that wonderful", "positive"], ["bad", "negative"], ["fine", "neutral"]
    path.write_text(f"text{separator}sentiment\n" + "".join(separator.join(r) + separator + "\n" for r in rows),
                    encoding="utf-8")
    with pytest.raises(DataError, match=rf"^.*shifted{suffix}: every row has 3 fields but the header has 2: each line "
                                        rf"ends with a {'tab' if suffix == '.tsv' else 'comma'} \(an empty last "
                                        r"field\); remove it, or name that column in the header$"):
        sources.read_file(path)


@pytest.mark.parametrize("streamed", [False, True])
def test_a_tsv_written_without_quoting_keeps_the_quotes_of_its_texts(tmp_path, monkeypatch, streamed):
    """A raw TSV (GLUE's, a spreadsheet's export) whose text opens with a quoted word lost both quotes: CSV
    quoting read '"we lost" he said' as 'we lost he said'."""
    from distillery import sources

    lines = ["text\tsentiment", "so great\tpositive", '"we lost" he said\tnegative', '"fine"\tneutral',
             'he said "hi"\tpositive', '""\tneutral']
    path = tmp_path / "raw.tsv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    if streamed:
        monkeypatch.setattr(sources, "STREAM_THRESHOLD_BYTES", 10)
    from distillery import text_files

    scans = []
    scan = text_files.is_raw_tsv
    for module in (sources, text_files):
        monkeypatch.setattr(module, "is_raw_tsv", lambda lines: scans.append(1) or scan(lines))
    read = sources.read_file(path)
    assert len(scans) == 1  # one scan serves the parse and the row numbers: a large TSV is not read twice for it
    assert read["_row"].tolist() == [1, 2, 3, 4, 5]
    monkeypatch.setattr(sources, "is_raw_tsv", scan)
    monkeypatch.setattr(text_files, "is_raw_tsv", scan)
    assert read["text"].tolist() == ["so great", '"we lost" he said', '"fine"', 'he said "hi"', '""']
    # such a TSV cannot quote a tab: a row with one more field is told so, not to quote it
    path.write_text(path.read_text(encoding="utf-8") + '"so\tthat"\tpositive\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"row 6 has 3 fields but the header has 2: this TSV is read without quoting \("
                                        r"a text of it opens with a quote that closes before the field ends\), so a "
                                        r"text cannot hold a tab; replace the tabs in its texts$"):
        sources.read_file(path)
    assert read["sentiment"].tolist() == ["positive", "negative", "neutral", "positive", "neutral"]
    # A TSV written with quoting (pandas, Python's csv module) is still read with it: quotes and newlines
    frame = pd.DataFrame({"text": ['say ""hi""', '"quoted whole"', '"a" b', "two\nlines", "plain"],
                          "sentiment": ["positive", "neutral", "negative", "neutral", "positive"]})
    frame.to_csv(path, sep="\t", index=False)
    assert not sources.is_raw_tsv(path.read_text(encoding="utf-8").splitlines())
    pd.testing.assert_frame_equal(sources.read_file(path)[["text", "sentiment"]], frame)


def test_a_bad_row_of_data_files_is_named_by_its_file(tmp_path):
    frame = make_texts(60)
    test = make_texts(12, seed=1)
    test.loc[4, "sentiment"] = "surprise"
    files = {"train": str(_csv(tmp_path, frame, "train.csv")), "test": str(_csv(tmp_path, test, "extra.csv"))}
    params = _params("unused", files=files, labels=["negative", "neutral", "positive"], on_bad_rows="fail")
    with pytest.raises(DataError, match=r"^[^ ]*extra.csv row 5: unknown label 'surprise'"):
        prepare(params, tmp_path / "failed")
    report = prepare(_params("unused", files=files, labels=["negative", "neutral", "positive"]), tmp_path / "ok")
    assert report["source"] == f"data.files {{train: {files['train']}, test: {files['test']}}}"
    assert pd.read_csv(tmp_path / "ok" / "rejected.csv").to_dict("records") == \
        [{"source": files["test"], "row": 5, "reason": "unknown label 'surprise'"}]


def test_an_input_with_two_labels_keeps_its_first_and_is_reported(tmp_path, capsys):
    frame = make_texts(60)
    frame = pd.concat([frame, frame.iloc[[3]].assign(sentiment="negative"), frame.iloc[[7]]], ignore_index=True)
    assert frame.loc[3, "sentiment"] == "positive" and frame.loc[60, "text"] == frame.loc[3, "text"]
    out = tmp_path / "prepared"
    report = prepare(_params(_csv(tmp_path, frame)), out)
    assert sum(report["duplicates_dropped"].values()) == 2
    printed = capsys.readouterr().out
    warning = [line for line in printed.splitlines() if "different labels" in line]
    # row 7's copy has the same label: only row 4 (counted from 1) conflicts with row 61
    assert warning == [f"prepare: warning: 1 input(s) appear with different labels; each keeps the label of its first "
                       f"copy (an evaluation split's first). First: {tmp_path / 'data.csv'} [all] row 4 as 'positive', "
                       f"{tmp_path / 'data.csv'} [all] row 61 as 'negative'"]
    kept = pd.concat([load_split(s, out) for s in ("train", "validation", "test")])
    names = load_labels(out)
    assert [names[i] for i in kept.loc[kept["text"] == frame.loc[3, "text"], "label"]] == ["positive"]

    # one text on 60 rows under 3 labels: the line names its first 5 copies, then counts the rest (it named all 60)
    copies = pd.DataFrame({"text": ["same text for all"] * 60, "sentiment": ["negative", "neutral", "positive"] * 20})
    prepare(_params(_csv(tmp_path, pd.concat([make_texts(60), copies], ignore_index=True), "copies.csv")),
            tmp_path / "copies")
    warning = [line for line in capsys.readouterr().out.splitlines() if "different labels" in line]
    assert len(warning) == 1 and warning[0].count(" as '") == 5, warning
    assert warning[0].endswith(f"{tmp_path / 'copies.csv'} [all] row 65 as 'neutral' and 55 more copies"), warning


def _variant(text: str) -> str:
    """The same input as ``text`` to an uncased model: other case, doubled spaces, padded ends, a
    compatibility character (NFKC: the fullwidth digits of the row number become ASCII)."""
    words = text.split()
    fullwidth = "".join(chr(ord(c) + 0xFEE0) if c.isdigit() else c for c in words[-1])
    return "  " + "  ".join(w.upper() for w in words[:-1]) + "\t" + fullwidth + " "


def test_a_training_text_differing_from_a_held_out_one_only_in_case_or_spacing_is_dropped(tmp_path):
    test = make_texts(30, seed=1)
    train = make_texts(90)
    copies = [_variant(t) for t in test["text"].iloc[:6]]
    train = pd.concat([train, pd.DataFrame({"text": copies, "sentiment": test["sentiment"].iloc[:6]})],
                      ignore_index=True)
    files = {"train": str(_csv(tmp_path, train, "train.csv")), "test": str(_csv(tmp_path, test, "test.csv"))}
    exact = prepare(_params("unused", files=files, leak_check="exact"), tmp_path / "exact")
    assert exact["near_copies_dropped"] == {} and exact["duplicates_dropped"] == {}
    kept = {s: load_split(s, tmp_path / "exact") for s in ("train", "validation", "test")}
    assert set(copies) <= set(kept["train"]["text"]) | set(kept["validation"]["text"])

    report = prepare(_params("unused", files=files), tmp_path / "normalised")
    near = {s: load_split(s, tmp_path / "normalised") for s in ("train", "validation", "test")}
    # the 6 copies of test texts go, wherever the split put them; the test split and every other row stay
    assert sum(report["near_copies_dropped"].values()) == 6 and len(near["test"]) == 30
    for split in ("train", "validation"):
        assert sorted(near[split]["text"]) == sorted(t for t in kept[split]["text"] if t not in copies)


def test_a_near_copy_of_a_labelled_text_stays_out_of_the_transfer_set(tmp_path):
    source = _csv(tmp_path, make_texts(120))
    prepared = prepare(_params(source), tmp_path / "first")
    labelled = pd.concat([load_split(s, tmp_path / "first") for s in ("train", "validation", "test")])["text"]
    extra = pd.DataFrame({"body": [_variant(t) for t in labelled.iloc[:5]] + ["an unseen text", "AN UNSEEN  TEXT"]})
    report = prepare(_params(source, transfer=TransferSetConfig(source=str(_csv(tmp_path, extra, "extra.csv")),
                                                                text_column="body")), tmp_path / "second")
    assert prepared["rows"] == report["rows"] and report["near_copies_dropped"] == {"transfer": 5}
    # two texts that match each other but no labelled text are no leak: both stay
    assert list(load_split("transfer", tmp_path / "second")["text"]) == ["an unseen text", "AN UNSEEN  TEXT"]


def test_a_jsonl_value_that_is_not_text_or_not_one_label_is_a_rejected_row(tmp_path):
    """JSON keeps types: an object or a number as the text, or a list as the label, was trained on as its
    Python spelling ("{'a': 1}", "5", "['agrees']": a class of its own), while the served model refuses such
    inputs."""
    import json

    frame = make_texts(60)
    rows = frame.to_dict("records")
    rows[2]["text"], rows[5]["text"], rows[9]["sentiment"] = {"a": 1}, 5, ["positive"]
    source = tmp_path / "data.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in rows))
    report = prepare(_params(source), tmp_path / "prepared")  # labels inferred: no "['positive']" class
    assert report["rejected_by_reason"] == {"text is not a string (an object)": 1, "text is not a string (a number)": 1,
                                            "label is not a single value (a list)": 1}
    assert sorted(pd.read_csv(tmp_path / "prepared/rejected.csv")["row"]) == [3, 6, 10]
    assert load_labels(tmp_path / "prepared") == ["negative", "neutral", "positive"]


@pytest.mark.parametrize("suffix, broken, message", [
    (".jsonl", lambda line: line[:-1], r"line 8 is not valid JSON \(Expecting ',' delimiter at column \d+\)"),
    (".jsonl", lambda line: '["a", "b"]', r"line 8 is a JSON list, not an object of columns"),
    # a line cut inside a string: the message names the column of its opening quote, with one "at"
    (".jsonl", lambda line: '{"text": "cut', r"line 8 is not valid JSON \(Unterminated string starting at column 10\)$"),
    (".json", lambda line: line.replace(",", "", 1), r"line 8 is not valid JSON \(Expecting ',' delimiter"),
])
def test_a_broken_json_line_is_named_by_its_line(tmp_path, suffix, broken, message):
    import json

    lines = [json.dumps(row) for row in make_texts(30).to_dict("records")]
    lines[7] = broken(lines[7])
    source = tmp_path / f"data{suffix}"
    # .json: one document, "[" on line 1 and lines[1:] after it, so lines[7] is line 8 there too
    text = "\n".join(lines) + "\n" if suffix == ".jsonl" else "[\n" + ",\n".join(lines[1:]) + "\n]\n"
    source.write_text(text)
    with pytest.raises(DataError, match=rf"^{source}: {message}"):
        prepare(_params(source), tmp_path / "prepared")
    assert not (tmp_path / "prepared").exists()


def test_a_json_array_saved_as_jsonl_is_refused_with_the_suffix_it_needs_and_json_lines_as_json_are_read(tmp_path):
    rows = make_texts(30).to_dict("records")
    (tmp_path / "array.jsonl").write_text("\ufeff [\n" + ",\n".join(json.dumps(r) for r in rows) + "\n]\n")
    (tmp_path / "line.jsonl").write_text(json.dumps(rows))  # on one line, which pandas reads as one row of objects
    for name in ("array.jsonl", "line.jsonl"):
        with pytest.raises(DataError, match=rf"^{tmp_path / name}: one JSON array, not JSON lines \(one object per "
                                            r"line\): give it the suffix .json$"):
            prepare(_params(tmp_path / name), tmp_path / "prepared")
    assert not (tmp_path / "prepared").exists()
    (tmp_path / "lines.json").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    prepare(_params(tmp_path / "lines.json"), tmp_path / "prepared")
    kept = pd.concat([load_split(part, tmp_path / "prepared") for part in ("train", "validation", "test")])
    assert sorted(kept["text"]) == sorted(r["text"] for r in rows)


def test_an_empty_text_column_of_the_string_dtype_is_checked_without_error():
    """Series.map on an EMPTY column of pandas' string dtype keeps that dtype: the "is it a string" masks were
    strings, and `&` on them failed prepare whenever the transfer set had no rows."""
    from distillery.task_types.text_classification.rows import is_blank, not_scalar, not_text

    empty = pd.Series([], dtype="str")
    assert not_text(empty).dtype == bool and not_scalar(empty).dtype == bool
    assert (is_blank(empty) | not_text(empty)).tolist() == []


# --- hub:<dataset id>: the datasets.load_dataset path, on a local dataset directory (the Hub is offline here) ----

def _hub_dataset(root: Path, test_labels: str = "none") -> Path:
    """A dataset directory as the Hub serves one (``data/<split>-00000-of-00001.parquet``) with GLUE's columns: a
    ``ClassLabel`` label whose names are not in sorted order, and a test split of -1 labels unless
    ``test_labels == "labelled"``."""
    import datasets

    names = ["positive", "negative", "neutral"]  # the source's own id order
    features = datasets.Features({"sentence": datasets.Value("string"), "label": datasets.ClassLabel(names=names),
                                  "idx": datasets.Value("int32")})
    (root / "data").mkdir(parents=True)
    for split, n, seed in (("train", 120, 1), ("validation", 30, 2), ("test", 30, 3)):
        frame = make_texts(n, seed=seed)
        labels = [names.index(s) for s in frame["sentiment"]]
        if split == "test" and test_labels == "none":
            labels = [-1] * n
        datasets.Dataset.from_dict({"sentence": frame["text"].tolist(), "label": labels, "idx": list(range(n))},
                                   features=features).to_parquet(root / "data" / f"{split}-00000-of-00001.parquet")
    return root


def test_a_hub_dataset_maps_class_label_ids_through_its_names_and_replaces_an_unlabelled_test_split(tmp_path):
    source = _hub_dataset(tmp_path / "glue_like")
    out = tmp_path / "prepared"
    report = prepare(_params(f"hub:{source}", text_column="sentence", label_column="label", on_bad_rows="fail"), out)
    assert report["unlabelled_source_splits_replaced"] == ["test"]
    assert report["rows"]["validation"] == 30 and report["rows"]["train"] + report["rows"]["test"] == 120
    assert load_labels(out) == ["positive", "negative", "neutral"]  # the ClassLabel's names, in its order
    # every prepared row carries the label its text was made with (tiny.make_texts marks the label in the text)
    expected = {text: label for split, seed, n in (("train", 1, 120), ("validation", 2, 30))
                for text, label in zip(*make_texts(n, seed=seed)[["text", "sentiment"]].T.values)}
    for split in ("train", "validation", "test"):
        frame = load_split(split, out)
        names = [load_labels(out)[i] for i in frame["label"]]
        assert names == [expected[text] for text in frame["text"]], split


def test_a_labelled_hub_test_split_is_kept_and_declared_labels_still_map_the_ids(tmp_path):
    source = _hub_dataset(tmp_path / "glue_like", test_labels="labelled")
    out = tmp_path / "prepared"
    report = prepare(_params(f"hub:{source}", text_column="sentence", label_column="label", on_bad_rows="fail",
                             labels=["negative", "neutral", "positive"]), out)
    assert report["unlabelled_source_splits_replaced"] == [] and report["rows"]["test"] == 30
    assert load_labels(out) == ["negative", "neutral", "positive"]  # declared: the prepared ids follow them
    test, source = load_split("test", out), make_texts(30, seed=3)
    assert sorted(test["text"]) == sorted(source["text"])
    expected = dict(zip(source["text"], source["sentiment"]))
    assert [load_labels(out)[i] for i in test["label"]] == [expected[text] for text in test["text"]]


def test_a_hub_dataset_that_cannot_be_loaded_is_one_line_naming_data_source(tmp_path):
    with pytest.raises(DataError, match=r"^data.source: cannot load Hub dataset .*no-such-dataset") as error:
        prepare(_params(f"hub:{tmp_path / 'no-such-dataset'}", text_column="sentence", label_column="label"),
                tmp_path / "prepared")
    assert "\n" not in str(error.value)
    assert not (tmp_path / "prepared").exists()
    # a transfer set's Hub dataset is named by its own keys (a trial's error blamed data.source)
    from distillery.transfer_set import read_texts

    with pytest.raises(DataError, match=r"^distill.transfer_set.source: cannot load Hub dataset '.*no-such-unl' "
                                        r"\(distill.transfer_set.hub_config 'en'\): "):
        read_texts(f"hub:{tmp_path / 'no-such-unl'}", "text", "train", "en", "strict")


def test_an_unreachable_hub_is_a_transient_one_line_error_and_a_bad_id_or_offline_is_not(tmp_path, monkeypatch):
    """No network made exit 2 (bad input, never retried) after 23 lines of retry warnings."""
    import datasets
    from huggingface_hub import constants

    from distillery import errors
    from distillery.errors import HubUnreachable, hub_unreachable

    def unreachable(*args, **kwargs):
        try:
            raise ConnectionError("[Errno -2] Name or service not known")
        except ConnectionError as cause:
            raise FileNotFoundError("Couldn't reach 'someone/reviews' on the Hub (LocalEntryNotFoundError)") from cause

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(errors, "PROBED", {constants.ENDPOINT: True})  # the Hub answered this process's first call
    monkeypatch.setattr(datasets, "load_dataset", unreachable)
    with pytest.raises(HubUnreachable) as error:
        prepare(_params("hub:someone/reviews"), tmp_path / "prepared")
    assert error.value.exit_code == 3 and "\n" not in str(error.value)
    assert str(error.value).startswith("data.source: the Hugging Face Hub did not answer for dataset 'someone/reviews' "
                                       "(Couldn't reach 'someone/reviews' on the Hub (LocalEntryNotFoundError)); retry")
    assert not (tmp_path / "prepared").exists()
    assert not hub_unreachable(OSError("someone/reviews is not a valid model identifier listed on the Hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # offline by choice: a retry cannot help
    monkeypatch.setattr(errors, "PROBED", {})
    with pytest.raises(DataError) as error:
        prepare(_params("hub:someone/reviews"), tmp_path / "prepared")
    assert not isinstance(error.value, HubUnreachable) and error.value.exit_code == 2


def test_a_hub_transfer_set_takes_its_named_split_and_drops_the_labelled_texts(tmp_path):
    hub = _hub_dataset(tmp_path / "glue_like")  # its train split holds make_texts(120, seed=1)
    labelled = make_texts(120, seed=1).iloc[:60]  # half of those texts are also the labelled data
    out = tmp_path / "prepared"
    transfer = TransferSetConfig(source=f"hub:{hub}", text_column="sentence", split="train")
    report = prepare(_params(_csv(tmp_path, labelled), transfer=transfer), out)
    transfer_texts = set(load_split("transfer", out)["text"])
    assert report["transfer_rows"] == len(transfer_texts) == 60
    assert transfer_texts == set(make_texts(120, seed=1)["text"].iloc[60:])
    with pytest.raises(DataError, match=r"^distill.transfer_set.split: hub:.* has no split 'unlabeled'; it has "
                                        r"\['test', 'train', 'validation'\]$"):
        prepare(_params(_csv(tmp_path, labelled), transfer=TransferSetConfig(
            source=f"hub:{hub}", text_column="sentence", split="unlabeled")), tmp_path / "refused")


@pytest.mark.parametrize("streamed", [False, True])
def test_a_json_lines_row_is_named_by_its_line_when_blank_lines_come_before_it(tmp_path, monkeypatch, streamed):
    from distillery import sources

    records = make_texts(60).to_dict("records")
    records[10]["sentiment"] = "zzyes"  # record 11, but line 14 after three blank lines
    lines = [json.dumps(r) for r in records]
    path = tmp_path / "blank.jsonl"
    path.write_text("\n".join(lines[:3] + ["", "  ", "\t"] + lines[3:]) + "\n\n")
    if streamed:
        monkeypatch.setattr(sources, "STREAM_THRESHOLD_BYTES", 10)
        monkeypatch.setattr(sources, "CHUNK_ROWS", 16)
    with pytest.raises(DataError, match=r"blank.jsonl \[all\] row 14: unknown label 'zzyes'"):
        prepare(_params(path, labels=["negative", "neutral", "positive"], on_bad_rows="fail"), tmp_path / "prepared")
    assert path.read_text().split("\n")[13] == lines[10]


def test_a_pair_transfer_file_names_its_own_columns(tmp_path):
    frame = make_texts(90)
    frame["hypothesis"] = make_texts(90, seed=1)["text"].values
    source = _csv(tmp_path, frame)
    unlabelled = pd.DataFrame({"premise": [f"an unlabelled premise {i}" for i in range(12)],
                               "claim": [f"an unlabelled claim {i}" for i in range(12)]})
    transfer_file = _csv(tmp_path, unlabelled, "unlabelled.csv")
    out = tmp_path / "prepared"
    transfer = TransferSetConfig(source=str(transfer_file), text_column="premise", text_pair_column="claim")
    report = prepare(_params(source, text_pair_column="hypothesis", transfer=transfer), out)
    assert report["transfer_rows"] == 12
    kept = load_split("transfer", out).sort_values("text", key=lambda t: t.str.split().str[-1].astype(int))
    assert kept["text"].tolist() == unlabelled["premise"].tolist()
    assert kept["text_pair"].tolist() == unlabelled["claim"].tolist()
    # without the key, the data's pair column is looked for, and its absence names the key to set
    with pytest.raises(DataError, match=r"unlabelled.csv: text pair column 'hypothesis' not found \(name the file's "
                                        r"own in distill.transfer_set.text_pair_column\); columns: \['premise', "
                                        r"'claim'\]"):
        prepare(_params(source, text_pair_column="hypothesis", transfer=TransferSetConfig(
            source=str(transfer_file), text_column="premise")), tmp_path / "refused")


def test_a_transfer_file_of_mostly_blank_rows_is_refused_as_labelled_data_is(tmp_path):
    """A trial: a JSON-lines transfer file whose records lacked the pair key gave `transfer: 0 unlabelled rows`, and
    prepare exited 0: the student was distilled on labels alone without a word."""
    frame = make_texts(90)
    frame["hypothesis"] = make_texts(90, seed=1)["text"].values
    source = _csv(tmp_path, frame)
    records = [{"premise": f"an unlabelled premise {i}", **({"claim": f"a claim {i}"} if i < 4 else {})}
               for i in range(10)]
    transfer_file = tmp_path / "unlabelled.jsonl"
    transfer_file.write_text("".join(json.dumps(r) + "\n" for r in records))
    transfer = TransferSetConfig(source=str(transfer_file), text_column="premise", text_pair_column="claim")
    with pytest.raises(DataError, match=rf"^{re.escape(str(transfer_file))}: 6 of 10 transfer-set rows \(60\.0%\) have "
                                        r"an empty or missing text \(or text pair\), more than "
                                        r"data\.max_rejected_fraction = 0\.5; fix the file"):
        prepare(_params(source, text_pair_column="hypothesis", transfer=transfer), tmp_path / "refused")
    assert not (tmp_path / "refused").exists()
    records[4]["claim"] = "a claim 4"  # 5 of 10 blank: at the limit, kept, and the report counts them
    transfer_file.write_text("".join(json.dumps(r) + "\n" for r in records))
    report = prepare(_params(source, text_pair_column="hypothesis", transfer=transfer), tmp_path / "prepared")
    assert report["transfer_rows"] == 5
    # trial AA: in a CSV, lines of white space, which pandas skips, are blank texts too (20 of 30 rows here)
    single = _csv(tmp_path, make_texts(90))
    lines = [f"an unlabelled text {i}" if i < 10 else ("   ", "\t", "  ")[i % 3] for i in range(30)]
    (tmp_path / "spaces.csv").write_text("text\n" + "\n".join(lines) + "\n")
    spaced = TransferSetConfig(source=str(tmp_path / "spaces.csv"))
    with pytest.raises(DataError, match=r"spaces\.csv: 20 of 30 transfer-set rows \(66\.7%\) have an empty or missing"):
        prepare(_params(single, transfer=spaced), tmp_path / "spaces")
    (tmp_path / "spaces.csv").write_text("text\n" + "\n".join(lines[10:]) + "\n")
    with pytest.raises(DataError, match=r"spaces\.csv: each of its 20 transfer-set rows has an empty or missing text"):
        prepare(_params(single, transfer=spaced), tmp_path / "spaces")


def test_two_spellings_of_one_number_among_text_labels_stop_prepare_naming_both(tmp_path):
    """"1.1" and "1.10" (codes) became one class, and "2.0" was renamed "2", without a word."""
    frame = make_texts(90)
    frame["sentiment"] = frame["sentiment"].map({"negative": "1.1", "neutral": "1.10", "positive": "2.0"})
    source = _csv(tmp_path, frame)
    with pytest.raises(DataError) as raised:
        prepare(_params(source), tmp_path / "prepared")
    assert str(raised.value) == (f"{source} [all]: the labels '1.1' and '1.10' in 'sentiment' are one number, so they would "
                                 "be one class (labels that look like numbers are compared by value); if they are two "
                                 "classes, name them so they are not numbers, e.g. 'c1.1' and 'c1.10'")
    assert not (tmp_path / "prepared").exists()
    # across files: "01" in train, "1" in test
    train, test = frame.iloc[:60].copy(), frame.iloc[60:].copy()
    train["sentiment"] = train["sentiment"].map({"1.1": "01", "1.10": "2", "2.0": "3"})
    test["sentiment"] = test["sentiment"].map({"1.1": "1", "1.10": "2", "2.0": "3"})
    files = {"train": str(_csv(tmp_path, train, "train.csv")), "test": str(_csv(tmp_path, test, "test.csv"))}
    with pytest.raises(DataError, match=r"train.csv and .*test.csv: the labels '01' and '1' in 'sentiment'"):
        prepare(_params("unused", files=files), tmp_path / "prepared")
    # a whole number and the same with a zero fraction are one label: pandas writes an integer column holding a NaN
    # as floats, so a train.csv of 1.0, 2.0, 3.0 beside a test.csv of 1, 2, 3 is one labelling
    train["sentiment"], test["sentiment"] = train["sentiment"].map({"01": "1.0", "2": "2.0", "3": "3.00"}), \
        test["sentiment"].map({"1": "1", "2": "2", "3": "3"})
    files = {"train": str(_csv(tmp_path, train, "train.csv")), "test": str(_csv(tmp_path, test, "test.csv"))}
    assert prepare(_params("unused", files=files), tmp_path / "whole")["labels"] == ["1", "2", "3"]
    # declared labels that are one number are named
    with pytest.raises(DataError, match=r"names the same label twice: '1.1' and '1.10' are both the label '1.1'"):
        prepare(_params(source, labels=["1.1", "1.10", "2.0"]), tmp_path / "prepared")


def test_labels_keep_their_spelling_when_it_is_a_code_and_numbers_their_own_precision(tmp_path):
    """Lot codes 1E5, 2E5, 3E5 were served as classes '100000', '200000', '300000'; a float32 Parquet column of 0.1,
    0.2, 0.3 became '0.10000000149011612'...; a 5,000-digit label stopped prepare with a traceback."""
    from distillery.task_types.text_classification.rows import label_key

    frame = make_texts(90)
    frame["sentiment"] = frame["sentiment"].map({"negative": "1E5", "neutral": "2E5", "positive": "3e5"})
    assert prepare(_params(_csv(tmp_path, frame)), tmp_path / "codes")["labels"] == ["1E5", "2E5", "3e5"]
    # declared in params.yaml without quotes, the codes are numbers there: the data's spellings match them by value
    declared = prepare(_params(_csv(tmp_path, frame), labels=[1e5, 2e5, 3e5]), tmp_path / "declared")
    assert declared["labels"] == ["100000", "200000", "300000"] and declared["rows"]["train"] > 0
    frame["sentiment"] = frame["sentiment"].map({"1E5": 0.1, "2E5": 0.2, "3e5": 0.3}).astype(np.float32)
    frame.to_parquet(tmp_path / "floats.parquet")
    assert prepare(_params(tmp_path / "floats.parquet"), tmp_path / "floats")["labels"] == ["0.1", "0.2", "0.3"]
    assert label_key(np.float32(0.1)) == label_key("0.1") == label_key(0.1) == "0.1"
    assert label_key(100000.0) == "100000" and label_key(1e-7) == "0.0000001"  # numbers read as numbers: by value
    assert label_key("7" * 5000) == "7" * 5000 and label_key("1e5000") == "1e5000"
    # invisible characters at either end are not part of a label; a zero-width joiner inside an emoji is
    assert label_key("pos\u200b") == label_key("\ufeffpos ") == "pos"
    assert label_key("\U0001F468\u200d\U0001F469") == "\U0001F468\u200d\U0001F469"


def test_rows_of_empty_fields_are_skipped_as_blank_lines_and_a_repeated_column_name_is_refused(tmp_path):
    """A spreadsheet's export ends in rows of commas: 200 of them made prepare fail at "57% rejected", 3 under
    on_bad_rows: fail stopped it at "row 151: empty text". A header `text,text,sentiment` read the first `text`."""
    lines = ["text,sentiment,notes"] + [f"text {i},{['positive', 'negative'][i % 2]}," for i in range(150)]
    lines[40:40] = [",,", " , ,"]  # empty fields in the middle too: a blank line as a spreadsheet writes it
    lines[100] = ",negative,"  # an empty text beside a label is a bad row, named as the spreadsheet numbers it
    path = tmp_path / "export.csv"
    path.write_text("\n".join(lines + [",,"] * 200) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"row 100: empty text \(1 bad row\(s\) in all"):
        prepare(_params(path, on_bad_rows="fail"), tmp_path / "prepared")
    lines[100] = "text 97,negative,"
    path.write_text("\n".join(lines + [",,"] * 200) + "\n", encoding="utf-8")
    report = prepare(_params(path, on_bad_rows="fail"), tmp_path / "prepared")
    assert report["rows_rejected"] == 0 and sum(report["rows"].values()) == 150

    twice = tmp_path / "twice.csv"
    twice.write_text("text,text,sentiment\n" + "".join(f"a {i},b {i},{['x', 'y'][i % 2]}\n" for i in range(60)))
    with pytest.raises(DataError, match=r"twice.csv \[all\]: two columns are named 'text' \(pandas read the second "
                                        r"as 'text.1'\); rename one, so that data.text_column names a single column"):
        prepare(_params(twice), tmp_path / "prepared2")


def test_the_data_report_names_the_twenty_commonest_reasons_and_counts_the_rest(tmp_path):
    """A million rows of free-text labels gave the report one key per distinct unknown label: 17.7 MB."""
    frame = make_texts(150)
    odd = frame.index[:45]
    frame.loc[odd, "sentiment"] = [f"checked by reviewer #{i}" for i in range(45)]
    frame.loc[odd[:5], "sentiment"] = "checked by reviewer #0"  # one label five times, 40 others once: 41 reasons
    report = prepare(_params(_csv(tmp_path, frame), labels=["positive", "negative", "neutral"],
                             max_rejected_fraction=0.5), tmp_path / "prepared")
    reasons = report["rejected_by_reason"]
    assert len(reasons) == 21 and sum(reasons.values()) == report["rows_rejected"] == 45
    assert next(iter(reasons.items())) == ("unknown label 'checked by reviewer #0'", 5)
    assert reasons["other reasons (see rejected.csv)"] == 21
    assert len(pd.read_csv(tmp_path / "prepared" / "rejected.csv")) == 45


def test_a_class_of_one_row_leaves_the_other_classes_stratified_and_is_the_one_named(tmp_path):
    """One class of a single row turned stratification off for every class: the refusal then named classes of 27
    and 14 rows that had drawn no validation row, not the class of one row."""
    from distillery.prepared import stratified_positions

    labels = np.array(["a"] * 10 + ["b"] * 10 + ["c"] * 10 + ["lone"])
    kept, rest = stratified_positions(labels, 6, seed=0)
    assert sorted(labels[kept]) == ["a", "a", "b", "b", "c", "c"] and "lone" in labels[rest]
    assert sorted(np.concatenate([kept, rest])) == list(range(31))

    frame = make_texts(300)  # 12 classes of 25 rows, and one of one row
    frame["sentiment"] = [f"class_{i % 12}" for i in range(300)]
    frame = pd.concat([frame, pd.DataFrame({"text": ["the only sarcastic text"], "sentiment": ["sarcastic"]})])
    with pytest.raises(DataError) as refused:
        prepare(_params(_csv(tmp_path, frame), min_rows_per_class=1), tmp_path / "prepared")
    message = str(refused.value)
    assert "split 'validation' has too few rows of 1 of 13 classes ('sarcastic' 0)" in message, message


def test_labels_that_differ_only_in_case_are_two_classes_and_a_warning(tmp_path, capsys):
    """A trial's "Billing issue" and "billing issue" became 24 classes of 12 without a word."""
    frame = make_texts(90)
    frame["sentiment"] = frame["sentiment"].replace({"positive": "Positive"})
    frame.loc[frame.index % 9 == 0, "sentiment"] = "positive"
    prepare(_params(_csv(tmp_path, frame)), tmp_path / "prepared")
    assert json.loads((tmp_path / "prepared" / "labels.json").read_text())["names"] == \
        ["Positive", "negative", "neutral", "positive"]
    assert "prepare: warning: labels that differ only in case or spacing are separate classes: 'Positive' and " \
        "'positive'; if they are one class" in capsys.readouterr().err


def test_labels_mixing_numbers_and_words_are_said(tmp_path, capsys):
    """A trial's sentence pairs coded 0/1 in one source and no/yes in another made 4 classes without a word."""
    frame = make_texts(120)
    frame["sentiment"] = [["0", 1, "no", "yes"][i % 4] for i in range(120)]
    prepare(_params(_csv(tmp_path, frame)), tmp_path / "prepared")
    assert json.loads((tmp_path / "prepared" / "labels.json").read_text())["names"] == ["0", "1", "no", "yes"]
    assert "prepare: warning: the labels mix numbers and words: '0', '1' and 'no', 'yes' are 4 separate classes; " \
        "if a number and a word name one class" in capsys.readouterr().err
    frame["sentiment"] = [["negative", "neutral", "positive"][i % 3] for i in range(120)]  # words alone: no word
    prepare(_params(_csv(tmp_path, frame)), tmp_path / "prepared2")
    assert "mix numbers and words" not in capsys.readouterr().err


def test_a_file_of_a_header_alone_is_said_to_have_no_rows(tmp_path):
    """It said "found 0 label value(s) [] in data.label_column 'sentiment'; classification needs two or more"."""
    path = tmp_path / "empty.csv"
    path.write_text("text,sentiment\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"^\S*empty.csv: no data rows \(an empty file, or a header alone\)$"):
        prepare(_params(path), tmp_path / "prepared")
    assert not (tmp_path / "prepared").exists()
    for suffix in ("csv", "tsv", "jsonl", "json", "parquet"):  # 0 bytes: pandas' "No columns to parse from file"
        (tmp_path / f"zero.{suffix}").write_bytes(b"")
        with pytest.raises(DataError, match=rf"^\S*zero.{suffix}: an empty file \(0 bytes\): no header and no "
                                            r"data rows$"):
            prepare(_params(tmp_path / f"zero.{suffix}"), tmp_path / "prepared")
    assert not (tmp_path / "prepared").exists()


def test_multi_label_rows_are_refused_saying_so(tmp_path):
    frame = make_texts(60)
    frame["sentiment"] = [["positive", "neutral"] if i % 2 else ["negative"] for i in range(60)]
    frame.to_json(tmp_path / "multi.jsonl", orient="records", lines=True)
    with pytest.raises(DataError, match=r"found 0 label value\(s\) \[\] in data.label_column 'sentiment'; "
                                        r"classification needs two or more \(60 rows "
                                        r"hold a list or object, not one label: multi-label data"):
        prepare(_params(tmp_path / "multi.jsonl"), tmp_path / "prepared")


def test_a_short_class_is_blamed_on_its_cause_a_rare_label_or_the_row_cap(tmp_path):
    """A new user's errors said "with N rows in all, a small dataset" where the file was large: once for a label
    mistyped in one row (it read 'Positif' 0 in every split), once for data.max_samples cutting a rare class short."""
    frame = make_texts(600)
    typo = frame.copy()
    typo.iloc[7, typo.columns.get_loc("sentiment")] = "Positif"
    with pytest.raises(DataError) as refused:
        prepare(_params(_csv(tmp_path, typo, "typo.csv"), min_rows_per_class=2), tmp_path / "prepared")
    message = str(refused.value)
    assert "('Positif' " in message and message.endswith(
        "; 'Positif' has 1 row in all the data, too few for 3 splits of 2 each: a mistyped label? (declared "
        "data.labels reject a label outside them, each row named in rejected.csv) or lower data.min_rows_per_class")
    assert "small dataset" not in message

    rare = make_texts(3000)  # 60 'neutral' rows of 2,060: a validation split of 206 rows holds 6
    neutral = rare.index[rare["sentiment"] == "neutral"]
    rare = _csv(tmp_path, rare.drop(index=neutral[60:]), "rare.csv")
    with pytest.raises(DataError) as refused:  # capped at 40 rows, it keeps 1
        prepare(_params(rare, min_rows_per_class=3, max_samples={"train": None, "validation": 40, "test": None}),
                tmp_path / "prepared")
    message = str(refused.value)
    assert message.endswith("; data.max_samples caps 'validation' at 40 of its 206 rows: raise the cap (or set it to "
                            "null), or lower data.min_rows_per_class"), message
    prepare(_params(rare, min_rows_per_class=3, max_samples={"train": None, "validation": None, "test": None}),
            tmp_path / "prepared")
    assert (tmp_path / "prepared" / "test.parquet").is_file()
    # a split short of the class before its cap too: the cap is not blamed
    with pytest.raises(DataError) as refused:
        prepare(_params(rare, min_rows_per_class=7, max_samples={"train": None, "validation": 40, "test": None}),
                tmp_path / "prepared")
    assert "data.max_samples caps" not in str(refused.value) and "raise" not in str(refused.value)


def test_a_declared_class_with_no_row_or_one_spelled_apart_by_one_file_is_named(tmp_path):
    """data.labels with a class no row has, and a test file spelling its labels apart from train's, were both told
    "with 1,047 rows in all, a small dataset, give the smaller splits more rows"."""
    frame = make_texts(300)
    with pytest.raises(DataError) as refused:
        prepare(_params(_csv(tmp_path, frame), labels=["negative", "neutral", "positive", "angry"]),
                tmp_path / "prepared")
    assert str(refused.value).endswith("; 'angry' is in data.labels but in no row of the data: drop it from "
                                       "data.labels, or check the spelling against the data's labels"), refused.value
    test = make_texts(60, seed=1)
    test["sentiment"] = test["sentiment"].replace({"positive": "pos"})
    files = {"train": str(_csv(tmp_path, frame, "train.csv")), "test": str(_csv(tmp_path, test, "test.csv"))}
    with pytest.raises(DataError) as refused:
        prepare(_params("unused", files=files), tmp_path / "prepared")
    message = str(refused.value)
    assert "'positive' has rows in some splits but none in 'test'" in message and \
        "'pos' has rows in some splits but none in 'train', 'validation'" in message and \
        message.endswith(": do the split files spell their labels alike (declare data.labels to have every other "
                         "spelling rejected and named in rejected.csv)?"), message
    assert "small dataset" not in message and not (tmp_path / "prepared").exists()
    # a class in the test file only: it said "give the smaller splits more rows (data.split_fractions)"
    test = make_texts(60, seed=1)
    test.loc[test.index[:20], "sentiment"] = "mixed"
    files_extra = {"train": str(_csv(tmp_path, frame, "train.csv")), "test": str(_csv(tmp_path, test, "extra.csv"))}
    with pytest.raises(DataError) as refused:
        prepare(_params("unused", files=files_extra), tmp_path / "prepared")
    assert str(refused.value).endswith("; 'mixed' has rows in 'test' but none in 'train': no model learns a class it "
                                       "never trains on; add training rows of it, or remove its rows"), refused.value
    # declared labels: the test file's spelling is rejected, and the short class's hint names those rejected rows
    # (it said "a small dataset, give the smaller splits more rows")
    with pytest.raises(DataError) as refused:
        prepare(_params("unused", files=files, labels=["negative", "neutral", "positive"]), tmp_path / "prepared")
    message = str(refused.value)
    assert "split 'test' has too few rows of 1 of 3 classes ('positive' 0)" in message and message.endswith(
        f"; rows were rejected for labels outside data.labels ({files['test']}: 'pos' 20): is a declared class spelled "
        "another way there?"), message


def test_a_label_only_on_rejected_or_duplicate_rows_is_not_a_class(tmp_path, capsys):
    """One row of label 12 with an empty text made '12' a class of no rows, and prepare failed: "'12' is in
    data.labels but in no row of the data" (data.labels was never set). The same for a 12 on a later copy of a text
    kept with its first label."""
    frame = make_texts(300)
    extra = pd.DataFrame([{"text": "", "sentiment": "angry"},  # rejected: empty text
                          {"text": frame["text"].iloc[5], "sentiment": "furious"}])  # a copy: its first label kept
    report = prepare(_params(_csv(tmp_path, pd.concat([frame, extra], ignore_index=True))), tmp_path / "prepared")
    assert report["labels"] == ["negative", "neutral", "positive"]
    assert json.loads((tmp_path / "prepared" / "labels.json").read_text())["names"] == ["negative", "neutral", "positive"]
    train = pd.read_parquet(tmp_path / "prepared" / "train.parquet")
    assert sorted(train["label"].unique()) == [0, 1, 2]  # renumbered ids, each its name's
    assert "prepare: warning: the label(s) 'angry', 'furious' are only on rejected or duplicate rows, so not " \
           "classes" in capsys.readouterr().out
    # declared labels are the user's: a declared class with no row is still an error, as before
    with pytest.raises(DataError, match="'angry' is in data.labels but in no row"):
        prepare(_params(_csv(tmp_path, frame, "b.csv"), labels=["negative", "neutral", "positive", "angry"]),
                tmp_path / "prepared_b")


def test_an_id_column_named_as_the_labels_is_told_so(tmp_path):
    """data.label_column naming an id column: "too few rows of 865 of 865 classes", then a hint about data.labels."""
    frame = make_texts(300).assign(id=range(300))
    with pytest.raises(DataError) as refused:
        prepare(_params(_csv(tmp_path, frame), label_column="id", min_rows_per_class=2), tmp_path / "prepared")
    assert str(refused.value).endswith("; the label column holds 300 distinct labels in 300 rows: is "
                                       "data.label_column the column of labels (not an id or a text)?"), refused.value


def test_missing_value_markers_in_the_label_column_are_missing_labels_unless_declared(tmp_path):
    """An R export's "NA" in 40 label cells became a 13th class, trained and served."""
    frame = make_texts(300)
    frame.loc[:5, "sentiment"] = ["NA", "n/a", "NaN", "null", "#N/A", " None "]
    report = prepare(_params(_csv(tmp_path, frame)), tmp_path / "prepared")
    assert report["labels"] == ["negative", "neutral", "positive"]
    assert report["rejected_by_reason"] == {"missing label": 6}
    # a declared "None" is a label: the user said so
    frame.loc[:59, "sentiment"] = "None"
    declared = prepare(_params(_csv(tmp_path, frame, "b.csv"), labels=["negative", "neutral", "positive", "None"]),
                       tmp_path / "prepared_b")
    assert declared["labels"] == ["negative", "neutral", "positive", "None"]
