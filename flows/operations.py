"""Running unattended: one run per repository, and a report when a run fails.

- ``repository_lock``: two ``dvc repro`` runs in one repository collide, so a flow run holds an
  exclusive lock on ``.dvc/tmp/distillery-flow.lock`` while it runs its stages; it is the lock every
  ``python -m distillery <stage>`` takes (distillery/locking.py), so a stage or ``dvc repro`` started
  in a shell waits for the run and then refuses, while the flow's own ``dvc repro`` children go through. The served
  deployment also has a concurrency limit of one (see flows/deploy.py), so a second run requested
  through Prefect waits in ``AwaitingConcurrencySlot`` before it starts; the lock covers runs
  started any other way (a second deployment, ``python -m flows.pipeline`` in a shell).
- ``notify_failure``: the flow's ``on_failure`` hook (``notify_crash``: its ``on_crashed`` one, run by the worker
  when the run's process is gone). It logs the failed stage and its error and,
  when ``DISTILLERY_APPRISE_URL`` is set, sends them through Apprise (any of its URL schemes:
  ``slack://``, ``mailto://``, ``json://`` ...).
- ``temporary_server_in_own_session``: a run that ignores SIGINT (a script's background job) keeps Prefect's
  temporary server out of a Ctrl-C's reach too.
- ``git_add_hint``: DVC's advice after each stage that wrote ``dvc.lock`` ("git add", "dvc push"), said once at
  the end of a run (tasks/stages.py leaves it out of each stage's output).
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import shlex
import subprocess
from pathlib import Path
from typing import Iterator, Optional

from distillery import locking as lock

APPRISE_URL_ENV = "DISTILLERY_APPRISE_URL"
LOCK_PATH = lock.REPO_LOCK


@contextlib.contextmanager
def repository_lock(project_dir: Path, logger: logging.Logger | logging.LoggerAdapter,
                    poll_seconds: float = 2.0) -> Iterator[Optional[str]]:
    """Hold the repository's pipeline lock for the whole run; wait (and say so) while another holds it.

    The lock is distillery.locking's, the one ``python -m distillery <stage>`` takes: the flow's own
    ``dvc repro`` children inherit its token and go through; a stage or ``dvc repro`` started in a shell
    meanwhile waits and then refuses."""
    def waiting(path: Path, holder: str) -> None:
        logger.info("another pipeline run holds %s (%s); waiting for it to finish", path, holder)

    with lock.repository_lock(project_dir, "a Prefect flow run", timeout_s=None, poll_s=poll_seconds,
                              on_wait=waiting) as token:
        yield token


def git_add_hint(project_dir: Path, files: list[str]) -> Optional[str]:
    """One line for the end of a run whose stages DVC asked to ``git add`` ``files`` (None: it asked nothing), and
    ``reports`` when git sees it changed: the metrics, plots' data and summaries are outputs git tracks (``cache:
    false`` in dvc.yaml), which DVC does not name. ``dvc push`` is named when the project has a DVC remote
    (``.dvc/config``, ``.dvc/config.local``)."""
    if not files:
        return None
    try:
        changed = subprocess.run(["git", "status", "--porcelain", "--", "reports"], cwd=project_dir, text=True,
                                 capture_output=True, timeout=60).stdout.strip()
    except (OSError, subprocess.SubprocessError):  # no git: DVC's own list
        changed = ""
    files = files + (["reports"] if changed and "reports" not in files else [])
    remote = any('remote "' in path.read_text(encoding="utf-8", errors="replace")
                 for path in (project_dir / ".dvc" / "config", project_dir / ".dvc" / "config.local") if path.is_file())
    return (f"DVC recorded this run in dvc.lock: `git add {' '.join(map(shlex.quote, files))}` keeps the record with "
            "your code" + ("; `dvc push` sends its outputs to your DVC remote" if remote else ""))


def failed_stage(state) -> tuple[str, str]:
    """(stage, error) of a failed flow run's state."""
    error: object = None
    try:
        error = state.result(raise_on_failure=False)
    except Exception as exc:  # the result could not be read back; fall back to the state message
        error = exc
    text = str(error) if isinstance(error, BaseException) else (state.message or "unknown error")
    stage = getattr(error, "stage", "") or ""
    if not stage:
        match = re.search(r"stage (\w+) failed", text)
        stage = match.group(1) if match else "flow set-up"
    return stage, text


