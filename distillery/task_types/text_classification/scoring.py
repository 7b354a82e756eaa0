"""Text classification, post-processing and metrics: labels from logits, test metrics, per-class
figures and the confusion rows ``evaluate`` writes for DVC plots."""
from __future__ import annotations

import numpy as np
import pandas as pd

from distillery.metrics import classification_metrics, confusion_matrix
from distillery.prepared import LABEL


def evaluation_report(logits: np.ndarray, frame: pd.DataFrame, labels: list) -> dict:
    """``metrics`` (with the confusion matrix), ``per_class`` figures and ``plots`` (confusion rows)."""
    references = frame[LABEL].to_numpy()
    predictions = logits.argmax(-1)
    metrics = {**classification_metrics(logits, references, len(labels)),
               "confusion_matrix": confusion_matrix(predictions, references, len(labels))}
    from sklearn.metrics import precision_recall_fscore_support  # on use: a stage that only names the task stays fast

    precision, recall, f1, support = precision_recall_fscore_support(
        references, predictions, labels=list(range(len(labels))), zero_division=0)
    per_class = {label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
                 for label, p, r, f, s in zip(labels, precision, recall, f1, support)}
    confusion = pd.DataFrame({"actual": np.asarray(labels)[references], "predicted": np.asarray(labels)[predictions]})
    return {"metrics": metrics, "per_class": per_class, "plots": {"confusion": confusion}}
