"""``python -m distillery <stage>``: the same stage functions ``dvc.yaml`` and the Prefect tasks call."""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
import time
from typing import Callable, Optional

from distillery.errors import DistilleryError, RegistryError
from distillery.stages import STAGES, stage_function, stage_summary

# Commands outside the DVC pipeline: name -> (module, function); imported on demand so `--help` stays fast.
COMMANDS = {"kd_gain": ("distillery.kd_gain", "kd_gain"), "compare": ("distillery.compare", "compare")}
REGISTRY_COMMANDS = ("models", "promote", "rollback")
INFO_COMMANDS = ("params",)  # print every params.yaml key with its default and description


def _command_function(command: str) -> Callable:
    if command in STAGES:
        return stage_function(command)
    module, function = COMMANDS[command]
    return getattr(importlib.import_module(module), function)


def _describe(command: str, result: dict) -> str:
    if command in STAGES:
        return stage_summary(command, result)
    if command == "kd_gain":
        gain = result["accuracy"]
        return (f"over seeds {result['seeds']}: distilled {100 * gain['student_mean']:.2f} ± "
                f"{100 * gain['student_std']:.2f}%, baseline {100 * gain['baseline_mean']:.2f} ± "
                f"{100 * gain['baseline_std']:.2f}%, paired gain {100 * gain['diff_mean']:+.2f} points "
                f"(95% CI {100 * gain['diff_ci95'][0]:+.2f} to {100 * gain['diff_ci95'][1]:+.2f})")
    return result["table"]  # compare


def run_stage(stage: str, params_path: str = "params.yaml") -> dict:
    """Run a stage (or command) as DVC runs it: from the project root, on params.yaml."""
    from distillery.config import load_params
    from distillery.stages import stage_inputs
    from distillery.tracked import require_tracked

    params = load_params(params_path)
    if stage in STAGES:  # a local input DVC does not track would be read, but a change to it never seen
        require_tracked(stage, stage_inputs(stage, params))
    return _command_function(stage)(params)


def run_registry_command(command: str, params_path: str, version: Optional[str], reason: str) -> str:
    """``models``, ``promote <version> --reason ...`` or ``rollback``; return what to print."""
    from distillery.config import load_params
    from distillery.registry import commands as registry

    params = load_params(params_path)
    if command == "models":
        return registry.models_table(registry.list_models(params))
    if command == "promote":
        if version is None:
            raise RegistryError("promote needs a version: distillery promote <version> --reason '...'")
        result = registry.promote(params, version, reason)
        if not result["changed"]:
            return f"{result['model_name']} v{result['champion']} is already the champion; nothing changed"
        return (f"{result['model_name']}: champion v{result['previous'] or '-'} -> v{result['champion']} "
                f"(manual promotion recorded in MLflow run {result['run_id']})")
    result = registry.rollback(params, reason)
    if result.get("finished_interrupted"):
        return (f"{result['model_name']}: finished an interrupted rollback v{result['previous']} -> "
                f"v{result['champion']}")
    return (f"{result['model_name']}: champion rolled back v{result['previous']} -> v{result['champion']} "
            f"(recorded in MLflow run {result['run_id']})")


def _terminated(signum, frame) -> None:
    """SIGTERM (a stage timeout, a cancelled flow run) unwinds like Ctrl-C, so every scratch directory and
    checkpoint is cleaned up and the previous outputs stay in place."""
    raise SystemExit(128 + signum)


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(prog="distillery", description=__doc__)
    parser.add_argument("stage", choices=[*STAGES, *COMMANDS, *REGISTRY_COMMANDS, *INFO_COMMANDS],
                        help="pipeline stage to run; kd_gain (multi-seed distilled-vs-baseline evidence); compare (the "
                             "recipes kd_gain measured, side by side); or a "
                             "registry command: models (list versions), promote <version> --reason ..., rollback; "
                             "or params (every params.yaml key, its default and description)")
    parser.add_argument("version", nargs="?", help="model version, for promote")
    parser.add_argument("--reason", default="", help="why, for promote (required) and rollback (recorded)")
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    args = parser.parse_args(argv)
    if args.version is not None and args.stage != "promote":
        parser.error(f"{args.stage} takes no version argument")
    if args.stage == "params":
        from distillery.config import describe_params
        print(describe_params())
        return 0
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_EVALUATE_OFFLINE", "1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    signal.signal(signal.SIGTERM, _terminated)
    started = time.perf_counter()
    try:
        if args.stage in REGISTRY_COMMANDS:
            print(run_registry_command(args.stage, args.params, args.version, args.reason))
            return 0
        result = run_stage(args.stage, args.params)
    except DistilleryError as exc:
        print(f"distillery {args.stage}: {exc.label}: {exc}", file=sys.stderr)
        return exc.exit_code
    print(_describe(args.stage, result))
    print(f"distillery {args.stage}: done in {time.perf_counter() - started:.1f}s")
    return 0
