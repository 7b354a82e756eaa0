"""Task types: what differs between tasks, behind one interface (:class:`~distillery.task_types.base.TaskType`).

``TASK_TYPES`` is the one table from a ``task`` name in params.yaml to its package. A task type is
a package ``distillery/task_types/<name>/``: its ``__init__`` defines the ``TaskType`` subclass
(featurising, model head, teacher outputs, loss terms, metrics, ONNX names and parity, served
schema), and its ``rows`` module reads and checks rows for ``prepare`` alone. The stages call
:func:`task_type` and :func:`task_rows` and never ask which task they run.

Importing this package is cheap: a task type's package is imported only when a stage asks for it.
"""
from __future__ import annotations

import importlib
from types import ModuleType

from distillery.errors import ConfigError

TASK_TYPES: dict[str, str] = {
    "text_classification": "single texts or text pairs in, one label out",
}


def _check(name: str) -> None:
    if name not in TASK_TYPES:
        raise ConfigError(f"task = {name!r} is not allowed; task types: {', '.join(TASK_TYPES)}")


def task_type(name: str):
    """The task type ``name`` (an instance of its ``TaskType`` subclass)."""
    _check(name)
    return importlib.import_module(f"{__name__}.{name}").TASK_TYPE


def task_rows(name: str) -> ModuleType:
    """The task type's row reader and checker, for the ``prepare`` stage."""
    _check(name)
    return importlib.import_module(f"{__name__}.{name}.rows")
