"""The Distillery pipeline as a Prefect flow: ``python -m flows.pipeline``.

It runs the stages in order through DVC (see tasks/stages.py), then prints and returns the results
table and publishes it as a markdown artifact. It works on Prefect's local ephemeral API (no
server, no account); ``python -m flows.deploy`` serves it with a schedule and an event trigger.
"""
from __future__ import annotations

import os

# Outermost layer: settings for running without a server, before Prefect is imported.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_ENABLED", "true")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # no network here; telemetry only logs errors
os.environ.setdefault("DVC_NO_ANALYTICS", "1")

import json  # noqa: E402
import logging  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Optional, Sequence  # noqa: E402

from prefect import flow, get_run_logger  # noqa: E402
from prefect.artifacts import create_markdown_artifact  # noqa: E402
from prefect.runtime import flow_run as current_flow_run  # noqa: E402

from distillery.config import load_params, load_schedule  # noqa: E402
from distillery.errors import ConfigError, DistilleryError  # noqa: E402
from flows.operations import (git_add_hint, notify_crash, notify_failure, notify_rejected,  # noqa: E402
                              one_line_failures, repository_lock)
from tasks.experiments import recover_params, restore_params, save_experiment, set_params  # noqa: E402
from distillery.stages import STAGES  # noqa: E402
from distillery.tracking import STAGES_RAN_ENV  # noqa: E402
from tasks.stages import STAGE_TASKS, BadInput, repro, stale_stages  # noqa: E402

one_line_failures()  # a failed stage's traceback from Prefect's engine is not logged: its error is one line already

SUMMARY_ARTIFACT_KEY = "distillery-summary"
# dvc.yaml's stage that checks every key of params.yaml; the flow checks the file itself before any stage,
# and runs this one as well so that `dvc repro` after a flow run finds it up to date
CHECK_STAGE, CHECK_TIMEOUT_S = "check_params", 300.0
INTERRUPTED, INTERRUPT_GRACE_S = 130, 10.0  # Ctrl-C's exit code (128 + SIGINT); seconds left to Prefect after it
INTERRUPTED_MESSAGE = ("distillery pipeline: interrupted; the running stage was stopped, the stages before it keep "
                       "their outputs; run the command again to go on from there")
# The one repository a flow run may work in: set by `python -m flows.deploy` for the runs it serves (its
# --project-dir); otherwise the repository this flow's code is in. A flow run's parameters cannot change it.
PROJECT_DIR_ENV = "DISTILLERY_PROJECT_DIR"
OWN_REPOSITORY = Path(__file__).resolve().parents[1]


def allowed_project_dir() -> Path:
    return Path(os.environ.get(PROJECT_DIR_ENV) or OWN_REPOSITORY).resolve()


def check_project_dir(project_dir: str) -> Path:
    """``project_dir`` resolved, if it is the deployment's own repository; else a one-line ``ConfigError``."""
    root, allowed = Path(project_dir).resolve(), allowed_project_dir()
    if root != allowed:
        raise ConfigError(f"project_dir {root} is not this deployment's repository ({allowed}); a flow run may "
                          f"only run the pipeline where it was deployed (python -m flows.deploy --project-dir)")
    return root


def _registration(root: Path, status: str = "ran") -> tuple[str, str]:
    """(gate decision, MLflow run id) from the register stage's report, if that stage has run. ``status`` is what
    ``register`` did in this run: "ran", "up to date", or None when it was not among the run's stages. Unless it
    ran, the report is an earlier run's, and says so (the registry may have moved since, by promote or rollback)."""
    path = root / "reports" / "metrics" / "register.json"
    if not path.is_file():
        return "not registered", "none"
    report = json.loads(path.read_text(encoding="utf-8"))
    # a failed check says why, with its figure and threshold (a trial's "retention failed" said neither)
    checks = ", ".join(f"{c.get('name')} " + ("skipped" if c.get("skipped") else "passed" if c.get("passed") else
                                               "failed" + (f" [{c['detail']}]" if c.get("detail") else ""))
                       for c in report.get("checks", []))
    decision = (f"{report.get('decision', 'unknown')}: {report.get('model_name', '?')} version "
                f"{report.get('version', '?')} as @{report.get('alias', '?')}" + (f" ({checks})" if checks else ""))
    if status != "ran":
        why = "register was up to date" if status == "up to date" else "register was not among this run's stages"
        decision = (f"{why}; the last registration, at {report.get('decided_at', 'an unknown time')}, was "
                    f"{decision}; the registry may have moved since: python -m distillery models")
    return decision, str(report.get("mlflow_run_id") or "none")


