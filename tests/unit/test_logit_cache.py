"""The teacher-logit cache: its manifest, and distill's refusal of a cache that no longer matches."""
import numpy as np
import pandas as pd
import pytest

from distillery.errors import CacheError
from distillery.logit_cache import load_cached_logits
from distillery.hf import load_tokenizer
from tiny import load_classifier
from tiny import cache_teacher_logits

LABELS = ["negative", "neutral", "positive"]


@pytest.fixture
def cached(tmp_path, tiny_bert):
    params, manifest = cache_teacher_logits(tmp_path, tiny_bert)
    return params, tmp_path, manifest


def test_manifest_and_rows(cached):
    params, root, manifest = cached
    assert set(manifest) >= {"teacher_weights", "tokenizer", "data", "rows", "max_length"}
    assert manifest["rows"]["train"] == 60 and manifest["rows"]["transfer"] > 0
    logits = load_cached_logits(root / "logits", root / "teacher", root / "prepared", 32)
    assert logits["train"].shape == (60, 3) and logits["train"].dtype == np.float32


def test_cached_logits_equal_a_fresh_teacher_pass(cached):
    from distillery.task_types.text_classification.features import predict_logits

    params, root, _ = cached
    model, tokenizer = load_classifier(str(root / "teacher"), "t"), load_tokenizer(str(root / "teacher"), "t")
    frame = pd.read_parquet(root / "prepared" / "train.parquet")
    fresh = predict_logits(model, tokenizer, frame, 32, batch_size=7)
    assert np.allclose(fresh, np.load(root / "logits" / "train.npy"), atol=1e-5)


def test_changed_data_is_refused(cached):
    _, root, _ = cached
    frame = pd.read_parquet(root / "prepared" / "train.parquet")
    frame.iloc[::-1].to_parquet(root / "prepared" / "train.parquet", index=False)
    with pytest.raises(CacheError, match=r"stale: .*train.parquet changed"):
        load_cached_logits(root / "logits", root / "teacher", root / "prepared", 32)


def test_changed_transfer_texts_are_refused(cached):
    _, root, _ = cached
    pd.DataFrame({"text": ["a brand new unlabelled text"]}).to_parquet(root / "prepared" / "transfer.parquet")
    with pytest.raises(CacheError, match=r"transfer.parquet changed"):
        load_cached_logits(root / "logits", root / "teacher", root / "prepared", 32)


def test_changed_teacher_or_tokenizer_settings_are_refused(cached, tiny_bert):
    _, root, _ = cached
    with pytest.raises(CacheError, match="tokenizer or teacher.max_length"):
        load_cached_logits(root / "logits", root / "teacher", root / "prepared", 64)
    import torch
    torch.manual_seed(1)
    load_classifier(str(tiny_bert), "t", LABELS).save_pretrained(root / "teacher")  # new random head
    with pytest.raises(CacheError, match="teacher weights"):
        load_cached_logits(root / "logits", root / "teacher", root / "prepared", 32)


def test_missing_cache(tmp_path):
    with pytest.raises(CacheError, match="teacher-logit cache not found"):
        load_cached_logits(tmp_path / "nothing", tmp_path, tmp_path, 32)


def test_the_teacher_pass_reports_progress_per_part(tmp_path, tiny_bert, monkeypatch, capsys):
    monkeypatch.setenv("DISTILLERY_PROGRESS_SECONDS", "0")  # a line per batch
    _, manifest = cache_teacher_logits(tmp_path, tiny_bert)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("teacher on ")]
    rows = manifest["rows"]
    assert [line.split(":")[0] for line in lines] == [
        f"teacher on {rows['train']} train rows", f"teacher on {rows['transfer']} transfer rows",
        f"teacher on {rows['validation']} validation rows"]
    assert all(": batch 1/1 (100%), " in line for line in lines)


def test_a_cut_or_broken_cache_file_and_a_cut_split_are_named_in_one_line(cached):
    """A truncated train.npy stopped distill with numpy's "Failed to read all data" traceback, NaN logits of the
    right size as "training diverged ... lower the learning rate", a truncated train.parquet with ArrowInvalid."""
    from distillery.errors import DataError
    from distillery.prepared import load_split

    _, root, _ = cached
    path = root / "logits" / "train.npy"
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(CacheError, match=r"train.npy: unreadable \(.*\); run `dvc repro teacher_logits`"):
        load_cached_logits(root / "logits", root / "teacher", root / "prepared", 32)
    logits = np.load(root / "logits" / "validation.npy")
    np.save(path, np.full((60, 3), np.nan, dtype=np.float32))
    with pytest.raises(CacheError, match=r"train.npy: holds values that are not finite numbers"):
        load_cached_logits(root / "logits", root / "teacher", root / "prepared", 32)
    # well formed, the right shape, finite, but not the pass's: zeros (a trial's hand-run distill trained on them)
    np.save(path, np.zeros((60, 3), dtype=np.float32))
    assert len(path.read_bytes()) == len(whole)
    with pytest.raises(CacheError, match=r"train.npy: not the file teacher_logits wrote \(its sha256 is not the "
                                         r"manifest's\); run `dvc repro teacher_logits`"):
        load_cached_logits(root / "logits", root / "teacher", root / "prepared", 32)
    path.write_bytes(whole)
    assert len(logits) and load_cached_logits(root / "logits", root / "teacher", root / "prepared", 32)["train"].shape \
        == (60, 3)
    split = root / "prepared" / "test.parquet"
    split.write_bytes(split.read_bytes()[:100])
    with pytest.raises(DataError, match=r"test.parquet: unreadable \(.*\); run `python -m distillery prepare`"):
        load_split("test", root / "prepared")
