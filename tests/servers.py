"""Real servers on loopback for tests: started in their own process group, always stopped."""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, Optional

import requests

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def env_with_venv(**extra: str) -> dict:
    """This interpreter's bin first on PATH: MLflow starts ``uvicorn`` by name."""
    return dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", **extra)


@contextlib.contextmanager
def running(command: list[str], health_url: str, log: Path, env: Optional[dict] = None,
            timeout_s: float = 120) -> Iterator[subprocess.Popen]:
    """Start ``command``, wait until ``health_url`` answers 200, stop the whole process group at the end."""
    with open(log, "w") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env or env_with_venv(),
                                start_new_session=True)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{command[:4]} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if requests.get(health_url, timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{command[:4]} not healthy after {timeout_s}s:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@contextlib.contextmanager
def mlflow_server(workdir: Path) -> Iterator[str]:
    """A real ``mlflow server`` on a free loopback port, with its own SQLite store; yields its URI."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    command = [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
               "--backend-store-uri", f"sqlite:///{(workdir / 'mlflow.db').resolve()}",
               "--artifacts-destination", str((workdir / "artifacts").resolve())]
    # MLflow 3's job runner (seven huey consumers, ~10% of a core each while idle) serves features the
    # pipeline never uses; on a 2-core machine it slows every test that runs beside the server
    env = dict(env_with_venv(), MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    with running(command, f"http://127.0.0.1:{port}/health", workdir / "server.log", env=env):
        yield f"http://127.0.0.1:{port}"


@contextlib.contextmanager
def json_receiver() -> Iterator[tuple[str, list]]:
    """A loopback HTTP server that keeps every JSON body POSTed to it: (an Apprise ``json://`` URL, the bodies)."""
    import http.server
    import json
    import threading

    received: list = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"json://127.0.0.1:{server.server_address[1]}/hook", received
    finally:
        server.shutdown()