def stage_times(ran: dict, seconds: dict) -> str:
    """One line per stage (status, seconds, share of the whole) and the total, aligned for a terminal."""
    total = sum(seconds.values())
    width = max(len(stage) for stage in [*seconds, "total"])
    # no shares of a run that ran no stage: its total is milliseconds of DVC's checks (a trial's 0.1 s read as
    # "31.8%, 8.9%, ...")
    shares = round(total, 1) > 0 and any(state == "ran" for state in ran.values())
    lines = [f"  {stage:<{width}}  {ran.get(stage, 'failed'):<10}  {value:7.1f}s  "
             + (f"{100 * value / total:5.1f}%" if shares else "") for stage, value in seconds.items()]
    lines = [line.rstrip() for line in lines]
    return "\n".join([*lines, f"  {'total':<{width}}  {'':<10}  {total:7.1f}s"])


def _summary(root: Path, ran: dict, experiment: Optional[str], overrides: Optional[dict],
             seconds: Optional[dict] = None) -> tuple[str, str]:
    table = "\n".join(path.read_text(encoding="utf-8") for path in (root / "reports" / "summary.md",
                                                                    root / "reports" / "benchmark.md")
                      if path.is_file())
    decision, mlflow_run_id = _registration(root, ran.get("register"))
    seconds = seconds or {}
    stage_lines = "\n".join(f"- `{stage}`: {status}" + (f" ({seconds[stage]:.1f}s)" if stage in seconds else "")
                             for stage, status in ran.items())
    if seconds:
        stage_lines += f"\n- total: {sum(seconds.values()):.1f}s"
    lines = [f"- gate decision: {decision}", f"- MLflow run id: `{mlflow_run_id}`",
             f"- Prefect flow run: `{current_flow_run.id}`"]
    if overrides:
        lines.append(f"- overrides: `{json.dumps(overrides)}`, saved as DVC experiment `{experiment}` "
                     f"(`dvc exp apply {experiment}` restores it)")
    markdown = (f"## Distillery run\n\n{table}\n### Registry\n" + "\n".join(lines) +
                f"\n\n### Stages\n{stage_lines}\n")
    return table, markdown


def _check_params(root: Path) -> None:
    """The whole file: a key no stage reads (a typo, an unknown section) fails the run here, even when every
    stage is up to date and none would load params.yaml to find it."""
    try:
        load_params(root / "params.yaml")
    except ConfigError as exc:
        raise BadInput(str(exc)) from None  # as a stage reports it: a bad input, never retried


def _timeouts(root: Path, stages: list[str]) -> dict[str, float]:
    schedule = load_schedule(root / "params.yaml")
    unknown = sorted(set(schedule.stage_timeouts) - set(STAGES))
    if unknown:
        raise ConfigError(f"params.yaml: schedule.stage_timeouts.{unknown[0]} is not a stage; stages are "
                          f"{', '.join(STAGES)}")
    return {stage: schedule.timeout_seconds(stage) for stage in stages}


