"""Prefect tasks, one per stage. Each asks DVC to bring its stage up to date, so DVC alone decides
what is stale and a flow run never redoes work a `dvc repro` already did (or the reverse).

Only a transient failure is retried, with backoff (:func:`classify`): the stage command exited with code 3
(``TransientError``), or its output shows a recognisable transient cause (a refused or timed-out connection
to the tracking server, SQLite's "database is locked", DVC's "Unable to acquire lock"). Everything else
fails the run at once: bad input (exit 2), a broken environment (exit 4: a full disk, a corrupt store), an
unexpected exception (exit 1: an ``IndexError`` after hours of training would only fail again), "No space
left on device" in any output, and a stage that ran past its timeout.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Optional, TextIO

import psutil
from prefect import task
from prefect.cache_policies import NO_CACHE

from distillery.stages import STAGES  # noqa: F401 - the one list of stages, re-exported for tasks/ users
from distillery.tracking import redact_uri


class StageFailed(RuntimeError):
    """A stage failed. Not retried unless it is a :class:`TransientStageFailure`."""

    def __init__(self, message: str, stage: str = ""):
        super().__init__(message)
        self.stage = stage

    def __reduce__(self):  # keep ``stage`` when Prefect pickles the exception into a state
        return type(self), (str(self), self.stage)


class BadInput(StageFailed):
    """A stage rejected its input (params, data or models); retrying cannot help."""


class StageTimedOut(StageFailed):
    """A stage ran past its timeout and was killed; a retry would most likely time out again."""


class TransientStageFailure(StageFailed):
    """A stage failed for a reason that may pass on a retry (exit 3, an unreachable tracking server, a lock)."""


class StageBroken(StageFailed):
    """A stage failed for a reason a retry cannot fix: an unexpected exception (exit 1), a full disk, a corrupt
    store (exit 4). Someone has to look at it."""


# Exit codes of ``python -m distillery`` (distillery/errors.py): 2 bad input, 3 transient, 4 broken environment.
EXIT_CLASSES = {2: BadInput, 3: TransientStageFailure, 4: StageBroken}
# Checked in this order on the output of a stage that exited otherwise (1: an exception the CLI did not map).
PERMANENT_CAUSES = re.compile(r"No space left on device|Errno 28\b|file is not a database|"
                              r"database disk image is malformed|database or disk is full", re.IGNORECASE)
TRANSIENT_CAUSES = re.compile(r"database is locked|Connection refused|ConnectionRefusedError|Connection reset by peer|"
                              r"Max retries exceeded|Read timed out|ConnectTimeout|ReadTimeout|"
                              r"Unable to acquire lock", re.IGNORECASE)


def classify(returncode: int, output: str) -> type[StageFailed]:
    """The class of a failed ``dvc repro``, from the stage command's exit code and the output."""
    codes = re.findall(r"exited with (-?\d+)", output)  # DVC: "failed to run: <cmd>, exited with N"
    code = int(codes[-1]) if codes else returncode
    if code in EXIT_CLASSES:
        return EXIT_CLASSES[code]
    if PERMANENT_CAUSES.search(output):
        return StageBroken
    if TRANSIENT_CAUSES.search(output):
        return TransientStageFailure
    return StageBroken


# Read by the core (distillery.tracking): the register stage tags its MLflow run with them.
ORCHESTRATOR_ENV, FLOW_RUN_ID_ENV = "DISTILLERY_ORCHESTRATOR", "DISTILLERY_ORCHESTRATOR_RUN_ID"


def _retry_if_transient(task, task_run, state) -> bool:
    """Prefect's ``retry_condition_fn``: retry a :class:`TransientStageFailure` only."""
    try:
        state.result()
    except TransientStageFailure:
        return True
    except BaseException:
        return False
    return False


_retry_unless_bad_input = _retry_if_transient  # the earlier name


