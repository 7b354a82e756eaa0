"""Watch the configured data source and emit ``distillery.data.updated`` when its content changes.

``python -m flows.watch --once`` hashes the source named by ``data.source`` (or ``data.files``) in
params.yaml, compares the hash with the one it saw last (kept in ``.distillery/watch_state.json``,
git-ignored) and, when it differs, emits the event the served deployment waits for (see
flows/deploy.py). The first look only records the hash: there is nothing to compare it with.
Without ``--once`` it looks every ``schedule.watch_interval_seconds`` until stopped.

The event goes straight to the Prefect server named by ``PREFECT_API_URL`` (``POST /api/events``),
and the new hash is recorded only once the server has accepted it: an event that did not arrive is
sent again at the next look. Without ``PREFECT_API_URL`` Prefect would fall back to a temporary local
server that no deployment listens to, and the event would be lost; so the watcher refuses to start
unless ``PREFECT_API_URL`` names a server that answers. Its state file is written atomically.

A ``hub:`` source cannot be hashed offline; point the watcher at a local copy instead.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path
from typing import Callable, Optional

from distillery.errors import ConfigError, DataError
from distillery.files import write_json
from distillery.tracking import redact_uri

STATE_PATH = Path(".distillery") / "watch_state.json"


def source_files(project_dir: Path, source: str, files: dict) -> list[Path]:
    """The local files behind a data source, in a stable order."""
    from distillery.sources import bundled_path

    if files:
        paths = [project_dir / path for path in files.values()]
    elif source.startswith("bundled:"):
        paths = [project_dir / bundled_path(source.split(":", 1)[1])[0]]  # an sdist corpus: relative to the project
    elif source.startswith("hub:"):
        raise DataError(f"data.source: {source} is a Hugging Face Hub dataset; its content cannot be hashed "
                        "offline. Watch a local copy (data.source: data/raw/<file>) instead")
    else:
        path = project_dir / source
        paths = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise DataError(f"{missing[0]}: data file does not exist (data.source in params.yaml)")
    return paths


def content_hash(paths: list[Path], root: Optional[Path] = None) -> str:
    """SHA-256 over each file's name (relative to ``root``) and bytes."""
    digest = hashlib.sha256()
    for path in paths:
        name = str(path.relative_to(root)) if root and path.is_relative_to(root) else path.name
        digest.update(name.encode() + b"\0")
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


class ServerUnavailable(Exception):
    """No Prefect server to send the event to: ``PREFECT_API_URL`` unset (exit code 2), or the server does not
    answer (exit code 3: it may pass)."""

    def __init__(self, message: str, exit_code: int = 2):
        super().__init__(message)
        self.exit_code = exit_code


def api_url() -> str:
    """The Prefect server's API URL (``PREFECT_API_URL``, from the environment or the Prefect profile)."""
    from prefect.settings import get_current_settings

    url = get_current_settings().api.url
    if not url:
        raise ServerUnavailable("PREFECT_API_URL is not set: the event would go to a temporary local Prefect server "
                                "that no deployment listens to; export PREFECT_API_URL=http://<server>:4200/api")
    return str(url).rstrip("/")


def require_server(timeout_s: float = 5.0) -> str:
    """The API URL of a Prefect server that answers its health check; :class:`ServerUnavailable` otherwise."""
    import httpx

    url = api_url()
    try:
        response = httpx.get(f"{url}/health", timeout=timeout_s)
        if response.status_code not in (401, 403):  # a server (or its proxy) guarding /health too answers: the
            response.raise_for_status()              # access check below says whether it takes this client
    except httpx.HTTPError as exc:
        raise ServerUnavailable(f"the Prefect server at {redact_uri(url)} does not answer ({type(exc).__name__}: "
                                f"{redact_uri(str(exc))}); start it or fix PREFECT_API_URL", exit_code=3) from None
    _require_access(url)
    return url


def _require_access(url: str) -> None:
    """A server that answers its (open) health check but refuses this client's credentials: said before the first
    look records a hash (a trial's wrong PREFECT_API_AUTH_STRING was found only at the first change, as "the
    server did not accept the event")."""
    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            status = client._client.get("/admin/version").status_code
    except Exception as exc:  # noqa: BLE001 - the client raises on an error status
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if status is None:
            return  # not a refusal: the event's own send says what went wrong
    if status in (401, 403):
        raise ServerUnavailable(f"the Prefect server at {redact_uri(url)} refused this client ({status}): set "
                                "PREFECT_API_AUTH_STRING (or PREFECT_API_KEY) to the server's", exit_code=2)


