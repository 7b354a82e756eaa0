"""Bad input through the CLI: one clear line naming the key, file or row; exit code 2; no half-written output."""
from pathlib import Path

import pandas as pd
import pytest

from conftest import tiny_params, write_params
from distillery.cli import main
from tiny import make_csv, make_texts


@pytest.fixture
def workdir(tmp_path, monkeypatch, tiny_bert):
    monkeypatch.chdir(tmp_path)
    make_csv(tmp_path / "tweets.csv", n=120)
    write_params(tmp_path / "params.yaml", tiny_params(tiny_bert, Path("tweets.csv")))
    return tmp_path


def _fails(capsys, stage: str, *fragments: str) -> str:
    assert main([stage]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err  # one line, no traceback
    assert err.startswith(f"distillery {stage}: error: ")
    for fragment in fragments:
        assert fragment in err, err
    return err


def _set(workdir: Path, tiny_bert, **overrides) -> None:
    write_params(workdir / "params.yaml", tiny_params(tiny_bert, Path("tweets.csv"), **overrides))


@pytest.mark.parametrize("key, value, fragment", [
    ("distill.alpha", 1.5, "distill.alpha = 1.5 is not allowed; it must be in [0, 1]"),
    ("distill.temperature", 0, "distill.temperature = 0.0 is not allowed; it must be in (0, 1000]"),
    # out of numpy's and scikit-learn's seed range: they passed the check, then crashed a stage with a traceback
    ("seed", -1, "seed = -1 is not allowed; it must be in [0, 4294967295]"),
    ("distill.augment.seed", 2**32, "distill.augment.seed = 4294967296 is not allowed; it must be in [0, 4294967295]"),
    ("evaluate.seeds", [-1, 2], "evaluate.seeds = [-1, 2] is not allowed; list at least two distinct integer seeds "
                                "from 0 to 4294967295"),
    ("sweep.seeds", [1, 2**32], "sweep.seeds = [1, 4294967296] is not allowed"),
])
def test_bad_params(workdir, capsys, tiny_bert, key, value, fragment):
    _set(workdir, tiny_bert, **{key: value})
    _fails(capsys, "prepare", "params.yaml", fragment)


def test_missing_data_file(workdir, capsys, tiny_bert):
    _set(workdir, tiny_bert, **{"data.source": "nowhere/tweets.csv"})
    _fails(capsys, "prepare", "nowhere/tweets.csv: data file does not exist")
    assert not (workdir / "data").exists()


def test_missing_label_column(workdir, capsys, tiny_bert):
    _set(workdir, tiny_bert, **{"data.label_column": "stars"})
    _fails(capsys, "prepare", "data.label_column 'stars' not found")


def test_not_utf8_names_the_line(workdir, capsys, tiny_bert):
    (workdir / "tweets.csv").write_bytes(b"text,sentiment\ngood day,positive\nna\xefve take,neutral\n")
    _fails(capsys, "prepare", "tweets.csv: line 3 is not valid UTF-8")


def test_bad_rows_under_fail(workdir, capsys, tiny_bert):
    frame = make_texts(60)
    frame.loc[9, "text"] = ""
    frame.loc[12, "sentiment"] = "sarcastic"
    frame.to_csv(workdir / "tweets.csv", index=False)
    _set(workdir, tiny_bert, **{"data.on_bad_rows": "fail", "data.labels": ["negative", "neutral", "positive"]})
    _fails(capsys, "prepare", "tweets.csv [all] row 10: empty text", "2 bad row(s)",
           "rows counted from 1 after any header line")  # row 10 is line 11 of the file


def test_teacher_path_missing(workdir, capsys, tiny_bert):
    assert main(["prepare"]) == 0
    _set(workdir, tiny_bert, **{"teacher.model": str(workdir / "no-such-teacher")})
    _fails(capsys, "train_teacher", "teacher.model: model path", "no-such-teacher' does not exist")
    assert not (workdir / "models" / "teacher").exists()


def test_unknown_layer_and_stale_cache(workdir, capsys, tiny_bert):
    for stage in ("prepare", "train_teacher", "teacher_logits"):
        assert main([stage]) == 0
    capsys.readouterr()
    _set(workdir, tiny_bert, **{"student.layers": [0, 9]})
    _fails(capsys, "distill", "student.layers: index 9 does not exist; the source model has 4 encoder layers")
    assert not (workdir / "models" / "student").exists()

    _set(workdir, tiny_bert)
    train = pd.read_parquet(workdir / "data/prepared/train.parquet")
    train.head(10).to_parquet(workdir / "data/prepared/train.parquet", index=False)
    _fails(capsys, "distill", "data/teacher_logits is stale", "train.parquet changed", "dvc repro teacher_logits")
    assert not (workdir / "models" / "student").exists()
    # nor may the teacher, trained on the old split, label the new one (stages run by hand, not by dvc repro)
    manifest = (workdir / "data/teacher_logits/manifest.json").read_bytes()
    _fails(capsys, "teacher_logits", "models/teacher: trained on other prepared data",
           "data/prepared/train.parquet changed since", "run `python -m distillery train_teacher`")
    assert (workdir / "data/teacher_logits/manifest.json").read_bytes() == manifest  # the old cache is kept


def test_max_length_beyond_the_model_positions_fails_before_training(workdir, capsys, tiny_bert):
    assert main(["prepare"]) == 0
    _set(workdir, tiny_bert, **{"teacher.max_length": 200})  # the tiny BERT has 128 positions
    _fails(capsys, "train_teacher", "teacher.max_length = 200 is not allowed; the model takes at most 128 tokens")
    assert not (workdir / "models" / "teacher").exists()


@pytest.mark.parametrize("refresh, fragment", [
    ("one class", "has too few rows of 2 of 3 classes ('negative' 0, 'neutral' 0); split 'validation' has too few "
                  "rows of 2 of 3 classes ('negative' 0, 'neutral' 0); split 'test' has too few rows of 2 of 3 "
                  "classes ('negative' 0, 'neutral' 0); data.min_rows_per_class = 2; check the data refresh"),
    ("mostly unknown", "108 of 120 rows (90.0%) were rejected, more than data.max_rejected_fraction = 0.5 (all "
                       "unknown label 'upbeat': 108 rows, the first tweets.csv [all] row 2, tweets.csv [all] row 3, "
                       "tweets.csv [all] row 4)"),
])
def test_a_bad_refresh_with_declared_labels_stops_prepare(workdir, capsys, tiny_bert, refresh, fragment):
    assert main(["prepare"]) == 0
    before = {p.name: p.read_bytes() for p in (workdir / "data" / "prepared").iterdir()}
    frame = make_texts(120)
    if refresh == "one class":
        frame["sentiment"] = "positive"
    else:
        frame.loc[frame.index % 10 != 0, "sentiment"] = "upbeat"
    frame.to_csv(workdir / "tweets.csv", index=False)
    _set(workdir, tiny_bert, **{"data.labels": ["negative", "neutral", "positive"]})
    _fails(capsys, "prepare", fragment)
    assert {p.name: p.read_bytes() for p in (workdir / "data" / "prepared").iterdir()} == before


def test_a_python_without_the_packages_gets_one_line_naming_the_fix():
    """`dvc repro` in a shell without .venv active runs dvc.yaml's bare `python`: it ended in a traceback
    ("No module named 'pydantic'"). Here the venv's own Python without its site-packages (-S) stands in for it."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-S", "-m", "distillery", "params", "--check"], cwd=root,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 4, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith(f"distillery: error: {sys.executable} has no 'pydantic': Distillery's packages "
                                    "are not installed for this Python; activate the project's environment first")


def test_other_inputs_is_refused_outside_promote(capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["rollback", "--reason", "x", "--other-inputs"])
    assert stopped.value.code == 2 and "--other-inputs is for promote, not rollback" in capsys.readouterr().err


def test_texts_the_teachers_tokenizer_cannot_read_stop_train_teacher_or_are_warned_of(workdir, capsys, tiny_bert):
    """150 emoji-only rows all became [CLS] [UNK] [SEP]: three models at chance, every stage exit 0, not a word."""
    import pandas as pd

    from distillery.hf import check_readable, load_tokenizer
    from distillery.task_types.load import task_type
    from distillery.config import load_params

    emoji = ["\U0001F600\U0001F60D\U0001F44D", "\U0001F621\U0001F44E", "\U0001F610\U0001F636"]
    pd.DataFrame({"text": [emoji[i % 3] * (1 + i // 3) for i in range(120)],
                  "sentiment": [["positive", "negative", "neutral"][i % 3] for i in range(120)]}).to_csv(
        workdir / "tweets.csv", index=False)
    assert main(["prepare"]) == 0
    capsys.readouterr()
    _fails(capsys, "train_teacher", "of 60 training inputs (100%) are nothing but the unknown token '[UNK]' to the "
                                    "tokenizer of teacher.model", "choose a teacher.model whose vocabulary covers")
    assert not (workdir / "models" / "teacher").exists()

    # a few such rows: a warning, and the count
    tokenizer = load_tokenizer(str(tiny_bert), "teacher.model")
    task = task_type("text_classification", load_params("params.yaml"))
    frame = pd.DataFrame({"text": ["good day"] * 8 + [emoji[0], "\U0001F600 good"], "label": [0] * 10})
    assert check_readable(task.featurise(frame, tokenizer, 32), tokenizer, "teacher.model", "training inputs",
                          "train_teacher") == 1
    assert "train_teacher: warning: 1 of 10 training inputs (10%)" in capsys.readouterr().out


def test_a_sentencepiece_tokenizer_that_cannot_read_a_text_is_counted_too(capsys):
    """SentencePiece puts a word-start mark before an unknown piece: ['[CLS]', '▁', '<unk>', '[SEP]'] was counted as
    readable."""
    import pandas as pd
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    from distillery.hf import check_readable
    from distillery.task_types.load import task_type

    tokenizer = Tokenizer(models.Unigram())
    tokenizer.pre_tokenizer, tokenizer.decoder = pre_tokenizers.Metaspace(), decoders.Metaspace()
    tokenizer.train_from_iterator(["the quick brown fox jumps over the lazy dog", "good day to you"] * 50,
                                  trainers.UnigramTrainer(vocab_size=40, unk_token="<unk>",
                                                          special_tokens=["<pad>", "<unk>", "[CLS]", "[SEP]"]))
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", tokenizer.token_to_id("[CLS]")),
                                                 ("[SEP]", tokenizer.token_to_id("[SEP]"))])
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="<unk>", pad_token="<pad>",
                                   cls_token="[CLS]", sep_token="[SEP]")
    emoji = "\U0001F600\U0001F60D\U0001F44D"
    assert "\u2581" in fast.convert_ids_to_tokens(fast(emoji)["input_ids"])
    frame = pd.DataFrame({"text": [emoji] * 3 + ["good day"] * 7, "label": [0] * 10})
    features = task_type("text_classification").featurise(frame, fast, 32)
    assert check_readable(features, fast, "teacher.model", "training inputs", "train_teacher") == 3
    assert "3 of 10 training inputs (30%) are nothing but the unknown token '<unk>'" in capsys.readouterr().out
    # rows past a selection (an indices mapping over the Arrow table) are counted as selected
    assert check_readable(features.select([9, 0, 8]), fast, "teacher.model", "training inputs", "x") == 1


def test_the_params_listing_piped_into_head_ends_quietly():
    """`python -m distillery params | head` ended in a BrokenPipeError traceback."""
    import subprocess
    import sys

    # `true` reads nothing and is gone before Python has imported enough to write: every write finds the pipe closed
    result = subprocess.run(f"{sys.executable} -m distillery params | true; echo ${{PIPESTATUS[0]}}", shell=True,
                            executable="/bin/bash", capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parents[2], timeout=60)
    assert result.stdout == "0\n", result.stdout
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr, result.stderr


def test_export_and_benchmark_refuse_models_or_figures_of_other_prepared_data(workdir, capsys, tiny_bert):
    """Run by hand after `prepare` (a new label order), export scored the old models on the new splits (parity
    0.0) and benchmark put the old eval.json's 0.75 beside it: both now refuse, as evaluate and register do."""
    for stage in ("prepare", "train_teacher", "teacher_logits", "distill", "evaluate", "export"):
        assert main([stage]) == 0, stage
    capsys.readouterr()
    prepared = workdir / "data/prepared"
    train, test = (prepared / "train.parquet").read_bytes(), (prepared / "test.parquet").read_bytes()
    onnx = {p.name: p.read_bytes() for p in (workdir / "models/onnx").iterdir() if p.is_file()}
    pd.read_parquet(prepared / "train.parquet").head(20).to_parquet(prepared / "train.parquet", index=False)
    _fails(capsys, "export", "models/student: trained on other prepared data", "data/prepared/train.parquet changed")
    assert {p.name: p.read_bytes() for p in (workdir / "models/onnx").iterdir() if p.is_file()} == onnx
    _fails(capsys, "benchmark", "models/teacher: trained on other prepared data")
    assert not (workdir / "reports/metrics/benchmark.json").exists()
    (prepared / "train.parquet").write_bytes(train)
    pd.read_parquet(prepared / "test.parquet").head(3).to_parquet(prepared / "test.parquet", index=False)
    _fails(capsys, "benchmark", "eval.json scored another test split than", "test.parquet holds now")
    (prepared / "test.parquet").write_bytes(test)
