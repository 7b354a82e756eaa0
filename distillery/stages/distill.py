"""The ``distill`` stage: train the distilled student and the labels-only baseline.

Both start from the same weights (one build, deep-copied), with the same seed and
hyperparameters. The distilled student learns from the cached teacher logits on the labelled
training rows plus the transfer set (and the augmented texts, when ``distill.augment`` is on); the
baseline sees the labelled rows only, because it cannot use unlabelled text. The teacher is not run
here, unless ``distill.hidden_loss.weight > 0``: its hidden states are not cached, so that loss runs
the fine-tuned teacher on every training batch of the distilled student.
"""
from __future__ import annotations

import copy
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import numpy as np
import pandas as pd

from distillery.config import Params, train_settings
from distillery.errors import ModelError
from distillery.files import atomic_dir, read_json, write_json
from distillery.hf import check_max_length, check_same_revisions, count_parameters, note_beyond_teacher
from distillery.logit_cache import augment_settings, load_augmented, load_cached_logits
from distillery.losses import IGNORE_INDEX
from distillery.paths import BASELINE_DIR, LOGITS_DIR, PREPARED_DIR, REPORTS_DIR, STUDENT_DIR, TEACHER_DIR
from distillery.prepared import LABEL, TRAINED_ON, load_labels, load_split, stratified_positions, trained_on
from distillery.reports import write_curves
from distillery.students.load import student_family
from distillery.task_types.load import task_type
from distillery.training import fit


@dataclass
class DistillInputs:
    """What both students train on: one initialisation, tokenised datasets and the KD settings."""

    task: object  # the task type
    student: object
    tokenizer: object
    kd_dataset: object  # labelled train rows + transfer rows, each with its cached teacher logits
    baseline_dataset: object  # labelled train rows only
    validation_dataset: object
    kd_options: dict
    labelled_rows: int
    transfer_rows: int
    augmented_rows: int
    teacher_pass: Optional[dict] = None  # what computed the cached teacher outputs: precision, runtime


def hidden_options(params: Params, task, student, teacher_dir: Union[str, Path]) -> dict:
    """The fine-tuned teacher and the student-to-teacher layer map for the hidden-state loss."""
    teacher = task.load_model(str(teacher_dir), "models/teacher")
    layer_map = student_family(params.student.source).layer_map(params, teacher)
    if layer_map is None:
        raise ModelError(f"distill.hidden_loss.weight: student.source {params.student.source!r} has no layers that "
                         "correspond to the teacher's; set it to 0")
    if teacher.config.hidden_size != student.config.hidden_size:
        raise ModelError(f"distill.hidden_loss.weight: the teacher's hidden size ({teacher.config.hidden_size}) "
                         f"differs from the student's ({student.config.hidden_size}); set it to 0")
    return dict(teacher=teacher, hidden_weight=params.distill.hidden_loss.weight,
                layer_map=layer_map)


