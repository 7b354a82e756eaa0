"""Unattended runs, piece by piece: overrides, the data watcher, stage timeouts, retries, the lock,
the failure hook, the deployment's settings and the summary. The real-server behaviour is in
tests/integration/test_prefect_server.py."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest
import yaml

from distillery.config import load_params, load_schedule
from distillery.errors import ConfigError, DataError

ROOT = Path(__file__).resolve().parents[2]


def _project(tmp_path: Path, **data) -> Path:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"].update(data)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return tmp_path


# --- overrides -------------------------------------------------------------------------------

def test_override_args_are_spelled_as_dvc_exp_run_takes_them():
    from tasks.experiments import override_args
    from tasks.stages import BadInput

    assert override_args({"distill.alpha": 0.3, "student.layers": [0, 3], "distill.loss": "mse",
                          "data.labels": None}) == \
        ["distill.alpha=0.3", "student.layers=[0, 3]", "distill.loss=mse", "data.labels=null"]
    with pytest.raises(BadInput, match="not a params key"):
        override_args({"distill.alpha=1": 0.3})


def test_set_params_keeps_comments_and_rejects_bad_values(tmp_path):
    from tasks.experiments import restore_params, set_params
    from tasks.stages import BadInput

    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    original = (tmp_path / "params.yaml").read_text()
    assert set_params.fn(str(tmp_path), {"distill.alpha": "0.3", "benchmark.runs": 7}) == original
    changed = (tmp_path / "params.yaml").read_text()
    assert load_params(tmp_path / "params.yaml").distill.alpha == 0.3
    assert load_params(tmp_path / "params.yaml").benchmark.runs == 7
    assert "# weight of the hard-label CE" in changed  # DVC's writer keeps the comments
    restore_params(str(tmp_path), original)
    assert (tmp_path / "params.yaml").read_text() == original

    with pytest.raises(BadInput, match="distill.alpha = 1.5 is not allowed"):
        set_params.fn(str(tmp_path), {"distill.alpha": 1.5})
    with pytest.raises(BadInput, match=r"^overrides: distill.alphaa is not a key of params.yaml; distill has: "
                                        r"labelled_rows, alpha, temperature,"):
        set_params.fn(str(tmp_path), {"distill.alphaa": 0.3})  # not DVC's "To append ... use +distill.alphaa"
    with pytest.raises(BadInput, match=r"^overrides: distill.alpha.x is not a key of params.yaml; distill.alpha "
                                        r"is a value, not a section$"):
        set_params.fn(str(tmp_path), {"distill.alpha.x": 0.3})
    assert (tmp_path / "params.yaml").read_text() == original  # a rejected override leaves the file alone

    # a nested mapping sets the keys it names (it failed in DVC's override grammar), the rest of the section kept
    set_params.fn(str(tmp_path), {"distill": {"alpha": 0.1, "train": {"epochs": 3}}})
    nested = load_params(tmp_path / "params.yaml")
    assert (nested.distill.alpha, nested.distill.train.epochs) == (0.1, 3)
    assert (nested.distill.temperature, nested.distill.train.learning_rate) == (2.0, "auto")
    restore_params(str(tmp_path), original)
    with pytest.raises(BadInput, match=r"^overrides: distill.alphaa is not a key of params.yaml"):
        set_params.fn(str(tmp_path), {"distill": {"alphaa": 0.3}})


def test_recover_params_removes_the_scratch_of_a_run_killed_while_setting_params(tmp_path):
    from tasks.experiments import recover_params

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / f".params-overrides.tmp-{dead.pid}.yaml").write_text("seed: 1\n")
    alive = tmp_path / f".params-overrides.tmp-{os.getpid()}.yaml"  # a live run's: left alone
    alive.write_text("seed: 2\n")
    assert recover_params(str(tmp_path)) is False  # no backup: params.yaml was never changed
    assert sorted(p.name for p in tmp_path.iterdir()) == [alive.name]


def test_a_stage_refuses_a_killed_flow_runs_overrides_until_they_are_put_back(tmp_path, monkeypatch, capsys):
    """A flow run with overrides was killed mid-run; `dvc repro` then ran export, benchmark and register under its
    override (distill.alpha 0.9) and promoted the result. A stage now refuses, unless it is the live flow's own."""
    from distillery.cli import run_locked
    from distillery.locking import repository_lock
    from flows.recover import main as recover

    monkeypatch.chdir(tmp_path)
    (tmp_path / ".dvc").mkdir()
    (tmp_path / ".distillery").mkdir()
    (tmp_path / "params.yaml").write_text("distill:\n  alpha: 0.9\n")
    (tmp_path / ".distillery/params.yaml.before-overrides").write_text("distill:\n  alpha: 0.5\n")
    ran = []
    with pytest.raises(ConfigError, match=r"^params.yaml still holds the overrides of a flow run that was stopped "
                                          r"before it could put the file back .* so export would run with them: "
                                          r"`python -m flows.recover` puts back"):
        run_locked("export", run=lambda: ran.append("export"))
    assert ran == []
    # the live flow's own dvc repro: its stages carry the holder's token and go through
    code = "from distillery.cli import run_locked; run_locked('export', run=lambda: print('ran'))"
    with repository_lock(".", "the flow"):
        child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert (child.returncode, child.stdout.strip()) == (0, "ran"), child.stderr[-2000:]
    assert recover([]) == 0
    assert "put back from before a killed run's overrides" in capsys.readouterr().out
    assert (tmp_path / "params.yaml").read_text() == "distill:\n  alpha: 0.5\n"
    assert not (tmp_path / ".distillery/params.yaml.before-overrides").exists()
    run_locked("export", run=lambda: ran.append("export"))
    assert ran == ["export"]
    assert recover([]) == 0 and "nothing to recover" in capsys.readouterr().out


