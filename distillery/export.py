"""The ``export`` stage: ONNX fp32 + int8 for the student (and the teacher, for a fair comparison),
checked against PyTorch on every row of the real test split.

Gates:
- fp32 parity: the largest absolute logit difference must be within ``export.fp32_atol``. If not,
  the stage fails and writes no models, so nothing downstream can ship them.
- int8: if its accuracy drops more than ``export.int8_max_accuracy_drop`` points below the fp32
  student's, it is marked not deployable (with the reason) and the fp32 model stays deployable.
"""
from __future__ import annotations

from pathlib import Path
from typing import Union

import numpy as np
import pandas as pd

from distillery.config import Params
from distillery.data import LABEL, PAIR, TEXT, load_labels, load_split
from distillery.errors import DistilleryError
from distillery.files import atomic_dir, read_json, write_json
from distillery.metrics import classification_metrics
from distillery.modeling import load_classifier, load_tokenizer
from distillery.onnx_runtime import export_onnx, quantize_int8, run_session, session
from distillery.paths import ONNX_DIR, PREPARED_DIR, REPORTS_DIR

EXPORTED = ("student", "teacher")


class ParityError(DistilleryError):
    """An exported fp32 model does not reproduce its PyTorch logits."""


def parity_logits(model, tokenizer, sessions: dict, frame: pd.DataFrame, max_length: int,
                  batch_size: int) -> dict[str, np.ndarray]:
    """PyTorch and ONNX logits for every row, in batches padded to their longest row, as served."""
    import torch

    outputs: dict[str, list] = {"pytorch": [], **{name: [] for name in sessions}}
    pairs = frame[PAIR].tolist() if PAIR in frame.columns else None
    texts = frame[TEXT].tolist()
    model.eval()
    for start in range(0, len(frame), batch_size):
        batch = tokenizer(texts[start:start + batch_size], pairs[start:start + batch_size] if pairs else None,
                          padding=True, truncation=True, max_length=max_length, return_tensors="np")
        with torch.inference_mode():
            outputs["pytorch"].append(model(**{k: torch.from_numpy(v) for k, v in batch.items()}).logits.numpy())
        for name, sess in sessions.items():
            outputs[name].append(run_session(sess, batch))
    return {name: np.concatenate(parts) for name, parts in outputs.items()}


def int8_gate(fp32_accuracy: float, int8_accuracy: float, max_drop_points: float) -> dict:
    """Is the int8 model deployable? Accuracy drop in percentage points vs the fp32 model."""
    drop = 100 * (fp32_accuracy - int8_accuracy)
    deployable = drop <= max_drop_points
    reason = None if deployable else (f"int8 accuracy drop {drop:.2f} points exceeds "
                                      f"export.int8_max_accuracy_drop = {max_drop_points}")
    return {"accuracy_drop_points": round(drop, 4), "deployable": deployable, "reason": reason}


def check_model(model, tokenizer, fp32_path: Path, int8_path: Path, frame: pd.DataFrame, max_length: int,
                params: Params) -> dict:
    """Parity of the fp32 and int8 ONNX models with PyTorch on ``frame``."""
    cfg = params.export
    logits = parity_logits(model, tokenizer, {"fp32": session(fp32_path), "int8": session(int8_path)}, frame,
                           max_length, cfg.parity_batch_size)
    references = frame[LABEL].to_numpy()
    labels = {name: value.argmax(-1) for name, value in logits.items()}
    metrics = {name: classification_metrics(value, references, value.shape[1]) for name, value in logits.items()}
    max_diff = float(np.abs(logits["fp32"] - logits["pytorch"]).max())
    return {
        "rows": int(len(frame)),
        "fp32": {"max_abs_logit_diff": max_diff, "atol": cfg.fp32_atol, "passed": max_diff <= cfg.fp32_atol,
                 "label_agreement_vs_pytorch": float((labels["fp32"] == labels["pytorch"]).mean())},
        "int8": {"label_agreement_vs_fp32": float((labels["int8"] == labels["fp32"]).mean()),
                 "label_agreement_vs_pytorch": float((labels["int8"] == labels["pytorch"]).mean()),
                 "max_abs_logit_diff_vs_pytorch": float(np.abs(logits["int8"] - logits["pytorch"]).max()),
                 "accuracy": metrics["int8"]["accuracy"], "macro_f1": metrics["int8"]["macro_f1"],
                 "accuracy_change_points": 100 * (metrics["int8"]["accuracy"] - metrics["pytorch"]["accuracy"]),
                 "macro_f1_change": metrics["int8"]["macro_f1"] - metrics["pytorch"]["macro_f1"],
                 **int8_gate(metrics["pytorch"]["accuracy"], metrics["int8"]["accuracy"],
                             cfg.int8_max_accuracy_drop)},
        "pytorch": {"accuracy": metrics["pytorch"]["accuracy"], "macro_f1": metrics["pytorch"]["macro_f1"]},
        "fp32_onnx": {"accuracy": metrics["fp32"]["accuracy"], "macro_f1": metrics["fp32"]["macro_f1"]},
    }


def export(params: Params, models_dir: Union[str, Path] = "models", prepared_dir: Union[str, Path] = PREPARED_DIR,
           out_dir: Union[str, Path] = ONNX_DIR, reports_dir: Union[str, Path] = REPORTS_DIR) -> dict:
    test = load_split("test", prepared_dir)
    labels = load_labels(prepared_dir)
    report: dict = {"labels": labels}
    parity_path = Path(reports_dir) / "metrics" / "parity.json"
    with atomic_dir(out_dir) as scratch:
        for name in EXPORTED:
            model_dir = Path(models_dir) / name
            model = load_classifier(str(model_dir), str(model_dir))
            tokenizer = load_tokenizer(str(model_dir), str(model_dir))
            max_length = read_json(model_dir / "training.json", "train_teacher" if name == "teacher" else "distill")[
                "max_length"]
            fp32_path, int8_path = scratch / f"{name}.onnx", scratch / f"{name}.int8.onnx"
            export_onnx(model, tokenizer, fp32_path, params.export.opset)
            quantize_int8(fp32_path, int8_path)
            report[name] = check_model(model, tokenizer, fp32_path, int8_path, test, max_length, params)
            report[name]["size_mb"] = {"fp32": fp32_path.stat().st_size / 1e6, "int8": int8_path.stat().st_size / 1e6}
        failed = [n for n in EXPORTED if not report[n]["fp32"]["passed"]]
        student_int8 = report["student"]["int8"]
        report["deployable"] = "student.int8.onnx" if student_int8["deployable"] else "student.onnx"
        report["int8_not_deployable_reason"] = student_int8["reason"]
        report["fp32_parity_passed"] = not failed
        write_json(parity_path, report)
        if failed:
            worst = report[failed[0]]["fp32"]
            raise ParityError(f"fp32 ONNX parity failed for {', '.join(failed)}: largest logit difference "
                              f"{worst['max_abs_logit_diff']:.3g} > export.fp32_atol = {worst['atol']} on the "
                              f"test split; no ONNX model was written (see {parity_path})")
        write_json(scratch / "deployment.json", {
            "deployable": report["deployable"], "int8_deployable": student_int8["deployable"],
            "reason": student_int8["reason"], "labels": labels, "tokenizer": str(Path(models_dir) / "student"),
            "max_length": read_json(Path(models_dir) / "student" / "training.json")["max_length"]})
    return report
