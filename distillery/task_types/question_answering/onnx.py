"""Extractive QA, ONNX: the tokenizer's inputs in, ``start_logits`` and ``end_logits`` out; the parity
check of the fp32 and int8 models against PyTorch on every window of every test question (in batches of
windows of similar length), and the int8 gate on the drop in F1."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from distillery.hf import trace_sample
from distillery.onnx_runtime import export_module, int8_gate, run_outputs, session
from distillery.task_types.question_answering import postprocess
from distillery.task_types.question_answering.features import ANSWER_TEXTS, CONTEXT, TOKEN_FIELDS, features_of
from distillery.task_types.question_answering.squad import squad_metrics, squad_scores

OUTPUTS = ["start_logits", "end_logits"]


class _SpanLogits(torch.nn.Module):
    """Positional inputs in, (start logits, end logits) out: the shape the legacy ONNX exporter wants."""

    def __init__(self, model: torch.nn.Module, input_names: list[str]):
        super().__init__()
        self.model, self.input_names = model, input_names

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        output = self.model(**dict(zip(self.input_names, inputs)))
        return output.start_logits, output.end_logits


def input_names(tokenizer) -> list[str]:
    return [name for name in TOKEN_FIELDS if name in tokenizer.model_input_names]


def export_onnx(model: torch.nn.Module, tokenizer, path: Path, opset: int = 17) -> list[str]:
    """A single-file ONNX model with dynamic batch and sequence axes on inputs and both outputs."""
    names = input_names(tokenizer)
    sample = trace_sample(tokenizer, model, ["what is it?", "and where?"], ["a short context",
                                                                          "a somewhat longer context to pad"])
    axes = {name: {0: "batch", 1: "sequence"} for name in [*names, *OUTPUTS]}
    export_module(_SpanLogits(model, names), tuple(sample[n] for n in names), path, names, OUTPUTS, axes, opset)
    model.eval()
    return names


def window_logits(model, tokenizer, sessions: dict, columns: dict, batch_size: int,
                  pytorch: bool = True, by_length: bool = False) -> dict[str, list]:
    """Per runtime (``pytorch``, unless told not, and each ONNX session), ``(start, end)`` logits of every
    window in window order, run in batches of ``batch_size`` windows padded to their longest window: windows
    in order (as the served model batches a request), or, ``by_length``, sorted by length (less padding)."""
    keys = [k for k in TOKEN_FIELDS if k in columns]
    outputs: dict[str, list] = {**({"pytorch": []} if pytorch else {}), **{name: [] for name in sessions}}
    model.eval()
    count = len(columns["labels"])
    order = np.argsort([len(ids) for ids in columns["input_ids"]], kind="stable") if by_length else np.arange(count)
    batches = [dict(tokenizer.pad([{k: columns[k][i] for k in keys} for i in order[start:start + batch_size]],
                                  padding=True, return_tensors="np")) for start in range(0, count, batch_size)]

    def run(name: str, batch: dict) -> tuple:
        if name != "pytorch":
            return tuple(run_outputs(sessions[name], batch)[:2])
        with torch.inference_mode():
            out = model(**{k: torch.from_numpy(v) for k, v in batch.items()})
        return out.start_logits.numpy(), out.end_logits.numpy()

    for name in outputs:  # one runtime over every batch, then the next (text_classification/onnx.py)
        for batch in batches:
            starts, ends = run(name, batch)
            outputs[name] += [(starts[r, :n], ends[r, :n]) for r, n in enumerate(batch["attention_mask"].sum(axis=1))]
    back = np.argsort(order, kind="stable")  # position of each window in the run order
    return {name: [found[k] for k in back] for name, found in outputs.items()}


def parity(model, tokenizer, fp32_path: Path, int8_path: Path, frame: pd.DataFrame, max_length: int, stride: int,
           n_best_size: int, max_answer_length: int, cfg) -> dict:
    """fp32 and int8 ONNX against PyTorch on every window of ``frame``; EM/F1 of each; the int8 gate on F1."""
    frame = frame.reset_index(drop=True)
    columns = features_of(tokenizer, frame, max_length, stride)
    logits = window_logits(model, tokenizer, {"fp32": session(fp32_path), "int8": session(int8_path)}, columns,
                           cfg.parity_batch_size, by_length=True)
    contexts, golds = frame[CONTEXT].astype(str).tolist(), [list(g) for g in frame[ANSWER_TEXTS]]
    answers, metrics, f1s = {}, {}, {}
    for name, windows in logits.items():
        found = postprocess.answers([w[0] for w in windows], [w[1] for w in windows], columns["offset_mapping"],
                                    columns["example_index"], contexts, n_best_size, max_answer_length)
        answers[name] = [a["text"] for a in found]
        metrics[name] = squad_metrics(answers[name], golds)
        f1s[name] = np.asarray(squad_scores(answers[name], golds)["f1"])

    def max_diff(name: str) -> float:
        return float(max(max(np.abs(a[0] - b[0]).max(), np.abs(a[1] - b[1]).max())
                         for a, b in zip(logits[name], logits["pytorch"])))

    def agreement(a: str, b: str) -> float:
        return float(np.mean([x == y for x, y in zip(answers[a], answers[b])])) if len(frame) else 1.0

    fp32_diff = max_diff("fp32")
    return {
        "rows": int(len(frame)), "windows": int(len(columns["labels"])),
        "fp32": {"max_abs_logit_diff": fp32_diff, "atol": cfg.fp32_atol, "passed": fp32_diff <= cfg.fp32_atol,
                 "label_agreement_vs_pytorch": agreement("fp32", "pytorch")},
        "int8": {"label_agreement_vs_fp32": agreement("int8", "fp32"),
                 "label_agreement_vs_pytorch": agreement("int8", "pytorch"),
                 "max_abs_logit_diff_vs_pytorch": max_diff("int8"),
                 "f1": metrics["int8"]["f1"], "exact_match": metrics["int8"]["exact_match"],
                 "f1_change_points": 100 * (metrics["int8"]["f1"] - metrics["pytorch"]["f1"]),
                 "exact_match_change": metrics["int8"]["exact_match"] - metrics["pytorch"]["exact_match"],
                 **int8_gate(metrics["pytorch"]["f1"], metrics["int8"]["f1"], cfg.int8_max_accuracy_drop, "f1",
                            row_drops=f1s["pytorch"] - f1s["int8"])},
        "pytorch": metrics["pytorch"],
        "fp32_onnx": metrics["fp32"],
    }
