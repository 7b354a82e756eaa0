"""The served deployment against a real Prefect server: runs on demand, on an event and on a
schedule; one run per repository at a time; a failing stage fails the run, fires the hook and leaves
the earlier stages' outputs alone.

One `prefect server start` (loopback, SQLite in a temporary PREFECT_HOME) and one
`python -m flows.deploy` serve process are shared by the module; every process started here is
stopped at the end. Measured figures are printed (run with -s to see them).
"""
from __future__ import annotations

import hashlib
import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

from conftest import dvc, make_project, run_stages_in_process, write_params
from flows.deploy import deployment_name, resource_id
from servers import run_summary

BIN = Path(sys.executable).parent
BUILT_HERE = "benchmark"  # the served fixture runs the stages up to this one in the test process
EARLIER_OUTPUTS = ("data/prepared", "data/teacher_logits", "models/teacher", "models/student", "models/baseline",
                   "models/onnx", "reports/metrics/eval.json", "reports/metrics/parity.json")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    """Stop a process started with start_new_session=True, and everything it started."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _tree_hash(path: Path) -> str:
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        digest.update(str(file.relative_to(path) if path.is_dir() else file.name).encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


class _Receiver(http.server.BaseHTTPRequestHandler):
    """Collects what Apprise's json:// notifier posts."""
    received: list = []

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def receiver():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"json://127.0.0.1:{server.server_address[1]}/notify", _Receiver.received
    server.shutdown()


@pytest.fixture(scope="module")
def prefect_env(tmp_path_factory):
    """A real `prefect server start` on loopback; yields the environment its clients need."""
    home = tmp_path_factory.mktemp("prefect-home")
    port = _free_port()
    env = dict(os.environ, PREFECT_HOME=str(home), PREFECT_API_URL=f"http://127.0.0.1:{port}/api",
               PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_UI_ENABLED="false",
               PREFECT_SERVER_EPHEMERAL_ENABLED="false", PREFECT_RUNNER_POLL_FREQUENCY="2",
               # a run waiting for the deployment's slot is tried again after this, not Prefect's 30 s
               PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS="2",
               PREFECT_LOGGING_TO_API_ENABLED="false", DVC_NO_ANALYTICS="1",
               PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    log = open(home / "server.log", "w")
    server = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                              env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{env['PREFECT_API_URL']}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None, (home / "server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "prefect server did not become healthy in 120 s"
            time.sleep(0.5)
        yield env
    finally:
        _stop(server)
        log.close()


@pytest.fixture(scope="module")
def client(prefect_env):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: prefect_env["PREFECT_API_URL"]}):
        with get_client(sync_client=True) as sync_client:
            yield sync_client


def _serve(env: dict, project: Path, log_path: Path, *args: str) -> subprocess.Popen:
    log = open(log_path, "w")
    return subprocess.Popen([sys.executable, "-m", "flows.deploy", "--project-dir", str(project), *args],
                            cwd=project, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _deployment(client, name: str, proc: subprocess.Popen, log_path: Path, timeout: float = 90):
    from prefect.exceptions import ObjectNotFound

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, log_path.read_text()[-3000:]
        if "being served" in log_path.read_text():
            try:
                return client.read_deployment_by_name(name)
            except ObjectNotFound:
                pass
        time.sleep(0.5)
    raise AssertionError(f"deployment {name} not served in {timeout} s:\n{log_path.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def served(prefect_env, client, receiver, tmp_path_factory, tiny_bert):
    """The tiny project, served by `python -m flows.deploy` (schedule from params: nightly cron)."""
    project = make_project(tmp_path_factory.mktemp("served") / "project", tiny_bert)
    params = yaml.safe_load((project / "params.yaml").read_text())  # smaller still: the module runs in CI
    for section in ("teacher", "distill"):
        params[section]["train"]["epochs"] = 1
    params["benchmark"].update({"batch_sizes": [1], "sequence_lengths": [32], "warmup": 1, "runs": 10})
    params["schedule"]["debounce_seconds"] = 5  # the tests below send events a whole run apart
    write_params(project / "params.yaml", params)
    subprocess.run(["git", "commit", "-qam", "smaller"], cwd=project, check=True, capture_output=True)
    # Every stage but register runs here, in the test process; the deployment's first run registers (the eight
    # stage processes under the served flow took 73 s of the module's 200)
    run_stages_in_process(project, through=BUILT_HERE)
    env = dict(prefect_env, DISTILLERY_APPRISE_URL=receiver[0])
    log_path = project.parent / "serve.log"
    proc = _serve(env, project, log_path)
    try:
        name = f"distillery-pipeline/{deployment_name(project)}"
        assert name.startswith(f"distillery-pipeline/distillery-{project.name}-")
        deployment = _deployment(client, name, proc, log_path)
        yield {"project": project, "env": env, "deployment": deployment, "log": log_path, "name": name}
    finally:
        _stop(proc)


def _runs(client, deployment_id):
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    return client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])))


