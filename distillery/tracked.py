"""Inputs DVC must see. A stage run by DVC may read a local file only if it lies under one of that
stage's ``deps`` in dvc.yaml: otherwise DVC hashes nothing of it, a changed file leaves the stage "up
to date", and the new data is never trained on. Bundled data and models (versioned with their pip
package) and Hub ids are not local files and are not checked.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Union

import yaml

from distillery.errors import ConfigError

DVC_FILE = "dvc.yaml"


def load_dvc_yaml(path: Path) -> dict:
    """A dvc.yaml as data: safe YAML, through libyaml where PyYAML has it (the project's 26 KB in 2 ms instead of
    28; a stage reads it four times, the test suite about 600)."""
    return yaml.load(path.read_text(encoding="utf-8"),  # noqa: S506 - a safe loader
                     Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) or {}


def local_path(value: Optional[str]) -> Optional[Path]:
    """``value`` as a local path if it names one (not ``bundled:``, ``hub:``, a keyword or a Hub id)."""
    if not value or value.startswith(("bundled:", "hub:")) or value in ("none", "remainder"):
        return None
    path = Path(value).expanduser()
    return path if path.exists() or value.startswith((".", "/", "~")) else None


def stage_deps(stage: str, root: Union[str, Path], resolve: bool = True) -> Optional[list[Path]]:
    """The ``deps`` of ``stage`` in ``root``/dvc.yaml, absolute (symbolic links resolved, unless ``resolve`` is
    false), or None when there is no such stage."""
    path = Path(root) / DVC_FILE
    if not path.is_file():
        return None
    spec = load_dvc_yaml(path).get("stages", {}).get(stage)
    if spec is None:
        return None
    return [(Path(root) / dep).resolve() if resolve else Path(os.path.abspath(Path(root) / dep))
            for dep in spec.get("deps", [])]


USER_INPUT_DIRS = ("data/raw", "models/pretrained")  # dvc.yaml deps that hold a user's own data and models


def require_tracked(stage: str, inputs: dict[str, Optional[str]], root: Union[str, Path] = ".") -> None:
    """Refuse, in one line, a local input of ``stage`` that no dvc.yaml dep of the stage covers."""
    deps = stage_deps(stage, root)
    if deps is None:
        return
    as_written = stage_deps(stage, root, resolve=False)
    for key, value in inputs.items():
        path = local_path(value)
        if path is None or not (Path(root) / path).exists():  # a missing file: its reader says "not found"
            continue
        resolved, given = (Path(root) / path).resolve(), Path(root) / path
        linked = _linked_file(given, as_written)
        if linked is not None and not linked.is_file():
            raise ConfigError(f"{key}: {value} goes through {linked}, a symbolic link to a directory, whose files DVC "
                              f"does not hash, so it would not notice when they change; copy the directory in (or "
                              f"link its files one by one)")
        # where it really is, or a link to a file placed in a dep (DVC follows a link to a file)
        if not any(resolved == dep or dep in resolved.parents for dep in deps) and linked is None:
            # the stage's own place for a user's files: data/raw/ for prepare, models/pretrained/ for the models
            home = next((name for name in USER_INPUT_DIRS if (Path(root) / name).resolve() in deps), "data/raw")
            raise ConfigError(f"{key}: {value} is not under any input of the {stage} stage in {DVC_FILE}, so DVC "
                              f"would not notice when it changes; move it under {home}/ (or add it to the deps "
                              f"of {stage} in {DVC_FILE})")


def _linked_file(given: Path, deps: list[Path]) -> Optional[Path]:
    """The symbolic link on the way from a dep (as written) down to ``given``, if there is one: the link itself
    when it is the last part (DVC hashes the file it points to), or the first linked directory on the way (whose
    files DVC does not hash); None when ``given`` lies under no dep as written, goes up with "..", or has no link."""
    lexical = Path(os.path.abspath(given))
    dep = next((d for d in deps if lexical == d or d in lexical.parents), None)
    if dep is None or ".." in given.parts:
        return None
    step = dep
    for part in lexical.relative_to(dep).parts:
        step = step / part
        if step.is_symlink():
            return step
    return None


UPSTREAM_OF_DISTILL = ("prepare", "train_teacher", "teacher_logits")
_MISSING = object()


def _dotted(params: dict, key: str):
    node = params
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def require_upstream_params(command: str, root: Union[str, Path] = ".", params_file: str = "params.yaml",
                            stages: tuple[str, ...] = UPSTREAM_OF_DISTILL) -> None:
    """Refuse ``command`` (kd_gain, the sweep: they train students outside ``dvc repro``, on the prepared data,
    teacher and cached logits on disk) when params.yaml no longer holds the values dvc.lock recorded for the
    stages that made those inputs: the report would name the new settings while the students learnt from the
    old outputs (a ``distill.transfer_set`` changed but not re-prepared, say). A project without dvc.lock, or a
    stage it has no entry for (run by hand), has nothing recorded to compare."""
    from distillery.run_records import dvc_lock, load_yaml12  # the lock reader register's provenance uses

    recorded_stages = dvc_lock(Path(root))
    if not recorded_stages:
        return
    # both files read as DVC reads them: dvc.lock records params.yaml's 5.0e-5 as 5e-05
    current = load_yaml12((Path(root) / params_file).read_text(encoding="utf-8")) or {}
    for stage in stages:
        recorded = (recorded_stages.get(stage) or {}).get("params", {}).get(params_file, {})
        changed = [key for key, value in recorded.items() if _dotted(current, key) != value]
        if changed:
            raise ConfigError(f"{params_file}: {', '.join(changed)} changed since the {stage} stage last ran "
                              f"(dvc.lock), so {command} would train on outputs made with the old values; run "
                              f"`dvc repro teacher_logits` first (`dvc commit` if you re-ran the stages by hand)")