# --- the data watcher ------------------------------------------------------------------------

def test_watcher_emits_only_when_the_content_changes(tmp_path):
    from flows.watch import STATE_PATH, check_once

    project = _project(tmp_path, source="data/raw/tweets.csv")
    data = project / "data" / "raw" / "tweets.csv"
    data.parent.mkdir(parents=True)
    data.write_text("text,sentiment\ngood,positive\n")
    sent = []

    def emit(event, resource, payload):
        sent.append((event, resource, payload))
        return f"event-{len(sent)}"

    first = check_once(project, emit=emit)
    assert first["previous"] is None and not sent  # the first look only records the hash
    assert json.loads((project / STATE_PATH).read_text())["sha256"] == first["sha256"]
    assert check_once(project, emit=emit)["event_id"] is None and not sent
    data.write_text("text,sentiment\ngood,positive\nbad,negative\n")
    changed = check_once(project, emit=emit)
    assert changed["event_id"] == "event-1" and changed["previous"] == first["sha256"]
    event, resource, payload = sent[0]
    assert event == "distillery.data.updated"
    assert resource["prefect.resource.id"] == \
        f"distillery.data.{project.name}-{hashlib.sha256(str(project.resolve()).encode()).hexdigest()[:6]}"
    assert payload == {"source": "data/raw/tweets.csv", "sha256": changed["sha256"], "previous_sha256": first["sha256"]}
    assert check_once(project, emit=emit)["event_id"] is None and len(sent) == 1


def test_watcher_keeps_the_old_hash_when_the_event_was_not_sent(tmp_path):
    from flows.watch import STATE_PATH, check_once

    project = _project(tmp_path, source="data/raw")
    (project / "data" / "raw").mkdir(parents=True)
    (project / "data" / "raw" / "a.csv").write_text("text,sentiment\nx,positive\n")
    check_once(project, emit=lambda *a: None)
    recorded = json.loads((project / STATE_PATH).read_text())["sha256"]
    (project / "data" / "raw" / "b.csv").write_text("text,sentiment\ny,negative\n")  # a directory source
    assert check_once(project, emit=lambda *a: None)["sha256"] != recorded
    assert json.loads((project / STATE_PATH).read_text())["sha256"] == recorded  # retried at the next look