def _error_line(output: str) -> str:
    """The line that says what went wrong: the CLI's one-line error, else the exception line of a traceback,
    else the first line that mentions an error. The CLI's "done" line is none of them: DVC can fail after the
    stage's command succeeded (an output already tracked by git), and its own ERROR line says why."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for pattern, flags, pick in ((r"^distillery \w+: (?!done in [\d.]+s$)", 0, -1),
                                 (r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b", 0, -1),
                                 (r"error", re.IGNORECASE, 0)):
        hits = [line for line in lines if re.search(pattern, line, flags)]
        if hits:
            return hits[pick]
    return lines[-1] if lines else "no output"


def _flow_run_id() -> Optional[str]:
    from prefect.runtime import flow_run

    return flow_run.id


def kill_tree(pid: int) -> None:
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


# Set for the stage command unless already set: its output reaches the pipe as it is written, and progress bars
# (which redraw with a carriage return, a line each here) update at most every 10 s (tqdm reads TQDM_*).
STREAMING_ENV = {"PYTHONUNBUFFERED": "1", "TQDM_MININTERVAL": "10", "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
                 "HF_HUB_DISABLE_PROGRESS_BARS": "1"}  # the Hub's switch also silences transformers' bars


def _emitter(stage: str) -> Callable[[str], None]:
    """Where a line of a stage's output goes as it arrives: the Prefect run logger inside a flow or task run
    (its console handler shows it in the terminal too), else the terminal's stderr."""
    try:
        from prefect.logging import get_run_logger

        logger = get_run_logger()
    except Exception:  # MissingContextError: called outside a Prefect run
        return lambda line: print(f"{stage} | {line}", file=sys.stderr, flush=True)
    return lambda line: logger.info("%s", line)  # the task run is named after the stage


# DVC's advice after each stage that wrote dvc.lock (five lines, nine times a run): a flow run says it once, at its
# end (flows/pipeline.py: git_add_hint), with the files DVC asked to add
GIT_HINT = "To track the changes with git, run:"
DVC_HINTS = (GIT_HINT, "To enable auto staging, run:", "dvc config core.autostage true",
             "Use `dvc push` to send your updates to remote storage.",
             # said of the one stage asked for, it read as "nothing to do" before the next stages ran (a trial);
             # the flow's own "<stage>: up to date" line follows
             "Data and pipelines are up to date.")


class _HintFilter:
    """Passes a stage's output on to ``emit``, less DVC's advice; keeps the files its ``git add`` line names."""

    def __init__(self, emit: Callable[[str], None]):
        self.emit, self.files, self._add_next = emit, [], False

    def __call__(self, line: str) -> None:
        text = line.strip()
        if self._add_next and text.startswith("git add "):
            self.files.extend(name for name in shlex.split(text[len("git add "):]) if name not in self.files)
        elif text not in DVC_HINTS:
            self.emit(line)
        self._add_next = text == GIT_HINT


def _pump(pipe: TextIO, sink: list, emit: Callable[[str], None]) -> None:
    """Read ``pipe`` line by line until it closes: keep every line, pass each non-blank one on at once."""
    for line in iter(pipe.readline, ""):
        sink.append(line)
        if line.strip():
            try:
                emit(redact_uri(line.rstrip()))  # the logs keep no credentials
            except Exception:  # a logging failure must not lose the output the failure classification reads
                pass
    pipe.close()


def _dvc_env() -> dict:
    env = dict(os.environ, DVC_NO_ANALYTICS="1")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # stage cmds use this python
    return env


def stale_stages(project_dir: str = ".") -> Optional[set[str]]:
    """The stages ``dvc status`` finds stale (changed deps, params, outs or command, or never run), in one DVC
    process; None when it cannot say (then every stage is left to its own ``dvc repro``).

    A flow run uses it to pass over the stages before the first stale one without starting a ``dvc repro``
    for each: those are exactly the ones ``dvc repro --single-item`` would find up to date, as nothing before
    them changes. From the first stale stage on, each stage asks DVC again, since a stage that runs can make
    the next one stale."""
    try:
        result = subprocess.run([sys.executable, "-m", "dvc", "status", "--json"], cwd=project_dir, env=_dvc_env(),
                                capture_output=True, text=True, timeout=600)
        changed = json.loads(result.stdout) if result.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return None
    if not isinstance(changed, dict):
        return None
    return {name.rsplit(":", 1)[-1] for name in changed}  # "stage", or "path/dvc.yaml:stage" elsewhere