def _wait_final(client, run_id, timeout: float = 240):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.read_flow_run(run_id)
        if run.state and run.state.is_final():
            return run
        time.sleep(1)
    raise AssertionError(f"flow run {run_id} did not finish in {timeout} s (state {run.state})")


def _find(node, match):
    """The first dict in a JSON tree that ``match`` accepts."""
    if isinstance(node, dict):
        if match(node):
            return node
        node = list(node.values())
    if isinstance(node, list):
        for child in node:
            found = _find(child, match)
            if found:
                return found
    return None


def _run_cli(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "prefect"), *args], env=env, capture_output=True, text=True, timeout=300)


def _latest_manual_run(client, deployment_id, after: datetime):
    runs = [r for r in _runs(client, deployment_id) if not r.auto_scheduled and r.created and r.created >= after]
    return max(runs, key=lambda r: r.created) if runs else None


def test_deployment_run_completes_the_pipeline(served, client):
    project, env, deployment = served["project"], served["env"], served["deployment"]
    assert deployment.global_concurrency_limit.limit == 1
    before = datetime.now(timezone.utc)
    started = time.perf_counter()
    result = _run_cli(env, "deployment", "run", served["name"], "--watch", "--watch-interval", "1")
    elapsed = time.perf_counter() - started
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:] + served["log"].read_text()[-3000:]
    run = _latest_manual_run(client, deployment.id, before)
    assert run is not None and run.state.is_completed(), (run and run.state, served["log"].read_text()[-3000:])
    print(f"\n[measure] `prefect deployment run --watch` to completion, tiny pipeline from {BUILT_HERE} on: "
          f"{elapsed:.1f}s (flow run {run.total_run_time.total_seconds():.1f}s)")

    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    from tasks.stages import STAGES

    task_runs = {t.name.rsplit("-", 1)[0]: t for t in client.read_task_runs(
        flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])))}
    assert set(STAGES) <= set(task_runs) and all(task_runs[s].state.is_completed() for s in STAGES)
    assert json.loads((project / "reports/metrics/eval.json").read_text())["test_rows"] > 0
    assert (project / "reports/metrics/benchmark.json").is_file() and (project / "models/onnx").is_dir()
    summary = run_summary(client, run.id)
    assert "| teacher |" in summary and "gate decision:" in summary and "MLflow run id:" in summary
    assert str(run.id) in summary
    # the stages made in the fixture were found up to date; the deployment's flow run ran the rest
    done = STAGES.index(BUILT_HERE) + 1
    assert all(f"- `{stage}`: up to date" in summary for stage in STAGES[:done]), summary
    assert all(f"- `{stage}`: ran" in summary for stage in STAGES[done:]), summary
    registered = json.loads((project / "reports/metrics/register.json").read_text())  # this run's registration
    assert f"MLflow run id: `{registered['mlflow_run_id']}`" in summary, summary


