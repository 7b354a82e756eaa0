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
    """This interpreter's bin first on PATH: MLflow starts ``uvicorn`` by name. Without the deployment pin
    (``DISTILLERY_PROJECT_DIR``) a test in the same process may have left: each server test sets its own."""
    env = {k: v for k, v in os.environ.items() if k != "DISTILLERY_PROJECT_DIR"}
    return dict(env, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", **extra)


@contextlib.contextmanager
def running(command: list[str], health_url: Optional[str], log: Path, env: Optional[dict] = None,
            timeout_s: float = 120, ready_text: Optional[str] = None,
            stop_grace_s: float = 20) -> Iterator[subprocess.Popen]:
    """Start ``command``, wait until ``health_url`` answers 200 (or, without one, until its output holds
    ``ready_text``), stop the whole process group at the end (SIGTERM, SIGKILL after ``stop_grace_s``)."""
    with open(log, "w") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env or env_with_venv(),
                                start_new_session=True)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{command[:4]} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            if health_url is None:
                if ready_text in log.read_text(errors="replace"):
                    break
            else:
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
            proc.wait(timeout=stop_grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@contextlib.contextmanager
def mlflow_server(workdir: Path, backend_store_uri: Optional[str] = None, artifacts_destination: Optional[str] = None,
                  env: Optional[dict] = None) -> Iterator[str]:
    """A real ``mlflow server`` on a free loopback port; yields its URI. By default it has its own SQLite store
    and artifact directory in ``workdir``; ``env`` adds variables (the S3 endpoint and keys of an S3 destination)."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    command = [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
               "--backend-store-uri", backend_store_uri or f"sqlite:///{(workdir / 'mlflow.db').resolve()}",
               "--artifacts-destination", artifacts_destination or str((workdir / "artifacts").resolve())]
    # MLflow 3's job runner (seven huey consumers, ~10% of a core each while idle) serves features the
    # pipeline never uses; on a 2-core machine it slows every test that runs beside the server
    server_env = dict(env_with_venv(**(env or {})), MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false")
    with running(command, f"http://127.0.0.1:{port}/health", workdir / "server.log", env=server_env):
        yield f"http://127.0.0.1:{port}"


# Keys moto accepts; the servers that talk to it get them, the pipeline's own processes never need them.
S3_KEYS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@contextlib.contextmanager
def moto_s3(workdir: Path, buckets: tuple[str, ...] = ()) -> Iterator[str]:
    """moto's S3 API (``moto_server``, in memory) on a free loopback port, with ``buckets`` made; yields its URL."""
    import boto3

    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    command = [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    with running(command, f"{endpoint}/moto-api/", workdir / "moto.log", timeout_s=60):
        s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=S3_KEYS["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=S3_KEYS["AWS_SECRET_ACCESS_KEY"], region_name=S3_KEYS["AWS_DEFAULT_REGION"])
        for bucket in buckets:
            s3.create_bucket(Bucket=bucket)
        yield endpoint


def s3_keys(endpoint: str, bucket: str, prefix: str = "") -> list[str]:
    """Every object key in ``bucket`` under ``prefix`` on the S3 API at ``endpoint``."""
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=S3_KEYS["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=S3_KEYS["AWS_SECRET_ACCESS_KEY"], region_name=S3_KEYS["AWS_DEFAULT_REGION"])
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys.extend(item["Key"] for item in page.get("Contents", []))
    return keys


def postgres_bin() -> Optional[Path]:
    """The directory holding PostgreSQL's ``initdb`` and ``pg_ctl`` (``$DISTILLERY_PG_BIN``, Debian's, or PATH)."""
    import glob
    import shutil

    candidates = [os.environ.get("DISTILLERY_PG_BIN", "")] + sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                                                                      reverse=True)
    found = shutil.which("initdb")
    if found:
        candidates.append(str(Path(found).parent))
    for candidate in filter(None, candidates):
        if (Path(candidate) / "initdb").is_file() and (Path(candidate) / "pg_ctl").is_file():
            return Path(candidate)
    return None


def postgres_missing() -> Optional[str]:
    """Why this machine cannot start a throw-away PostgreSQL, or None if it can."""
    if postgres_bin() is None:
        return ("PostgreSQL's initdb and pg_ctl were not found (/usr/lib/postgresql/*/bin, PATH or "
                "$DISTILLERY_PG_BIN); apt-get install postgresql")
    import importlib.util

    if importlib.util.find_spec("psycopg2") is None:
        return "psycopg2 is not installed (pip install psycopg2-binary)"
    if os.geteuid() == 0:
        import pwd

        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root, and there is no 'postgres' user to run the server as (initdb refuses root)"
    return None


@contextlib.contextmanager
def postgres(user: str = "distillery") -> Iterator[str]:
    """A throw-away PostgreSQL cluster in a new temporary directory, on a free loopback port (trust
    authentication, no fsync); yields ``postgresql://<user>@127.0.0.1:<port>`` (add ``/<database>``). Stopped
    and deleted at the end. As root, the server runs as the ``postgres`` user (initdb and postgres refuse
    root), so the directory is a fresh one under the system's temporary directory, not pytest's (0700, root's)."""
    import shutil
    import tempfile

    bin_dir = postgres_bin()
    assert bin_dir is not None, postgres_missing()
    workdir = Path(tempfile.mkdtemp(prefix="distillery-pg-"))
    as_user: dict = {}
    if os.geteuid() == 0:
        import pwd

        owner = pwd.getpwnam("postgres")
        os.chown(workdir, owner.pw_uid, owner.pw_gid)
        as_user = {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []}
    data, port = workdir / "data", free_port()

    def pg(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(bin_dir / args[0]), *args[1:]], cwd=workdir, capture_output=True, text=True,
                              timeout=120, **as_user)

    init = pg("initdb", "-D", str(data), "-U", user, "--auth=trust", "-E", "UTF8", "--no-sync", "--no-instructions")
    assert init.returncode == 0, init.stderr
    options = f"-h 127.0.0.1 -p {port} -k {workdir} -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    start = pg("pg_ctl", "-D", str(data), "-l", str(workdir / "postgres.log"), "-w", "-t", "60", "-o", options, "start")
    try:
        assert start.returncode == 0, start.stderr + start.stdout + (workdir / "postgres.log").read_text()[-2000:]
        yield f"postgresql://{user}@127.0.0.1:{port}"
    finally:
        stop = pg("pg_ctl", "-D", str(data), "-m", "fast", "-w", "-t", "30", "stop")
        if stop.returncode != 0 and (data / "postmaster.pid").is_file():  # not stopped: the postmaster's pid
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int((data / "postmaster.pid").read_text().split()[0]), signal.SIGKILL)
        shutil.rmtree(workdir, ignore_errors=True)


def create_database(server: str, name: str) -> str:
    """``CREATE DATABASE name`` on the ``postgres()`` server; returns the database's URL."""
    import psycopg2

    connection = psycopg2.connect(f"{server}/postgres")
    try:
        connection.autocommit = True
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
    finally:
        connection.close()
    return f"{server}/{name}"


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


def run_summary(client, run_id) -> str:
    """The markdown of a pipeline flow run's ``distillery-summary`` artifact, read from the Prefect server."""
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(
        any_=[run_id])))
    return next(a for a in artifacts if a.key == "distillery-summary").data