@flow(name="distillery-pipeline", log_prints=True, on_failure=[notify_failure], on_crashed=[notify_crash])
def pipeline(project_dir: str = ".", stages: Optional[list[str]] = None,
             overrides: Optional[dict[str, Any]] = None) -> dict:
    """Bring every stage up to date, in order, and summarise the run.

    ``overrides`` ({"distill.alpha": 0.3, ...}) set params keys for this run only, as
    ``dvc exp run -S`` does, and the run is saved as a DVC experiment (see tasks/experiments.py).
    """
    root = check_project_dir(project_dir)  # before anything reads or writes in it
    project_dir = str(root)
    logger = get_run_logger()
    stages = list(stages or STAGES)
    ran, experiment, seconds, running, to_add = {}, None, {}, None, []
    checked: dict = {"ran": {}, "seconds": {}}  # the params check's status and time: not a stage, but timed

    def timed() -> tuple[dict, dict]:  # every status and time, the params check first (every run starts with it)
        return {**checked["ran"], **ran}, {**checked["seconds"], **seconds}

    with repository_lock(root, logger):  # one pipeline run per repository, whoever started it
        if recover_params(project_dir):
            logger.warning("params.yaml restored from %s: an earlier run with overrides was killed before it "
                           "could restore it", root / ".distillery" / "params.yaml.before-overrides")
        original_params = set_params(project_dir, overrides) if overrides else None
        try:
            started = time.perf_counter()
            _check_params(root)
            check = repro(CHECK_STAGE, project_dir, CHECK_TIMEOUT_S)  # in dvc.lock, so `dvc repro` finds it done
            to_add += check.get("git_add", [])
            checked = {"ran": {CHECK_STAGE: "ran" if check["ran"] else "up to date"},
                       "seconds": {CHECK_STAGE: time.perf_counter() - started}}
            timeouts = _timeouts(root, stages)
            stale = stale_stages(project_dir)  # one DVC process for the up-to-date stages before the first stale one
            for stage in stages:
                unchanged = stale is not None and stage not in stale
                stale = stale if unchanged else None
                # register tags what ran in this run from this, not from outputs another clone may have made too
                os.environ[STAGES_RAN_ENV] = ",".join(s for s, state in ran.items() if state == "ran")
                started, running = time.perf_counter(), stage
                result = STAGE_TASKS[stage](project_dir, timeouts[stage], up_to_date=unchanged)
                running = None
                to_add += [name for name in result.get("git_add", []) if name not in to_add]
                ran[stage] = "ran" if result["ran"] else "up to date"
                # the wall time, retries and waits for a lock included: where the run's time went
                seconds[stage] = time.perf_counter() - started
                extra = seconds[stage] - result["seconds"]
                logger.info("%s: %s (%.1fs%s)", stage, ran[stage], seconds[stage],
                            f", of which {extra:.1f}s retries and waits" if extra > 5 else "")
            if overrides:
                experiment = save_experiment(project_dir, f"prefect-{current_flow_run.name or 'run'}")
            # This run's reports, read before the overrides' restore puts back the workspace's own (the summary
            # of a run with overrides once showed the run before it: its table, gate decision and MLflow run)
            statuses, times = timed()
            table, markdown = _summary(root, statuses, experiment, overrides, times)
            decision, mlflow_run_id = _registration(root, ran.get("register"))
            if ran.get("register") == "ran" and decision.startswith("rejected"):
                notify_rejected(logger, current_flow_run.name or "run", decision)
            results_path = root / "reports" / "metrics" / "eval.json"
            results = json.loads(results_path.read_text(encoding="utf-8")) if results_path.is_file() else {}
        except BaseException as exc:
            if running:  # the stage that failed, or was stopped, and for how long it ran
                seconds[running] = time.perf_counter() - started
                ran[running] = "stopped" if isinstance(exc, KeyboardInterrupt) else "failed"
            if seconds or checked["ran"]:  # how long the stages up to the failure took
                logger.info("stage times:\n%s", stage_times(*timed()))
            raise
        finally:
            os.environ.pop(STAGES_RAN_ENV, None)
            if original_params is not None:
                restore_params(project_dir, original_params)
    create_markdown_artifact(markdown, key=SUMMARY_ARTIFACT_KEY,
                             description="Teacher vs distilled student vs baseline, gate decision, MLflow run id")
    # (a run with overrides is an experiment: DVC keeps it, and the workspace is as the run found it)
    hint = None if experiment else git_add_hint(root, to_add)
    print(f"\n{table}\nRegistry: {decision}; MLflow run {mlflow_run_id}\nStage times:\n{stage_times(statuses, times)}"
          + (f"\n{hint}" if hint else ""))
    metric, scores = model_scores(results)
    return {"stages": ran, "seconds": times, "table": table, "experiment": experiment, "registry": decision,
            "metric": metric, "scores": scores, "accuracy": scores if metric == "accuracy" else {}, "advice": hint}


