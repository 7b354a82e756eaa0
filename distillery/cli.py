"""``python -m distillery <stage>``: the same stage functions ``dvc.yaml`` and the Prefect tasks call."""
from __future__ import annotations

import errno
import importlib
import logging
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Callable, Optional

from distillery.cli_args import COMMANDS, PROFILE_COMMAND, REGISTRY_COMMANDS, parse
from distillery.errors import DistilleryError, EnvironmentFailure, TransientError
from distillery.stages import STAGES, stage_function, stage_summary


def _ask_the_hub(params) -> None:
    """Whether the Hub is reachable, asked once for the Hub ids among the models the stages load (``errors``'
    probe): the teacher's (a ``layers`` student is cut from it), and a ``model`` student's."""
    from distillery.errors import offline_unless_hub_reachable

    names = [params.teacher.model] + ([params.student.model] if params.student.source == "model" else [])
    for name in names:
        if name and not name.startswith(("bundled:", "scratch:")):
            offline_unless_hub_reachable(name)


def _command_function(command: str) -> Callable:
    if command in STAGES:
        return stage_function(command)
    module, function = COMMANDS[command]
    return getattr(importlib.import_module(module), function)


def _describe(command: str, result: dict) -> str:
    if command in STAGES:
        return stage_summary(command, result)
    if command == "sweep":
        from distillery.sweep import summary

        return summary(result)
    if command == "kd_gain":
        from distillery.kd_gain import summary

        return summary(result)
    return result["table"]  # compare


def _stage_module(stage: str):
    import importlib

    return importlib.import_module(f"distillery.stages.{stage}")


def run_stage(stage: str, params_path: str = "params.yaml") -> dict:
    """Run a stage (or command) as DVC runs it: from the project root, on params.yaml."""
    from distillery.config import load_params
    from distillery.stages import stage_inputs
    from distillery.tracked import require_tracked

    params = load_params(params_path)
    if stage in STAGES:  # a local input DVC does not track would be read, but a change to it never seen
        require_tracked(stage, stage_inputs(stage, params))
        from distillery.announce import describe

        try:
            announcement = describe(stage, params)
        except Exception:  # a courtesy line: never the reason a stage fails
            announcement = f"{stage}: starting"
        from distillery.distributed import launch, report_result, speaks, world_size

        if speaks():  # stdout: tasks/stages.py reads the stage's error from stderr, which this line must not change
            print(announcement, flush=True)  # what it does, before the wait
        processes = getattr(_stage_module(stage), "processes", lambda _: 1)(params)
        if processes > 1 and world_size() == 1:  # train.processes: re-launched under torchrun
            _ask_the_hub(params)  # here, so its processes inherit the answer: one note, not one per process
            return launch(stage, processes, params_path)
        result = _command_function(stage)(params)
        report_result(result)
        return result
    if stage in ("kd_gain", "sweep"):
        from distillery.tracked import require_upstream_params

        require_upstream_params(stage, params_file=params_path)
    return _command_function(stage)(params)


def run_locked(stage: str, params_path: str = "params.yaml", run: Optional[Callable[[], dict]] = None) -> dict:
    """:func:`run_stage` under the repository lock (distillery/locking.py), so a stage started by hand or by
    a ``dvc repro`` in a shell never runs while a pipeline run (which may have overridden params.yaml) holds
    it: it waits ``$DISTILLERY_REPO_LOCK_WAIT_SECONDS`` (10) and then refuses (exit code 3). The pipeline's
    own ``dvc repro`` children go through. Outside a DVC repository nothing else can run stages: no lock."""
    from distillery.locking import refuse_leftover_overrides, repository_lock, stage_lock_wait

    from distillery.distributed import world_size

    run = run or (lambda: run_stage(stage, params_path))
    if not Path(".dvc").is_dir() or (world_size() > 1 and os.environ.get("LOCAL_RANK", "0") != "0"):
        return run()  # a torchrun process other than a machine's first: that one holds the machine's lock

    def waiting(path: Path, holder: str) -> None:
        print(f"distillery {stage}: waiting up to {stage_lock_wait():g}s for the pipeline run holding {path} "
              f"({holder})", file=sys.stderr, flush=True)

    with repository_lock(".", f"python -m distillery {stage}", timeout_s=stage_lock_wait(), on_wait=waiting) as mine:
        if mine is not None:  # this stage holds the lock: no flow run is live here (its children pass with None)
            refuse_leftover_overrides(stage)
        return run()


