"""One registration at a time per model name and tracking store: an OS file lock, held for the whole
register-and-gate step, so two pipelines never interleave their alias moves.

The lock file lives in ``$DISTILLERY_LOCK_DIR`` (default ``~/.cache/distillery/locks``), named by a
hash of the tracking URI and model name, so every project on this machine that registers the same
model on the same store shares it. Pipelines on several machines need one scheduler (the Prefect
deployment's concurrency limit) or a shared lock directory.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Iterator

from distillery.errors import LockTimeout


def lock_path(uri: str, name: str) -> Path:
    base = Path(os.environ.get("DISTILLERY_LOCK_DIR") or Path.home() / ".cache" / "distillery" / "locks")
    digest = hashlib.sha256(f"{uri.rstrip('/')}\n{name}".encode()).hexdigest()[:16]
    return base / f"register-{name}-{digest}.lock"


@contextlib.contextmanager
def registry_lock(uri: str, name: str, timeout_s: float, poll_s: float = 0.5) -> Iterator[Path]:
    """Hold the registration lock for ``name`` on ``uri``; wait at most ``timeout_s`` for it."""
    path = lock_path(uri, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+", encoding="utf-8") as handle:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    handle.seek(0)
                    holder = handle.read().strip() or "unknown"
                    raise LockTimeout(f"another registration of {name!r} holds {path} ({holder}); waited "
                                      f"{timeout_s:g}s (register.lock_timeout_s)") from None
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
