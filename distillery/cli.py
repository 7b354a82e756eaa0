"""``python -m distillery <stage>``: the same stage functions ``dvc.yaml`` and the Prefect tasks call."""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import time
from pathlib import Path
from typing import Callable, Optional

from distillery.errors import DistilleryError, RegistryError

STAGES = ("prepare", "train_teacher", "teacher_logits", "distill", "evaluate", "export", "benchmark", "register")
# stage -> (module, function); imported on demand so `--help` stays fast
STAGE_FUNCTIONS = {
    "prepare": ("distillery.data", "prepare"),
    "train_teacher": ("distillery.teacher", "train_teacher"),
    "teacher_logits": ("distillery.logits", "teacher_logits"),
    "distill": ("distillery.distill", "distill"),
    "evaluate": ("distillery.evaluation", "evaluate_models"),
    "export": ("distillery.export", "export"),
    "benchmark": ("distillery.benchmark", "benchmark"),
    "register": ("distillery.stages.register", "register"),
}
# Commands outside the DVC pipeline.
COMMANDS = {"kd_gain": ("distillery.kd_gain", "kd_gain"), "compare": ("distillery.compare", "compare")}
REGISTRY_COMMANDS = ("models", "promote", "rollback")


def _stage_function(stage: str) -> Callable:
    module, function = {**STAGE_FUNCTIONS, **COMMANDS}[stage]
    return getattr(importlib.import_module(module), function)


def _describe(stage: str, result: dict) -> str:
    if stage == "prepare":
        from distillery.data import report_summary
        return report_summary(result)
    if stage == "evaluate":
        return Path("reports/summary.md").read_text(encoding="utf-8")
    if stage == "distill":
        return (f"distilled student {result['student']['train_seconds']:.0f}s, baseline "
                f"{result['baseline']['train_seconds']:.0f}s; time per example, distilled / baseline: "
                f"{result['time_ratio_per_example']:.2f}")
    if stage == "kd_gain":
        gain = result["accuracy"]
        return (f"over seeds {result['seeds']}: distilled {100 * gain['student_mean']:.2f} ± "
                f"{100 * gain['student_std']:.2f}%, baseline {100 * gain['baseline_mean']:.2f} ± "
                f"{100 * gain['baseline_std']:.2f}%, paired gain {100 * gain['diff_mean']:+.2f} points "
                f"(95% CI {100 * gain['diff_ci95'][0]:+.2f} to {100 * gain['diff_ci95'][1]:+.2f})")
    if stage == "compare":
        return result["table"]
    if stage == "benchmark":
        return Path("reports/benchmark.md").read_text(encoding="utf-8")
    if stage == "export":
        student = result["student"]
        return (f"student fp32 parity: max |logit diff| {student['fp32']['max_abs_logit_diff']:.2e}, label agreement "
                f"{student['fp32']['label_agreement_vs_pytorch']:.4f}; int8 label agreement "
                f"{student['int8']['label_agreement_vs_fp32']:.4f}, accuracy change "
                f"{student['int8']['accuracy_change_points']:+.2f} points; deployable: {result['deployable']}")
    if stage == "register":
        from distillery.stages import stage_summary
        return stage_summary(stage, result)
    if stage == "train_teacher":
        return f"teacher trained in {result['train_seconds']:.0f}s; best validation {result['best_validation']}"
    return f"cached teacher logits for {result['rows']}"


def run_stage(stage: str, params_path: str = "params.yaml") -> dict:
    from distillery.config import load_params

    params = load_params(params_path)
    return _stage_function(stage)(params)


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
    return (f"{result['model_name']}: champion rolled back v{result['previous']} -> v{result['champion']} "
            f"(recorded in MLflow run {result['run_id']})")


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(prog="distillery", description=__doc__)
    parser.add_argument("stage", choices=[*STAGES, *COMMANDS, *REGISTRY_COMMANDS],
                        help="pipeline stage to run; kd_gain (multi-seed distilled-vs-baseline evidence); compare (the "
                             "recipes kd_gain measured, side by side); or a "
                             "registry command: models (list versions), promote <version> --reason ..., rollback")
    parser.add_argument("version", nargs="?", help="model version, for promote")
    parser.add_argument("--reason", default="", help="why, for promote (required) and rollback (recorded)")
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    args = parser.parse_args(argv)
    if args.version is not None and args.stage != "promote":
        parser.error(f"{args.stage} takes no version argument")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_EVALUATE_OFFLINE", "1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
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