def test_watcher_keeps_its_old_hash_when_the_server_is_unreachable(tmp_path):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.watch import STATE_PATH, check_once

    project = _project(tmp_path, source="data/raw/a.csv")
    (project / "data" / "raw").mkdir(parents=True)
    (project / "data" / "raw" / "a.csv").write_text("text,sentiment\nx,positive\n")
    check_once(project)  # first look: records the hash, sends nothing
    recorded = json.loads((project / STATE_PATH).read_text())["sha256"]
    (project / "data" / "raw" / "a.csv").write_text("text,sentiment\nx,positive\ny,negative\n")
    with temporary_settings(updates={PREFECT_API_URL: f"http://127.0.0.1:{_free_port()}/api"}):  # nobody there
        result = check_once(project)  # the real sender
    assert result["event_id"] is None and result["sha256"] != recorded
    assert json.loads((project / STATE_PATH).read_text())["sha256"] == recorded
    assert [p.name for p in (project / STATE_PATH).parent.iterdir()] == ["watch_state.json"]  # no scratch left


def test_watcher_refuses_to_run_without_a_reachable_prefect_server(tmp_path):
    project = _project(tmp_path, source="data/raw/a.csv")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(PYTHONPATH=str(ROOT), PREFECT_HOME=str(tmp_path / "prefect-home"))
    unset = subprocess.run([sys.executable, "-m", "flows.watch", "--once"], cwd=project, env=env,
                           capture_output=True, text=True, timeout=120)
    assert unset.returncode == 2 and unset.stderr.strip().splitlines() == [
        unset.stderr.strip()] and "PREFECT_API_URL is not set" in unset.stderr, unset.stderr
    port = _free_port()
    env["PREFECT_API_URL"] = f"http://admin:s3cretPW@127.0.0.1:{port}/api"  # a long-running watcher's log keeps it
    down = subprocess.run([sys.executable, "-m", "flows.watch", "--once"], cwd=project, env=env,
                          capture_output=True, text=True, timeout=120)
    assert down.returncode == 3 and f"the Prefect server at http://127.0.0.1:{port}/api does not answer" in \
        down.stderr and "s3cretPW" not in down.stderr + down.stdout, down.stderr
    assert not (project / ".distillery").exists()  # nothing recorded


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_watcher_hashes_the_bundled_corpus_and_refuses_hub_sources(tmp_path):
    from flows.watch import check_once

    assert len(check_once(_project(tmp_path, source="bundled:tweets"), emit=lambda *a: None)["sha256"]) == 64
    with pytest.raises(DataError, match="cannot be hashed offline"):
        check_once(_project(tmp_path, source="hub:nyu-mll/glue"), emit=lambda *a: None)


# --- stage timeouts, retries, the flow-run id ------------------------------------------------

@pytest.fixture
def dvc_repo(tmp_path):
    """A git + DVC repository with a slow stage and a stage that records the flow-run id it sees."""
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {
        "slow": {"cmd": "python -c \"import os, time; open('pid', 'w').write(str(os.getpid())); time.sleep(120)\"",
                 "outs": ["slow.txt"]},
        "fast": {"cmd": "python -c \"import os; open('fast.txt', 'w').write("
                        "os.environ.get('DISTILLERY_ORCHESTRATOR_RUN_ID', 'none'))\"",
                 "outs": ["fast.txt"]}}}))
    for args in (["git", "init", "-q"], ["git", "config", "user.email", "ci@example.com"],
                 ["git", "config", "user.name", "CI"], [sys.executable, "-m", "dvc", "init", "-q"]):
        subprocess.run(args, cwd=tmp_path, check=True, capture_output=True)
    return tmp_path


