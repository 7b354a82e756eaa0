"""Prefect tasks, one per stage. Each asks DVC to bring its stage up to date, so DVC alone decides
what is stale and a flow run never redoes work a `dvc repro` already did (or the reverse).

A stage that fails on bad input (the CLI exits with code 2) is not retried; other failures are,
with backoff.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE

STAGES = ("prepare", "train_teacher", "teacher_logits", "distill", "evaluate", "export", "benchmark", "register")


class StageFailed(RuntimeError):
    """A stage failed for a reason that may pass on a retry."""


class BadInput(StageFailed):
    """A stage rejected its input (params, data or models); retrying cannot help."""


def _retry_unless_bad_input(task, task_run, state) -> bool:
    try:
        state.result()
    except BadInput:
        return False
    except Exception:
        return True
    return False


def _error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if re.search(r"error", line, re.IGNORECASE)]
    return (lines[0] if lines else output.strip().splitlines()[-1] if output.strip() else "no output").strip()


def repro(stage: str, project_dir: str = ".") -> dict:
    """Run ``dvc repro --single-item <stage>``; report whether the stage ran or was up to date."""
    env = dict(os.environ, DVC_NO_ANALYTICS="1")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # stage cmds use this python
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "dvc", "repro", "--single-item", stage], cwd=project_dir,
                          env=env, capture_output=True, text=True)
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        error = _error_line(proc.stderr) if "distillery" in proc.stderr else _error_line(output)
        kind = BadInput if "exited with 2" in output or "distillery " + stage + ": error" in output else StageFailed
        raise kind(f"stage {stage} failed: {error}")
    return {"stage": stage, "ran": f"Running stage '{stage}'" in output,
            "seconds": round(time.perf_counter() - started, 1)}


def stage_task(stage: str):
    """The Prefect task for ``stage``, named after it."""
    def run(project_dir: str = ".") -> dict:
        return repro(stage, project_dir)

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
