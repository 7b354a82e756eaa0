"""Errors the CLI prints as one line. Bad input exits with code 2 (never retried); a transient failure
(``TransientError``) exits with code 3, which the Prefect flow retries; a broken environment
(``EnvironmentFailure``: a full disk, a corrupt store) exits with code 4, never retried. An unexpected
exception prints its traceback and exits with code 1, never retried either (see ``distillery.known_causes.known_cause``
for the few well-known causes that get a one-line error instead)."""
from __future__ import annotations


class DistilleryError(Exception):
    """Base class for errors that come from the user's configuration, data or models."""

    exit_code = 2
    label = "error"


class ConfigError(DistilleryError):
    """A value in params.yaml is missing, of the wrong type or out of range."""


class DataError(DistilleryError):
    """The data source cannot be read or its rows do not fit the declared schema."""


class ModelError(DistilleryError):
    """A teacher or student model cannot be found or built."""


class CacheError(DistilleryError):
    """The teacher-logit cache does not match the teacher, data or tokenizer in use."""


class RegistryError(DistilleryError):
    """A registry request that cannot be met: an unknown version, no previous champion to roll back to."""


class TransientError(DistilleryError):
    """A failure that may pass on a retry: the CLI exits with code 3, and the Prefect flow retries it."""

    exit_code = 3
    label = "transient error"


class TrackingUnavailable(TransientError):
    """The MLflow tracking server does not answer."""


class LockTimeout(TransientError):
    """Another registration of the same model holds the registry lock, or another pipeline run holds the
    repository lock, for too long."""


class EnvironmentFailure(DistilleryError):
    """The machine or a store is broken (a full disk, a corrupt database): a retry would fail the same way,
    someone has to fix it. The CLI exits with code 4, which the Prefect flow does not retry."""

    exit_code = 4


class HubUnreachable(TransientError):
    """The Hugging Face Hub did not answer (no route, DNS, a timeout): a network failure may pass, so the stage
    exits with code 3 and the flow retries it; bad ids and missing files stay bad input."""


_UNREACHABLE = ("couldn't reach", "couldn't connect", "could not connect", "name or service not known",
                "temporary failure in name resolution", "failed to resolve", "max retries exceeded",
                "connection refused", "connection reset", "connection aborted", "network is unreachable", "timed out",
                "connectionerror", "proxyerror")


