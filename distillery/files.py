"""Filesystem helpers: all-or-nothing output directories, content hashes, small JSON I/O."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any, Iterator, Union

PathLike = Union[str, Path]
# scratch names: ".<name>.tmp-<pid>" (being written) and ".<name>.old-<pid>" (being replaced); .gitignore'd
SCRATCH = re.compile(r"^\..+\.(tmp|old)-(\d+)$")


OWNER = ".distillery-owner"  # in a scratch directory a multi-process run shares: "<host> <pid>" of its main process


def mark_owner(directory: PathLike) -> None:
    """Name this process the owner of ``directory`` (shared by the processes of a launch, so not named after one
    of them): once it is dead, :func:`sweep_scratch` removes the directory as it removes ``.tmp-<pid>`` ones."""
    import socket

    (Path(directory) / OWNER).write_text(f"{socket.gethostname()} {os.getpid()}", encoding="utf-8")


def _dead_owner(path: Path) -> bool:
    """Was ``path`` marked by :func:`mark_owner` by a process of this machine that no longer runs?"""
    import socket

    try:
        host, pid = (path / OWNER).read_text(encoding="utf-8").split()
        return host == socket.gethostname() and int(pid) != os.getpid() and not _alive(int(pid))
    except (OSError, ValueError):
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def private_temp() -> Path:
    """This user's own directory in the system's temporary one, ``distillery-<uid>``, mode 0700: scratch kept there
    (checkpoints, a registration's files) is not readable by other local users, nor can they take its predictable
    names first. One that is not this user's private directory is refused in one line."""
    uid = os.getuid() if hasattr(os, "getuid") else 0
    path = Path(tempfile.gettempdir()) / f"distillery-{uid}"
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode) or (hasattr(os, "getuid") and (info.st_uid != uid or info.st_mode & 0o077)):
        from distillery.errors import EnvironmentFailure

        raise EnvironmentFailure(f"{path}: not a directory of this user's alone (owner uid {info.st_uid}, mode "
                                 f"{stat.S_IMODE(info.st_mode):o}); remove it, or set TMPDIR to a directory of your own")
    return path


def sweep_scratch(directory: PathLike) -> list[Path]:
    """Remove the scratch files and directories in ``directory`` left by processes that no longer run
    (a SIGKILL skips every clean-up); return what was removed."""
    directory = Path(directory)
    removed = []
    if not directory.is_dir():
        return removed
    uid = os.getuid() if hasattr(os, "getuid") else None
    for path in directory.iterdir():
        match = SCRATCH.match(path.name)
        dead = (match and int(match.group(2)) != os.getpid() and not _alive(int(match.group(2)))) or \
            (not match and path.is_dir() and not path.is_symlink() and _dead_owner(path))
        if dead and (uid is None or path.lstat().st_uid == uid):  # never another user's files (as root, in /tmp)
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _fresh_scratch(near: Path) -> Path:
    """An empty ``.<name>.tmp-<pid>`` beside ``near``, after sweeping what dead processes left there."""
    near.parent.mkdir(parents=True, exist_ok=True)
    sweep_scratch(near.parent)
    path = near.with_name(f".{near.name}.tmp-{os.getpid()}")
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir()
    return path


@contextlib.contextmanager
def scratch_dir(near: PathLike) -> Iterator[str]:
    """A private scratch directory beside ``near`` (``.<name>.tmp-<pid>``), removed when the block ends, by
    an exception or SIGTERM too; one a SIGKILLed process left is swept by the next :func:`sweep_scratch`."""
    path = _fresh_scratch(Path(near))
    try:
        yield str(path)
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(target: PathLike) -> Iterator[Path]:
    """Yield a scratch directory that replaces ``target`` only if the block finishes.

    A stage that fails half-way leaves the previous ``target`` (if any) untouched and no
    half-written files behind.
    """
    target = Path(target)
    from distillery.distributed import is_main

    if not is_main():  # another process of a multi-process run: it writes nothing (distillery/distributed.py)
        with scratch_dir(private_temp() / f"distillery-rank-{target.name}") as throwaway:  # swept if killed
            yield Path(throwaway)
        return
    scratch = _fresh_scratch(target)
    try:
        yield scratch
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    backup = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        target.rename(backup)
    scratch.rename(target)
    shutil.rmtree(backup, ignore_errors=True)


def write_json(path: PathLike, payload: Any) -> None:
    """Write JSON atomically (temp file + rename); only in the main process of a multi-process run."""
    from distillery.distributed import is_main

    if not is_main():
        return
    _write_atomically(Path(path), json.dumps(payload, indent=2, sort_keys=False, default=_json_default) + "\n")


def write_text(path: PathLike, text: str) -> None:
    """Write text atomically; only in the main process of a multi-process run."""
    from distillery.distributed import is_main

    if not is_main():
        return
    _write_atomically(Path(path), text)


def _write_atomically(path: Path, text: str) -> None:
    """``text`` into ``path`` through a temporary file beside it, which a failed write (a full disk) removes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_json(path: PathLike, produced_by: str = "") -> Any:
    """Read JSON; with ``produced_by`` (a stage name) a missing file is a one-line error naming the stage."""
    path = Path(path)
    if produced_by and not path.is_file():
        from distillery.errors import DistilleryError

        raise DistilleryError(f"{path}: not found; run `dvc repro {produced_by}` first")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:  # cut short (a full disk), or edited by hand
        from distillery.errors import DistilleryError

        raise DistilleryError(f"{path}: not valid JSON ({exc}); " + (
            f"run `dvc repro {produced_by}` again" if produced_by else "restore it, or run the stage that writes it")
        ) from None


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def sha256_files(paths: list[PathLike], extra: str = "") -> str:
    """One hash over the names and contents of ``paths`` (in the given order) and ``extra``."""
    digest = hashlib.sha256(extra.encode("utf-8"))
    for path in paths:
        path = Path(path)
        digest.update(path.name.encode("utf-8") + b"\0")
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
