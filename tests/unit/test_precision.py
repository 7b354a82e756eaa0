"""`train.precision`: bf16 trains under bfloat16 autocast and saves fp32 weights; auto follows the hardware."""
import dataclasses

import pytest
import torch

from distillery.config import TrainConfig
from distillery.hf import load_tokenizer
from distillery.task_types.load import task_type
from tiny import load_classifier, make_texts

TASK = task_type("text_classification")
LABELS = ["negative", "neutral", "positive"]


@pytest.mark.parametrize("avx512_bf16, amx, expected", [(False, False, "fp32"), (True, False, "bf16"),
                                                        (False, True, "bf16")])
def test_auto_is_bf16_only_where_the_cpu_computes_it_natively(monkeypatch, avx512_bf16, amx, expected):
    from distillery import training

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    assert training.resolved_precision(TrainConfig(precision="auto")) == expected
    # an explicit choice is kept whatever the hardware
    assert training.resolved_precision(TrainConfig(precision="fp32")) == "fp32"
    assert training.resolved_precision(TrainConfig(precision="bf16")) == "bf16"


def test_a_bad_precision_is_refused(tmp_path):
    from distillery.config import load_params
    from distillery.errors import ConfigError

    path = tmp_path / "params.yaml"
    path.write_text("teacher:\n  train:\n    precision: fp16\n")
    with pytest.raises(ConfigError, match="teacher.train.precision"):
        load_params(path)


@pytest.mark.parametrize("precision, dtype", [("fp32", torch.float32), ("bf16", torch.bfloat16)])
def test_training_runs_its_matrix_products_in_the_precision_and_saves_fp32(tiny_bert, tmp_path, precision, dtype):
    from safetensors.torch import load_file

    from distillery.task_types.text_classification.features import tokenize
    from distillery.training import fit

    tokenizer = load_tokenizer(str(tiny_bert), "t")
    model = load_classifier(str(tiny_bert), "t", LABELS)
    seen = []
    model.classifier.register_forward_hook(lambda module, args, out: seen.append((module.training, out.dtype)))
    frame = make_texts(16)
    frame["label"] = frame["sentiment"].map({n: i for i, n in enumerate(LABELS)})
    cfg = dataclasses.replace(TrainConfig(), epochs=1, batch_size=8, warmup=0.0, precision=precision)
    summary = fit(TASK, model, tokenizer, tokenize(frame, tokenizer, 32), tokenize(frame, tokenizer, 32), cfg, 0,
                  tmp_path / "out")
    assert summary["precision"] == precision and summary["steps"] == 2
    assert {d for training, d in seen if training} == {dtype}  # the training steps' forward passes
    assert {str(t.dtype) for t in load_file(tmp_path / "out" / "model.safetensors").values()} == {"torch.float32"}


def test_a_bf16_teacher_pass_caches_logits_near_the_fp32_ones_and_says_so(tmp_path, tiny_bert):
    import numpy as np

    from distillery.stages.teacher_logits import teacher_logits
    from tiny import cache_teacher_logits

    params, manifest = cache_teacher_logits(tmp_path, tiny_bert)
    assert manifest["precision"] == "fp32"
    fp32 = np.load(tmp_path / "logits" / "train.npy")
    bf16_params = dataclasses.replace(params, teacher=dataclasses.replace(params.teacher,
                                                                          logits_precision="bf16"))
    manifest = teacher_logits(bf16_params, tmp_path / "teacher", tmp_path / "prepared", tmp_path / "bf16")
    assert manifest["precision"] == "bf16"
    bf16 = np.load(tmp_path / "bf16" / "train.npy")
    assert bf16.dtype == np.float32 and bf16.shape == fp32.shape
    # bfloat16 keeps 8 bits of mantissa: the logits move, by about its rounding, not more
    assert not np.array_equal(bf16, fp32) and np.abs(bf16 - fp32).max() < 0.05
