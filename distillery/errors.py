"""Errors the CLI prints as one line. Bad input exits with code 2 (never retried); a transient failure
(``TransientError``) exits with code 3, which the Prefect flow retries; a broken environment
(``EnvironmentFailure``: a full disk, a corrupt store) exits with code 4, never retried. An unexpected
exception prints its traceback and exits with code 1, never retried either (see ``distillery.cli.known_cause``
for the few well-known causes that get a one-line error instead)."""
from __future__ import annotations


class DistilleryError(Exception):
    """Base class for errors that come from the user's configuration, data or models."""

    exit_code = 2
    label = "error"


class ConfigError(DistilleryError):
    """A value in params.yaml is missing, of the wrong type or out of range."""


class DataError(DistilleryError):
    """The data source cannot be read or its rows do not fit the declared schema."""


class ModelError(DistilleryError):
    """A teacher or student model cannot be found or built."""


class CacheError(DistilleryError):
    """The teacher-logit cache does not match the teacher, data or tokenizer in use."""


class RegistryError(DistilleryError):
    """A registry request that cannot be met: an unknown version, no previous champion to roll back to."""


class TransientError(DistilleryError):
    """A failure that may pass on a retry: the CLI exits with code 3, and the Prefect flow retries it."""

    exit_code = 3
    label = "transient error"


class TrackingUnavailable(TransientError):
    """The MLflow tracking server does not answer."""


class LockTimeout(TransientError):
    """Another registration of the same model holds the registry lock, or another pipeline run holds the
    repository lock, for too long."""


class EnvironmentFailure(DistilleryError):
    """The machine or a store is broken (a full disk, a corrupt database): a retry would fail the same way,
    someone has to fix it. The CLI exits with code 4, which the Prefect flow does not retry."""

    exit_code = 4
