"""Where MLflow runs go, and how a pipeline execution is recorded there.

The default store is a SQLite database at an absolute path inside the project
(``mlruns/mlflow.db``) with artifacts under ``mlruns/artifacts``; ``MLFLOW_TRACKING_URI`` points
everything at a tracking server instead. A server that does not answer gives a one-line error after
a bounded number of attempts (``TrackingUnavailable``, exit code 3, which the flow retries).
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import re
import subprocess
import time
import warnings
from pathlib import Path
from typing import Any, Iterator, Optional

import pandas as pd
import yaml

from distillery.errors import TrackingUnavailable
from distillery.paths import CURVES_DIR

STORE_DIR = Path("mlruns")
DB_NAME = "mlflow.db"
# Bounded retries for every MLflow HTTP call (MLflow's own defaults retry for minutes).
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "10", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
# Set by whatever orchestrates a pipeline run (tasks/stages.py does for Prefect); the core names no orchestrator.
ORCHESTRATOR_ENV = "DISTILLERY_ORCHESTRATOR"  # e.g. "prefect"
ORCHESTRATOR_RUN_ENV = "DISTILLERY_ORCHESTRATOR_RUN_ID"  # the orchestrator's id for this run
MODELS = {"teacher": "train_teacher", "student": "distill", "baseline": "distill"}


@contextlib.contextmanager
def quiet_mlflow() -> Iterator[None]:
    """MLflow's info logs and warnings off for a block (model logging and loading are chatty)."""
    logger = logging.getLogger("mlflow")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


# ``scheme://user:password@host`` (or ``scheme://token@host``): the part before the last "@" of the authority.
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/?#\s'\"]*@)")


def redact_uri(text: str) -> str:
    """``text`` with the credentials of every URI in it removed: ``https://alice:s3cret@host/x`` -> ``https://host/x``.

    The one helper for anything that writes or prints a tracking URI (reports, artifacts, logs, CLI output,
    notifications); it takes a bare URI or any text that contains URIs, e.g. an error message."""
    return _USERINFO.sub(lambda m: m.group("scheme"), str(text))


class RedactingFilter(logging.Filter):
    """A logging filter that passes every record through :func:`redact_uri` (attach it to a handler)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact_uri(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


def tracking_uri(root: Path) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the project's SQLite database, by absolute path."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(root / STORE_DIR / DB_NAME).resolve()}"


def is_remote(uri: str) -> bool:
    return uri.startswith(("http://", "https://", "databricks"))


def artifact_location(root: Path, uri: str) -> Optional[str]:
    """Explicit for local stores (stages run from different directories); the server's choice otherwise."""
    return None if is_remote(uri) else (root / STORE_DIR / "artifacts").resolve().as_uri()


def check_reachable(uri: str, attempts: int = 3, timeout: float = 5.0) -> None:
    """Fail fast, with one clear line, when a tracking server does not answer its health check."""
    if not uri.startswith(("http://", "https://")):
        return
    import requests

    error: Exception = RuntimeError("no attempt made")
    for attempt in range(attempts):
        try:
            response = requests.get(uri.rstrip("/") + "/health", timeout=timeout)
            if response.status_code < 500:
                return
            error = RuntimeError(f"HTTP {response.status_code}")
        except requests.RequestException as exc:
            error = exc
        if attempt + 1 < attempts:
            time.sleep(2 ** attempt)
    raise TrackingUnavailable(f"MLflow tracking server {redact_uri(uri)} is unreachable after {attempts} attempts "
                              f"({type(error).__name__}: {redact_uri(str(error))[:160]}); start it, or unset "
                              f"MLFLOW_TRACKING_URI to use the project's SQLite store")


