"""The ``train_teacher`` stage: fine-tune the teacher on the prepared training split, keeping its best
validation epoch."""
from __future__ import annotations

from pathlib import Path
from typing import Union

from distillery.config import Params, train_settings
from distillery.files import atomic_dir, write_json
from distillery.hf import check_max_length, check_readable, count_parameters, hub_revisions, note_truncated
from distillery.paths import CURVES_DIR, PREPARED_DIR, TEACHER_DIR
from distillery.prepared import TRAINED_ON, load_labels, load_split, trained_on
from distillery.reports import write_curves
from distillery.task_types.load import task_type
from distillery.training import fit


def train_teacher(params: Params, prepared_dir: Union[str, Path] = PREPARED_DIR,
                  out_dir: Union[str, Path] = TEACHER_DIR, curves_dir: Union[str, Path] = CURVES_DIR) -> dict:
    import torch

    cfg, task = params.teacher, task_type(params.task, params)
    labels = load_labels(prepared_dir)
    torch.manual_seed(params.seed)
    model, tokenizer = task.new_teacher(params, labels, Path(prepared_dir))
    check_max_length(model, cfg.max_length, "teacher.max_length")
    data = trained_on(prepared_dir)  # before reading: the splits this teacher is trained and selected on
    train = task.featurise(load_split("train", prepared_dir), tokenizer, cfg.max_length)
    check_readable(train, tokenizer, "teacher.model", "training inputs", "train_teacher")
    truncated = note_truncated(train, cfg.max_length, "teacher.max_length", "training inputs", "train_teacher")
    validation = task.featurise(load_split("validation", prepared_dir), tokenizer, cfg.max_length)
    with atomic_dir(out_dir) as scratch:
        summary = fit(task, model, tokenizer, train, validation, train_settings(params, "teacher"), params.seed,
                      scratch, key="teacher.train")
        summary.update(model=cfg.model, parameters=count_parameters(model), max_length=cfg.max_length,
                       rows_filling_max_length=truncated, hub_revisions=hub_revisions(), **{TRAINED_ON: data})
        write_json(scratch / "training.json", summary)
    write_curves("teacher", summary["log_history"], curves_dir)
    return summary


def summary(result: dict) -> str:
    return f"teacher trained in {result['train_seconds']:.0f}s; best validation {result['best_validation']}"


def tracked_inputs(params: Params) -> dict:
    return {"teacher.model": params.teacher.model}


def processes(params: Params) -> int:
    """Training processes (`teacher.train.processes`): more than 1 re-launches the stage under torchrun."""
    return params.teacher.train.processes
