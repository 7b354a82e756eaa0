"""Loading a task type by name (the table is ``TASK_TYPES`` in this package's ``__init__``).

A stage that imports this module may load any task type, so it depends on all of them; the table
alone (which the config reads to check ``task``) loads none."""
from __future__ import annotations

import importlib
from types import ModuleType

from distillery.errors import ConfigError
from distillery.task_types import TASK_TYPES


def _check(name: str) -> None:
    if name not in TASK_TYPES:
        raise ConfigError(f"task = {name!r} is not allowed; task types: {', '.join(TASK_TYPES)}")


def task_type(name: str, params=None):
    """The task type ``name`` (an instance of its ``TaskType`` subclass), set up with ``params`` when given
    (``TaskType.configured``: e.g. extractive QA's stride and answer length)."""
    _check(name)
    task = importlib.import_module(f"distillery.task_types.{name}").TASK_TYPE
    return task if params is None else task.configured(params)


def task_part(name: str, part: str) -> ModuleType:
    """A part of the task type that one stage alone needs, kept out of the task type's class so a change
    to it re-runs that stage only: ``rows`` (reading and checking rows, for ``prepare``) and ``serving``
    (the served model's artifacts, schema and scoring, for ``register``)."""
    _check(name)
    return importlib.import_module(f"distillery.task_types.{name}.{part}")


def task_rows(name: str) -> ModuleType:
    """The task type's row reader and checker, for the ``prepare`` stage."""
    return task_part(name, "rows")
