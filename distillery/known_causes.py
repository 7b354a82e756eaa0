"""One-line errors for well-known causes of an unexpected exception (a full disk, a size limit, a read-only or
unusable directory, a damaged or full SQLite store, a refused connection): :func:`known_cause`, which
``python -m distillery`` asks before it prints a traceback."""
from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import Optional

from distillery.errors import DistilleryError, EnvironmentFailure, TransientError


def _causes(exc: BaseException, context: bool = True) -> list[BaseException]:
    """``exc`` and what it wraps (``raise ... from``, SQLAlchemy's ``orig`` and, with ``context``, the exception
    being handled when it was raised)."""
    seen: list[BaseException] = []
    todo = [exc]
    while todo and len(seen) < 20:
        item = todo.pop(0)
        if item is None or any(item is s for s in seen):
            continue
        seen.append(item)
        todo += [item.__cause__, item.__context__ if context else None, getattr(item, "orig", None)]
    return [item for item in seen if isinstance(item, BaseException)]


def _store() -> str:
    from distillery.tracking import redact_uri, tracking_uri

    return redact_uri(tracking_uri(Path.cwd()))


def known_cause(exc: BaseException) -> Optional[DistilleryError]:
    """A one-line error of the right class for a few well-known causes of an unexpected exception, else None.

    - no space left on device (``OSError`` ENOSPC or EDQUOT, or a library's error saying so), a read-only file
      system, a file-size limit, a permission refused or a path through a file (EROFS, EFBIG, EACCES, EPERM,
      ENOTDIR): ``EnvironmentFailure`` naming the path, or the fullest place written (exit 4, not retried);
    - a SQLite file that is not a database, is corrupt or full, or cannot write (disk I/O error):
      ``EnvironmentFailure`` naming the store (exit 4);
    - any other failure while a place the stages write has under ``LOW_SPACE_MB`` free: ``EnvironmentFailure``
      saying so, with the failure's own message (a library that masks the full disk);
    - SQLite "database is locked" and a refused or timed-out connection (the tracking server): ``TransientError``
      (exit 3, retried);
    - a tracking URI of a scheme MLflow has no store for (``htp://``): ``ConfigError`` naming it (exit 2);
    - a database as the tracking URI: a refused login or a server's ``mlflow-artifacts`` (``ConfigError``), or no
      answer (``TransientError``): :func:`_database_store`.
    """
    import sqlite3

    from distillery.tracking import redact_uri

    if type(exc).__name__ in ("UnsupportedModelRegistryStoreURIException", "UnsupportedTrackingStoreURIException"):
        from distillery.errors import ConfigError

        uri = os.environ.get("MLFLOW_TRACKING_URI", "")
        return ConfigError(f"MLFLOW_TRACKING_URI {redact_uri(uri)!r} names no store MLflow knows: use http:// or "
                           "https:// (a tracking server), sqlite:/// or postgresql:// (a database), or unset it for "
                           "the project's own store")

    causes = _causes(exc)
    texts = " | ".join(f"{type(c).__name__}: {c}" for c in causes)
    database = _database_store(causes, texts)
    if database is not None:
        return database
    for cause in causes:
        full = (isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT)) or (
            type(cause).__name__ == "SafetensorError" and "No space left on device" in str(cause))  # Rust's error
        if full:
            path = getattr(cause, "filename", None) or getattr(cause, "filename2", None)
            where = f"writing {path}" if path else "writing under {} ({:.0f} MB free)".format(*_fullest())
            what = "disk quota exceeded" if getattr(cause, "errno", None) == errno.EDQUOT else "no space left on device"
            return EnvironmentFailure(f"{what} {where}; free some space and run the stage again (nothing was "
                                      "retried)")
    # raised by the failure itself or wrapping it (not an unrelated bug raised while handling one), with a path to
    # name (os.kill's EPERM has none: that stays a traceback)
    own = _causes(exc, context=False)
    for cause in own:
        if isinstance(cause, OSError) and cause.errno in (errno.EROFS, errno.EFBIG, errno.EACCES, errno.EPERM,
                                                          errno.ENOTDIR) and (cause.filename or cause.filename2):
            path = cause.filename or cause.filename2
            why = {errno.EROFS: "cannot write {}: the file system is read-only",
                   errno.EFBIG: "cannot write {}: the file grew past this process's size limit (ulimit -f)",
                   errno.ENOTDIR: "cannot use {}: a part of that path is a file, not a directory" + (
                       f" (HOME is {os.environ['HOME']})" if os.environ.get("HOME") and
                       str(path).startswith(os.environ["HOME"]) else "")}.get(
                cause.errno, "cannot use {}: permission denied").format(path)
            return EnvironmentFailure(f"{why}; fix it and run the stage again (nothing was retried)")
    # a size limit met by a library that names no file (pyarrow's OSError, safetensors' Rust error)
    if any(isinstance(c, OSError) and c.errno == errno.EFBIG or "File too large (os error 27)" in str(c) for c in own):
        return EnvironmentFailure(f"a file written under {Path.cwd()} grew past this process's size limit (ulimit -f "
                                  f"{_ulimit()}); raise the limit and run the stage again (nothing was retried)")
    if any("disk I/O error" in str(c) and (isinstance(c, sqlite3.Error) or "sqlite" in type(c).__module__ + str(c))
           for c in own):
        return EnvironmentFailure(f"the SQLite store {_store()} could not write (disk I/O error): its disk may be full "
                                  "or a size limit (ulimit -f) reached; fix it and run the stage again (nothing was "
                                  "retried)")
    if "database or disk is full" in texts:
        return EnvironmentFailure(f"the SQLite store {_store()} cannot grow (database or disk is full); free some "
                                  "space and run the stage again (nothing was retried)")
    for marker in ("file is not a database", "database disk image is malformed"):
        if marker in texts and any(isinstance(c, sqlite3.DatabaseError) or "sqlite" in type(c).__module__ + str(c)
                                   for c in causes):
            return EnvironmentFailure(f"the SQLite store {_store()} is unreadable ({marker}); restore it from a "
                                      "backup or point MLFLOW_TRACKING_URI at another store")
    if "database is locked" in texts:
        return TransientError(f"the SQLite store {_store()} is locked by another process (database is locked); "
                              "run the stage again")
    import socket

    for cause in causes:
        if isinstance(cause, (ConnectionError, socket.timeout, TimeoutError)) or type(cause).__name__ in (
                "ConnectionError", "ConnectTimeout", "ReadTimeout", "NewConnectionError", "MaxRetryError"):
            return TransientError(f"a connection failed ({type(cause).__name__}: "
                                  f"{redact_uri(str(cause)).splitlines()[0][:200] if str(cause) else 'no detail'}); "
                                  f"tracking store {_store()}")
    place, free = _fullest()
    if free < LOW_SPACE_MB:  # a library that masks the full disk (ONNX Runtime reads back its own cut-short file)
        said = redact_uri(str(exc)).splitlines()[0][:200] if str(exc) else "no detail"
        return EnvironmentFailure(f"{type(exc).__name__} ({said}) while {place} has {free:.1f} MB free: the disk is "
                                  "full, most likely; free some space and run the stage again (nothing was retried)")
    return None