def test_one_dvc_status_names_the_stale_stages_as_dvc_repro_would_find_them(tmp_path):
    """The flow passes over the stages before the first one this set names, without a `dvc repro` each."""
    from tasks.stages import repro, stale_stages

    copy = "python -c \"import shutil, sys; shutil.copy(sys.argv[1], sys.argv[2])\""
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"stages": {
        "first": {"cmd": f"{copy} raw.txt a.txt", "deps": ["raw.txt"], "outs": ["a.txt"]},
        "second": {"cmd": f"{copy} a.txt b.txt", "deps": ["a.txt"], "outs": ["b.txt"]},
        "third": {"cmd": f"{copy} other.txt c.txt", "deps": ["other.txt"], "outs": ["c.txt"]}}}))
    (tmp_path / "raw.txt").write_text("1")
    (tmp_path / "other.txt").write_text("x")
    for args in (["git", "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"]):
        subprocess.run(args, cwd=tmp_path, check=True, capture_output=True)
    assert stale_stages(str(tmp_path)) == {"first", "second", "third"}  # never run
    for stage in ("first", "second", "third"):
        assert repro(stage, str(tmp_path))["ran"]
    assert stale_stages(str(tmp_path)) == set()
    (tmp_path / "other.txt").write_text("y")
    assert stale_stages(str(tmp_path)) == {"third"}
    (tmp_path / "raw.txt").write_text("2")
    # `second` is not stale until `first` has run: the flow asks DVC again from the first stale stage on
    assert stale_stages(str(tmp_path)) == {"first", "third"}
    assert [repro(stage, str(tmp_path))["ran"] for stage in ("first", "second", "third")] == [True, True, True]
    (tmp_path / "dvc.yaml").write_text("stages: [")  # DVC cannot read it: no answer, every stage asks DVC itself
    assert stale_stages(str(tmp_path)) is None


def test_a_stage_past_its_timeout_is_killed_and_the_next_run_is_not_blocked(dvc_repo, monkeypatch):
    from tasks import stages
    from tasks.stages import StageTimedOut, repro

    started = time.monotonic()
    # 10 s: DVC must have started the stage (it writes its pid first) before the kill, even on a loaded
    # 2-core machine, where `dvc repro` alone has taken more than 3 s to get there
    with pytest.raises(StageTimedOut, match="stage slow failed: timed out after 10s"):
        repro("slow", str(dvc_repo), timeout_seconds=10)
    assert time.monotonic() - started < 40
    stage_pid = int((dvc_repo / "pid").read_text())
    assert not psutil.pid_exists(stage_pid) or psutil.Process(stage_pid).status() == psutil.STATUS_ZOMBIE

    monkeypatch.setattr(stages, "_flow_run_id", lambda: "1234-flow-run")
    assert repro("fast", str(dvc_repo), timeout_seconds=60)["ran"]  # DVC's lock is not left behind
    assert (dvc_repo / "fast.txt").read_text() == "1234-flow-run"


def test_flow_run_id_is_none_outside_a_flow_run():
    from tasks.stages import _flow_run_id

    assert _flow_run_id() is None


@pytest.mark.parametrize("error, retried", [("TransientStageFailure", True), ("StageFailed", False),
                                            ("StageBroken", False), ("BadInput", False), ("StageTimedOut", False)])
def test_only_transient_failures_are_retried(error, retried):
    from tasks import stages

    exc = getattr(stages, error)("stage distill failed: boom", "distill")

    class State:
        def result(self):
            raise exc

    assert stages._retry_if_transient(None, None, State()) is retried
    # The stage survives the pickling Prefect does when it stores the exception.
    import pickle
    assert pickle.loads(pickle.dumps(exc)).stage == "distill"


# --- one run per repository ------------------------------------------------------------------

def test_repository_lock_makes_a_second_run_wait(tmp_path):
    import logging

    from flows.operations import repository_lock

    logger = logging.getLogger("test")
    order = []

    def second():
        with repository_lock(tmp_path, logger, poll_seconds=0.1):
            order.append("second")

    with repository_lock(tmp_path, logger):
        thread = threading.Thread(target=second)
        thread.start()
        time.sleep(0.5)
        order.append("first done")
    thread.join(timeout=10)
    assert order == ["first done", "second"]


