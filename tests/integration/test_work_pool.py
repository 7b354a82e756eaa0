"""A Prefect process work pool and `prefect worker start` workers against a real `prefect server`.

The pipeline's deployment registered in a pool (`python -m flows.deploy --pool`) keeps the served
deployment's schedule, event trigger and concurrency limit of one, and its runs are run by a worker;
kd_gain's runs fan out over two workers (`python -m flows.sweep --pool`), keeping those already made, and
give the figures the same runs give in one process; the sweep over the pool keeps them too. One server
and two workers are shared by the module; everything started here is stopped at the end.
"""
from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from datetime import datetime, timezone

import pytest
import yaml

from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

from conftest import dvc, make_project, run_stages_in_process, write_params
from flows.deploy import deployment_name, resource_id
from servers import BIN, env_with_venv, free_port, json_receiver, run_summary, running

POOL = "distillery-test-pool"
BUILT_HERE = "benchmark"  # the project fixture runs the stages up to this one in the test process


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    env = env_with_venv(PREFECT_HOME=str(home), PREFECT_API_URL=f"http://127.0.0.1:{port}/api",
                        PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_UI_ENABLED="false",
                        PREFECT_SERVER_EPHEMERAL_ENABLED="false", PREFECT_WORKER_QUERY_SECONDS="1",
                        # a run waiting for the deployment's slot is tried again after this, not Prefect's 30 s
                        PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS="2",
                        PREFECT_WORKER_PREFETCH_SECONDS="1", PREFECT_LOGGING_TO_API_ENABLED="false",
                        DVC_NO_ANALYTICS="1")
    with running([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                 f"{env['PREFECT_API_URL']}/health", home / "server.log", env=env):
        yield env


@pytest.fixture(scope="module")
def client(server):
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: server["PREFECT_API_URL"]}):
        with get_client(sync_client=True) as sync_client:
            yield sync_client


@pytest.fixture(scope="module")
def project(tmp_path_factory, tiny_bert):
    project = make_project(tmp_path_factory.mktemp("pool") / "project", tiny_bert)
    params = yaml.safe_load((project / "params.yaml").read_text())
    for section in ("teacher", "distill"):
        params[section]["train"]["epochs"] = 1
    params["benchmark"].update({"batch_sizes": [1], "sequence_lengths": [32], "warmup": 1, "runs": 10})
    params["evaluate"]["seeds"] = [1, 2]
    params["sweep"] = {"alpha": [0.5], "temperature": [2.0], "seeds": [1, 2], "metric": "accuracy"}
    write_params(project / "params.yaml", params)
    subprocess.run(["git", "commit", "-qam", "smaller"], cwd=project, check=True, capture_output=True)
    # every stage but register runs here, in the test process; the pool's first run registers
    run_stages_in_process(project, through=BUILT_HERE)
    return project


@pytest.fixture(scope="module")
def receiver():
    """Where the workers' flow runs send their failure notifications: (a json:// URL, the bodies received)."""
    with json_receiver() as received:
        yield received


@pytest.fixture(scope="module")
def workers(server, project, receiver):
    """Two workers polling the pool, one flow run at a time each; yields their log files."""
    with contextlib.ExitStack() as stack:
        logs = []
        for name in ("worker-a", "worker-b"):
            log = project.parent / f"{name}.log"
            stack.enter_context(running(
                [str(BIN / "prefect"), "worker", "start", "--pool", POOL, "--type", "process", "--limit", "1",
                 "--name", name], None, log, env={**server, "DISTILLERY_APPRISE_URL": receiver[0]},
                ready_text="started",
                stop_grace_s=3))  # an idle worker waits out 20 s of SIGTERM: its runs are over, nothing to keep
            logs.append(log)
        yield logs


def _deploy(server, project, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flows.deploy", "--project-dir", str(project), "--pool", POOL, *args],
                          cwd=project, env=server, capture_output=True, text=True, timeout=180)


def _wait_final(client, run_id, timeout: float = 300):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = client.read_flow_run(run_id)
        if run.state and run.state.is_final():
            return run
        time.sleep(1)
    raise AssertionError(f"flow run {run_id} did not finish in {timeout} s (state {run.state})")