def _emit(event: str, resource: dict, payload: dict) -> Optional[str]:
    """Send the event to the server and return its id once the server has accepted it; None if it did not
    (unreachable, an error status): then nothing is recorded and the next look sends it again."""
    from prefect.client.orchestration import get_client
    from prefect.events import Event

    try:
        api_url()  # never let the client fall back to a temporary local server
        built = Event(event=event, resource=resource, payload=payload)
        with get_client(sync_client=True) as client:
            response = client._client.post("/events", json=[built.model_dump(mode="json")])
        return str(built.id) if response.status_code in (200, 201, 202, 204) else None
    except Exception:  # connection refused, timeout, an error status the client raised
        return None


def check_once(project_dir: Path, resource_id: Optional[str] = None,
               emit: Callable[[str, dict, dict], Optional[str]] = _emit) -> dict:
    """Hash the source; emit the event if the hash changed since the last look. Returns what happened."""
    from distillery.config import load_params
    from flows.deploy import resource_id as default_resource_id

    project_dir = Path(project_dir).resolve()
    params = load_params(project_dir / "params.yaml")
    source = params.data.source
    new_hash = content_hash(source_files(project_dir, source, params.data.files), project_dir)
    state_path = project_dir / STATE_PATH
    state = json.loads(state_path.read_text(encoding="utf-8")) if state_path.is_file() else {}
    previous = state.get("sha256")
    result = {"source": source, "sha256": new_hash, "previous": previous, "event_id": None}
    if previous is not None and previous != new_hash:
        resource = {"prefect.resource.id": resource_id or default_resource_id(project_dir),
                    "prefect.resource.name": source, "distillery.project": str(project_dir)}
        result["event_id"] = emit(params.schedule.event, resource,
                                  {"source": source, "sha256": new_hash, "previous_sha256": previous})
        if result["event_id"] is None:  # the server did not accept it: keep the old hash, send again next time
            return result
    if previous != new_hash:  # first look, or the server accepted the event: record the new hash
        write_json(state_path, {"source": source, "sha256": new_hash,
                                "seen_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    return result


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.watch", description=__doc__.split("\n\n")[0])
    parser.add_argument("--project-dir", default=".", help="the repository (holds params.yaml)")
    parser.add_argument("--once", action="store_true", help="look once and exit")
    parser.add_argument("--interval", type=float, help="seconds between looks (default: "
                                                       "schedule.watch_interval_seconds in params.yaml)")
    parser.add_argument("--resource-id", help="event resource (default: distillery.data.<repository name>, as flows.deploy)")
    args = parser.parse_args(argv)
    from distillery.config import load_params

    try:
        require_server()
    except ServerUnavailable as exc:
        print(f"flows.watch: error: {exc}", file=sys.stderr)
        return exc.exit_code
    while True:
        try:
            result = check_once(Path(args.project_dir), args.resource_id)
            interval = args.interval or load_params(Path(args.project_dir) / "params.yaml").schedule \
                .watch_interval_seconds
        except (ConfigError, DataError) as exc:
            print(f"flows.watch: error: {exc}", file=sys.stderr)
            return 2
        changed = result["previous"] is not None and result["previous"] != result["sha256"]
        if changed and not result["event_id"]:
            print(f"flows.watch: error: {result['source']} changed but the Prefect server did not accept the event; "
                  "kept the previous hash, so the next look sends it again", file=sys.stderr)
            if args.once:
                return 1
        elif changed:
            print(f"{result['source']} changed ({result['previous'][:12]} -> {result['sha256'][:12]}); "
                  f"emitted event {result['event_id']}")
        elif result["previous"] is None:
            print(f"{result['source']}: first look, recorded {result['sha256'][:12]}")
        else:
            print(f"{result['source']}: unchanged ({result['sha256'][:12]})")
        if args.once:
            return 0
        time.sleep(interval)


if __name__ == "__main__":
    sys.exit(main())