def _cli(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """``python -m distillery ...`` in ``cwd``, on this checkout's code, as a shell would start it."""
    from distillery.locking import TOKEN_ENV

    environ = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    environ.update(PYTHONPATH=str(ROOT), **env)
    return subprocess.run([sys.executable, "-m", "distillery", *args], cwd=cwd, env=environ, capture_output=True,
                          text=True, timeout=120)


def test_a_stage_started_by_hand_refuses_while_a_pipeline_run_holds_the_lock(tmp_path):
    import logging

    from distillery.locking import TOKEN_ENV
    from flows.operations import repository_lock

    (tmp_path / ".dvc").mkdir()  # a DVC repository (params.yaml is never read: the stage stops first)
    with repository_lock(tmp_path, logging.getLogger("test")) as token:
        refused = _cli(tmp_path, "prepare", DISTILLERY_REPO_LOCK_WAIT_SECONDS="1")
        # the flow's own `dvc repro` children inherit the token and go through (then miss params.yaml)
        child = _cli(tmp_path, "prepare", DISTILLERY_REPO_LOCK_WAIT_SECONDS="1", **{TOKEN_ENV: token})
    assert refused.returncode == 3, refused.stderr
    last = refused.stderr.strip().splitlines()[-1]
    assert last.startswith("distillery prepare: transient error: another pipeline run holds ") and \
        "a Prefect flow run" in last and "waited 1s" in last, refused.stderr
    assert child.returncode == 2 and "params.yaml" in child.stderr and "holds" not in child.stderr, child.stderr
    assert TOKEN_ENV not in os.environ  # released: the token goes with the lock
    after = _cli(tmp_path, "prepare", DISTILLERY_REPO_LOCK_WAIT_SECONDS="1")
    assert after.returncode == 2 and "holds" not in after.stderr  # nobody holds it now


def test_a_stage_waits_for_a_lock_released_within_its_wait(tmp_path):
    from distillery.locking import repository_lock

    (tmp_path / ".dvc").mkdir()
    with repository_lock(tmp_path, "a test"):
        proc = subprocess.Popen([sys.executable, "-m", "distillery", "prepare"], cwd=tmp_path, text=True,
                                env={**{k: v for k, v in os.environ.items() if k != "DISTILLERY_REPO_LOCK_TOKEN"},
                                     "PYTHONPATH": str(ROOT), "DISTILLERY_REPO_LOCK_WAIT_SECONDS": "60"},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        lock_file = str((tmp_path / ".dvc" / "tmp" / "distillery-flow.lock").resolve())
        while time.monotonic() < deadline:  # until it has the lock file open: it is waiting for the lock
            assert proc.poll() is None, proc.communicate()
            if any(f.path == lock_file for f in psutil.Process(proc.pid).open_files()):
                break
            time.sleep(0.2)
        time.sleep(1)
        assert proc.poll() is None  # still waiting
    _, stderr = proc.communicate(timeout=60)
    assert "waiting up to 60s for the pipeline run holding" in stderr and "a test" in stderr
    assert proc.returncode == 2 and "params.yaml" in stderr.strip().splitlines()[-1]  # went on after the release


def test_dvc_repro_in_a_shell_refuses_during_a_pipeline_run(dvc_repo):
    """The README's `dvc repro` path goes through the CLI, so it takes the same lock."""
    from distillery.locking import repository_lock

    (dvc_repo / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"prepare": {
        "cmd": "python -m distillery prepare", "outs": ["out"]}}}))
    env = {**{k: v for k, v in os.environ.items() if k != "DISTILLERY_REPO_LOCK_TOKEN"}, "PYTHONPATH": str(ROOT),
           "DISTILLERY_REPO_LOCK_WAIT_SECONDS": "1", "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    with repository_lock(dvc_repo, "a Prefect flow run"):
        proc = subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=dvc_repo, env=env, capture_output=True,
                              text=True, timeout=300)
    assert proc.returncode != 0
    assert "distillery prepare: transient error: another pipeline run holds" in proc.stdout + proc.stderr


# --- the failure hook ------------------------------------------------------------------------

def _state(exc=None, message="", name="Failed"):
    def result(raise_on_failure=True):
        return exc
    return SimpleNamespace(result=result, message=message, name=name)


def test_failed_stage_comes_from_the_exception_or_the_message():
    from flows.operations import failed_stage
    from tasks.stages import BadInput

    assert failed_stage(_state(BadInput("stage export failed: parity", "export"))) == \
        ("export", "stage export failed: parity")
    assert failed_stage(_state(None, "Flow run encountered an exception: StageFailed: stage distill failed: "
                                     "oom"))[0] == "distill"
    assert failed_stage(_state(ConfigError("params.yaml: bad"), ""))[0] == "flow set-up"


