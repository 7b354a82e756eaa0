"""A tracking server's failures as one line each: lost (``TrackingUnavailable``, exit 3, retried), at the wrong
address, refusing the credentials or the permission (``ConfigError``, exit 2), or failing inside with an HTTP 500
(``EnvironmentFailure``, exit 4: its own log says why)."""
from __future__ import annotations

import contextlib
import os
import re
from typing import Iterator
from urllib.parse import urlsplit

from distillery.errors import ConfigError, EnvironmentFailure, TrackingUnavailable
from distillery.tracking import is_remote, redact_uri


@contextlib.contextmanager
def unavailable_as_transient(uri: str, moves_champion: bool = True) -> Iterator[None]:
    """A tracking server lost mid-way becomes one ``TrackingUnavailable`` line (exit 3, retried), not a traceback;
    one answering HTTP 500 through MLflow's retries an ``EnvironmentFailure`` (exit 4: its log says why).
    ``moves_champion``: the lines end by saying the champion was not moved (not for a read-only listing)."""
    import requests
    from mlflow.exceptions import MlflowException

    kept = "; the champion was not moved" if moves_champion else ""

    try:
        yield
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise TrackingUnavailable(f"MLflow tracking server {redact_uri(uri)} stopped answering ({type(exc).__name__})"
                                  f"{kept}") from None
    except MlflowException as exc:
        if is_remote(uri) and "API request to" in str(exc) and "error code 404 " in str(exc):
            # a server that answers, at the wrong address: a mistake to fix, never retried as a lost server
            raise ConfigError(f"MLflow tracking server {redact_uri(uri)} answered 404 (not found) to MLflow's REST "
                              "API: set MLFLOW_TRACKING_URI to the server's own address (http://host:port, with the "
                              f"path only if the server is mounted under one){kept}") from None
        if is_remote(uri) and "API request to" in str(exc) and "error code 401 " in str(exc):
            raise ConfigError(f"MLflow tracking server {redact_uri(uri)} refused the credentials (401 Unauthorized"
                              f"{_unset_credentials(uri)}): set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD "
                              f"(or MLFLOW_TRACKING_TOKEN) to an account of the server{kept}") from None
        if is_remote(uri) and "API request to" in str(exc) and "error code 403 " in str(exc):
            user = os.environ.get("MLFLOW_TRACKING_USERNAME")
            raise ConfigError(f"MLflow tracking server {redact_uri(uri)} denied permission (403) to "
                              f"{'account ' + repr(user) if user else 'this account'} for {_endpoint(str(exc))}: an "
                              "admin grants EDIT on the experiment and MANAGE on the registered model (README: Running "
                              f"shared servers safely), or MLFLOW_TRACKING_URI's path is wrong{kept}") from None
        failing = re.search(r"too many (500) error responses", str(exc))
        if is_remote(uri) and "API request to" in str(exc) and failing:
            # the server answers but fails inside (a missing bucket, its database down): every retry failed alike
            endpoint = urlsplit(_endpoint(str(exc))).path or "its request"
            raise EnvironmentFailure(f"MLflow tracking server {redact_uri(uri)} answered HTTP {failing.group(1)} to "
                                     f"{endpoint}, again after MLflow's retries: the server's own log says why (its "
                                     f"artifact store or its database, most likely){kept}") from None
        if is_remote(uri) and "API request to" in str(exc):
            raise TrackingUnavailable(f"MLflow tracking server {redact_uri(uri)} stopped answering "
                                      f"({lost_cause(str(exc))}){kept}") from None
        raise


def _unset_credentials(uri: str) -> str:
    """"; MLFLOW_TRACKING_PASSWORD is not set" where a 401 came with no token, no credentials in the URI and a
    credential variable unset (a trial's user had set the name only); else ""."""
    from urllib.parse import urlsplit

    from mlflow.utils.credentials import read_mlflow_creds  # the variables, else ~/.mlflow/credentials

    if os.environ.get("MLFLOW_TRACKING_TOKEN") or urlsplit(uri).username:
        return ""
    creds = read_mlflow_creds()
    unset = [name for name, value in (("MLFLOW_TRACKING_USERNAME", creds.username),
                                      ("MLFLOW_TRACKING_PASSWORD", creds.password)) if not value]
    return f"; {' and '.join(unset)} {'is' if len(unset) == 1 else 'are'} not set" if unset else ""


def _endpoint(message: str) -> str:
    """The REST endpoint an MLflow error names ("API request to endpoint /api/2.0/mlflow/runs/create failed")."""
    found = re.search(r"endpoint (\S+)", message) or re.search(r"API request to (\S+)", message)
    return redact_uri(found.group(1)) if found else "its request"


def lost_cause(message: str) -> str:
    """Why MLflow's request failed, in a few words: the socket's error ("[Errno 111] Connection refused") where the
    message has one. It was the message's first 160 characters, cut mid-sentence ("Max retries exceeded with )")."""
    found = re.search(r"\[Errno -?\d+\][^'\")\]]*", message)
    if found:
        return found.group(0).strip()
    for known in ("Read timed out", "Max retries exceeded"):
        if known in message:
            return known.lower() if known.startswith("Max") else known
    first = redact_uri(message.splitlines()[0] if message else "")
    return first if len(first) <= 160 else first[:157].rstrip() + "..."
