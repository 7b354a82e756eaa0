"""The Prefect flow runs the stages through DVC on the tiny project, with Prefect's test harness."""
import json

import pytest
from prefect.testing.utilities import prefect_test_harness

from conftest import dvc, run_stages_in_process


@pytest.fixture(scope="module", autouse=True)
def prefect_server():
    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(autouse=True)
def deployed_here(tiny_project, monkeypatch):
    """The flow refuses a project_dir other than its deployment's; `python -m flows.deploy` sets this."""
    monkeypatch.setenv("DISTILLERY_PROJECT_DIR", str(tiny_project))


def test_flow_runs_pipeline_then_reuses_dvc_state(tiny_project):
    from flows.pipeline import pipeline

    # the stages up to export run here, in this process; the flow finds them up to date and runs the rest
    # (test_pipeline_dvc runs every stage as a process, test_sigterm... below starts the flow from scratch)
    run_stages_in_process(tiny_project, through="export")
    first = pipeline(project_dir=str(tiny_project))
    # DVC's advice comes once, at the end (printed last), not after each stage that ran (tests/unit/test_streaming.py),
    # with the reports git tracks, which DVC does not name
    assert first["advice"] == "DVC recorded this run in dvc.lock: `git add dvc.lock reports` keeps the record with " \
                              "your code", first["advice"]
    assert first["stages"] == {**{s: "up to date" for s in ("prepare", "train_teacher", "teacher_logits", "distill",
                                                               "evaluate", "export")},
                               **{s: "ran" for s in ("benchmark", "register")}}
    assert json.loads((tiny_project / "reports/metrics/register.json").read_text())["decision"] == "promoted"
    assert "| teacher |" in first["table"] and "student_onnx_int8" in first["table"]
    assert "| teacher |" in first["table"] and set(first["accuracy"]) == {"teacher", "student", "baseline"}
    assert json.loads((tiny_project / "reports/metrics/eval.json").read_text())["test_rows"] > 0
    # the stage times cover the params check that starts every run (a trial: the table's total left it out)
    assert list(first["seconds"]) == ["check_params", *first["stages"]]

    # The flow and `dvc repro` share one notion of "stale": neither redoes the other's work.
    status = dvc(tiny_project, "repro")
    assert status.returncode == 0 and "Running stage" not in status.stdout
    from tasks import stages

    reproduced = []
    with pytest.MonkeyPatch.context() as patch:  # one `dvc status` answers for every up-to-date stage
        patch.setattr(stages, "repro", lambda stage, *args: reproduced.append(stage))
        second = pipeline(project_dir=str(tiny_project))
    assert set(second["stages"].values()) == {"up to date"} and reproduced == []
    assert first["registry"].startswith("promoted: ") and second["registry"].startswith(
        "register was up to date; the last registration, at ") and "python -m distillery models" in second["registry"]

    # A run with overrides is saved as an experiment and then leaves the workspace as it found it, so the
    # next plain run redoes nothing: no second benchmark, no new MLflow run of register.
    kept = {path: path.read_bytes() for path in sorted(tiny_project.rglob("*"))
            if path.is_file() and not {".git", ".dvc", ".distillery"} & set(path.relative_to(tiny_project).parts)
            and path.suffix != ".db"}
    # (a benchmark key: two stages to run again, where distill.alpha would re-run five; `dvc exp run -S
    # distill.alpha=0.3` is test_pipeline_dvc's)
    from servers import json_receiver

    import flows.pipeline

    real = flows.pipeline._registration  # this run's candidate refused by the gate: said, though the run completes
    with json_receiver() as (url, received), pytest.MonkeyPatch.context() as patch:
        patch.setenv("DISTILLERY_APPRISE_URL", url)
        patch.setattr(flows.pipeline, "_registration", lambda root, status: (
            f"rejected: {real(root, status)[0].split(': ', 1)[1]}", real(root, status)[1]))
        experiment = pipeline(project_dir=str(tiny_project), overrides={"benchmark.warmup": 3})
    assert [(r["title"], r["type"]) for r in received] == [
        (f"Distillery run {received[0]['title'].split()[2].rstrip(':')}: the gate rejected the new model",
         "warning")], received
    assert received[0]["message"].startswith("rejected: ") and "The champion did not move." in received[0]["message"]
    assert experiment["stages"]["distill"] == "up to date" and experiment["stages"]["benchmark"] == "ran"
    assert experiment["stages"]["register"] == "ran"
    assert experiment["experiment"] in dvc(tiny_project, "exp", "list", "--name-only").stdout
    assert not (tiny_project / ".distillery" / "before-overrides").exists()
    changed = [str(path.relative_to(tiny_project)) for path, data in kept.items()
               if not path.is_file() or path.read_bytes() != data]
    assert changed == []
    third = pipeline(project_dir=str(tiny_project))
    assert set(third["stages"].values()) == {"up to date"}

    # A key no stage reads is refused, though every stage is up to date and none would load params.yaml
    params = tiny_project / "params.yaml"
    text = params.read_text()
    params.write_text(text.replace("distill:\n", "distill:\n  alpah: 0.3\n", 1))
    from tasks.stages import BadInput

    with pytest.raises(BadInput, match=r"params.yaml: unknown key distill.alpah"):
        pipeline(project_dir=str(tiny_project))
    params.write_text(text)


def test_bad_input_fails_the_flow_without_retries(tiny_project):
    from flows.pipeline import pipeline
    from tasks.stages import BadInput

    params = tiny_project / "params.yaml"
    params.write_text(params.read_text().replace("temperature: 2.0", "temperature: 0"))
    with pytest.raises(BadInput, match=r"distill.temperature = 0.0 is not allowed"):
        pipeline(project_dir=str(tiny_project), stages=["prepare"])


def test_sigterm_stops_the_flow_its_stage_and_its_temporary_server(tiny_project, tmp_path):
    """`kill <pid>` (SIGTERM, as `docker stop` sends) ended the command alone: the temporary Prefect server and
    `dvc repro` ran on, orphaned. It is handled as Ctrl-C: exit 130 with one line, nothing of it left running."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import psutil

    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}  # its own temporary server
    env.update(HOME=str(tmp_path), DISTILLERY_PROJECT_DIR=str(tiny_project))
    log = tmp_path / "flow.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "flows.pipeline"], cwd=tiny_project, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 240
        while "train_teacher" not in log.read_text() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.5)
        assert "train_teacher" in log.read_text(), log.read_text()[-3000:]
        children = psutil.Process(proc.pid).children(recursive=True)
        assert any("prefect" in " ".join(c.cmdline()) or "uvicorn" in " ".join(c.cmdline()) for c in children
                   if c.is_running()), [c.cmdline() for c in children]  # the temporary server is a child
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=90) == 130, log.read_text()[-3000:]
        time.sleep(2)
        alive = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
        assert alive == [], [c.cmdline() for c in alive]
        assert "distillery pipeline: interrupted; the running stage was stopped" in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
        for child in locals().get("children", []):  # never leave a server behind, pass or fail
            if child.is_running():
                child.kill()