def test_failure_hook_sends_an_apprise_notification():
    from prefect.settings import PREFECT_LOGGING_TO_API_ENABLED, temporary_settings

    from flows.operations import notify_failure
    from tasks.stages import StageFailed

    from uuid import uuid4

    from prefect.client.schemas.objects import FlowRun

    from servers import json_receiver

    flow_run = FlowRun(name="calm-fox", flow_id=uuid4())
    flow = SimpleNamespace(name="distillery-pipeline")
    with json_receiver() as (url, received), \
            temporary_settings(updates={PREFECT_LOGGING_TO_API_ENABLED: False}):  # no API in a unit test
        notify_failure(flow, flow_run, _state(StageFailed("stage evaluate failed: tracking server unreachable",
                                                          "evaluate")), apprise_url=url)
    assert received and received[0]["title"] == "Distillery run calm-fox failed at stage evaluate"
    assert "tracking server unreachable" in received[0]["message"]


def test_a_crashed_run_is_notified_too():
    """A flow run whose process was killed (for memory, say) was marked Crashed by the worker, and nobody was told:
    only on_failure had a hook. The worker runs the flow's on_crashed hooks."""
    from uuid import uuid4

    from prefect.client.schemas.objects import FlowRun
    from prefect.settings import PREFECT_LOGGING_TO_API_ENABLED, temporary_settings

    from flows.operations import notify_crash
    from flows.pipeline import pipeline
    from servers import json_receiver

    assert pipeline.on_crashed_hooks == [notify_crash]
    flow_run = FlowRun(name="calm-fox", flow_id=uuid4())
    with json_receiver() as (url, received), temporary_settings(updates={PREFECT_LOGGING_TO_API_ENABLED: False}):
        notify_crash(SimpleNamespace(name="distillery-pipeline"), flow_run,
                     _state(None, "Flow run process exited with non-zero status code -9.", "Crashed"), apprise_url=url)
    assert received and received[0]["title"] == "Distillery run calm-fox crashed"
    assert received[0]["message"].startswith("Flow run process exited with non-zero status code -9; its logs say")


# --- the deployment and the summary ----------------------------------------------------------

def test_deployment_has_schedule_trigger_and_a_concurrency_limit_of_one(tmp_path):
    from flows.deploy import build_deployment

    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    schedule = load_schedule(tmp_path / "params.yaml")
    deployment = build_deployment(tmp_path, cron=schedule.cron, timezone=schedule.timezone, event=schedule.event,
                                  debounce_seconds=schedule.debounce_seconds)
    suffix = hashlib.sha256(str(tmp_path.resolve()).encode()).hexdigest()[:6]
    assert deployment.name == f"distillery-{tmp_path.name}-{suffix}" and deployment.flow_name == "distillery-pipeline"
    assert deployment.concurrency_limit == 1 and deployment.concurrency_options.collision_strategy == "ENQUEUE"
    assert [s.schedule.cron for s in deployment.schedules] == ["0 2 * * *"]
    trigger, = deployment.triggers
    assert trigger.expect == {"distillery.data.updated"}
    # debounce: the first event fires; the next ones within schedule.debounce_seconds start nothing
    assert trigger.posture == "Reactive" and trigger.threshold == 1 and trigger.within.total_seconds() == 60
    assert trigger.match.model_dump() == {"prefect.resource.id": f"distillery.data.{tmp_path.name}-{suffix}"}
    assert deployment.parameters == {"project_dir": str(tmp_path.resolve())}
    interval = build_deployment(tmp_path, interval=30, event=None)
    assert interval.schedules[0].schedule.interval.total_seconds() == 30 and not interval.triggers