def send_notification(url: str, title: str, body: str, kind: str = "failure") -> bool:
    import apprise

    notifier = apprise.Apprise()
    if not notifier.add(url):
        return False
    return bool(notifier.notify(title=title, body=body, notify_type=apprise.NotifyType(kind)))


def notify_rejected(logger: logging.Logger, run_name: str, decision: str, apprise_url: Optional[str] = None) -> None:
    """A run that ended well whose candidate the gate refused: a scheduled retrain on worse data looked like one
    that succeeded, and nobody was told (a trial). A warning in the run's log, and through Apprise if configured."""
    from distillery.tracking import redact_uri

    title, decision = f"Distillery run {run_name}: the gate rejected the new model", redact_uri(decision)
    logger.warning("%s: %s", title, decision)
    url = apprise_url or os.environ.get(APPRISE_URL_ENV)
    if url and not send_notification(url, title, f"{decision}\n\nThe champion did not move.", kind="warning"):
        logger.warning("could not send the notification through Apprise (%s)", APPRISE_URL_ENV)


def notify_failure(flow, flow_run, state, apprise_url: Optional[str] = None) -> None:
    """``on_failure`` hook: log the failed stage and its error; notify through Apprise if configured."""
    stage, error = failed_stage(state)
    _notify(flow, flow_run, state, f"Distillery run {flow_run.name} failed at stage {stage}", error, apprise_url)


def notify_crash(flow, flow_run, state, apprise_url: Optional[str] = None) -> None:
    """``on_crashed`` hook, which the worker runs when the flow run's process is gone (killed for memory, the
    machine restarted): the run failed without a failed stage, and nobody was told."""
    ended = (state.message or "the flow run process ended without a result").rstrip(".")
    _notify(flow, flow_run, state, f"Distillery run {flow_run.name} crashed",
            f"{ended}; its logs say which stage was running. The next run puts back params.yaml and the outputs if "
            "the run had overrides (python -m flows.recover does it without a run)", apprise_url)


def _notify(flow, flow_run, state, title: str, error: str, apprise_url: Optional[str]) -> None:
    from prefect.logging.loggers import flow_run_logger

    from distillery.tracking import redact_uri

    logger = flow_run_logger(flow_run, flow)
    error = redact_uri(error)  # a tracking URI's credentials never reach a log line or a notification
    title = redact_uri(title)
    logger.error("%s: %s", title, error)
    url = apprise_url or os.environ.get(APPRISE_URL_ENV)
    if not url:
        return
    body = redact_uri(f"{error}\n\nflow run: {flow_run.id}\nstate: {state.name}")
    if send_notification(url, title, body):
        logger.info("failure notification sent through Apprise")
    else:
        logger.warning("could not send the failure notification through Apprise (%s)", APPRISE_URL_ENV)


class OneLineFailures(logging.Filter):
    """A stage's failure (``StageFailed``) or the flow's own check (``DistilleryError``) is already one line that
    names what went wrong: Prefect's task and flow run loggers printed it again with some 60 lines of its engine's
    traceback each time the stage was tried (a trial). Their records keep the message, without the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        from distillery.errors import DistilleryError
        from tasks.stages import StageFailed

        if record.exc_info and isinstance(record.exc_info[1], (StageFailed, DistilleryError)):
            record.exc_info, record.exc_text = None, None
        return True


def one_line_failures() -> None:
    """Install :class:`OneLineFailures` on Prefect's run loggers (once)."""
    for name in ("prefect.task_runs", "prefect.flow_runs"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, OneLineFailures) for f in logger.filters):
            logger.addFilter(OneLineFailures())


def temporary_server_in_own_session() -> None:
    """For a run that ignores SIGINT (``python -m flows.pipeline &`` in a script: its shell means it to outlive a
    Ctrl-C): Prefect's temporary server, which installs its own SIGINT handler, starts in a session of its own, out
    of the Ctrl-C's reach. It died of it, and the run went on without it to tracebacks and no summary (a trial).
    Prefect still stops it when the run ends."""
    from prefect.server.api import server

    class OwnSession:  # the server module's view of subprocess
        def __getattr__(self, name):
            return getattr(subprocess, name)

        @staticmethod
        def Popen(*args, **kwargs):
            return subprocess.Popen(*args, **{**kwargs, "start_new_session": True})

    server.subprocess = OwnSession()