def test_pool_deployment_keeps_schedule_trigger_and_concurrency_and_a_worker_runs_it(server, client, project,
                                                                                    workers):
    result = _deploy(server, project, "--cron", "0 3 * * *")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"work pool '{POOL}'" in result.stdout and "prefect worker start --pool" in result.stdout
    deployment = client.read_deployment_by_name(f"distillery-pipeline/{deployment_name(project)}")
    assert deployment.work_pool_name == POOL and client.read_work_pool(POOL).type == "process"
    assert deployment.global_concurrency_limit.limit == 1
    assert [s.schedule.cron for s in deployment.schedules] == ["0 3 * * *"]
    assert deployment.parameters == {"project_dir": str(project)}
    # a run whose worker dies with it (a machine lost) is marked Crashed once its heartbeats stop (a trial's stayed
    # Running for good): the runs beat every HEARTBEAT_SECONDS, and one automation per server watches them
    from prefect.automations import Automation

    from flows.deploy import AUTOMATION, HEARTBEAT_SECONDS, UNRESPONSIVE_AFTER

    assert deployment.job_variables["env"]["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] == str(HEARTBEAT_SECONDS)
    assert _deploy(server, project, "--cron", "0 3 * * *").returncode == 0  # deployed again: still one automation
    watching = [a for a in client.read_automations() if a.name == AUTOMATION]
    assert len(watching) == 1 and watching[0].enabled, watching
    trigger, action = watching[0].trigger, watching[0].actions[0]
    assert trigger.after == {"prefect.flow-run.heartbeat"} and trigger.posture == "Proactive"
    assert trigger.within.total_seconds() == UNRESPONSIVE_AFTER > HEARTBEAT_SECONDS
    assert trigger.match_related.get("prefect.resource.id") in ("prefect.tag.distillery", ["prefect.tag.distillery"])
    assert action.type == "change-flow-run-state" and action.state == "CRASHED"
    assert "distillery" in deployment.tags

    # Two runs at once: the worker runs both, one after the other (the second waits for the slot).
    started = time.perf_counter()
    first = client.create_flow_run_from_deployment(deployment.id)
    second = client.create_flow_run_from_deployment(deployment.id)
    first, second = _wait_final(client, first.id), _wait_final(client, second.id)
    elapsed = time.perf_counter() - started
    logs = "".join(log.read_text() for log in workers)
    assert first.state.is_completed() and second.state.is_completed(), logs[-4000:]
    earlier, later = sorted((first, second), key=lambda r: r.start_time)
    assert later.start_time >= earlier.end_time, "two pipeline runs overlapped in one repository"
    assert "AwaitingConcurrencySlot" in [s.name for s in client.read_flow_run_states(later.id)]
    assert f"flow-run/{first.id}" in logs and f"flow-run/{second.id}" in logs  # the workers ran them, not we
    assert json.loads((project / "reports/metrics/eval.json").read_text())["test_rows"] > 0
    from distillery.stages import STAGES

    done = STAGES.index(BUILT_HERE) + 1
    for run, ran in ((earlier, STAGES[done:]), (later, ())):  # the first run made the rest; the second, nothing
        summary = run_summary(client, run.id)
        assert all(f"- `{stage}`: {'ran' if stage in ran else 'up to date'}" in summary for stage in STAGES), summary
    print(f"\n[measure] two pipeline runs through the pool's workers (tiny pipeline from {BUILT_HERE} on, then up "
          f"to date): {elapsed:.1f}s")

    # The event trigger starts a run in the pool.
    import httpx
    from prefect.events import Event

    before = datetime.now(timezone.utc)
    event = Event(event="distillery.data.updated", resource={"prefect.resource.id": resource_id(project)})
    response = httpx.post(f"{server['PREFECT_API_URL']}/events", json=[event.model_dump(mode="json")], timeout=10)
    assert response.status_code == 204, response.text
    deadline, triggered = time.monotonic() + 120, None
    while triggered is None and time.monotonic() < deadline:
        runs = client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])))
        triggered = next((r for r in runs if r.created >= before and r.id not in (first.id, second.id)), None)
        time.sleep(1)
    assert triggered is not None, "the data event started no run"
    assert _wait_final(client, triggered.id).state.is_completed()


