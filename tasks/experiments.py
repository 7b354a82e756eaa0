"""Per-run parameter overrides, recorded as DVC experiments.

A flow run with ``overrides`` does what ``dvc exp run -S key=value ...`` does, split so that each
stage keeps its own Prefect task (retries, timeout, "ran" or "up to date"):

1. ``set_params`` writes the overrides into params.yaml with DVC's own ``-S`` code (the same Hydra
   override grammar; comments survive), after checking the result is a valid params file;
2. the stage tasks run ``dvc repro --single-item <stage>`` as in any run;
3. ``save_experiment`` records the workspace as a named DVC experiment (``dvc exp save``): its
   params, ``dvc.lock`` and metrics, with the outputs in the DVC cache;
4. params.yaml gets its previous text back, so the overrides hold for that run only. Before the
   overrides are written, the previous text is saved to ``.distillery/params.yaml.before-overrides``;
   a run killed before step 4 leaves it there, and the next run puts it back first
   (:func:`recover_params`), so a killed run's overrides never leak into the next one. Every write
   of params.yaml is atomic (a scratch file renamed over it).
5. The workspace gets its previous outputs back, so the next plain run has nothing to redo (no
   second benchmark, no new MLflow run of ``register``). Before the overrides are written,
   ``dvc.lock`` and the stages' uncached outputs (metrics, reports, plots: ``cache: false`` in
   dvc.yaml) are copied to ``.distillery/before-overrides/``; after the experiment is saved (or the
   run failed), they are put back and ``dvc checkout`` brings the cached outputs (models, data) back
   from DVC's cache. A killed run's next run does the same first. ``dvc exp apply <name>`` makes the
   experiment the workspace.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from distillery.paths import OVERRIDES_BACKUP as BACKUP  # params.yaml as it was before a run's overrides
from tasks.stages import BadInput, StageFailed

SNAPSHOT = Path(".distillery") / "before-overrides"  # dvc.lock and the uncached outputs as they were before


def override_args(overrides: dict[str, Any]) -> list[str]:
    """``{"distill.alpha": 0.3}`` -> ``["distill.alpha=0.3"]``, spelled as ``dvc exp run -S`` takes them.

    Strings go through as written (``"0.3"`` is the number 0.3, as on the command line); other
    values are written as JSON, which the override grammar reads (lists, numbers, true/false, null).
    """
    args = []
    for key, value in overrides.items():
        if not isinstance(key, str) or not key or "=" in key:
            raise BadInput(f"overrides: {key!r} is not a params key (write dotted keys, e.g. distill.alpha)")
        text = value if isinstance(value, str) else json.dumps(value)
        # The override grammar resolves ${oc.env:VAR} and ${other.key} (the worker's secrets), also when written
        # with its escapes ($\{...\}): no params value needs a dollar sign, so none is taken
        if "$" in text:
            raise BadInput(f"overrides: {key}: a value holding '$' is not allowed (the override grammar would "
                           "resolve ${...}, an environment variable or another key, instead of taking it as written)")
        args.append(f"{key}={text}")
    return args


def flatten_overrides(overrides: dict[str, Any]) -> dict[str, Any]:
    """``{"distill": {"alpha": 0.1}}`` -> ``{"distill.alpha": 0.1}``: a nested mapping sets the keys it names. Given
    to DVC as it was, it failed in the override grammar ("no viable alternative at input '{"alpha"'"), and a mapping
    the grammar took would have replaced the whole section, every key it left out lost. An empty mapping stays one."""
    flat: dict[str, Any] = {}
    for key, value in overrides.items():
        if isinstance(value, dict) and value and isinstance(key, str):
            flat.update({f"{key}.{inner}": leaf for inner, leaf in flatten_overrides(value).items()})
        else:
            flat[key] = value
    return flat


def check_allowed(overrides: dict[str, Any], params_path: Path) -> None:
    """Refuse, in one line, an override key that ``schedule.allowed_overrides`` in params.yaml does not allow."""
    from distillery.config import load_schedule
    from distillery.errors import ConfigError

    try:
        schedule = load_schedule(params_path)
    except ConfigError as exc:
        raise BadInput(str(exc)) from None
    for key in overrides:
        if isinstance(key, str) and not schedule.override_allowed(key):
            raise BadInput(f"overrides: {key} may not be set by a flow run; schedule.allowed_overrides in "
                           f"params.yaml allows {', '.join(schedule.allowed_overrides) or 'nothing'} "
                           "(change it there, in a reviewed commit)")


def check_paths(overrides: dict[str, Any]) -> None:
    """Refuse an override value that names a place outside the project: an absolute path, a path leaving the project
    (``..``), a home path (``~``), or ``hub:`` naming a local directory (datasets reads one as data). A flow run that
    may set distill.transfer_set.source could otherwise read any file the worker can (a security audit). Symbolic
    links the project itself holds are its operator's choice: checked lexically, not resolved."""
    import posixpath

    def values(value):
        if isinstance(value, (list, tuple)):
            for item in value:
                yield from values(item)
        elif isinstance(value, dict):
            for item in value.values():
                yield from values(item)
        elif isinstance(value, str):
            yield value

    for key, value in overrides.items():
        for text in values(value):
            place = text[len("hub:"):] if text.startswith("hub:") else text
            normal = posixpath.normpath(place.replace("\\", "/")) if place else place
            if place.startswith(("/", "~", "\\")) or re.match(r"[A-Za-z]:[\\/]", place) or \
                    normal == ".." or normal.startswith("../") or (text.startswith("hub:") and place.startswith(".")):
                raise BadInput(f"overrides: {key} = {text!r} names a place outside the project; a flow run may name "
                               "files inside it (relative paths) and Hub ids, nothing else")


