"""``python -m distillery <stage>``: the same stage functions ``dvc.yaml`` and the Prefect tasks call."""
from __future__ import annotations

import importlib
import logging
import os
import signal
import sys
import time
from pathlib import Path
from typing import Callable, Optional

from distillery.cli_args import COMMANDS, PROFILE_COMMAND, REGISTRY_COMMANDS, parse
from distillery.errors import DistilleryError
from distillery.known_causes import known_cause
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
