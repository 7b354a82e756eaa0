"""Errors a user can cause. The CLI prints them as one line and exits with code 2."""
from __future__ import annotations


class DistilleryError(Exception):
    """Base class for errors that come from the user's configuration, data or models."""

    exit_code = 2


class ConfigError(DistilleryError):
    """A value in params.yaml is missing, of the wrong type or out of range."""


class DataError(DistilleryError):
    """The data source cannot be read or its rows do not fit the declared schema."""


class ModelError(DistilleryError):
    """A teacher or student model cannot be found or built."""


class CacheError(DistilleryError):
    """The teacher-logit cache does not match the teacher, data or tokenizer in use."""