def _written(overrides: dict[str, Any], path: Path) -> dict[str, Any]:
    """Each override key's value in the params file at ``path`` (written by DVC's override grammar)."""
    from distillery.config.loading import safe_load

    document, written = safe_load(path.read_text(encoding="utf-8")) or {}, {}
    for key in overrides:
        node = document
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        written[key] = node
    return written


def check_known(overrides: dict[str, Any], params_text: str) -> None:
    """Refuse, in one line naming the keys there are, an override of a key params.yaml does not have."""
    from distillery.config.loading import safe_load

    document = safe_load(params_text) or {}
    for key in overrides:
        node, path = document, []
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                where = ".".join(path) or "the top level"
                has = f"has: {', '.join(map(str, node))}" if isinstance(node, dict) else "is a value, not a section"
                raise BadInput(f"overrides: {key} is not a key of params.yaml; {where} {has}")
            node, path = node[part], [*path, part]


@task(name="set_params", cache_policy=NO_CACHE)
def set_params(project_dir: str, overrides: dict[str, Any]) -> str:
    """Apply ``overrides`` to params.yaml as ``dvc exp run -S`` would; return the file's previous text."""
    from dvc.exceptions import InvalidArgumentError
    from dvc.utils.hydra import apply_overrides

    from distillery.config import load_params
    from distillery.errors import ConfigError

    from distillery.files import write_text

    params_path = Path(project_dir) / "params.yaml"
    original = params_path.read_text(encoding="utf-8")
    overrides = flatten_overrides(overrides)
    override_args(overrides)  # the keys are keys
    check_allowed(overrides, params_path)  # and ones a flow run may set (schedule.allowed_overrides)
    check_known(overrides, original)  # and keys params.yaml has (DVC's message would say to add one with +)
    check_paths(overrides)  # and no file outside the project, said before the grammar's own errors (a "~")
    scratch = params_path.with_name(f".params-overrides.tmp-{os.getpid()}.yaml")  # same suffix: same format
    scratch.write_text(original, encoding="utf-8")
    try:
        apply_overrides(scratch, override_args(overrides))
        load_params(scratch)
        check_paths(_written(overrides, scratch))  # again as DVC's grammar read them: a quoted 'hub:/abs' passed
    except (InvalidArgumentError, ConfigError) as exc:
        scratch.unlink(missing_ok=True)
        cause = f": {exc.__cause__}" if exc.__cause__ else ""
        raise BadInput(f"overrides {overrides}: {str(exc).replace(str(scratch), 'params.yaml')}{cause}"
                       .replace("\n", " ")) from None
    except BadInput:
        scratch.unlink(missing_ok=True)
        raise
    snapshot_workspace(project_dir)  # first the ways back (outputs, then params), then the change
    write_text(Path(project_dir) / BACKUP, original)
    os.replace(scratch, params_path)
    return original


