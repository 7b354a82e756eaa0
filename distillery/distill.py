"""The ``distill`` stage: train the distilled student and the labels-only baseline.

Both start from the same weights (one build, deep-copied), with the same seed and
hyperparameters. The distilled student learns from the cached teacher logits on the labelled
training rows plus the transfer set; the baseline sees the labelled rows only, because it cannot
use unlabelled text. The teacher is never run here.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Union

import numpy as np
import pandas as pd

from distillery.config import Params
from distillery.data import LABEL, load_labels, load_split
from distillery.files import atomic_dir, write_json
from distillery.logits import load_cached_logits
from distillery.losses import IGNORE_INDEX
from distillery.modeling import build_student, count_parameters, resolve_model
from distillery.reports import write_curves
from distillery.paths import BASELINE_DIR, LOGITS_DIR, PREPARED_DIR, REPORTS_DIR, STUDENT_DIR, TEACHER_DIR
from distillery.training import fit, tokenize


def distill(params: Params, prepared_dir: Union[str, Path] = PREPARED_DIR, teacher_dir: Union[str, Path] = TEACHER_DIR,
            logits_dir: Union[str, Path] = LOGITS_DIR, student_dir: Union[str, Path] = STUDENT_DIR,
            baseline_dir: Union[str, Path] = BASELINE_DIR, reports_dir: Union[str, Path] = REPORTS_DIR) -> dict:
    cfg, student_cfg = params.distill, params.student
    cached = load_cached_logits(logits_dir, teacher_dir, prepared_dir, params.teacher.max_length)
    labels = load_labels(prepared_dir)
    pretrained = resolve_model(params.teacher.model, "teacher.model") if student_cfg.source == "layers" else ""
    student, tokenizer = build_student(student_cfg, pretrained, teacher_dir, labels, params.seed)
    if student.config.num_labels != len(labels):
        raise ValueError(f"student has {student.config.num_labels} outputs for {len(labels)} labels")
    baseline = copy.deepcopy(student)

    train, transfer = load_split("train", prepared_dir), load_split("transfer", prepared_dir)
    validation = load_split("validation", prepared_dir)
    kd_rows = pd.concat([train, transfer.assign(**{LABEL: IGNORE_INDEX})], ignore_index=True)
    kd_logits = np.concatenate([cached["train"], cached["transfer"]])
    max_length = student_cfg.max_length
    kd_dataset = tokenize(kd_rows, tokenizer, max_length, kd_logits)
    baseline_dataset = tokenize(train, tokenizer, max_length)
    validation_dataset = tokenize(validation, tokenizer, max_length)
    kd_options = dict(alpha=cfg.alpha, temperature=cfg.temperature, loss_kind=cfg.loss)
    parameters = count_parameters(student)

    with atomic_dir(student_dir) as student_scratch, atomic_dir(baseline_dir) as baseline_scratch:
        summaries = {
            "student": fit(student, tokenizer, kd_dataset, validation_dataset, cfg.train, params.seed,
                           student_scratch, distill=kd_options),
            "baseline": fit(baseline, tokenizer, baseline_dataset, validation_dataset, cfg.train, params.seed,
                            baseline_scratch),
        }
        for name, scratch in (("student", student_scratch), ("baseline", baseline_scratch)):
            summaries[name].update(parameters=parameters, max_length=max_length, labelled_rows=len(train),
                                   transfer_rows=len(transfer) if name == "student" else 0)
            write_json(scratch / "training.json", summaries[name])
    for name, summary in summaries.items():
        write_curves(name, summary.pop("log_history"), Path(reports_dir) / "curves")
    student_s, baseline_s = summaries["student"], summaries["baseline"]
    metrics = {
        **summaries,
        # The teacher never runs here, so a distilled step should cost about a labels-only step.
        "time_ratio_per_example": round(student_s["seconds_per_1k_examples"] /
                                        baseline_s["seconds_per_1k_examples"], 4),
        "time_ratio_per_epoch": round(np.mean(student_s["epoch_train_seconds"]) /
                                      np.mean(baseline_s["epoch_train_seconds"]), 4),
    }
    write_json(Path(reports_dir) / "metrics" / "distill.json", metrics)
    return metrics
