"""Where MLflow runs go: the store, the connection with bounded retries, redacted URIs.

The default store is a SQLite database at an absolute path inside the project
(``mlruns/mlflow.db``) with artifacts under ``mlruns/artifacts`` (in a DVC experiment's temporary copy, the
project's it was copied from); ``MLFLOW_TRACKING_URI`` points
everything at a tracking server instead. A server that does not answer gives a one-line error after
a bounded number of attempts (``TrackingUnavailable``, exit code 3, which the flow retries).
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import time
import warnings
from pathlib import Path
from typing import Iterator, Optional

from distillery.errors import TrackingUnavailable

STORE_DIR = Path("mlruns")
DB_NAME = "mlflow.db"
# Bounded retries for every MLflow HTTP call (MLflow's own defaults retry for minutes).
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "10", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
# Set by whatever orchestrates a pipeline run (tasks/stages.py does for Prefect); the core names no orchestrator.
ORCHESTRATOR_ENV = "DISTILLERY_ORCHESTRATOR"  # e.g. "prefect"
ORCHESTRATOR_RUN_ENV = "DISTILLERY_ORCHESTRATOR_RUN_ID"  # the orchestrator's id for this run
# the stages the orchestrator ran in this run so far (comma-separated; empty: none), which register tags as ran and
# the others as cached: known, where the outputs alone could belong to another clone's identical run
STAGES_RAN_ENV = "DISTILLERY_STAGES_RAN"
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


# a URI, and the quote before it if any: its credentials (scheme://user:password@host, scheme://token@host) are all
# up to the URI's last "@" (a password may hold "/", "?", "#" or a quote unescaped; base64 has "/"), which ends at white
# space or at the quote it opened with. An "@" in a path costs a misleading host, not a secret. Then the query (or
# fragment) parameters that carry a secret, by name: a token (not a tokenizer), a password, an S3 presigned URL's
# credential and signature, an Azure SAS signature or function key; the value ends before trailing punctuation.
_URI = re.compile(r"(?P<quote>['\"]?)(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)(?P<rest>\S*)")
_SECRET_QUERY = re.compile(r"(?i)([?&;#](?:[a-z0-9_\-]*(?:token|secret|password|passwd|credential|signature|"
                           r"api[_\-]?key|access[_\-]key|subscription[_\-]key)|sig|key|code|pwd|x-amz-[a-z0-9\-]+)=)"
                           r"([^&;#\s'\"]*?)(?=[,.;:)\]]*(?:[&;#\s'\"]|$))")


def _without_userinfo(match: re.Match) -> str:
    quote, rest = match.group("quote"), match.group("rest")
    end = rest.find(quote) if quote else -1
    token, tail = (rest[:end], rest[end:]) if end >= 0 else (rest, "")
    hidden = _SECRET_QUERY.sub(lambda m: m.group(1) + "***" * bool(m.group(2)), token[token.rfind("@") + 1:])
    return quote + match.group("scheme") + hidden + tail


def redact_uri(text: str) -> str:
    """``text`` with the credentials of every URI in it removed: ``https://alice:s3cret@host/x`` -> ``https://host/x``,
    and the values of its secret query parameters (``?token=``, ``sig=``, ``X-Amz-Signature=``, ...) -> ``***``.
    The one helper for anything that writes or prints a URI (reports, artifacts, logs, CLI output, notifications);
    it takes a bare URI or any text that contains URIs, e.g. an error message."""
    return _URI.sub(_without_userinfo, str(text))


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
    return os.environ.get("MLFLOW_TRACKING_URI") or own_store_uri(root)


def sqlite_path(uri: str) -> Optional[Path]:
    """The database file of a ``sqlite:///`` tracking URI; None for any other store."""
    return Path(uri[len("sqlite:///"):]) if uri.startswith("sqlite:///") else None


def is_remote(uri: str) -> bool:
    return uri.startswith(("http://", "https://", "databricks"))


def artifact_location(root: Path, uri: str) -> Optional[str]:
    """Explicit for local stores (stages run from different directories): beside a SQLite store's database outside
    the project (a queued DVC experiment's copy named by ``MLFLOW_TRACKING_URI`` put them in the copy, deleted after
    its run), else in the project's git-ignored ``mlruns/`` (``sqlite:///mlflow.db`` too); the server's choice for a
    tracking server."""
    if is_remote(uri):
        return None
    project = store_root(root)
    database = sqlite_path(uri)
    outside = database is not None and project not in database.resolve().parents
    base = database.resolve().parent if outside else project / STORE_DIR  # in the project: its git-ignored mlruns/
    return (base / "artifacts").resolve().as_uri()


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
                              f"({type(error).__name__}: {_reason(error)}); start it, or unset "
                              f"MLFLOW_TRACKING_URI to use the project's SQLite store")


def _reason(error: Exception, limit: int = 160) -> str:
    """The gist of a connection error: the operating system's reason (``[Errno 111] Connection refused``) when
    urllib3 nests one, else the message, cut at a word within ``limit`` characters (it cut a port in half)."""
    text = redact_uri(str(error))
    found = re.search(r"\[Errno -?\d+\] [^'\"()\]]+", text)
    if found:
        return found.group(0).strip()
    return text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0] + " ..."


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
        if uri == own_store_uri(root, check=False):
            from distillery.mlflow_store import relocate_store

            relocate_store(store_root(root))
    return uri


def store_root(root: Path) -> Path:
    """The project whose ``mlruns/`` holds the store: ``root``, or, in a DVC experiment's temporary copy
    (``dvc exp run --queue`` or ``--temp`` run in ``<project>/.dvc/tmp/exps/...``), the project it was copied from.
    The copy is deleted after its run, and a store inside it went with it: its registrations and the
    ``register.json`` an ``exp apply`` brings back pointed at nothing."""
    from distillery.paths import experiment_origin

    return experiment_origin(root) or root.resolve()


# what a sqlite:// URI (and MLflow's file:// artifact paths) read as other than a path: "?" starts its query, and
# "%2F"-style escapes are decoded
_NOT_IN_A_URI_PATH = re.compile(r"\?|%[0-9A-Fa-f]{2}")


def own_store_uri(root: Path, check: bool = True) -> str:
    """The project's own SQLite store (``mlruns/mlflow.db``), whatever ``MLFLOW_TRACKING_URI`` says. A project
    path a URI cannot carry is refused (unless ``check`` is false: to compare with another URI): with a "?" the
    store was made outside the project, and shared by every project whose path began the same."""
    path = (store_root(root) / STORE_DIR / DB_NAME).resolve()
    if check and _NOT_IN_A_URI_PATH.search(str(path)):
        from distillery.errors import ConfigError

        raise ConfigError(f"{path.parent.parent}: a project path holding '?' or a %XX escape cannot be a sqlite:// "
                          "URI (the store would be made elsewhere); move the project, or set MLFLOW_TRACKING_URI "
                          "to a store of your own")
    return f"sqlite:///{path}"


def _create_once(uri: str) -> None:
    """Create a new SQLite store under a lock: concurrent first use breaks MLflow's schema migration."""
    from mlflow import MlflowClient

    from distillery.locking import registry_lock

    path = sqlite_path(uri)
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
