"""A stage's own part of a task type, by name, without the task type's class (and its torch): ``prepare``
loads ``rows`` and ``register`` loads ``serving`` from here, so editing the task type's model code re-runs
neither of them, and neither imports torch (``register`` takes the tokenizer's padding from ``export``'s record:
``distillery/tokenizer_padding.py``)."""
from __future__ import annotations

import importlib
from types import ModuleType

from distillery.errors import ConfigError
from distillery.task_types import TASK_TYPES


def _check(name: str) -> None:
    if name not in TASK_TYPES:
        raise ConfigError(f"task = {name!r} is not allowed; task types: {', '.join(TASK_TYPES)}")


def task_part(name: str, part: str) -> ModuleType:
    """A part of the task type that one stage alone needs, kept out of the task type's class so a change
    to it re-runs that stage only: ``rows`` (reading and checking rows, for ``prepare``) and ``serving``
    (the served model's artifacts, schema and scoring, for ``register``)."""
    _check(name)
    return importlib.import_module(f"distillery.task_types.{name}.{part}")


def task_rows(name: str) -> ModuleType:
    """The task type's row reader and checker, for the ``prepare`` stage."""
    return task_part(name, "rows")
