"""Tracking and the registry on team servers: ``mlflow server`` on PostgreSQL with its artifacts in S3 (moto on
loopback), switched by configuration only (``MLFLOW_TRACKING_URI``; ``register.lock`` for the lock).

The module starts PostgreSQL (a throw-away cluster), moto and ``mlflow server --backend-store-uri
postgresql://... --artifacts-destination s3://...`` once, and stops them at the end. The pipeline's own processes
get ``MLFLOW_TRACKING_URI`` and nothing else: no AWS keys, so every artifact goes through the server.
Without PostgreSQL's binaries the server keeps its runs in SQLite and the PostgreSQL tests skip, naming what is
missing; the S3 artifact path is tested either way.

The projects are ``test_registry``'s: what ``register`` reads, with a tiny exported model. Model A scores 100% on
the test split (the split is labelled by A's own predictions) and model B 0%, so which one must be champion is
known whatever order two registrations run in.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import requests
from mlflow import MlflowClient

from conftest import update_params
from distillery.cli import main
from distillery.tracking import redact_uri
from servers import (S3_KEYS, create_database, env_with_venv, free_port, mlflow_server, moto_s3, postgres,
                     postgres_missing, running, s3_keys)
from test_registry import LABELS, _assert_same_answers, _export, build_project, direct_logits

NAME = "distillery-student"
BUCKET = "mlflow"
NO_POSTGRES = postgres_missing()


def client_env(uri: str, **extra: str) -> dict:
    """The environment a team member's pipeline runs with: the tracking URI, and no S3 keys or endpoint."""
    env = {k: v for k, v in env_with_venv().items() if not k.startswith("AWS_") and k != "MLFLOW_S3_ENDPOINT_URL"}
    return {**env, "MLFLOW_TRACKING_URI": uri, **extra}


@pytest.fixture(scope="module")
def team(tmp_path_factory):
    """PostgreSQL (when installed), moto's S3 and an ``mlflow server`` on both; everything stopped at the end."""
    import contextlib

    work = tmp_path_factory.mktemp("team")
    with contextlib.ExitStack() as stack:
        pg = None if NO_POSTGRES else stack.enter_context(postgres())
        backend = create_database(pg, "mlflow") if pg else f"sqlite:///{work / 'mlflow.db'}"
        lock = create_database(pg, "locks") if pg else None
        endpoint = stack.enter_context(moto_s3(work / "moto", buckets=(BUCKET,)))
        uri = stack.enter_context(mlflow_server(work / "mlflow", backend_store_uri=backend,
                                                artifacts_destination=f"s3://{BUCKET}/artifacts",
                                                env={**S3_KEYS, "MLFLOW_S3_ENDPOINT_URL": endpoint}))
        yield {"uri": uri, "s3": endpoint, "backend": backend, "lock": lock, "work": work}


def _configure(root: Path, **keys) -> None:
    """Set dotted params keys in ``root``'s params.yaml (e.g. ``register.lock``)."""
    update_params(root / "params.yaml", **keys)


def _project(root: Path, tiny_bert: Path, shift: int, **keys) -> Path:
    """A project whose test split is labelled by model A; its own exported model is A (shift 0) or B (shift 1)."""
    project = build_project(root, tiny_bert)  # exports A and labels the test split by A
    if shift:
        _export(project, tiny_bert, shift=shift)
    _configure(project, **{"register.gate.tolerance": 0.0, **keys})  # the better model must win the champion check
    return project


def _aliases(client: MlflowClient, name: str) -> dict:
    return {alias: str(version) for alias, version in client.get_registered_model(name).aliases.items()}


def _sql(url: str, query: str) -> list:
    import psycopg2

    connection = psycopg2.connect(url)
    try:
        with connection.cursor() as cursor:
            cursor.execute(query)
            return cursor.fetchall()
    finally:
        connection.close()


