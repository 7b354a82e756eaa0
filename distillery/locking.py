"""OS file locks (``flock``): released by the kernel when their holder dies, even by SIGKILL.

- ``registry_lock``: one registration at a time per model name and tracking store, held for the
  whole register-and-gate step, so two pipelines never interleave their alias moves. The lock file
  lives in ``$DISTILLERY_LOCK_DIR`` (default ``~/.cache/distillery/locks``), named by a hash of the
  tracking URI and model name, so every project on this machine that registers the same model on
  the same store shares it. Registrations from several machines set ``register.lock`` to a PostgreSQL
  URL instead, and take its advisory lock (``distillery.advisory_lock``).
- ``repository_lock``: one pipeline per repository. Whoever runs stages takes
  ``.dvc/tmp/distillery-flow.lock``: an orchestrator (the Prefect flow) for its whole run, and
  ``python -m distillery <stage>`` (which ``dvc repro`` runs) for its stage. The holder puts a
  random token in the lock file and in ``$DISTILLERY_REPO_LOCK_TOKEN``, which its child processes
  inherit: a stage started by the holder's own ``dvc repro`` sees its token and goes through; any
  other stage waits (bounded) and then refuses, so a stage started by hand never runs against a
  flow run's overridden params.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import socket
import sys
import time
import uuid
from pathlib import Path
from typing import Callable, Iterator, Optional

from distillery.errors import LockTimeout

REPO_LOCK = Path(".dvc") / "tmp" / "distillery-flow.lock"  # DVC's own tmp dir: git-ignored, per repository
TOKEN_ENV = "DISTILLERY_REPO_LOCK_TOKEN"  # the holder's token; set for the holder's child processes
WAIT_ENV = "DISTILLERY_REPO_LOCK_WAIT_SECONDS"  # how long a stage waits for another holder (default 10)
DEFAULT_STAGE_WAIT_S = 10.0


def lock_path(uri: str, name: str) -> Path:
    base = Path(os.environ.get("DISTILLERY_LOCK_DIR") or Path.home() / ".cache" / "distillery" / "locks")
    digest = hashlib.sha256(f"{uri.rstrip('/')}\n{name}".encode()).hexdigest()[:16]
    return base / f"register-{name}-{digest}.lock"


@contextlib.contextmanager
def registry_lock(uri: str, name: str, timeout_s: float, poll_s: float = 0.5, lock: str = "file") -> Iterator:
    """Hold the registration lock for ``name`` on ``uri``; wait at most ``timeout_s`` for it.

    ``lock`` is ``register.lock``: ``file`` (this module's OS file lock), or a ``postgresql://`` URL, whose
    advisory lock (``distillery.advisory_lock``) serialises registrations from every machine that reaches it."""
    if lock != "file":
        from distillery.advisory_lock import advisory_lock

        with advisory_lock(lock, name, timeout_s, poll_s):
            yield lock
        return
    path = lock_path(uri, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+", encoding="utf-8") as handle:
        deadline, waited = time.monotonic() + timeout_s, False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                handle.seek(0)
                holder = handle.read().strip() or "unknown"
                if time.monotonic() >= deadline:
                    raise LockTimeout(f"another registration of {name!r} holds {path} ({_readable(holder)}); waited "
                                      f"{timeout_s:g}s (register.lock_timeout_s)") from None
                if not waited:
                    waited = say_waiting(name, f"{path}: {_readable(holder)}", timeout_s)
                time.sleep(poll_s)
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}))
            handle.flush()
            yield path
        finally:
            handle.seek(0)
            handle.truncate()
            handle.flush()
            fcntl.flock(handle, fcntl.LOCK_UN)


def say_waiting(name: str, holder: str, timeout_s: float) -> bool:
    """The line a registration prints once when another holds its lock (it may wait a while, silent otherwise)."""
    print(f"register: waiting up to {timeout_s:g}s (register.lock_timeout_s) for another registration of {name!r} "
          f"({holder})", file=sys.stderr, flush=True)
    return True


def _readable(holder: str) -> str:
    """A registration lock file's holder record ({"pid", "host", "since"}) as words; anything else as it is."""
    try:
        record = json.loads(holder)
    except ValueError:
        return holder
    return _describe({"what": "a registration", **record}) if isinstance(record, dict) else holder


def _holder(handle) -> dict:
    handle.seek(0)
    try:
        return json.loads(handle.read() or "{}")
    except ValueError:
        return {}


def _describe(holder: dict) -> str:
    if not holder:
        return "holder unknown"
    since = time.strftime("%H:%M:%S", time.localtime(holder.get("since", 0)))
    return f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}, {holder.get('what', 'a run')}, since {since}"


