"""Classification metrics through the project's own `evaluate` module, loaded by path (offline)."""
from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Optional

import numpy as np

METRIC_DIR = Path(__file__).parent / "metric_scripts" / "classification"


@functools.lru_cache(maxsize=1)
def load_metric():
    os.environ.setdefault("HF_EVALUATE_OFFLINE", "1")  # evaluate does not read HF_HUB_OFFLINE
    import evaluate

    # keep_in_memory: no arrow file and file lock per compute() in the shared cache (~/.cache/huggingface/metrics),
    # which every process computing metrics on this machine would otherwise take turns on: the processes of a
    # multi-process run, parallel stages, other users
    return evaluate.load(str(METRIC_DIR), keep_in_memory=True)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def classification_metrics(logits: np.ndarray, references: np.ndarray, num_labels: Optional[int] = None) -> dict:
    """Accuracy, macro P/R/F1 and ROC AUC from logits ``[n, classes]`` and gold ids ``[n]``."""
    logits = np.asarray(logits, dtype=np.float64)
    return load_metric().compute(predictions=logits.argmax(-1).tolist(), references=np.asarray(references).tolist(),
                                 probabilities=softmax(logits).tolist(), num_labels=num_labels or logits.shape[1])


def confusion_matrix(predictions: np.ndarray, references: np.ndarray, num_labels: int) -> list[list[int]]:
    matrix = np.zeros((num_labels, num_labels), dtype=np.int64)
    np.add.at(matrix, (np.asarray(references), np.asarray(predictions)), 1)
    return matrix.tolist()
