"""Prefect tasks, one per stage. Each asks DVC to bring its stage up to date, so DVC alone decides
what is stale and a flow run never redoes work a `dvc repro` already did (or the reverse).

A stage that fails on bad input (the CLI exits with code 2) is not retried, nor is one that ran
past its timeout; other failures (a tracking server that is unreachable, say) are, with backoff.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import psutil
from prefect import task
from prefect.cache_policies import NO_CACHE

from distillery.stages import STAGES  # the one list of stages


class StageFailed(RuntimeError):
    """A stage failed for a reason that may pass on a retry."""

    def __init__(self, message: str, stage: str = ""):
        super().__init__(message)
        self.stage = stage

    def __reduce__(self):  # keep ``stage`` when Prefect pickles the exception into a state
        return type(self), (str(self), self.stage)


class BadInput(StageFailed):
    """A stage rejected its input (params, data or models); retrying cannot help."""


class StageTimedOut(StageFailed):
    """A stage ran past its timeout and was killed; a retry would most likely time out again."""


# Read by the core (distillery.tracking): the register stage tags its MLflow run with them.
ORCHESTRATOR_ENV, FLOW_RUN_ID_ENV = "DISTILLERY_ORCHESTRATOR", "DISTILLERY_ORCHESTRATOR_RUN_ID"


def _retry_unless_bad_input(task, task_run, state) -> bool:
    try:
        state.result()
    except (BadInput, StageTimedOut):
        return False
    except Exception:
        return True
    return False


def _error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if re.search(r"error", line, re.IGNORECASE)]
    return (lines[0] if lines else output.strip().splitlines()[-1] if output.strip() else "no output").strip()


def _flow_run_id() -> Optional[str]:
    from prefect.runtime import flow_run

    return flow_run.id


def _kill_tree(pid: int) -> None:
    """Stop ``dvc repro`` and the stage command it started: SIGTERM, then SIGKILL what is left."""
    try:
        parent = psutil.Process(pid)
        processes = [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for process in processes:
            try:
                process.send_signal(sig)
            except psutil.NoSuchProcess:
                pass
        _, processes = psutil.wait_procs(processes, timeout=10)
        if not processes:
            break


def repro(stage: str, project_dir: str = ".", timeout_seconds: Optional[float] = None) -> dict:
    """Run ``dvc repro --single-item <stage>``; report whether the stage ran or was up to date.

    After ``timeout_seconds`` the DVC process and the stage command are killed. DVC notices the
    dead process's entry in its lock file and removes it, so the next run is not blocked.
    """
    env = dict(os.environ, DVC_NO_ANALYTICS="1")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # stage cmds use this python
    flow_run_id = _flow_run_id()
    if flow_run_id:
        env[ORCHESTRATOR_ENV] = "prefect"
        env[FLOW_RUN_ID_ENV] = str(flow_run_id)
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "dvc", "repro", "--single-item", stage], cwd=project_dir,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = proc.communicate(timeout=timeout_seconds)
    except subprocess.TimeoutExpired:
        _kill_tree(proc.pid)
        proc.communicate()
        raise StageTimedOut(f"stage {stage} failed: timed out after {timeout_seconds:.0f}s and was stopped "
                            "(schedule.stage_timeout_minutes / schedule.stage_timeouts in params.yaml)", stage)
    output = stdout + stderr
    if proc.returncode != 0:
        error = _error_line(stderr) if "distillery" in stderr else _error_line(output)
        kind = BadInput if "exited with 2" in output or "distillery " + stage + ": error" in output else StageFailed
        raise kind(f"stage {stage} failed: {error}", stage)
    return {"stage": stage, "ran": f"Running stage '{stage}'" in output,
            "seconds": round(time.perf_counter() - started, 1)}


def stage_task(stage: str):
    """The Prefect task for ``stage``, named after it."""
    def run(project_dir: str = ".", timeout_seconds: Optional[float] = None) -> dict:
        return repro(stage, project_dir, timeout_seconds)

    run.__name__ = run.__qualname__ = stage
    # DVC decides what is stale, so Prefect's own result cache stays off.
    return task(name=stage, retries=2, retry_delay_seconds=[10, 60], retry_condition_fn=_retry_unless_bad_input,
                cache_policy=NO_CACHE)(run)


prepare = stage_task("prepare")
train_teacher = stage_task("train_teacher")
teacher_logits = stage_task("teacher_logits")
distill = stage_task("distill")
evaluate = stage_task("evaluate")
export = stage_task("export")
benchmark = stage_task("benchmark")
register = stage_task("register")
STAGE_TASKS = {"prepare": prepare, "train_teacher": train_teacher, "teacher_logits": teacher_logits,
               "distill": distill, "evaluate": evaluate, "export": export, "benchmark": benchmark,
               "register": register}
