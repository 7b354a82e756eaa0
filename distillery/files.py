"""Filesystem helpers: all-or-nothing output directories, content hashes, small JSON I/O."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterator, Union

PathLike = Union[str, Path]


@contextlib.contextmanager
def atomic_dir(target: PathLike) -> Iterator[Path]:
    """Yield a scratch directory that replaces ``target`` only if the block finishes.

    A stage that fails half-way leaves the previous ``target`` (if any) untouched and no
    half-written files behind.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
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
    """Write JSON atomically (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=False, default=_json_default) + "\n", encoding="utf-8")
    tmp.replace(path)


def write_text(path: PathLike, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def read_json(path: PathLike, produced_by: str = "") -> Any:
    """Read JSON; with ``produced_by`` (a stage name) a missing file is a one-line error naming the stage."""
    path = Path(path)
    if produced_by and not path.is_file():
        from distillery.errors import DistilleryError

        raise DistilleryError(f"{path}: not found; run `dvc repro {produced_by}` first")
    return json.loads(path.read_text(encoding="utf-8"))


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