LOW_SPACE_MB = 16.0  # under this much free space, any failure is most likely the disk's


def _database_store(causes: list[BaseException], texts: str) -> Optional[DistilleryError]:
    """With a database as the tracking URI (``postgresql://``, ``mysql://``, ``mssql://``): the tracking server's
    database given to a client whose artifacts that server serves (``mlflow-artifacts:``), a login refused
    (``ConfigError``, exit 2) or a database not answering (``TransientError``, exit 3). Else None."""
    import re

    from distillery.errors import ConfigError
    from distillery.tracking import redact_uri

    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    if not re.match(r"(?i)(postgresql|postgres|mysql|mssql)(\+\w+)?://", uri):
        return None
    shown = redact_uri(uri)
    if "When an mlflow-artifacts URI was supplied" in texts:
        return ConfigError(f"MLFLOW_TRACKING_URI {shown!r} is a tracking server's database, and the experiment's "
                           "artifacts are served by that server (mlflow-artifacts:): set MLFLOW_TRACKING_URI to the "
                           "server's own http(s):// address (README: Running it for a team)")
    for cause in causes:
        if type(cause).__name__ == "OperationalError" and type(cause).__module__.startswith("sqlalchemy"):
            said = " ".join(redact_uri(str(getattr(cause, "orig", None) or cause)).split())[:200]
            from distillery.advisory_lock import REFUSALS  # PostgreSQL's answers that are settings to fix

            answered = [marker for marker, _ in REFUSALS] + [  # and MySQL's, SQL Server's, SSL's
                "authentication failed", "access denied", "login failed", "unknown database", "ssl is required",
                "sslmode", "does not support ssl"]
            if any(marker in said.lower() for marker in answered):  # it answered: a setting, not an outage
                password = " (or PGPASSWORD)" if uri.lower().startswith("postgres") else ""
                return ConfigError(f"the tracking database {shown} refused the connection ({said}): fix the role, "
                                   f"password or database in MLFLOW_TRACKING_URI{password}, or point it at the "
                                   "tracking server")
            return TransientError(f"the tracking database {shown} did not answer ({said}); run the stage again "
                                  "when it does")
    return None


def _fullest() -> tuple[str, float]:
    """(directory, MB free) of the fullest of the places the stages write: the project, the scratch directory, a
    local MLflow store and the Hugging Face cache. Never raises: it is asked while an error is being reported."""
    places = []
    try:
        from distillery.tracking import sqlite_path, tracking_uri

        places += [Path.cwd(), Path(os.environ.get("TMPDIR") or "/tmp")]
        places.append(Path(os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface"))
        store = sqlite_path(tracking_uri(Path.cwd()))
        if store is not None:
            places.append(store.parent)
    except Exception:  # noqa: BLE001 - an unusual project path or HOME: the project alone
        pass
    free = {}
    for place in places:
        try:
            free[str(place)] = shutil.disk_usage(place).free / 1e6
        except Exception:  # noqa: BLE001 - a place not made yet, or not ours to read
            continue
    return min(free.items(), key=lambda item: item[1]) if free else (".", float("inf"))


def _ulimit() -> str:
    import resource

    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    return "unlimited" if limit == resource.RLIM_INFINITY else f"{limit // 1024} KB"