def connection_lost(exc: BaseException, unless: tuple = ()) -> bool:
    """Did this request fail for want of a connection (refused, reset, timed out, a name that does not resolve),
    not for what it asked? The error and the errors it was raised from are read; one naming any of ``unless``
    answers no."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        text = f"{type(exc).__name__}: {exc}".lower()
        if any(marker in text for marker in unless):
            return False
        if any(marker in text for marker in _UNREACHABLE):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def hub_unreachable(exc: BaseException) -> bool:
    """Did this Hub request fail for want of a network (not for a wrong id)? Not while HF_HUB_OFFLINE is set:
    offline by choice, a missing cache entry will not appear on a retry."""
    import os

    try:
        from huggingface_hub import constants

        offline = bool(constants.HF_HUB_OFFLINE)
    except ImportError:
        offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    if hub_out_of_reach():  # offline because this process found no route to the Hub: a miss may pass
        return connection_lost(exc)
    return not offline and connection_lost(exc, unless=("offlinemode",))


PROBED: dict[str, bool] = {}  # Hub endpoint -> whether this process could connect to it (asked once)
PROBED_AT: dict[str, float] = {}  # Hub endpoint -> when it was found out of reach (time.monotonic())
ASK_AGAIN_S = 300.0  # a long-lived process (a kd_gain flow run) asks again this long after finding it out of reach
OUT_OF_REACH = "DISTILLERY_HUB_OUT_OF_REACH"  # set for the processes this one starts (torchrun's): no second probe


def offline_unless_hub_reachable(name: str, timeout: float = 5.0) -> bool:
    """Before ``name`` is loaded: when it is no local path and this process cannot open a connection to the Hub's
    host (or to the proxy that reaches it) within ``timeout`` seconds, load Hub ids from the Hugging Face cache
    alone (as ``HF_HUB_OFFLINE=1`` does); whether the Hub is out of reach. Asked once per process (again
    ``ASK_AGAIN_S`` after an answer of no, so a long-lived process sees the network come back), and never when
    HF_HUB_OFFLINE is set by the user. Without it, every load of a Hub id on a machine with no network retried for
    25 s: 4 min 50 s for one stage before it failed, or before it loaded the model the cache held all along."""
    import os
    import sys
    import time
    from pathlib import Path

    if Path(name).expanduser().exists():
        return False
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - a dependency of transformers
        return False
    endpoint = constants.ENDPOINT
    if PROBED.get(endpoint) is False and time.monotonic() - PROBED_AT.get(endpoint, 0.0) > ASK_AGAIN_S:
        del PROBED[endpoint]  # ask again, online as the process began
        os.environ.pop(OUT_OF_REACH, None)
        _set_offline(constants, False)
    if endpoint not in PROBED:
        if constants.HF_HUB_OFFLINE:
            return False
        if os.environ.get(OUT_OF_REACH) == endpoint:  # the launching process found it so a moment ago
            PROBED[endpoint] = False
        else:
            failure = _connection_failure(endpoint, timeout)
            PROBED[endpoint] = failure is None
            if failure is not None:
                os.environ[OUT_OF_REACH] = endpoint
                print(f"note: the Hugging Face Hub ({endpoint}) cannot be reached from this machine ({failure}): "
                      "Hub ids load from the local Hugging Face cache only, as with HF_HUB_OFFLINE=1",
                      file=sys.stderr, flush=True)
        PROBED_AT[endpoint] = time.monotonic()
    if PROBED[endpoint]:
        return False
    _set_offline(constants, True)
    return True


def _set_offline(constants, offline: bool) -> None:
    import sys

    constants.HF_HUB_OFFLINE = offline  # read at each call by huggingface_hub and transformers
    if "datasets.config" in sys.modules:  # datasets copies it when imported
        sys.modules["datasets.config"].HF_HUB_OFFLINE = offline


def _connection_failure(endpoint: str, timeout: float):
    """Why a TCP connection to ``endpoint``'s host, or to the proxy the environment names for it (``https_proxy``,
    ``all_proxy``, unless ``no_proxy`` covers the host), could not be opened within ``timeout`` seconds; None when
    it could."""
    import socket
    import threading
    import urllib.request
    from urllib.parse import urlsplit

    parts = urlsplit(endpoint)
    proxies = urllib.request.getproxies()
    proxy = None if urllib.request.proxy_bypass(parts.hostname or "") else \
        proxies.get(parts.scheme) or proxies.get("all")
    target = urlsplit(proxy if "://" in proxy else f"http://{proxy}") if proxy else parts
    port = target.port or (80 if target.scheme == "http" else 443)
    where = f"{'proxy ' if proxy else ''}{target.hostname}:{port}"
    failures: list = []

    def connect() -> None:  # in a thread: a name lookup has no timeout of its own
        try:
            with socket.create_connection((target.hostname or "", port), timeout=timeout) as connection:
                if proxy and parts.scheme == "https" and target.scheme == "http":  # will it tunnel to the Hub?
                    failures.append(_tunnel_refused(connection, parts, target))
                    return
            failures.append(None)
        except (OSError, ValueError) as exc:
            failures.append(f"{where}: {exc}")

    probe = threading.Thread(target=connect, daemon=True)
    probe.start()
    probe.join(timeout + 1.0)
    return failures[0] if failures else f"{where}: no answer within {timeout:g} s"


def _tunnel_refused(connection, hub, proxy):
    """Why the HTTP proxy on ``connection`` will not tunnel to ``hub`` (its answer to CONNECT: a proxy that blocks
    the Hub accepts the connection and answers 403 or 404), or None when it answers 200."""
    import base64

    address = f"{hub.hostname}:{hub.port or 443}"
    request = f"CONNECT {address} HTTP/1.1\r\nHost: {address}\r\n"
    if proxy.username:
        credentials = base64.b64encode(f"{proxy.username}:{proxy.password or ''}".encode()).decode()
        request += f"Proxy-Authorization: Basic {credentials}\r\n"
    connection.sendall(f"{request}\r\n".encode())
    status = connection.recv(512).split(b"\r\n", 1)[0].decode("latin-1").strip()
    return None if status.split()[1:2] == ["200"] else \
        f"proxy {proxy.hostname}:{proxy.port or 80} answered {status or 'nothing'!r} to CONNECT {address}"


def hub_out_of_reach() -> bool:
    """Did this process find the Hub out of reach (``offline_unless_hub_reachable``)? A cache miss is then a network
    failure that may pass (exit 3, retried), not an offline choice."""
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover
        return False
    return PROBED.get(constants.ENDPOINT) is False
