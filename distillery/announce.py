"""The one line a stage prints when it starts: what it does, on how much data, for how long.

Read by the CLI only (``python -m distillery <stage>``, which ``dvc repro`` and the Prefect tasks run), so
a change here re-runs no stage. Built from params and the prepared data's row counts; never from the task's
or the student's name: ``ROW_NOUNS`` names a task's rows (e.g. "questions"; "rows" for a task not in it).
It loads no task type (and so no torch: ``prepare`` imports none; see ``distillery/task_types/parts.py``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from distillery.paths import LOGITS_DIR, PREPARED_DIR

# what one prepared row of a task type is called (kept here, not in the task types: no stage depends on it)
ROW_NOUNS = {"question_answering": "questions", "image_classification": "images"}  # text_classification: rows
# task types whose inputs have no sequence length: the benchmark times one cell per batch size (their task
# types say so too, with ``sequence_inputs = False``; a test keeps the two in step)
NO_SEQUENCE = {"image_classification"}


def _rows(split: str, prepared_dir: Path) -> Optional[int]:
    """Rows of a prepared split (or of ``augmented`` in the logits directory) from its parquet footer (no data
    read), or None if it is not there yet."""
    try:
        import pyarrow.parquet as pq

        return pq.ParquetFile(Path(prepared_dir) / f"{split}.parquet").metadata.num_rows
    except Exception:
        return None


def _count(n: Optional[int], noun: str) -> str:
    return f"{n:,} {noun}" if n is not None else noun



def _epochs(epochs: float) -> str:
    return f"{epochs:g} epoch{'' if epochs == 1 else 's'}"

def describe(stage: str, params, prepared_dir=PREPARED_DIR, logits_dir=LOGITS_DIR) -> str:
    """``<stage>: <what it does>``, e.g. "train_teacher: fine-tuning bundled:minilm-l6 on 8,000 rows (bundled:tweets), 2 epochs"."""
    noun = ROW_NOUNS.get(params.task, "rows")
    train, test = _rows("train", prepared_dir), _rows("test", prepared_dir)
    transfer = _rows("transfer", prepared_dir) or 0
    bench = params.benchmark
    cells = len(bench.batch_sizes) * (1 if params.task in NO_SEQUENCE else len(bench.sequence_lengths))
    rows_cap = getattr(params.distill, "labelled_rows", None)
    labelled = min(train, rows_cap) if train is not None and rows_cap is not None else train  # the labels the students see
    # the training rows the distilled student learns from: beyond the labelled ones only with a remainder transfer set
    distilled_on = train if params.distill.transfer_set.source == "remainder" else labelled
    copies = params.distill.augment.copies
    augmented = (_rows("augmented", logits_dir) or 0) if copies else 0
    augmenting = (f"; then {copies} augmented {'copy' if copies == 1 else 'copies'} of each training "
                  f"{'and transfer ' if params.distill.augment.include_transfer else ''}{noun[:-1] if noun.endswith('s') else noun}"
                  " (distill.augment)" if copies else "")
    files = params.data.files or {}
    source = ", ".join(f"{split} {path}" for split, path in files.items()) if files else params.data.source
    what = {
        "prepare": f"reading {source} into train, validation and test splits",
        "train_teacher": f"{'training' if params.teacher.model.startswith('scratch:') else 'fine-tuning'} "
                         f"{params.teacher.model} on {_count(train, noun)} ({source}), "
                         f"{_epochs(params.teacher.train.epochs)}",
        "teacher_logits": f"running the teacher on {_count(train, 'training ' + noun)}"
                          + (f" and {transfer:,} transfer {noun}" if transfer else "") + augmenting
                          + "; distill reads its outputs",
        "distill": f"distilling a '{params.student.source}' student on {_count(distilled_on, noun)}"
                   + (f" + {transfer:,} transfer {noun}" if transfer else "")
                   + (f" + {augmented:,} augmented {noun}" if augmented else "")
                   + f", {_epochs(params.distill.train.epochs)}, then the same student without the teacher "
                     f"(the baseline) on {_count(labelled, noun)}"
                   + (f" (distill.labelled_rows; the student learns labels from as many)" if labelled != train else "")
                   + (f"; warning: distill.labelled_rows is {rows_cap:,}, more than the {train:,} training {noun}, "
                      f"so every training label is used" if train is not None and rows_cap is not None
                      and rows_cap > train else ""),
        "evaluate": f"scoring teacher, student and baseline on {_count(test, 'test ' + noun)}",
        "export": f"exporting teacher and student to ONNX (fp32, int8), parity on {_count(test, 'test ' + noun)}",
        "benchmark": f"timing 5 models in {cells} cells (batch {bench.batch_sizes}"
                     + (")" if params.task in NO_SEQUENCE else f" x sequence {bench.sequence_lengths})")
                     + (f", {bench.runs}" if bench.min_runs >= bench.runs else
                        f", {bench.min_runs}-{bench.runs}") + " interleaved runs "
                     f"per model and cell, up to {bench.max_seconds_per_cell:g}s per cell",
        "register": "logging the run to MLflow and registering the deployable student (champion if the gate passes)",
    }
    return f"{stage}: {what.get(stage, 'running')}"