def model_scores(results: dict) -> tuple[str, dict]:
    """The task's primary test metric (accuracy; F1 for extractive QA) and each model's score in ``eval.json``'s
    ``results``. Every QA flow run failed at its very end on ``results[m]["accuracy"]``, after registering."""
    metric = next((key[len("student_"):-len("_retention")] for key in results
                   if key.startswith("student_") and key.endswith("_retention")), "accuracy")
    return metric, {m: results[m][metric] for m in ("teacher", "student", "baseline")
                    if isinstance(results.get(m), dict) and metric in results[m]}


def main(argv: Sequence[str] = ()) -> int:
    """``python -m flows.pipeline``: the flow on this directory. A failure ends with one line naming it and the
    stage's exit code (2 bad input, 3 transient, 4 broken environment, 1 otherwise); a params.yaml that does
    not load is refused before the flow starts, so it prints that line alone (no flow, no traceback)."""
    import argparse

    from tasks.experiments import BACKUP
    from tasks.stages import EXIT_CLASSES, StageFailed

    # no options: `--help` (or a typo) must not start a half-hour run that may register a model
    argparse.ArgumentParser(prog="python -m flows.pipeline", description=(
        "Run every stage of the pipeline in this directory through DVC (only the stale ones run), as a Prefect "
        "flow, then print the results table, the registry's decision and each stage's time. It takes no "
        "arguments: set parameters in params.yaml. Deploy it on a schedule with `python -m flows.deploy`.")
    ).parse_args(list(argv))
    codes = {cls: code for code, cls in EXIT_CLASSES.items()}
    handlers = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    if handlers[signal.SIGINT] is signal.default_int_handler:  # not ignored (a background job's is)
        signal.signal(signal.SIGINT, _on_ctrl_c)
    elif handlers[signal.SIGINT] is signal.SIG_IGN:
        from flows.operations import temporary_server_in_own_session

        temporary_server_in_own_session()
    if handlers[signal.SIGTERM] is signal.SIG_DFL:
        # `kill`, `docker stop`: as Ctrl-C, so the running stage and the temporary Prefect server stop with the
        # flow (SIGTERM ended the process alone, and the server ran on, orphaned)
        signal.signal(signal.SIGTERM, _on_ctrl_c)
    try:
        if not (Path.cwd() / BACKUP).is_file():  # else the flow first restores the params a killed run overrode
            _check_params(Path.cwd())
        pipeline()
    except (StageFailed, DistilleryError) as exc:  # a stage's failure, or the flow's own checks (directory, lock)
        print(f"distillery pipeline: error: {exc}", file=sys.stderr)
        return codes.get(type(exc), 1) if isinstance(exc, StageFailed) else exc.exit_code
    except KeyboardInterrupt:
        # The flow has let go of its lock and put params.yaml back on the way out. A normal exit would then wait,
        # without end, for Prefect's event threads to reach the temporary server the same Ctrl-C stopped.
        _exit_interrupted()
    finally:
        for number, handler in handlers.items():  # main() called in-process (tests) leaves the handlers as found
            signal.signal(number, handler)
    return 0


def _exit_interrupted() -> None:
    """Stop what this process started (the temporary Prefect server, a stage still running) and exit at once."""
    print(INTERRUPTED_MESSAGE, file=sys.stderr, flush=True)
    sys.stdout.flush()
    _stop_children()
    os._exit(INTERRUPTED)


def _stop_children() -> None:
    import psutil

    from tasks.stages import kill_tree

    for child in psutil.Process().children():
        kill_tree(child.pid)


def _on_ctrl_c(signum, frame) -> None:
    """Ctrl-C: KeyboardInterrupt as always (the running stage is stopped, the flow's ``finally`` blocks put
    params.yaml back and let go of the lock), and an exit ``INTERRUPT_GRACE_S`` later whatever Prefect is still
    doing: its crash report retries, without end, a temporary server the same Ctrl-C stopped."""
    # Prefect's event client and its services then fail to reach the temporary server this stops: lines of noise
    for name in ("prefect.events.clients", "prefect._internal.concurrency"):
        logging.getLogger(name).disabled = True  # (the internal one takes no level: its own setting decides)
    timer = threading.Timer(INTERRUPT_GRACE_S, _exit_interrupted)
    timer.daemon = True
    timer.start()
    signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C: Python's own
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM: the default
    raise KeyboardInterrupt


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
