"""Distillery's classification metric for `evaluate`, loaded by path so it works offline.

`evaluate.load("accuracy")` fetches its script from the Hugging Face Hub; this module is kept in
the repository instead and loaded with `evaluate.load(<path to this directory>)`.
"""
import datasets
import evaluate
import numpy as np
from sklearn.metrics import accuracy_score, precision_recall_fscore_support, roc_auc_score

_DESCRIPTION = """Accuracy, macro precision/recall/F1 and ROC AUC (binary, or one-vs-rest macro for
several classes). Pass class probabilities as `probabilities=` to get ROC AUC."""

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of int): predicted label ids.
    references (list of int): gold label ids.
    probabilities (list of list of float, optional): class probabilities per example.
    num_labels (int, optional): number of classes; defaults to the width of `probabilities`.
Returns:
    accuracy, macro_precision, macro_recall, macro_f1, roc_auc (None when it is undefined).
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class Classification(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("int64"),
                                        "references": datasets.Value("int64")}),
        )

    def _compute(self, predictions, references, probabilities=None, num_labels=None):
        predictions, references = np.asarray(predictions), np.asarray(references)
        if num_labels is None:
            num_labels = np.asarray(probabilities).shape[1] if probabilities is not None else \
                int(max(predictions.max(initial=0), references.max(initial=0))) + 1
        label_ids = list(range(num_labels))
        # the macro average is over the classes in the references or the predictions: a class in neither (a small
        # split without it, never predicted) has no F1 at all, and counting it as 0 marked perfect answers 0.667
        present = sorted(set(references.tolist()) | set(predictions.tolist()))
        precision, recall, f1, _ = precision_recall_fscore_support(
            references, predictions, labels=present, average="macro", zero_division=0)
        result = {"accuracy": float(accuracy_score(references, predictions)),
                  "macro_precision": float(precision), "macro_recall": float(recall), "macro_f1": float(f1),
                  "roc_auc": None}
        if probabilities is not None and len(np.unique(references)) == num_labels:
            scores = np.asarray(probabilities, dtype=np.float64)
            if num_labels == 2:
                result["roc_auc"] = float(roc_auc_score(references, scores[:, 1]))
            else:
                result["roc_auc"] = float(roc_auc_score(references, scores, multi_class="ovr", average="macro",
                                                        labels=label_ids))
        return result