def repro(stage: str, project_dir: str = ".", timeout_seconds: Optional[float] = None) -> dict:
    """Run ``dvc repro --single-item <stage>``; report whether the stage ran or was up to date.

    Its output is streamed line by line as it arrives (:func:`_emitter`) and kept for the failure's
    classification. After ``timeout_seconds`` the DVC process and the stage command are killed. DVC notices
    the dead process's entry in its lock file and removes it, so the next run is not blocked.
    """
    env = _dvc_env()
    for key, value in STREAMING_ENV.items():
        env.setdefault(key, value)
    flow_run_id = _flow_run_id()
    if flow_run_id:
        env[ORCHESTRATOR_ENV] = "prefect"
        env[FLOW_RUN_ID_ENV] = str(flow_run_id)
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "dvc", "repro", "--single-item", stage], cwd=project_dir,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace")
    emit, out, err = _emitter(stage), [], []
    filters = [_HintFilter(emit), _HintFilter(emit)]  # one a pipe: each reads its own lines in order
    readers = [threading.Thread(target=_pump, args=(pipe, sink, hints), daemon=True)
               for (pipe, sink), hints in zip(((proc.stdout, out), (proc.stderr, err)), filters)]
    for reader in readers:
        reader.start()
    try:
        proc.wait(timeout=timeout_seconds)
    except subprocess.TimeoutExpired:
        kill_tree(proc.pid)
        proc.wait()
        for reader in readers:
            reader.join(timeout=10)
        raise StageTimedOut(f"stage {stage} failed: timed out after {timeout_seconds:.0f}s and was stopped "
                            "(schedule.stage_timeout_minutes / schedule.stage_timeouts in params.yaml)", stage)
    except BaseException:
        # Ctrl-C, SIGINT to this process alone, or SIGTERM (Prefect's TerminationSignal while a flow runs): the stage
        # must not run on, orphaned, nor write its outputs while the flow puts params.yaml back
        kill_tree(proc.pid)
        raise
    for reader in readers:
        reader.join()
    stdout, stderr = "".join(out), "".join(err)
    output = stdout + stderr
    if proc.returncode != 0:
        error = _error_line(stderr) if "distillery" in stderr else _error_line(output)
        kind = classify(proc.returncode, output)
        # not "will be retried": the last attempt's message is the one the run ends with
        retry = f"transient: a flow's stage task tries it {STAGE_RETRIES + 1} times" if kind is TransientStageFailure \
            else "not retried"
        raise kind(redact_uri(f"stage {stage} failed ({retry}): {error}"), stage)
    return {"stage": stage, "ran": f"Running stage '{stage}'" in output,
            "seconds": round(time.perf_counter() - started, 1),
            # DVC keeps them in a set: the lock file first, then by name, the same every run
            "git_add": sorted(set(filters[0].files + filters[1].files), key=lambda name: (name != "dvc.lock", name))}


STAGE_RETRIES = 2  # a transient failure (exit code 3) is tried again 10 s, then 60 s, later


def stage_task(stage: str):
    """The Prefect task for ``stage``, named after it."""
    def run(project_dir: str = ".", timeout_seconds: Optional[float] = None, up_to_date: bool = False) -> dict:
        # up_to_date: the flow's one `dvc status` found this stage and every one before it up to date
        return {"stage": stage, "ran": False, "seconds": 0.0, "git_add": []} if up_to_date else \
            repro(stage, project_dir, timeout_seconds)

    run.__name__ = run.__qualname__ = stage
    # DVC decides what is stale, so Prefect's own result cache stays off.
    return task(name=stage, retries=STAGE_RETRIES, retry_delay_seconds=[10, 60],
                retry_condition_fn=_retry_if_transient, cache_policy=NO_CACHE)(run)


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