def test_data_event_starts_a_run(served, client):
    project, env, deployment = served["project"], served["env"], served["deployment"]
    state = project / ".distillery" / "watch_state.json"
    state.parent.mkdir(exist_ok=True)
    state.write_text(json.dumps({"sha256": "0" * 64}))  # the watcher last saw other content
    bare_started = time.perf_counter()
    bare = dvc(project, "repro")
    bare_seconds = time.perf_counter() - bare_started
    assert bare.returncode == 0 and "Running stage" not in bare.stdout, bare.stdout
    before = datetime.now(timezone.utc)
    watch = subprocess.run([sys.executable, "-m", "flows.watch", "--once", "--project-dir", str(project)],
                           cwd=project, env=env, capture_output=True, text=True, timeout=120)
    emitted_at = datetime.now(timezone.utc)
    assert watch.returncode == 0 and "emitted event" in watch.stdout, watch.stdout + watch.stderr
    assert json.loads(state.read_text())["sha256"] != "0" * 64

    deadline = time.monotonic() + 120
    run = None
    while run is None and time.monotonic() < deadline:
        run = _latest_manual_run(client, deployment.id, before)
        time.sleep(1)
    assert run is not None, "no flow run followed the event:\n" + served["log"].read_text()[-3000:]
    run = _wait_final(client, run.id)
    assert run.state.is_completed()
    flow_seconds = run.total_run_time.total_seconds()
    print(f"\n[measure] event emitted -> triggered run started: {(run.start_time - emitted_at).total_seconds():.1f}s "
          f"(runner poll {env['PREFECT_RUNNER_POLL_FREQUENCY']}s); unchanged workspace: bare `dvc repro` "
          f"{bare_seconds:.1f}s, flow run {flow_seconds:.1f}s, ratio {flow_seconds / bare_seconds:.1f}x")

    # Unchanged data: the watcher stays quiet.
    again = subprocess.run([sys.executable, "-m", "flows.watch", "--once", "--project-dir", str(project)],
                           cwd=project, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "unchanged" in again.stdout

    # The README's hand-emitted event starts a run too; another repository's does not.
    before = datetime.now(timezone.utc)
    for resource in ("distillery.data.some-other-repository", resource_id(project)):
        emitted = _run_cli(env, "event", "emit", "distillery.data.updated", "--resource-id", resource)
        assert emitted.returncode == 0, emitted.stdout + emitted.stderr
    deadline = time.monotonic() + 120
    runs = []
    while not runs and time.monotonic() < deadline:
        runs = [r for r in _runs(client, deployment.id) if not r.auto_scheduled and r.created >= before]
        time.sleep(1)
    assert len(runs) == 1, runs
    assert _wait_final(client, runs[0].id).state.is_completed()
    time.sleep(3)  # no second run appears for the other repository's event
    assert len([r for r in _runs(client, deployment.id) if not r.auto_scheduled and r.created >= before]) == 1


def test_interval_schedule_makes_the_scheduler_create_a_run(served, client, tmp_path):
    project, env = served["project"], served["env"]
    log_path = tmp_path / "serve-interval.log"
    name = "distillery-every-5s"
    proc = _serve(env, project, log_path, "--name", name, "--interval", "5", "--no-trigger")
    try:
        deployment = _deployment(client, f"distillery-pipeline/{name}", proc, log_path)
        deadline = time.monotonic() + 90
        completed = []
        while not completed and time.monotonic() < deadline:
            runs = [r for r in _runs(client, deployment.id) if r.auto_scheduled]
            completed = [r for r in runs if r.state and r.state.is_completed()]
            time.sleep(1)
        assert completed, (f"no scheduled run completed: {[(r.name, r.state_name) for r in _runs(client, deployment.id)]}"
                           + log_path.read_text()[-3000:])
        client.pause_deployment(deployment.id)  # no more runs; let one that already started finish
        while time.monotonic() < deadline + 60 and any(
                r.state_name in ("Running", "Pending", "Submitting")
                for r in _runs(client, deployment.id)):
            time.sleep(1)
    finally:
        _stop(proc)


def test_second_run_waits_for_the_first_and_overrides_become_an_experiment(served, client):
    project, deployment = served["project"], served["deployment"]
    params_before = (project / "params.yaml").read_bytes()
    overrides = {"benchmark.runs": 5}  # benchmark and register run again (register keys are not overridable)
    first = client.create_flow_run_from_deployment(deployment.id, parameters={"overrides": overrides})
    second = client.create_flow_run_from_deployment(deployment.id, parameters={"overrides": overrides})
    first, second = _wait_final(client, first.id), _wait_final(client, second.id)
    assert first.state.is_completed() and second.state.is_completed(), served["log"].read_text()[-3000:]
    earlier, later = sorted((first, second), key=lambda r: r.start_time)
    assert later.start_time >= earlier.end_time, "two pipeline runs overlapped in one repository"
    states = [s.name for s in client.read_flow_run_states(later.id)]
    assert "AwaitingConcurrencySlot" in states, states

    # The overrides held for those runs only, and each run is a DVC experiment with them.
    assert (project / "params.yaml").read_bytes() == params_before
    shown = dvc(project, "exp", "show", "--json")
    assert shown.returncode == 0, shown.stderr
    for run in (earlier, later):
        experiment = f"prefect-{run.name}"
        saved = _find(json.loads(shown.stdout), lambda node: node.get("name") == experiment and "data" in node)
        assert saved, f"no DVC experiment {experiment}: {shown.stdout[-2000:]}"
        assert saved["data"]["params"]["params.yaml"]["data"]["benchmark"]["runs"] == 5
    # The first run's summary is its own: its benchmark changed, so register ran and logged a new MLflow run; the
    # workspace's register.json, put back after the overrides, is the run before (the summary once showed that one)
    import re

    summary = run_summary(client, earlier.id)
    workspace_run = json.loads((project / "reports/metrics/register.json").read_text())["mlflow_run_id"]
    shown_run = re.search(r"MLflow run id: `([0-9a-f]+)`", summary)
    assert shown_run and shown_run.group(1) != workspace_run, summary
    assert "- `register`: ran" in summary, summary
    print(f"\n[measure] second run states: {states}")


def test_failing_stage_fails_the_run_notifies_and_keeps_earlier_outputs(served, client, receiver):
    project, env, deployment = served["project"], served["env"], served["deployment"]
    params_before = (project / "params.yaml").read_bytes()
    hashes = {path: _tree_hash(project / path) for path in EARLIER_OUTPUTS}
    received = receiver[1]
    received.clear()
    result = _run_cli(env, "deployment", "run", served["name"], "--watch", "--watch-interval", "1",
                      "--param", 'overrides={"benchmark.sequence_lengths": [16, 512]}')
    run = _latest_manual_run(client, deployment.id, datetime.now(timezone.utc).replace(year=2000))
    assert run.state.is_failed(), (run.state, result.stdout[-2000:])
    # refused by check_params, before any stage ran (the benchmark stage refused it once the others had run)
    assert "stage check_params failed" in run.state.message and "512 exceeds" in run.state.message
    deadline = time.monotonic() + 30
    while not received and time.monotonic() < deadline:
        time.sleep(0.5)
    assert received, "the on_failure hook sent no notification"
    assert "failed at stage check_params" in received[0]["title"] and "512 exceeds" in received[0]["message"]
    assert {path: _tree_hash(project / path) for path in EARLIER_OUTPUTS} == hashes
    assert (project / "params.yaml").read_bytes() == params_before  # the overrides held for that run only


def _post_event(env: dict, resource: str) -> None:
    import httpx
    from prefect.events import Event

    event = Event(event="distillery.data.updated", resource={"prefect.resource.id": resource})
    response = httpx.post(f"{env['PREFECT_API_URL']}/events", json=[event.model_dump(mode="json")], timeout=10)
    assert response.status_code == 204, response.text


@pytest.mark.slow
def test_a_storm_of_events_is_at_most_one_running_and_one_queued_run(served, client, tmp_path):
    """10 events in 10 s start at most 2 runs, which never overlap and never hit DVC's lock; a stage started
    by hand meanwhile refuses with a one-line message instead of running against the run's params."""
    project, env = served["project"], served["env"]
    log_path = tmp_path / "serve-storm.log"
    name, resource = "distillery-storm", "distillery.data.storm-test"
    proc = _serve(env, project, log_path, "--name", name, "--no-schedule", "--resource-id", resource,
                  "--debounce-seconds", "30")
    try:
        deployment = _deployment(client, f"distillery-pipeline/{name}", proc, log_path)
        time.sleep(3)  # the trigger is registered with the deployment; let the server's triggers load it
        for _ in range(10):
            _post_event(env, resource)
            time.sleep(1)
        deadline = time.monotonic() + 60
        while not _runs(client, deployment.id) and time.monotonic() < deadline:
            time.sleep(1)
        runs = _runs(client, deployment.id)
        assert 1 <= len(runs) <= 2, [(r.name, r.state_name) for r in runs]

        # While a run holds the repository lock, a stage started in a shell refuses (exit 3, one line).
        deadline = time.monotonic() + 180
        while not any(r.state_name == "Running" for r in _runs(client, deployment.id)):
            assert time.monotonic() < deadline, "no run started:\n" + log_path.read_text()[-3000:]
            time.sleep(0.5)
        hand = subprocess.run([sys.executable, "-m", "distillery", "prepare"], cwd=project, capture_output=True,
                              text=True, timeout=120, env={**{k: v for k, v in env.items()
                                                             if k != "DISTILLERY_REPO_LOCK_TOKEN"},
                                                          "DISTILLERY_REPO_LOCK_WAIT_SECONDS": "1"})
        assert hand.returncode == 3, hand.stderr[-2000:]
        assert "distillery prepare: transient error: another pipeline run holds" in hand.stderr.strip().splitlines()[-1]

        finished = [_wait_final(client, r.id, timeout=600) for r in _runs(client, deployment.id)]
        assert len(finished) <= 2 and all(r.state.is_completed() for r in finished), \
            [(r.name, r.state_name, r.state.message) for r in finished] + [log_path.read_text()[-3000:]]
        assert "Unable to acquire lock" not in log_path.read_text()
        ordered = sorted(finished, key=lambda r: r.start_time)
        for earlier, later in zip(ordered, ordered[1:]):
            assert later.start_time >= earlier.end_time, "two pipeline runs overlapped in one repository"
        print(f"\n[measure] 10 events in 10 s -> {len(finished)} run(s)")
    finally:
        _stop(proc)