def test_register_gate_promote_rollback_and_serve_on_the_server(team, tiny_bert, tmp_path, monkeypatch, capsys):
    uri = team["uri"]
    lock = {"register.lock": team["lock"]} if team["lock"] else {}
    a = _project(tmp_path / "a", tiny_bert, shift=0, **lock)
    b = _project(tmp_path / "b", tiny_bert, shift=1, **lock)
    for key in [k for k in os.environ if k.startswith("AWS_")] + ["MLFLOW_S3_ENDPOINT_URL"]:
        monkeypatch.delenv(key, raising=False)  # the pipeline never sees S3 keys: artifacts go through the server
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)

    monkeypatch.chdir(a)
    assert main(["register"]) == 0, capsys.readouterr().err
    first = json.loads((a / "reports/metrics/register.json").read_text())
    assert (first["decision"], first["version"], first["tracking_uri"]) == ("promoted", "1", uri)
    assert _aliases(client, NAME) == {"champion": "1"}
    assert not (a / "mlruns").exists()  # nothing went to the project's own SQLite store
    keys = s3_keys(team["s3"], BUCKET, "artifacts/")  # the model and the run's reports are in the bucket
    assert any(k.endswith("/MLmodel") for k in keys) and any(k.endswith(".onnx") for k in keys), keys
    assert any(k.endswith("/gate_decision.json") for k in keys), keys
    experiment = client.get_experiment(first["experiment_id"])
    assert experiment.artifact_location.startswith("mlflow-artifacts:"), experiment.artifact_location
    if team["lock"]:  # the registry's rows are in PostgreSQL
        assert _sql(team["backend"], "SELECT name, version FROM model_versions") == [(NAME, 1)]

    monkeypatch.chdir(b)
    assert main(["register"]) == 0, capsys.readouterr().err
    second = json.loads((b / "reports/metrics/register.json").read_text())
    assert (second["decision"], second["version"], second["champion_before"]) == ("rejected", "2", "1")
    assert _aliases(client, NAME) == {"champion": "1", "challenger": "2"}
    assert "distillery.gate.failed.champion" in client.get_model_version(NAME, "2").tags

    monkeypatch.chdir(a)
    assert main(["promote", "2", "--reason", "team review"]) == 0, capsys.readouterr().err
    assert _aliases(client, NAME) == {"champion": "2"}
    assert client.get_model_version(NAME, "2").tags["distillery.previous_champion"] == "1"
    assert main(["rollback", "--reason", "complaints"]) == 0, capsys.readouterr().err
    assert _aliases(client, NAME) == {"champion": "1"}
    assert "distillery.rolled_back_at" in client.get_model_version(NAME, "2").tags
    capsys.readouterr()
    assert main(["models"]) == 0
    listing = capsys.readouterr().out
    assert "| 1 | champion |" in listing and "| 2 | - |" in listing, listing

    # The champion (model A again) served from the registry: its files come from S3 through the server.
    port = free_port()
    command = [str(Path(sys.executable).parent / "mlflow"), "models", "serve", "-m", f"models:/{NAME}@champion",
               "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)]
    texts = ["good great love", "bad awful hate", "the car drives", "a very long day"]
    with running(command, f"http://127.0.0.1:{port}/ping", tmp_path / "serve.log", env=client_env(uri)):
        answer = requests.post(f"http://127.0.0.1:{port}/invocations", json={"inputs": texts}, timeout=120)
    assert answer.status_code == 200, answer.text
    _assert_same_answers(answer.json()["predictions"], direct_logits(a, texts))
    b_logits = direct_logits(b, texts)  # model B labels every text differently: serving B would show
    assert [row["label"] for row in answer.json()["predictions"]] != [LABELS[i] for i in np.argmax(b_logits, -1)]


@pytest.mark.skipif(NO_POSTGRES is not None, reason=f"PostgreSQL tests skipped: {NO_POSTGRES}")
def test_two_workspaces_registering_at_once_keep_one_champion(team, tiny_bert, tmp_path):
    """Two processes in two project directories register one model name at the same moment, as two machines
    would: the file lock cannot see across them (each has its own lock directory), the advisory lock does."""
    name, uri = "team-concurrent", team["uri"]
    # B answers none of the test rows right: with above_one_label on, B registering first would not become the
    # champion the later registration must be gated against; the lock is under test here, not that check
    projects = {label: _project(tmp_path / label, tiny_bert, shift=shift, **{"register.model_name": name,
                                                                             "register.lock": team["lock"],
                                                                             "register.gate.above_one_label": False})
                for label, shift in (("a", 0), ("b", 1))}
    procs, started = {}, time.perf_counter()
    for label, project in projects.items():
        env = client_env(uri, DISTILLERY_LOCK_DIR=str(tmp_path / f"locks-{label}"))  # "another machine"
        procs[label] = subprocess.Popen([sys.executable, "-m", "distillery", "register"], cwd=project, env=env,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seconds: dict = {}
    while len(seconds) < len(procs) and time.perf_counter() - started < 600:  # each one's own wall time
        seconds.update({label: round(time.perf_counter() - started, 1) for label, proc in procs.items()
                        if label not in seconds and proc.poll() is not None})
        time.sleep(0.2)
    for proc in procs.values():
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err[-3000:]
    decisions = {label: json.loads((p / "reports/metrics/register.json").read_text()) for label, p in projects.items()}

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.get_experiment_by_name("distillery")
    runs = client.search_runs([experiment.experiment_id], f"tags.`distillery.kind` = 'pipeline' and "
                                                           f"tags.`distillery.model_name` = '{name}'")
    by_id = {run.info.run_id: run for run in runs}
    order = sorted(decisions, key=lambda label: by_id[decisions[label]["mlflow_run_id"]].info.start_time)
    earlier, later = (by_id[decisions[label]["mlflow_run_id"]].info for label in order)
    assert earlier.end_time <= later.start_time, "the two registrations overlapped"  # the lock serialised them
    # The later one was gated against the earlier one's champion, never against an empty registry.
    assert decisions[order[0]]["champion_before"] is None and decisions[order[0]]["decision"] == "promoted"
    assert decisions[order[1]]["champion_before"] == decisions[order[0]]["version"]
    a_version, b_version = decisions["a"]["version"], decisions["b"]["version"]
    if order == ["b", "a"]:  # A, better, replaces B
        assert decisions["a"]["decision"] == "promoted"
        assert _aliases(client, name) == {"champion": a_version}
        assert client.get_model_version(name, a_version).tags["distillery.previous_champion"] == b_version
    else:  # B, worse, is refused on the champion check
        assert decisions["b"]["decision"] == "rejected"
        assert _aliases(client, name) == {"champion": a_version, "challenger": b_version}
    versions = client.search_model_versions(f"name='{name}'")
    assert sorted(int(v.version) for v in versions) == [1, 2]
    assert sum("champion" in client.get_model_version(name, v.version).aliases for v in versions) == 1
    evidence = {label: {"version": d["version"], "decision": d["decision"], "champion_before": d["champion_before"],
                        "champion": next(c["detail"] for c in d["checks"] if c["name"] == "champion"),
                        "wall_s": seconds[label]} for label, d in decisions.items()}
    print(f"\nconcurrent registrations, in lock order {order}: {json.dumps(evidence, indent=1)}")


@pytest.mark.skipif(NO_POSTGRES is not None, reason=f"PostgreSQL tests skipped: {NO_POSTGRES}")
def test_the_advisory_lock_waits_names_its_holder_and_dies_with_it(team, tiny_bert, tmp_path, monkeypatch, capsys):
    from distillery.advisory_lock import LockUnavailable, advisory_lock, lock_key
    from distillery.errors import LockTimeout

    url = team["lock"]
    with advisory_lock(url, "held-model", timeout_s=5):
        with pytest.raises(LockTimeout, match=rf"another registration of 'held-model' holds the advisory lock -?\d+ "
                                              rf"on {re.escape(redact_uri(url))} \(distillery register held-model "
                                              rf"pid {os.getpid()} on "):
            with advisory_lock(url, "held-model", timeout_s=0.5, poll_s=0.1):
                pass
        assert capsys.readouterr().err.startswith(  # said once as the wait began, the holder named
            f"register: waiting up to 0.5s (register.lock_timeout_s) for another registration of 'held-model' "
            f"(advisory lock {lock_key('held-model')} on {redact_uri(url)}: distillery register held-model pid "
            f"{os.getpid()} on ")
        with advisory_lock(url, "another-model", timeout_s=0):  # one model's registration never blocks another's
            pass
        # The register command, waiting for it, fails with one line and exit code 3 (retried by the flow).
        project = _project(tmp_path / "p", tiny_bert, shift=0, **{"register.model_name": "held-model",
                                                                  "register.lock": url, "register.lock_timeout_s": 1})
        monkeypatch.chdir(project)
        monkeypatch.setenv("MLFLOW_TRACKING_URI", team["uri"])
        capsys.readouterr()
        assert main(["register"]) == 3
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 2 and err[0].startswith("register: waiting up to 1s") and err[1].startswith(
            "distillery register: transient error: another registration of 'held-model' holds the advisory lock"), err
    assert not (project / "reports/metrics/register.json").exists()

    # A holder killed by SIGKILL frees the lock: PostgreSQL ends its session when the socket closes.
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom distillery.advisory_lock import "
                               "advisory_lock\nwith advisory_lock(sys.argv[1], 'killed-model', 30):\n    "
                               "print('held', flush=True)\n    time.sleep(600)\n", url],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LockTimeout):
            with advisory_lock(url, "killed-model", timeout_s=0.3, poll_s=0.1):
                pass
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=10)
        with advisory_lock(url, "killed-model", timeout_s=10, poll_s=0.1):
            pass
    finally:
        if holder.poll() is None:
            holder.kill()

    # A lock database that does not answer: one line naming register.lock, exit code 3.
    closed = f"postgresql://distillery@127.0.0.1:{free_port()}/locks"
    with pytest.raises(LockUnavailable, match=r"^register\.lock: PostgreSQL at postgresql://127\.0\.0\.1:\d+/locks is "
                                              r"unavailable \(.*\); start it, or set register\.lock: file on one "
                                              r"machine only$") as error:
        with advisory_lock(closed, "m", timeout_s=1):
            pass
    assert error.value.exit_code == 3 and "\n" not in str(error.value)
    # A server that answers and refuses (a database or role that is not there, a wrong password): a setting to fix,
    # exit code 2, never retried as an outage (a trial's wrong password and missing database were exit 3)
    from distillery.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^register\.lock: PostgreSQL at .*/nodb refused the connection of role "
                                          r"'\w+' \(.*database \"nodb\" does not exist\): the role or database in "
                                          r"register\.lock does not exist on that server") as error:
        with advisory_lock(url.rsplit("/", 1)[0] + "/nodb", "m", timeout_s=1):
            pass
    assert error.value.exit_code == 2