def test_summary_reports_the_gate_decision_or_not_registered(tmp_path):
    from flows.pipeline import _registration

    assert _registration(tmp_path) == ("not registered", "none")
    (tmp_path / "reports" / "metrics").mkdir(parents=True)
    (tmp_path / "reports" / "metrics" / "register.json").write_text(json.dumps({
        "model_name": "distillery-student", "version": "3", "decision": "promoted", "passed": True,
        "alias": "champion", "checks": [{"name": "retention", "passed": True, "value": 0.99, "threshold": 0.95}],
        "mlflow_run_id": "abc123", "tracking_uri": "sqlite:///mlflow.db", "decided_at": "2026-12-05T03:00:00"}))
    decision, run_id = _registration(tmp_path)
    assert decision == "promoted: distillery-student version 3 as @champion (retention passed)" and run_id == "abc123"
    # register up to date in this run: the report is an earlier run's, and the registry may have moved since
    earlier, _ = _registration(tmp_path, "up to date")
    assert earlier == ("register was up to date; the last registration, at 2026-12-05T03:00:00, was promoted: "
                       "distillery-student version 3 as @champion (retention passed); the registry may have moved "
                       "since: python -m distillery models")
    assert _registration(tmp_path, None)[0].startswith("register was not among this run's stages; the last "
                                                       "registration, at 2026-12-05T03:00:00, was promoted: ")
    # a check the gate did not run is said to be skipped: a trial read "champion passed" of a comparison never made
    (tmp_path / "reports" / "metrics" / "register.json").write_text(json.dumps({
        "model_name": "distillery-student", "version": "4", "decision": "rejected", "passed": False,
        "alias": "challenger", "checks": [{"name": "labels", "passed": False}, {"name": "champion", "passed": True,
                                                                              "skipped": True}]}))
    assert _registration(tmp_path)[0] == ("rejected: distillery-student version 4 as @challenger (labels failed, "
                                          "champion skipped)")
    # a failed check says why: its figure and threshold (a trial's "retention failed" said neither)
    (tmp_path / "reports" / "metrics" / "register.json").write_text(json.dumps({
        "model_name": "distillery-student", "version": "5", "decision": "rejected", "passed": False,
        "alias": "challenger", "checks": [
            {"name": "retention", "passed": False, "value": 0.3621, "threshold": 0.7,
             "detail": "0.3621 of the teacher's accuracy, needs >= 0.7"},
            {"name": "latency", "passed": True, "detail": "p95 0.2 ms at b1_s784, needs <= 10.0"}]}))
    assert _registration(tmp_path)[0] == ("rejected: distillery-student version 5 as @challenger (retention failed "
                                          "[0.3621 of the teacher's accuracy, needs >= 0.7], latency passed)")


# --- the schedule section of params.yaml -----------------------------------------------------

@pytest.mark.parametrize("key, value, message", [
    ("cron", "every night", "schedule.cron = 'every night' is not allowed"),
    # five fields, but no minute 61 or hour 25: Prefect's deployment refused it with a traceback
    ("cron", "61 25 * * *", r"schedule.cron = '61 25 \* \* \*' is not allowed; .*minute 0-59"),
    ("cron", "a b c d e", "schedule.cron = 'a b c d e' is not allowed"),
    ("timezone", "Mars/Base", "schedule.timezone = 'Mars/Base' is not allowed; name an IANA time zone"),
    ("timezone", "posixrules", "schedule.timezone = 'posixrules' is not allowed"),  # a zoneinfo file, not a zone
    ("stage_timeout_minutes", 0, "schedule.stage_timeout_minutes = 0.0 is not allowed"),
    ("stage_timeouts", {"distill": -1}, "schedule.stage_timeouts.distill = -1 is not allowed"),
    ("crons", "0 2 * * *", "unknown key schedule.crons"),
])
def test_schedule_section_is_validated(tmp_path, key, value, message):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["schedule"][key] = value
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(ConfigError, match=message):
        load_schedule(tmp_path / "params.yaml")