@contextlib.contextmanager
def repository_lock(project_dir, what: str, timeout_s: Optional[float] = None, poll_s: float = 0.5,
                    on_wait: Optional[Callable[[Path, str], None]] = None) -> Iterator[Optional[str]]:
    """Hold the repository's pipeline lock; yield the token the holder's children inherit.

    ``timeout_s=None`` waits as long as it takes; otherwise :class:`LockTimeout` (a transient error, CLI
    exit code 3) after ``timeout_s``. ``on_wait(path, holder)`` is called once when the lock is taken.
    A process whose ``$DISTILLERY_REPO_LOCK_TOKEN`` is the holder's token was started by the holder
    (its ``dvc repro``): it goes through without the lock, and yields None.
    """
    path = Path(project_dir) / REPO_LOCK
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+", encoding="utf-8") as handle:  # not inherited by children (close-on-exec)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        waited = False
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = _holder(handle)
                mine = os.environ.get(TOKEN_ENV)
                if mine and holder.get("token") == mine and holder.get("pid") != os.getpid():
                    yield None  # the holder's own child: the holder keeps the lock
                    return
                if deadline is not None and time.monotonic() >= deadline:
                    raise LockTimeout(f"another pipeline run holds {path} ({_describe(holder)}); waited "
                                      f"{timeout_s:g}s ({WAIT_ENV}); run it again when that run ends") from None
                if not waited and on_wait is not None:
                    on_wait(path, _describe(holder))
                waited = True
                time.sleep(poll_s)
        token = uuid.uuid4().hex
        previous = os.environ.get(TOKEN_ENV)
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time(),
                                     "what": what, "token": token}))
            handle.flush()
            os.environ[TOKEN_ENV] = token
            yield token
        finally:
            if previous is None:
                os.environ.pop(TOKEN_ENV, None)
            else:
                os.environ[TOKEN_ENV] = previous
            handle.seek(0)
            handle.truncate()
            handle.flush()
            fcntl.flock(handle, fcntl.LOCK_UN)


def stage_lock_wait() -> float:
    """Seconds a stage started by hand waits for a running pipeline: ``$DISTILLERY_REPO_LOCK_WAIT_SECONDS``."""
    try:
        return max(0.0, float(os.environ.get(WAIT_ENV, DEFAULT_STAGE_WAIT_S)))
    except ValueError:
        return DEFAULT_STAGE_WAIT_S


def refuse_leftover_overrides(stage: str) -> None:
    """A flow run with overrides writes them into params.yaml and puts the file back when it ends; one that was
    killed first leaves them, with the file's earlier text beside it. A stage run then (`dvc repro`) trained and
    registered under the dead run's overrides, and promoted the result: refused, in one line, naming the fix."""
    from distillery.errors import ConfigError
    from distillery.paths import OVERRIDES_BACKUP

    if OVERRIDES_BACKUP.is_file():
        raise ConfigError(f"params.yaml still holds the overrides of a flow run that was stopped before it could put "
                          f"the file back ({OVERRIDES_BACKUP} is its earlier text), so {stage} would run with them: "
                          "`python -m flows.recover` puts back params.yaml and the outputs that run replaced (the next "
                          "flow run does it first too); then run again")
