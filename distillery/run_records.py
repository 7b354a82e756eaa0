"""What a pipeline run records in MLflow besides params and metrics: git and DVC provenance, which
stages ran or were cached, numeric leaves of the reports, Trainer curves, and the model card."""
from __future__ import annotations

import hashlib
import math
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Optional

import pandas as pd

from distillery.errors import DataError
from distillery.files import sha256_files
from distillery.paths import CURVES_DIR, ONNX_DIR, PREPARED_DIR, REPORTS_DIR
from distillery.tracking import redact_uri

def _git(root: Path, *args: str) -> Optional[str]:
    try:
        proc = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def git_tags(root: Path) -> dict[str, str]:
    commit = _git(root, "rev-parse", "HEAD")
    if commit is None:
        return {"git.commit": "none"}
    # Code and params only: the pipeline itself rewrites dvc.lock and reports/ before this runs.
    status = _git(root, "status", "--porcelain", "--untracked-files=no", "--", ".", ":!dvc.lock", ":!reports")
    return {"git.commit": commit, "git.dirty": str(bool(status)).lower(), "mlflow.source.git.commit": commit}


def load_yaml12(text: str):
    """YAML as DVC reads it (YAML 1.2, ruamel): ``5e-05`` is a number. PyYAML (YAML 1.1) reads it as the
    string '5e-05', while it reads params.yaml's ``5.0e-5`` as a number, so values DVC recorded in dvc.lock
    would not compare equal to the same values in params.yaml."""
    from ruamel.yaml import YAML

    return YAML(typ="safe", pure=True).load(text)


def dvc_lock(root: Path) -> dict:
    path = root / "dvc.lock"
    if not path.is_file():
        return {}
    return (load_yaml12(path.read_text(encoding="utf-8")) or {}).get("stages", {})


def dvc_tags(lock: dict) -> dict[str, str]:
    """The DVC hash of every data and model output, and one digest per stage of all its outputs."""
    tags = {}
    for stage, entry in lock.items():
        outs = entry.get("outs", [])
        if not outs:  # check_params writes nothing: no outputs to compare, "cached" would say nothing
            continue
        for out in outs:
            if str(out.get("path", "")).startswith(("data/", "models/")) and out.get("md5"):
                tags[f"dvc.{out['path']}"] = out["md5"]
        digest = hashlib.sha256("".join(f"{o.get('path')}={o.get('md5')};" for o in outs).encode()).hexdigest()
        tags[f"dvc.stage.{stage}"] = digest[:16]
    return tags


def dvc_remote(root: Path) -> dict[str, str]:
    """The DVC remote this clone pushes to and pulls from by default (``core.remote``): its name and its URL
    without credentials; ``dvc.remote`` is ``none`` when no default remote is configured."""
    if not (root / ".dvc").is_dir():
        return {"dvc.remote": "none"}
    try:
        from dvc.config import Config

        config = Config(dvc_dir=str((root / ".dvc").resolve()))  # repo, local, global and system levels merged
        name = config["core"].get("remote")
        url = str(config["remote"].get(name, {}).get("url", "")) if name else ""
    except Exception as exc:  # an unreadable DVC config must not stop a registration; say so in the tag
        return {"dvc.remote": f"unknown ({type(exc).__name__})"}
    return {"dvc.remote": name, "dvc.remote_url": redact_uri(url)} if name else {"dvc.remote": "none"}


def provenance(tags: dict[str, str]) -> dict[str, str]:
    """What a model version records of where it came from, out of a pipeline run's ``tags``: the git commit,
    the DVC remote, and the DVC hash of every data and model output (``dvc pull`` at that commit fetches them)."""
    return {key: value for key, value in tags.items()
            if key in ("git.commit", "git.dirty") or (key.startswith("dvc.") and not key.startswith("dvc.stage."))}


def stage_status(current: dict[str, str], seen: Callable[[str, str], bool]) -> dict[str, str]:
    """``ran`` or ``cached`` for each stage: cached when ``seen(tag, digest)``, which says whether this execution
    did not run the stage and an earlier tracked one had its outputs: not only the last one, which after DVC
    experiments is often a sibling's (an experiment that goes back to alpha 0.3 gets the distilled student DVC
    restores from its run cache)."""
    return {key[len("dvc.stage."):]: "cached" if seen(key, digest) else "ran"
            for key, digest in current.items() if key.startswith("dvc.stage.")}