def uncached_outputs(project_dir: str) -> list[str]:
    """The outputs, metrics and plots that dvc.yaml keeps out of DVC's cache (``cache: false``)."""
    from distillery.tracked import load_dvc_yaml

    spec = load_dvc_yaml(Path(project_dir) / "dvc.yaml")
    paths = []
    for stage in (spec.get("stages") or {}).values():
        for kind in ("outs", "metrics", "plots"):
            for entry in stage.get(kind) or []:
                if isinstance(entry, dict):
                    paths += [path for path, options in entry.items() if (options or {}).get("cache", True) is False]
    return paths


def snapshot_workspace(project_dir: str) -> None:
    """Copy ``dvc.lock`` and the uncached outputs to ``.distillery/before-overrides/`` (atomically);
    nothing to keep when no stage has run yet."""
    from distillery.files import atomic_dir

    root = Path(project_dir)
    if not (root / "dvc.lock").is_file():
        return
    with atomic_dir(root / SNAPSHOT) as scratch:
        shutil.copy2(root / "dvc.lock", scratch / "dvc.lock")
        for relative in uncached_outputs(project_dir):
            source, copy = root / relative, scratch / "outs" / relative
            copy.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, copy)
            elif source.is_file():
                shutil.copy2(source, copy)


def restore_workspace(project_dir: str) -> None:
    """Put back what :func:`snapshot_workspace` kept, and the cached outputs of that ``dvc.lock`` from
    DVC's cache; then drop the snapshot. Safe to repeat after a kill at any point (the params backup
    is removed only after this returns)."""
    from distillery.files import write_text

    root = Path(project_dir)
    snapshot = root / SNAPSHOT
    if not (snapshot / "dvc.lock").is_file():
        return
    for relative in uncached_outputs(project_dir):
        kept, target = snapshot / "outs" / relative, root / relative
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        if kept.is_dir():
            shutil.copytree(kept, target)
        elif kept.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(kept, target)
    write_text(root / "dvc.lock", (snapshot / "dvc.lock").read_text(encoding="utf-8"))
    env = dict(os.environ, DVC_NO_ANALYTICS="1")
    proc = subprocess.run([sys.executable, "-m", "dvc", "checkout", "--force"], cwd=project_dir, env=env,
                          capture_output=True, text=True, timeout=1800)
    shutil.rmtree(snapshot)
    if proc.returncode != 0:  # never blocks the next runs: DVC sees the mismatched outputs as stale
        print(f"warning: dvc checkout, restoring the outputs from before the overrides, failed; the next run "
              f"re-runs the stages whose outputs differ: {(proc.stderr or proc.stdout).strip()}", file=sys.stderr)


def restore_params(project_dir: str, original: str) -> None:
    """params.yaml as it was before the overrides (atomically), then drop the backup."""
    from distillery.files import write_text

    write_text(Path(project_dir) / "params.yaml", original)
    restore_workspace(project_dir)
    (Path(project_dir) / BACKUP).unlink(missing_ok=True)  # last: until here a killed run is redone by the next


def recover_params(project_dir: str) -> bool:
    """Undo the overrides of a run that was killed before it could restore params.yaml; True if it did.

    Also removes the scratch copy (``.params-overrides.tmp-<pid>.yaml``) of a run killed inside
    :func:`set_params`."""
    from distillery.files import _alive

    for scratch in Path(project_dir).glob(".params-overrides.tmp-*.yaml"):
        pid = scratch.name[len(".params-overrides.tmp-"):-len(".yaml")]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            scratch.unlink(missing_ok=True)
    backup = Path(project_dir) / BACKUP
    if not backup.is_file():
        # a snapshot without the params backup: killed before params.yaml was changed
        shutil.rmtree(Path(project_dir) / SNAPSHOT, ignore_errors=True)
        return False
    restore_params(project_dir, backup.read_text(encoding="utf-8"))
    return True


@task(name="save_experiment", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=5)
def save_experiment(project_dir: str, name: str) -> str:
    """``dvc exp save --name <name> --force``: the run's params, lock file and metrics as an experiment."""
    env = dict(os.environ, DVC_NO_ANALYTICS="1")
    proc = subprocess.run([sys.executable, "-m", "dvc", "exp", "save", "--name", name, "--force"],
                          cwd=project_dir, env=env, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise StageFailed(f"dvc exp save failed: {(proc.stderr or proc.stdout).strip()}")
    return name