def _causes(exc: BaseException, context: bool = True) -> list[BaseException]:
    """``exc`` and what it wraps (``raise ... from``, SQLAlchemy's ``orig`` and, with ``context``, the exception
    being handled when it was raised)."""
    seen: list[BaseException] = []
    todo = [exc]
    while todo and len(seen) < 20:
        item = todo.pop(0)
        if item is None or any(item is s for s in seen):
            continue
        seen.append(item)
        todo += [item.__cause__, item.__context__ if context else None, getattr(item, "orig", None)]
    return [item for item in seen if isinstance(item, BaseException)]


def _store() -> str:
    from distillery.tracking import redact_uri, tracking_uri

    return redact_uri(tracking_uri(Path.cwd()))


def known_cause(exc: BaseException) -> Optional[DistilleryError]:
    """A one-line error of the right class for a few well-known causes of an unexpected exception, else None.

    - no space left on device (``OSError`` ENOSPC or EDQUOT, or a library's error saying so), a read-only file
      system, a file-size limit or a permission refused (EROFS, EFBIG, EACCES, EPERM): ``EnvironmentFailure``
      naming the path (exit 4, not retried);
    - a SQLite file that is not a database, is corrupt or full: ``EnvironmentFailure`` naming the store (exit 4);
    - SQLite "database is locked" and a refused or timed-out connection (the tracking server): ``TransientError``
      (exit 3, retried);
    - a tracking URI of a scheme MLflow has no store for (``htp://``): ``ConfigError`` naming it (exit 2).
    """
    import sqlite3

    from distillery.tracking import redact_uri

    if type(exc).__name__ in ("UnsupportedModelRegistryStoreURIException", "UnsupportedTrackingStoreURIException"):
        from distillery.errors import ConfigError

        uri = os.environ.get("MLFLOW_TRACKING_URI", "")
        return ConfigError(f"MLFLOW_TRACKING_URI {redact_uri(uri)!r} names no store MLflow knows: use http:// or "
                           "https:// (a tracking server), sqlite:/// or postgresql:// (a database), or unset it for "
                           "the project's own store")

    causes = _causes(exc)
    texts = " | ".join(f"{type(c).__name__}: {c}" for c in causes)
    for cause in causes:
        full = (isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT)) or (
            type(cause).__name__ == "SafetensorError" and "No space left on device" in str(cause))  # Rust's error
        if full:
            path = getattr(cause, "filename", None) or getattr(cause, "filename2", None)
            where = (f"writing {path}" if path else
                     f"writing under {Path.cwd()} ({shutil.disk_usage(Path.cwd()).free / 1e6:.0f} MB free)")
            what = "disk quota exceeded" if getattr(cause, "errno", None) == errno.EDQUOT else "no space left on device"
            return EnvironmentFailure(f"{what} {where}; free some space and run the stage again (nothing was "
                                      "retried)")
    # raised by the failure itself or wrapping it (not an unrelated bug raised while handling one), with a path to
    # name (os.kill's EPERM has none: that stays a traceback)
    for cause in _causes(exc, context=False):
        if isinstance(cause, OSError) and cause.errno in (errno.EROFS, errno.EFBIG, errno.EACCES, errno.EPERM) and \
                (cause.filename or cause.filename2):
            path = cause.filename or cause.filename2
            why = {errno.EROFS: "cannot write {}: the file system is read-only",
                   errno.EFBIG: "cannot write {}: the file grew past this process's size limit (ulimit -f)"}.get(
                cause.errno, "cannot use {}: permission denied").format(path)
            return EnvironmentFailure(f"{why}; fix it and run the stage again (nothing was retried)")
    if "database or disk is full" in texts:
        return EnvironmentFailure(f"the SQLite store {_store()} cannot grow (database or disk is full); free some "
                                  "space and run the stage again (nothing was retried)")
    for marker in ("file is not a database", "database disk image is malformed"):
        if marker in texts and any(isinstance(c, sqlite3.DatabaseError) or "sqlite" in type(c).__module__ + str(c)
                                   for c in causes):
            return EnvironmentFailure(f"the SQLite store {_store()} is unreadable ({marker}); restore it from a "
                                      "backup or point MLFLOW_TRACKING_URI at another store")
    if "database is locked" in texts:
        return TransientError(f"the SQLite store {_store()} is locked by another process (database is locked); "
                              "run the stage again")
    import socket

    for cause in causes:
        if isinstance(cause, (ConnectionError, socket.timeout, TimeoutError)) or type(cause).__name__ in (
                "ConnectionError", "ConnectTimeout", "ReadTimeout", "NewConnectionError", "MaxRetryError"):
            return TransientError(f"a connection failed ({type(cause).__name__}: "
                                  f"{redact_uri(str(cause)).splitlines()[0][:200] if str(cause) else 'no detail'}); "
                                  f"tracking store {_store()}")
    return None