def numeric_leaves(tree: Any, prefix: str = "") -> dict[str, float]:
    """Flatten a JSON report to MLflow metrics: finite numbers (and booleans) only, dotted keys."""
    out: dict[str, float] = {}
    if isinstance(tree, dict):
        for key, value in tree.items():
            out.update(numeric_leaves(value, f"{prefix}{key}."))
    elif isinstance(tree, bool):
        out[prefix[:-1]] = float(tree)
    elif isinstance(tree, (int, float)) and math.isfinite(tree):
        out[prefix[:-1]] = float(tree)
    return {key.replace("/", "_"): value for key, value in out.items() if key}


def log_curves(client, run_id: str, name: str, root: Path) -> int:
    """Log a model's Trainer curves (loss per logging step, eval metrics per epoch); return points logged."""
    from mlflow.entities import Metric

    stamp = int(time.time() * 1000)
    metrics = []
    loss = root / CURVES_DIR / f"{name}_loss.csv"
    if loss.is_file():
        for row in pd.read_csv(loss).to_dict("records"):
            metrics.append(Metric("train_loss", float(row["loss"]), stamp, int(row["step"])))
    evaluation = root / CURVES_DIR / f"{name}_eval.csv"
    if evaluation.is_file():
        for row in pd.read_csv(evaluation).to_dict("records"):
            for key, value in row.items():
                if key not in ("epoch", "step") and isinstance(value, (int, float)) and math.isfinite(value):
                    metrics.append(Metric(f"eval_{key}", float(value), stamp, int(row["step"])))
            metrics.append(Metric("epoch", float(row["epoch"]), stamp, int(row["step"])))
    for start in range(0, len(metrics), 900):
        client.log_batch(run_id, metrics=metrics[start:start + 900])
    return len(metrics)


def check_reports_current(evaluation: dict, benchmark: dict, deployment: dict, test_sha: str, root: Path) -> None:
    """Refuse reports of other inputs than the ones registered: after a stage run by hand (``prepare``, then
    ``register``), the gate would judge the teacher's figure of another test split, or the latency of another
    model file. (Reports written before these hashes were recorded are taken as they are.)"""
    if evaluation.get("test_sha256") not in (None, test_sha):
        raise DataError(f"{REPORTS_DIR / 'metrics' / 'eval.json'} scored another test split than "
                        f"{PREPARED_DIR / 'test.parquet'} holds now; run `dvc repro` (or `python -m distillery evaluate`"
                        " and the stages after it) before registering")
    deployable = root / ONNX_DIR / deployment["deployable"]
    if deployment.get("deployable_sha256") is not None and deployable.is_file() and \
            deployment["deployable_sha256"] != sha256_files([deployable]):
        raise DataError(f"{ONNX_DIR / deployment['deployable']} is not the file export wrote and checked for parity "
                        "(it changed since); run `dvc repro` (or `python -m distillery export` and the stages after "
                        "it) before registering")
    if benchmark.get("deployable_sha256") is not None and deployable.is_file() and \
            benchmark["deployable_sha256"] != sha256_files([deployable]):
        raise DataError(f"{REPORTS_DIR / 'metrics' / 'benchmark.json'} timed another {ONNX_DIR / deployment['deployable']}"
                        " than the one there now; run `dvc repro` (or `python -m distillery benchmark`) before "
                        "registering")


def log_params(client, run_id: str, flat: dict) -> None:
    """Every params key on the run (MLflow takes 100 a call; values cut to 500 characters)."""
    from mlflow.entities import Param

    items = [Param(key, str(value)[:500]) for key, value in flat.items()]
    for start in range(0, len(items), 100):
        client.log_batch(run_id, params=items[start:start + 100])


def log_metrics(client, run_id: str, metrics: dict[str, float]) -> None:
    """The figures on the run, 900 a call."""
    from mlflow.entities import Metric

    stamp = int(time.time() * 1000)
    items = [Metric(key, value, stamp, 0) for key, value in metrics.items()]
    for start in range(0, len(items), 900):
        client.log_batch(run_id, metrics=items[start:start + 900])
