"""Text classification, ONNX: input and output names, dynamic axes, and the parity check of the
exported fp32 and int8 models against PyTorch on every row of a real split."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from distillery.errors import ModelError
from distillery.hf import trace_sample
from distillery.metrics import classification_metrics
from distillery.onnx_runtime import (LAST_LAYER_KEY, export_module, int8_gate, metadata, run_session, session,
                                     set_metadata)
from distillery.prepared import LABEL
from distillery.task_types.text_classification.features import encode_texts, texts_and_pairs
from distillery.task_types.text_classification.first_token import FIRST_TOKEN, first_token_classifier

OUTPUT = "logits"


class _LogitsOnly(torch.nn.Module):
    """Positional inputs in, logits out: the shape the legacy ONNX exporter wants."""

    def __init__(self, model: torch.nn.Module, input_names: list[str]):
        super().__init__()
        self.model, self.input_names = model, input_names

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.input_names, inputs))).logits


def input_names(tokenizer) -> list[str]:
    """The tokenizer's model inputs, in a fixed order (e.g. input_ids, token_type_ids, attention_mask)."""
    return [name for name in ("input_ids", "token_type_ids", "attention_mask") if name in tokenizer.model_input_names]


def dynamic_axes(names: list[str]) -> dict:
    axes = {name: {0: "batch", 1: "sequence"} for name in names}
    axes[OUTPUT] = {0: "batch"}
    return axes


def exported_module(load_model, tokenizer, path: Path):
    """The first-token module of ``load_model()`` when the file at ``path`` was exported so (its metadata), else
    None."""
    if metadata(path, LAST_LAYER_KEY) != FIRST_TOKEN:
        return None
    module = first_token_classifier(load_model(), input_names(tokenizer))
    if module is None:  # the file's FLOPs would be counted on the whole model, silently
        raise ModelError(f"{path} was exported with its last layer on the first token ({LAST_LAYER_KEY} in its "
                         "metadata), but its model's check of that fails: was it exported from another model? Run "
                         "`dvc repro export`")
    return module


def export_onnx(model: torch.nn.Module, tokenizer, path: Path, opset: int = 17) -> list[str]:
    """Export to a single-file ONNX model with dynamic batch and sequence axes; return its input names."""
    names = input_names(tokenizer)
    sample = trace_sample(tokenizer, model, ["a short example", "a somewhat longer example sentence to pad against"])
    # the model with its last layer on the first token alone where that is exact (a BERT-style [CLS] head:
    # first_token.py), else the whole model
    module = first_token_classifier(model, names) or _LogitsOnly(model, names)
    export_module(module, tuple(sample[n] for n in names), path, names, [OUTPUT], dynamic_axes(names), opset)
    if not isinstance(module, _LogitsOnly):  # the file computes less than the model: the benchmark counts its
        set_metadata(path, LAST_LAYER_KEY, FIRST_TOKEN)  # FLOPs on the module it was traced from
    model.eval()
    return names


def parity_logits(model, tokenizer, sessions: dict, frame: pd.DataFrame, max_length: int,
                  batch_size: int) -> dict[str, np.ndarray]:
    """PyTorch and ONNX logits for every row, in batches padded to their longest row, as served.

    One runtime over every batch, then the next: taking turns batch by batch, each found the cores still held by
    the other's spinning threads (the teacher's parity on the default test split: 43-47 s against 37-38 s)."""
    texts, pairs = texts_and_pairs(frame)
    batches = []
    for start in range(0, len(frame), batch_size):
        encoded = encode_texts(tokenizer, texts[start:start + batch_size],
                               pairs[start:start + batch_size] if pairs else None, max_length)
        rows = [{key: values[i] for key, values in encoded.items()} for i in range(len(encoded["input_ids"]))]
        batches.append(dict(tokenizer.pad(rows, padding=True, return_tensors="np")))
    model.eval()
    with torch.inference_mode():
        outputs = {"pytorch": [model(**{k: torch.from_numpy(v) for k, v in batch.items()}).logits.numpy()
                               for batch in batches]}
    outputs.update({name: [run_session(sess, batch) for batch in batches] for name, sess in sessions.items()})
    return {name: np.concatenate(parts) for name, parts in outputs.items()}


def parity(model, tokenizer, fp32_path: Path, int8_path: Path, frame: pd.DataFrame, max_length: int,
           cfg) -> dict:
    """Parity of the fp32 and int8 ONNX models with PyTorch on ``frame`` (``cfg``: the export section)."""
    logits = parity_logits(model, tokenizer, {"fp32": session(fp32_path), "int8": session(int8_path)}, frame,
                           max_length, cfg.parity_batch_size)
    return parity_report(logits, frame[LABEL].to_numpy(), cfg)


def parity_report(logits: dict[str, np.ndarray], references: np.ndarray, cfg) -> dict:
    """The export gate's evidence from PyTorch, ONNX fp32 and int8 logits (``logits["pytorch"|"fp32"|"int8"]``)
    of the same rows: fp32 within ``cfg.fp32_atol``, int8's agreement and its accuracy drop."""
    labels = {name: value.argmax(-1) for name, value in logits.items()}
    metrics = {name: classification_metrics(value, references, value.shape[1]) for name, value in logits.items()}
    max_diff = float(np.abs(logits["fp32"] - logits["pytorch"]).max())
    gate = int8_gate(metrics["pytorch"]["accuracy"], metrics["int8"]["accuracy"], cfg.int8_max_accuracy_drop,
                     row_drops=(labels["pytorch"] == references).astype(float) - (labels["int8"] == references))
    agreement = float((labels["int8"] == labels["fp32"]).mean())
    floor = cfg.int8_min_label_agreement
    if gate["deployable"] and agreement < floor:  # a near-tied model: int8 flipped labels both ways, the mean hid it
        gate.update(deployable=False, reason=f"int8 gives the fp32 student's label on {agreement:.2%} of "
                                             f"{len(references)} rows, below export.int8_min_label_agreement = {floor}")
    return {
        "rows": int(len(references)),
        "fp32": {"max_abs_logit_diff": max_diff, "atol": cfg.fp32_atol, "passed": max_diff <= cfg.fp32_atol,
                 "label_agreement_vs_pytorch": float((labels["fp32"] == labels["pytorch"]).mean())},
        "int8": {"label_agreement_vs_fp32": agreement,
                 "label_agreement_vs_pytorch": float((labels["int8"] == labels["pytorch"]).mean()),
                 "max_abs_logit_diff_vs_pytorch": float(np.abs(logits["int8"] - logits["pytorch"]).max()),
                 "accuracy": metrics["int8"]["accuracy"], "macro_f1": metrics["int8"]["macro_f1"],
                 "accuracy_change_points": 100 * (metrics["int8"]["accuracy"] - metrics["pytorch"]["accuracy"]),
                 "macro_f1_change": metrics["int8"]["macro_f1"] - metrics["pytorch"]["macro_f1"],
                 **gate},
        "pytorch": {"accuracy": metrics["pytorch"]["accuracy"], "macro_f1": metrics["pytorch"]["macro_f1"]},
        "fp32_onnx": {"accuracy": metrics["fp32"]["accuracy"], "macro_f1": metrics["fp32"]["macro_f1"]},
    }
