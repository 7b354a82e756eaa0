"""Loading a student family by name (the table is ``FAMILIES`` in this package's ``__init__``).

A stage that imports this module may build any family, so it depends on all of them; the table alone
(which the config reads to check ``student.source``) loads none."""
from __future__ import annotations

import importlib

from distillery.errors import ConfigError
from distillery.students import FAMILIES


def student_family(name: str):
    if name not in FAMILIES:
        raise ConfigError(f"student.source = {name!r} is not allowed; student families: {', '.join(FAMILIES)}")
    return importlib.import_module(f"distillery.students.{name}").FAMILY
