"""Loading a task type by name (the table is ``TASK_TYPES`` in this package's ``__init__``).

A stage that imports this module may load any task type, so it depends on all of them; the table
alone (which the config reads to check ``task``) loads none, and a stage that needs only its own part
of a task type (``prepare``: rows; ``register``: serving) imports :mod:`.parts` instead."""
from __future__ import annotations

import importlib
from types import ModuleType

from distillery.task_types.parts import _check, task_part, task_rows  # noqa: F401 (task_part, task_rows: re-exported)


def task_type(name: str, params=None):
    """The task type ``name`` (an instance of its ``TaskType`` subclass), set up with ``params`` when given
    (``TaskType.configured``: e.g. extractive QA's stride and answer length)."""
    _check(name)
    task = importlib.import_module(f"distillery.task_types.{name}.task").TASK_TYPE
    return task if params is None else task.configured(params)