def test_kd_gain_and_sweep_fan_out_over_two_workers(server, client, project, workers):
    # the teacher and its cached logits, which the runs below read: the project fixture made them
    assert dvc(project, "repro", "teacher_logits", env=server).returncode == 0
    # kd_gain's four runs (a baseline and a student for each of 2 seeds), first in one process: the figures the
    # pool must give
    local = subprocess.run([sys.executable, "-m", "distillery", "kd_gain"], cwd=project, env=server,
                           capture_output=True, text=True)
    assert local.returncode == 0, local.stderr[-3000:]
    here = json.loads((project / "reports/metrics/kd_gain.json").read_text())
    runs_dir = project / "reports/sweep_runs"
    assert sorted(p.name for p in runs_dir.glob("*.json")) == [
        "seed-1_alpha-0.5_T-2.json", "seed-1_baseline.json", "seed-2_alpha-0.5_T-2.json", "seed-2_baseline.json"]

    # seed 1's two runs are set aside: the pool trains them again, one on each worker, and keeps seed 2's
    aside = project / "reports/sweep_runs_local"
    aside.mkdir()
    seed_1 = ("seed-1_alpha-0.5_T-2.json", "seed-1_baseline.json")
    for name in seed_1:
        (runs_dir / name).rename(aside / name)
    kept = {p.name: p.stat().st_mtime_ns for p in runs_dir.glob("*.json")}
    started = time.perf_counter()
    fanned = subprocess.run([sys.executable, "-m", "flows.sweep", "--project-dir", str(project), "--pool", POOL,
                             "--kd-gain"], cwd=project, env=server, capture_output=True, text=True, timeout=900)
    pool_seconds = time.perf_counter() - started
    logs = [log.read_text() for log in workers]
    assert fanned.returncode == 0, fanned.stdout[-3000:] + fanned.stderr[-3000:] + logs[0][-2000:] + logs[1][-2000:]
    assert "2 runs kept from earlier, 2 run on work pool" in fanned.stdout + fanned.stderr
    assert {p.name: p.stat().st_mtime_ns for p in runs_dir.glob("*.json") if p.name in kept} == kept
    # the two runs were flow runs of the sweep-run deployment, one on each worker
    deployment = client.read_deployment_by_name(f"distillery-sweep-run/{deployment_name(project)}")
    flow_runs = client.read_flow_runs(deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])))
    assert sorted(r.name for r in flow_runs) == ["seed-1_alpha-0.5_T-2", "seed-1_baseline"]
    assert all(r.state.is_completed() for r in flow_runs)
    # a flow run's own process logs "View at .../flow-run/<id>" in the output of the worker that started it
    ran_by = [[r.name for r in flow_runs if f"flow-run/{r.id}" in log] for log in logs]
    assert all(ran_by) and sorted(sum(ran_by, [])) == sorted(r.name for r in flow_runs), ran_by
    # and the same figures as in one process
    pooled = json.loads((project / "reports/metrics/kd_gain.json").read_text())
    assert [s["seed"] for s in here["per_seed"]] == [s["seed"] for s in pooled["per_seed"]] == [1, 2]
    for name in seed_1:
        assert json.loads((runs_dir / name).read_text())["accuracy"] == pytest.approx(
            json.loads((aside / name).read_text())["accuracy"], abs=1e-9), name
    for who in ("student", "baseline"):
        assert pooled["per_seed"][0][who]["accuracy"] == pytest.approx(here["per_seed"][0][who]["accuracy"],
                                                                       abs=1e-9), who
    print(f"\n[measure] kd_gain, 2 of its 4 runs on the pool's 2 workers: {pool_seconds:.1f}s")

    # The sweep over the pool: its grid (α 0.5, T 2, seeds 1 and 2) is kd_gain's runs, all kept; none goes out
    swept = subprocess.run([sys.executable, "-m", "flows.sweep", "--project-dir", str(project), "--pool", POOL],
                           cwd=project, env=server, capture_output=True, text=True, timeout=900)
    assert swept.returncode == 0, swept.stdout[-3000:] + swept.stderr[-3000:]
    assert "4 runs kept from earlier, 0 run on work pool" in swept.stdout + swept.stderr
    result = json.loads((project / "reports/metrics/sweep.json").read_text())
    assert [(c["alpha"], c["temperature"]) for c in result["cells"]] == [(0.5, 2.0)]
    assert len(client.read_flow_runs(deployment_filter=DeploymentFilter(
        id=DeploymentFilterId(any_=[deployment.id])))) == 2  # no new run of the sweep-run deployment


def test_a_run_whose_process_is_killed_is_notified_as_crashed(server, client, project, workers, receiver):
    """The worker marked a run Crashed when its process was killed (for memory, say), and no notification was sent:
    the flow had an on_failure hook only. The worker runs on_crashed hooks."""
    import psutil

    deployment = client.read_deployment_by_name(f"distillery-pipeline/{deployment_name(project)}")
    receiver[1].clear()
    run = client.create_flow_run_from_deployment(deployment.id, parameters={
        "project_dir": str(project), "overrides": {"benchmark.runs": 11}})  # benchmark and register run again
    engine, deadline = None, time.monotonic() + 120
    while engine is None and time.monotonic() < deadline:
        for process in psutil.process_iter():
            with contextlib.suppress(psutil.Error):
                if process.environ().get("PREFECT__FLOW_RUN_ID") == str(run.id) and \
                        any("repro" in child.cmdline() for child in process.children(recursive=True)):  # dvc repro
                    engine = process
                    break
        time.sleep(0.5)
    assert engine is not None, "the flow run never reached a stage"
    for process in [*engine.children(recursive=True), engine]:  # as the kernel's OOM killer would, the lot
        with contextlib.suppress(psutil.Error):
            process.kill()
    assert _wait_final(client, run.id, timeout=120).state.is_crashed()
    deadline = time.monotonic() + 60
    while not receiver[1] and time.monotonic() < deadline:
        time.sleep(0.5)
    assert receiver[1], "no notification of the crashed run"
    assert receiver[1][0]["title"] == f"Distillery run {client.read_flow_run(run.id).name} crashed", receiver[1]
    recovered = subprocess.run([sys.executable, "-m", "flows.recover"], cwd=project, env=server, capture_output=True,
                               text=True, timeout=120)
    assert recovered.returncode == 0 and "put back" in recovered.stdout, recovered.stdout + recovered.stderr