def connect(root: Path) -> str:
    """Point MLflow at the store, with bounded HTTP retries; return the tracking URI."""
    import mlflow

    for key, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)
    uri = tracking_uri(root)
    if redact_uri(uri) != uri:  # MLflow prints "View run ... at: <the URI, credentials and all>" on stdout
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    check_reachable(uri)
    before = {key: os.environ.get(key) for key in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    for key, value in before.items():  # the setters export the URIs; keep the user's environment as it was
        if value is None:
            os.environ.pop(key, None)
    if uri.startswith("sqlite:///"):
        _create_once(uri)
        if uri == own_store_uri(root):
            relocate_store(root)
    return uri


def own_store_uri(root: Path) -> str:
    """The project's own SQLite store (``mlruns/mlflow.db``), whatever ``MLFLOW_TRACKING_URI`` says."""
    return f"sqlite:///{(root / STORE_DIR / DB_NAME).resolve()}"


# Columns of MLflow's SQL schema (3.x) that hold absolute artifact paths or file URIs.
_PATH_COLUMNS = (("experiments", "artifact_location"), ("runs", "artifact_uri"),
                 ("logged_models", "artifact_location"), ("model_versions", "storage_location"),
                 ("model_versions", "source"))


def _local_path(location: Optional[str]) -> Optional[Path]:
    if not location:
        return None
    if location.startswith("file://"):
        from urllib.parse import unquote, urlparse

        return Path(unquote(urlparse(location).path))
    return Path(location) if location.startswith("/") else None


def relocate_store(root: Path) -> Optional[Path]:
    """Keep the project's own store pointing into this checkout. MLflow records absolute artifact paths
    in ``mlflow.db``; a copied or moved checkout would keep writing artifacts into the old one (and fail
    once it is deleted). Paths under another checkout's ``mlruns/`` are rewritten to this one's, in one
    transaction under the store lock; return the old ``mlruns`` directory, or None if nothing moved.
    An experiment whose artifacts live anywhere else outside this project is refused with the fix."""
    import sqlite3

    from distillery.errors import ConfigError
    from distillery.locking import registry_lock

    here = (root / STORE_DIR).resolve()
    db_path = here / DB_NAME
    uri = own_store_uri(root)

    def foreign_dirs() -> dict[Path, str]:
        with contextlib.closing(sqlite3.connect(db_path)) as db:
            rows = db.execute("SELECT name, artifact_location FROM experiments").fetchall()
        found: dict[Path, str] = {}
        for name, location in rows:
            path = _local_path(location)
            if path is None or path == here or here in path.parents:
                continue
            if path.parent.name != STORE_DIR.name:  # not a project store's layout: not ours to rewrite
                raise ConfigError(f"MLflow experiment {name!r} in {db_path} keeps its artifacts in {path}, outside "
                                  f"this project ({root}); set register.experiment to a new name (its artifacts then "
                                  f"go to {here / 'artifacts'}), or point MLFLOW_TRACKING_URI at the store it "
                                  f"belongs to")
            found[path.parent] = name
        return found

    if not db_path.is_file() or not foreign_dirs():
        return None
    with registry_lock(uri, "_store", timeout_s=120):
        old_dirs = foreign_dirs()  # again, under the lock: another process may have done it meanwhile
        for old in old_dirs:
            if (old / "artifacts").is_dir() and not (here / "artifacts").is_dir():
                raise ConfigError(f"this project's MLflow store {db_path} was copied from {old} without its "
                                  f"artifacts; copy {old / 'artifacts'} to {here / 'artifacts'}, then run again")
        with contextlib.closing(sqlite3.connect(db_path)) as db, db:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            for old in old_dirs:
                for before, after in ((old.as_uri(), here.as_uri()), (str(old), str(here))):
                    for table, column in _PATH_COLUMNS:
                        if table not in tables:
                            continue
                        db.execute(f"UPDATE {table} SET {column} = ? || substr({column}, ?) "
                                   f"WHERE {column} = ? OR substr({column}, 1, ?) = ?",
                                   (after, len(before) + 1, before, len(before) + 1, before + "/"))
    for old in old_dirs:
        logging.getLogger("distillery").warning("MLflow store moved: artifact paths under %s now point to %s",
                                                old, here)
    return next(iter(old_dirs), None)


def _create_once(uri: str) -> None:
    """Create a new SQLite store under a lock: concurrent first use breaks MLflow's schema migration."""
    from mlflow import MlflowClient

    from distillery.locking import registry_lock

    path = Path(uri[len("sqlite:///"):])
    if path.is_file() and path.stat().st_size > 0:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with registry_lock(uri, "_store", timeout_s=120), quiet_mlflow():
        MlflowClient(tracking_uri=uri).search_experiments(max_results=1)


def experiment_id(name: str, root: Path, uri: str) -> str:
    """The experiment's id, created with an explicit artifact location on first use."""
    import mlflow

    from mlflow.exceptions import MlflowException

    existing = mlflow.get_experiment_by_name(name)
    if existing is not None:
        return existing.experiment_id
    try:
        return mlflow.create_experiment(name, artifact_location=artifact_location(root, uri))
    except MlflowException as exc:  # created meanwhile by another pipeline
        if getattr(exc, "error_code", "") != "RESOURCE_ALREADY_EXISTS":
            raise
        return mlflow.get_experiment_by_name(name).experiment_id


@contextlib.contextmanager
def unavailable_as_transient(uri: str) -> Iterator[None]:
    """A tracking server lost mid-way becomes one ``TrackingUnavailable`` line (exit 3, retried), not a traceback."""
    import requests
    from mlflow.exceptions import MlflowException

    try:
        yield
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise TrackingUnavailable(f"MLflow tracking server {redact_uri(uri)} stopped answering ({type(exc).__name__}); "
                                  f"the champion was not moved") from None
    except MlflowException as exc:
        if is_remote(uri) and "API request to" in str(exc):
            raise TrackingUnavailable(f"MLflow tracking server {redact_uri(uri)} stopped answering "
                                      f"({redact_uri(str(exc).splitlines()[0])[:160]}); the champion was not moved") from None
        raise


# --- what a run records ---------------------------------------------------------------------------

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


def dvc_lock(root: Path) -> dict:
    path = root / "dvc.lock"
    if not path.is_file():
        return {}
    return (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("stages", {})


def dvc_tags(lock: dict) -> dict[str, str]:
    """The DVC hash of every data and model output, and one digest per stage of all its outputs."""
    tags = {}
    for stage, entry in lock.items():
        outs = entry.get("outs", [])
        for out in outs:
            if str(out.get("path", "")).startswith(("data/", "models/")) and out.get("md5"):
                tags[f"dvc.{out['path']}"] = out["md5"]
        digest = hashlib.sha256("".join(f"{o.get('path')}={o.get('md5')};" for o in outs).encode()).hexdigest()
        tags[f"dvc.stage.{stage}"] = digest[:16]
    return tags


def stage_status(current: dict[str, str], previous: Optional[dict[str, str]]) -> dict[str, str]:
    """``ran`` or ``cached`` for each stage: cached when its outputs equal those of the last tracked execution."""
    status = {}
    for key, digest in current.items():
        if key.startswith("dvc.stage."):
            stage = key[len("dvc.stage."):]
            status[stage] = "cached" if previous and previous.get(key) == digest else "ran"
    return status


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


def model_card(params, evaluation: dict, parity: dict, benchmark: dict, data_report: dict,
               deployable: str, gate: Optional[dict] = None) -> str:
    """A short markdown model card: task, data, teacher, student, metrics, latency, limits."""
    labels = evaluation.get("labels", [])
    rows = [f"| {name} | {100 * evaluation[name]['accuracy']:.2f}% | {evaluation[name]['macro_f1']:.4f} | "
            f"{evaluation[name].get('parameters', 0) / 1e6:.1f}M |"
            for name in ("teacher", "student", "baseline") if name in evaluation]
    cell = benchmark.get("headline", {}).get("cell", "")
    latency = []
    for name, entry in benchmark.get("models", {}).items():
        stats = entry.get("cells", {}).get(cell)
        if stats:
            latency.append(f"| {name} | {stats['p50_ms']:.2f} | {stats['p95_ms']:.2f} | {entry['size_mb']:.1f} |")
    int8 = parity.get("student", {}).get("int8", {})
    splits = data_report.get("splits", data_report.get("rows", {}))
    lines = [
        "# Model card: Distillery student", "",
        f"**Task:** text classification into {len(labels)} classes: {', '.join(map(str, labels))}.", "",
        f"**Data:** `{params.data.source}`; rows per split: {splits}. "
        f"Transfer set: `{params.distill.transfer_set.source}` "
        f"(up to {params.distill.transfer_set.max_rows} rows).", "",
        f"**Teacher:** `{params.teacher.model}`, fine-tuned for {params.teacher.train.epochs:g} epochs.", "",
        f"**Student:** layers `{params.student.layers}` of `{params.teacher.model}` (init: {params.student.init}), "
        f"distilled with {params.distill.loss} loss, alpha {params.distill.alpha}, "
        f"temperature {params.distill.temperature}. Served as `{deployable}` (ONNX).", "",
        "## Test-split metrics", "", "| model | accuracy | macro-F1 | parameters |", "|---|---:|---:|---:|", *rows, "",
        f"## Latency ({cell}, ms) and size (MB)", "", "| model | p50 | p95 | MB |", "|---|---:|---:|---:|",
        *latency, "",
        "## Limits", "",
        f"- Inputs longer than {params.student.max_length} tokens are truncated.",
        f"- int8 changes {100 * (1 - int8.get('label_agreement_vs_fp32', 1.0)):.2f}% of the fp32 student's labels "
        f"on the test split (accuracy change {int8.get('accuracy_change_points', 0):+.2f} points).",
        "- Measured on one test split drawn from the training distribution; expect lower accuracy on other domains.",
        "- Latency was measured on the benchmark machine; see benchmark.json for its fingerprint.",
    ]
    if gate:
        lines += ["", "## Promotion gate", "", f"Decision: **{gate['decision']}**", ""]
        lines += [f"- {c['name']}: {'pass' if c['passed'] else 'FAIL'} ({c['detail']})" for c in gate["checks"]]
    return redact_uri("\n".join(lines) + "\n")  # a source or model given as a URI keeps no credentials
