"""The interface every task type implements. The stages call these methods and nothing else
task-specific; a task type is one package under ``distillery/task_types/``.

Two parts live in modules of their own, each read by one stage (``task_part(task, part)``), so a
change to them re-runs that stage alone:

- ``rows`` (``prepare``): reading and checking rows: ``key_columns``, ``label_names``,
  ``check_columns``, ``clean``, ``check_classes`` and ``unlabelled_inputs``; or, for a task that
  reads and splits its rows its own way (extractive QA splits by article), ``key_columns`` and
  ``prepare_splits(params) -> (splits, rejected rows, data report with "labels")`` (``splits`` may add a
  ``transfer`` frame of unlabelled rows);
- ``serving`` (``register``): the served model's input and output schema and its artifacts:
  ``MODEL_CODE`` (the pyfunc's code file, which never imports Distillery), ``METRICS`` (the gate's
  figures, the primary first), ``served_artifacts``,
  ``load_code_model``, ``model_input``, ``signature_example``, ``score`` (the gate's
  figures through the served model) and ``row_key_columns`` (the columns that identify a row: which rows a
  registered model saw).

See ``text_classification/rows.py`` and ``text_classification/serving.py``, and
``question_answering/`` for a task whose model sees several features (windows) per row.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd


class TaskType:
    """One kind of task: how its rows become model inputs, what the teacher outputs, how a student
    learns from it, how predictions are scored, exported and served."""

    name: str = ""
    # the test metric the gate, retention and the distillation gain are judged on, and a second one reported beside it
    primary_metric: str = "accuracy"
    secondary_metric: str = "macro_f1"
    # the arrays the teacher-output cache stores per row, e.g. ("logits",); stages never look inside
    teacher_outputs: tuple[str, ...] = ()
    # what the model reads one of at a time: a row, or (extractive QA) a window of a row
    model_input_unit: str = "rows"
    # inputs of varying length, padded per batch (text): training groups them by length; images are not
    padded_inputs: bool = True
    # inputs with a sequence length the benchmark varies (benchmark.sequence_lengths); images have none
    sequence_inputs: bool = True

    def benchmark_lengths(self, params, prepared_dir: Path) -> list[int]:
        """The lengths the benchmark's cells are timed at (the ``s`` of ``b1_s64``): benchmark.sequence_lengths."""
        return list(params.benchmark.sequence_lengths)

    def configured(self, params) -> "TaskType":
        """This task type set up with the settings it reads from ``params`` (none by default: itself)."""
        return self

    def settings(self) -> dict:
        """The settings ``configured`` read that the served model needs too (``export`` records them in
        deployment.json); none by default."""
        return {}

    # --- the teacher and the featuriser --------------------------------------------------------
    def new_teacher(self, params, labels: list, prepared_dir: Path) -> tuple[Any, Any]:
        """The teacher to fine-tune and its featuriser (``teacher.model``: ``bundled:``, a Hub id or a local
        directory), for ``train_teacher``. The caller seeds torch first."""
        from distillery.hf import ensure_padding, load_tokenizer, resolve_model

        name = resolve_model(params.teacher.model, "teacher.model")
        tokenizer = load_tokenizer(name, "teacher.model")
        model = self.load_model(name, "teacher.model", labels)
        ensure_padding(model, tokenizer, "teacher.model")
        return model, tokenizer

    def load_featuriser(self, model_dir: str, key: str):
        """The featuriser saved with a trained model (its tokenizer, for text)."""
        from distillery.hf import load_tokenizer

        return load_tokenizer(model_dir, key)

    # --- featurising ---------------------------------------------------------------------------
    def augment_columns(self, frame: pd.DataFrame) -> tuple[list[str], list[str]]:
        """``(columns, perturbed)`` for ``distill.augment``: the prepared columns an augmented row carries, and
        those of them it perturbs. A text task: its text, and its text pair if any, both perturbed."""
        from distillery.prepared import PAIR, TEXT

        columns = [c for c in (TEXT, PAIR) if c in frame.columns]
        return columns, columns

    def featurise(self, frame: pd.DataFrame, tokenizer, max_length: int,
                  teacher_outputs: Optional[np.ndarray] = None):
        """A ``datasets.Dataset`` the Trainer reads (with the cached teacher outputs, when given)."""
        raise NotImplementedError

    def collator(self, tokenizer):
        """Batches featurised rows (dynamic padding; teacher outputs and labels stacked)."""
        raise NotImplementedError

    # --- the model head ------------------------------------------------------------------------
    def load_model(self, name: str, key: str, labels: Optional[list] = None):
        """A model with this task's head; with ``labels`` a fresh head of that size is added when missing."""
        raise NotImplementedError

    def head_from_config(self, config, labels: list):
        """A randomly initialised model with this task's head for a transformers config."""
        raise NotImplementedError

    # --- the teacher's outputs -----------------------------------------------------------------
    def predict(self, model, tokenizer, frame: pd.DataFrame, max_length: int, batch_size: int) -> np.ndarray:
        """The model's raw outputs for every row, in the frame's order (what the cache stores)."""
        raise NotImplementedError

    def empty_outputs(self, num_labels: int) -> np.ndarray:
        raise NotImplementedError

    # --- the loss terms --------------------------------------------------------------------------
    def outputs_of(self, model_output) -> Any:
        """The tensor(s) the loss compares with the teacher's cached outputs."""
        raise NotImplementedError

    def supervised_loss(self, student_outputs, labels):
        raise NotImplementedError

    def distillation_loss(self, student_outputs, teacher_outputs, labels, alpha: float, temperature: float,
                          kind: str):
        raise NotImplementedError

    # --- post-processing and metrics -------------------------------------------------------------
    answer_unit: str = "rows"  # what ``same_answers`` compares: one entry per ...

    def same_answers(self, tokenizer, frame: pd.DataFrame, max_length: int, reference: np.ndarray,
                     found: np.ndarray) -> np.ndarray:
        """Whether two models' raw outputs on ``frame`` (``predict``'s) give the same answer, one bool per
        ``answer_unit`` (here, a row: its top class). The int8 teacher's check against fp32."""
        return reference.argmax(-1) == found.argmax(-1)

    def answers(self, model, tokenizer, frame: pd.DataFrame, max_length: int, batch_size: int):
        """What ``metrics`` and ``evaluation_report`` score, one entry per row. By default the raw outputs
        (``predict``); a task whose model sees other units than rows (extractive QA: windows of a context)
        post-processes them into one answer per row here."""
        return self.predict(model, tokenizer, frame, max_length, batch_size)

    def metrics(self, outputs: np.ndarray, frame: pd.DataFrame, labels: list) -> dict:
        """Test metrics of raw outputs against the frame's gold answers."""
        raise NotImplementedError

    def evaluation_report(self, outputs: np.ndarray, frame: pd.DataFrame, labels: list) -> dict:
        """``metrics`` for eval.json, ``per_class`` figures (or {}), and ``plots``: name -> DataFrame, written
        by ``evaluate`` as ``reports/plots/<name>/<model>.csv``."""
        raise NotImplementedError

    def trainer_metrics(self, eval_pred) -> dict:
        """``compute_metrics`` for the Trainer's validation pass."""
        raise NotImplementedError

    def validation_metrics(self, eval_dataset):
        """The Trainer's ``compute_metrics`` for ``eval_dataset`` (a ``featurise`` result). By default
        ``trainer_metrics``; a task that scores rows rather than features reads the dataset's row index here."""
        return self.trainer_metrics

    # --- ONNX ------------------------------------------------------------------------------------
    def export_onnx(self, model, tokenizer, path: Path, opset: int) -> list[str]:
        """Write a single-file ONNX model with dynamic axes; return its input names."""
        raise NotImplementedError

    def parity(self, model, tokenizer, fp32_path: Path, int8_path: Path, frame: pd.DataFrame, max_length: int,
               export_cfg) -> dict:
        """ONNX fp32 and int8 against PyTorch on every row of ``frame``: the export gate's evidence."""
        raise NotImplementedError

    def exported_module(self, load_model, tokenizer, onnx_path: Path):
        """A module computing what the ONNX file ``onnx_path`` computes, inputs by keyword, when that is less than
        its model's forward pass (the benchmark counts its FLOPs); None: the whole model. ``load_model()`` gives
        the PyTorch model it was exported from."""
        return None

    def benchmark_inputs(self, tokenizer, frame: pd.DataFrame, batch: int, length: int) -> dict:
        """A numpy batch of ``batch`` real rows padded to ``length``, for latency timing."""
        raise NotImplementedError