def labelled_subset(train: pd.DataFrame, size: Union[int, None], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the ``size`` training rows the students get labels for (stratified by label, seeded) and of
    the rest, both in the split's order; all rows when ``size`` is None or not smaller than the split."""
    positions = np.arange(len(train))
    if size is None or size >= len(train):
        return positions, positions[:0]
    kept, rest = stratified_positions(train[LABEL].to_numpy(), size, seed)
    missing = sorted(set(train[LABEL].iloc[rest]) - set(train[LABEL].iloc[kept]))
    if missing:
        print(f"distill: warning: the {size} labelled rows (distill.labelled_rows) hold no row of {len(missing)} "
              f"class(es) (label ids {missing[:10]}); the students learn those classes from the teacher alone, the "
              "baseline never", file=sys.stderr, flush=True)
    return np.sort(kept), np.sort(rest)


def distill_inputs(params: Params, prepared_dir: Union[str, Path] = PREPARED_DIR,
                   teacher_dir: Union[str, Path] = TEACHER_DIR, logits_dir: Union[str, Path] = LOGITS_DIR,
                   seed: Union[int, None] = None) -> DistillInputs:
    cfg, student_cfg = params.distill, params.student
    task = task_type(params.task, params)
    cached = load_cached_logits(logits_dir, teacher_dir, prepared_dir, params.teacher.max_length,
                                augment_settings(params), task.settings())
    passed = teacher_pass(logits_dir)  # read with the cache, before the trainings
    labels = load_labels(prepared_dir)
    student, tokenizer = student_family(student_cfg.source).build(params, task, labels, Path(teacher_dir),
                                                                  params.seed if seed is None else seed)
    teacher_training = Path(teacher_dir) / "training.json"
    if teacher_training.is_file():  # a layers student of teacher.model: the commit the teacher was trained from
        check_same_revisions(read_json(teacher_training).get("hub_revisions"), "teacher.model", "distill")
    train, transfer = load_split("train", prepared_dir), load_split("transfer", prepared_dir)
    kept, rest = labelled_subset(train, cfg.labelled_rows, params.seed)
    unlabelled = rest if cfg.transfer_set.source == "remainder" else rest[:0]
    if len(rest):  # one cached output per row here (distill.labelled_rows is refused for extractive QA's windows)
        labelled_logits, unlabelled_logits = cached["train"][kept], cached["train"][unlabelled]
        train, unlabelled_rows = train.iloc[kept].reset_index(drop=True), train.iloc[unlabelled]
    else:
        labelled_logits, unlabelled_logits = cached["train"], cached["train"][:0]
        unlabelled_rows = train.iloc[:0]
    augmented = load_augmented(logits_dir)
    kd_rows = pd.concat([train, unlabelled_rows.assign(**{LABEL: IGNORE_INDEX}),
                         transfer.assign(**{LABEL: IGNORE_INDEX}), augmented.assign(**{LABEL: IGNORE_INDEX})],
                        ignore_index=True)
    kd_logits = np.concatenate([labelled_logits, unlabelled_logits, cached["transfer"], cached["augmented"]])
    max_length = student_cfg.max_length
    check_max_length(student, max_length, "student.max_length")
    kd_options = dict(alpha=cfg.alpha, temperature=cfg.temperature, loss_kind=cfg.loss)
    if cfg.hidden_loss.weight > 0:
        kd_options.update(hidden_options(params, task, student, teacher_dir))
    kd_dataset = task.featurise(kd_rows, tokenizer, max_length, kd_logits)
    from distillery.distributed import speaks

    if speaks():  # one process of a multi-process run says it
        note_beyond_teacher(kd_dataset, max_length, params.teacher.max_length)
    return DistillInputs(
        task=task, student=student, tokenizer=tokenizer, kd_dataset=kd_dataset,
        baseline_dataset=task.featurise(train, tokenizer, max_length),
        validation_dataset=task.featurise(load_split("validation", prepared_dir), tokenizer, max_length),
        kd_options=kd_options,
        labelled_rows=len(train), transfer_rows=len(transfer) + len(unlabelled), augmented_rows=len(augmented),
        teacher_pass=passed)


def distill(params: Params, prepared_dir: Union[str, Path] = PREPARED_DIR, teacher_dir: Union[str, Path] = TEACHER_DIR,
            logits_dir: Union[str, Path] = LOGITS_DIR, student_dir: Union[str, Path] = STUDENT_DIR,
            baseline_dir: Union[str, Path] = BASELINE_DIR, reports_dir: Union[str, Path] = REPORTS_DIR) -> dict:
    data = trained_on(prepared_dir)  # before reading: the splits the students are trained and selected on
    inputs = distill_inputs(params, prepared_dir, teacher_dir, logits_dir)
    student = inputs.student
    baseline = copy.deepcopy(student)  # identical initialisation
    train_cfg, tokenizer = train_settings(params, "distill"), inputs.tokenizer
    parameters = count_parameters(student)
    _warn_if_not_smaller(parameters, params, teacher_dir)
    description = student_family(params.student.source).describe(params)  # the model card's, read without torch
    with atomic_dir(student_dir) as student_scratch, atomic_dir(baseline_dir) as baseline_scratch:
        summaries = {
            "student": fit(inputs.task, student, tokenizer, inputs.kd_dataset, inputs.validation_dataset, train_cfg, params.seed,
                           student_scratch, distill=inputs.kd_options),
            "baseline": fit(inputs.task, baseline, tokenizer, inputs.baseline_dataset, inputs.validation_dataset, train_cfg,
                            params.seed, baseline_scratch),
        }
        for name, scratch in (("student", student_scratch), ("baseline", baseline_scratch)):
            summaries[name].update(parameters=parameters, family=params.student.source, description=description,
                                   max_length=params.student.max_length,
                                   labelled_rows=inputs.labelled_rows,
                                   transfer_rows=inputs.transfer_rows if name == "student" else 0,
                                   augmented_rows=inputs.augmented_rows if name == "student" else 0,
                                   **({"teacher_pass": inputs.teacher_pass} if name == "student" else {}),
                                   **{TRAINED_ON: data})
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


def teacher_pass(logits_dir: Union[str, Path]) -> dict:
    """What computed the teacher outputs the student learnt from (the cache's manifest): its precision (an int8 pass
    on a CPU without bf16) and runtime, so the reports say it, not the cache's manifest alone. A manifest written
    before these keys was a PyTorch pass (fp32, or under the bf16 autocast it did not record): "unrecorded"."""
    manifest = read_json(Path(logits_dir) / "manifest.json")
    return {"precision": manifest.get("precision", "unrecorded"), "runtime": manifest.get("runtime", "pytorch")}


def _warn_if_not_smaller(parameters: int, params: Params, teacher_dir: Union[str, Path]) -> None:
    """A student with as many parameters as its teacher, or more (a ``config`` or ``bilstm`` student at its default
    sizes under a small teacher), is no cheaper to serve: said before the training, not found in the report."""
    path = Path(teacher_dir) / "training.json"
    teacher = read_json(path).get("parameters") if path.is_file() else None
    if teacher and parameters >= teacher:
        from distillery.distributed import speaks

        if speaks():
            print(f"distill: warning: the student has {parameters:,} parameters, {parameters / teacher:.1f}x the "
                  f"teacher's {teacher:,} (student.source {params.student.source}): it is no cheaper to serve than the "
                  f"teacher; see student.{params.student.source} for its sizes", file=sys.stderr, flush=True)


# below this many seconds a training's time per example is mostly start-up and noise: a trial saw the ratio of two
# tiny trainings swing from 0.14 to 40.9, so it is not printed (distill.json still records it)
RATIO_MIN_SECONDS = 30.0


def summary(result: dict) -> str:
    student, baseline = result["student"]["train_seconds"], result["baseline"]["train_seconds"]
    short = "both trainings were" if max(student, baseline) < RATIO_MIN_SECONDS else \
        f"the {'baseline' if baseline < student else 'distilled'} training was"
    ratio = (f"time per example, distilled / baseline: {result['time_ratio_per_example']:.2f}"
             if min(student, baseline) >= RATIO_MIN_SECONDS else
             f"{short} too short to compare their time per example (under {RATIO_MIN_SECONDS:.0f}s)")
    return f"distilled student {student:.0f}s, baseline {baseline:.0f}s; {ratio}"


def tracked_inputs(params: Params) -> dict:
    """The pretrained weights a student starts from, when they are a local directory."""
    return {"teacher.model": params.teacher.model, "student.model": params.student.model}


def processes(params: Params) -> int:
    """Training processes (`distill.train.processes`): more than 1 re-launches the stage under torchrun."""
    return params.distill.train.processes