class Terminated(SystemExit):
    """SIGTERM's exit, 143: raised in the main thread by :func:`_terminated`."""


def _terminated(signum, frame) -> None:
    """SIGTERM (a stage timeout, a cancelled flow run) unwinds like Ctrl-C, so every scratch directory and
    checkpoint is cleaned up and the previous outputs stay in place."""
    raise Terminated(128 + signum)


def main(argv: Optional[list] = None) -> int:
    args = parse(argv)
    try:
        return _run(args)
    except (KeyboardInterrupt, Terminated) as exc:  # one line, not a traceback (the cleanup ran as it unwound)
        how = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
        print(f"distillery {args.stage}: {how}; it stopped where it was: its files are written whole or not at "
              "all, and a registry change cut short is finished or undone by the next registry command; run it "
              "again", file=sys.stderr)
        return exc.code if isinstance(exc, Terminated) else 130


def _run(args) -> int:
    if args.stage == "params" and args.check:
        from distillery.params_check import check_params_file

        return check_params_file(args.params)
    if args.stage == "params":
        from distillery.config import describe_params

        if args.params != "params.yaml" and not Path(args.params).is_file():  # it listed silently
            print(f"distillery params: error: {args.params}: no such params file", file=sys.stderr)
            return 2
        print(describe_params(args.params if Path(args.params).is_file() else None))
        return 0
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_EVALUATE_OFFLINE", "1")
    for bars in ("HF_HUB_DISABLE_PROGRESS_BARS", "HF_DATASETS_DISABLE_PROGRESS_BARS"):  # the Hub's switch also
        os.environ.setdefault(bars, "1")  # silences transformers' ("Writing model shards"); distillery/progress.py reports
    if args.stage == "benchmark":
        # Interleaved timing: torch's OpenMP threads must sleep, not spin, between runs (read when torch loads,
        # which is after this), or they steal the cores of the ONNX Runtime model timed next.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # a lost tracking server: one line says so at the end, not a urllib3 "Retrying ..." warning per attempt before it
    logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
    from distillery.tracking import RedactingFilter, redact_uri

    for handler in logging.getLogger().handlers:  # no credentials of a tracking URI in any log line
        handler.addFilter(RedactingFilter())
    signal.signal(signal.SIGTERM, _terminated)
    started = time.perf_counter()
    try:
        if args.stage in REGISTRY_COMMANDS:
            from distillery.registry.commands import run_command

            print(redact_uri(run_command(args.stage, args.params, args.version, args.reason, args.other_inputs,
                                         args.other_labels)))
            return 0
        if args.stage == PROFILE_COMMAND:  # rewrites params.yaml: never while a pipeline run holds the lock
            from distillery.profiles import apply_profile, read_profile, summary

            read_profile(args.version)  # a mistyped name is said at once, not after waiting for a pipeline's lock
            result = run_locked(args.stage, args.params, lambda: apply_profile(args.version, args.params))
            print(summary(result))
            return 0
        result = run_locked(args.stage, args.params)
    except DistilleryError as exc:
        print(f"distillery {args.stage}: {exc.label}: {redact_uri(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except Exception as exc:
        mapped = known_cause(exc)
        if mapped is None:
            raise  # unexpected: the traceback, exit code 1, not retried
        print(f"distillery {args.stage}: {mapped.label}: {mapped}", file=sys.stderr)
        return mapped.exit_code
    from distillery.distributed import speaks

    if speaks():  # one summary and one time from a multi-process run: the launching CLI's
        print(redact_uri(_describe(args.stage, result)))
        print(f"distillery {args.stage}: done in {time.perf_counter() - started:.1f}s")
    return 0
