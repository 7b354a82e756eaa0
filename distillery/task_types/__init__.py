"""Task types: what differs between tasks, behind one interface (:class:`~distillery.task_types.base.TaskType`).

``TASK_TYPES`` is the one table from a ``task`` name in params.yaml to its package. A task type is
a package ``distillery/task_types/<name>/``: its ``task`` module defines the ``TaskType`` subclass
(featurising, model head, teacher outputs, loss terms, metrics, ONNX names and parity, served
schema), and its ``rows`` module reads and checks rows for ``prepare`` alone. The stages call
:func:`~distillery.task_types.load.task_type` and
:func:`~distillery.task_types.load.task_rows` and never ask which task they run.

Importing this package is cheap: a task type's package is imported only when a stage asks for it.
"""
from __future__ import annotations


TASK_TYPES: dict[str, str] = {
    "text_classification": "single texts or text pairs in, one label out",
    "question_answering": "a question and a context in, the answer's span in the context out (extractive QA)",
    "image_classification": "an image (pixels) in, one label out",
}
# the validation metrics each task type reports (its metric_for_best_model and gate metric choices), primary first
VALIDATION_METRICS: dict[str, tuple[str, ...]] = {
    "text_classification": ("accuracy", "macro_f1"),
    "question_answering": ("f1", "exact_match"),
    "image_classification": ("accuracy", "macro_f1"),
}