def test_schedule_is_read_even_when_a_stage_section_is_bad(tmp_path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["distill"]["temperature"] = 0  # the distill stage reports this, with its own message
    params["schedule"]["stage_timeouts"] = {"benchmark": 30}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    assert load_schedule(tmp_path / "params.yaml").timeout_seconds("benchmark") == 1800
    assert load_schedule(tmp_path / "params.yaml").timeout_seconds("distill") == 7200


def test_two_checkouts_with_the_same_directory_name_get_their_own_deployment_and_resource(tmp_path):
    from flows.deploy import build_deployment, resource_id

    first, second = tmp_path / "alice" / "project", tmp_path / "bob" / "project"
    names = {build_deployment(path, event="distillery.data.updated").name for path in (first, second)}
    assert len(names) == 2 and all(name.startswith("distillery-project-") for name in names)
    assert resource_id(first) != resource_id(second)
    assert build_deployment(first, name="nightly").name == "nightly"  # --name still sets it


def test_a_valid_schedule_of_another_form_is_taken(tmp_path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["schedule"].update(cron="*/15 9-17 * * mon-fri", timezone="Europe/Berlin")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    schedule = load_schedule(tmp_path / "params.yaml")
    assert (schedule.cron, schedule.timezone) == ("*/15 9-17 * * mon-fri", "Europe/Berlin")


def test_the_recovery_command_has_help_and_profile_and_params_name_a_missing_file_at_once(tmp_path, monkeypatch,
                                                                                        capsys):
    """A trial: `flows.recover --help` was an error; `profile nope` waited for a running pipeline's lock before saying
    the profile does not exist; `params --params nope.yaml` listed every key and exited 0."""
    from distillery.cli import main
    from flows.recover import main as recover

    assert recover(["--help"]) == 0 and capsys.readouterr().out.startswith("usage: python -m flows.recover")
    assert recover(["now"]) == 2 and "takes no arguments" in capsys.readouterr().err
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".dvc").mkdir()
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    shutil.copytree(ROOT / "profiles", tmp_path / "profiles")
    from distillery.locking import repository_lock

    code = "from distillery.cli import main; import sys; sys.exit(main(['profile', 'nope']))"
    with repository_lock(".", "a pipeline run"):  # held by another process's view: the child has no token
        monkeypatch.delenv("DISTILLERY_REPO_LOCK_TOKEN", raising=False)
        started = time.monotonic()
        child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                               env={k: v for k, v in {**os.environ, "PYTHONPATH": str(ROOT)}.items()
                                    if k != "DISTILLERY_REPO_LOCK_TOKEN"})
    assert child.returncode == 2 and "profiles/nope.yaml not found" in child.stderr, child.stderr
    assert "waiting" not in child.stderr and time.monotonic() - started < 9  # the lock's wait is 10 s
    assert main(["params", "--params", "nope.yaml"]) == 2
    assert capsys.readouterr().err == "distillery params: error: nope.yaml: no such params file\n"


@pytest.mark.parametrize("command", [["flows.watch", "--once"], ["flows.deploy", "--pool", "team"],
                                     ["flows.deploy"]])
def test_watch_and_deploy_name_a_server_that_refuses_their_credentials(tmp_path, command):
    """A trial's wrong PREFECT_API_AUTH_STRING: the first look recorded the hash and exited 0; the first change then
    said only "the Prefect server did not accept the event", exit 1. Another's `flows.deploy` without it: a 28-line
    traceback ending in 401 Unauthorized (45 lines serving)."""
    import http.server

    from flows.watch import STATE_PATH

    class Refusing(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the handler's name
            health = self.path.endswith("/health")  # open, as Prefect's is
            self.send_response(200 if health else 401)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b"true" if health else b'{"exception_message": "Unauthorized"}')

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        shutil.copy(Path(__file__).resolve().parents[2] / "params.yaml", tmp_path / "params.yaml")
        result = subprocess.run([sys.executable, "-m", *command, "--project-dir", str(tmp_path)],
                                capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[2],
                                env={**os.environ, "PREFECT_API_URL": f"http://127.0.0.1:{server.server_port}/api",
                                     "PREFECT_API_AUTH_STRING": "admin:wrong"})
    finally:
        server.shutdown()
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip() == (f"{command[0]}: error: the Prefect server at http://127.0.0.1:{server.server_port}"
                                     "/api refused this client (401): set PREFECT_API_AUTH_STRING (or PREFECT_API_KEY) "
                                     "to the server's")
    assert not (tmp_path / STATE_PATH).exists(), "a hash was recorded"
