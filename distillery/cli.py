"""``python -m distillery <stage>``: the same stage functions ``dvc.yaml`` and the Prefect tasks call."""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path
from typing import Callable, Optional

from distillery.errors import DistilleryError

STAGES = ("prepare", "train_teacher", "teacher_logits", "distill", "evaluate")
log = logging.getLogger("distillery")


def _stage_function(stage: str) -> Callable:
    if stage == "prepare":
        from distillery.data import prepare
        return prepare
    if stage == "train_teacher":
        from distillery.teacher import train_teacher
        return train_teacher
    if stage == "teacher_logits":
        from distillery.logits import teacher_logits
        return teacher_logits
    if stage == "distill":
        from distillery.distill import distill
        return distill
    from distillery.evaluation import evaluate_models
    return evaluate_models


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
    if stage == "train_teacher":
        return f"teacher trained in {result['train_seconds']:.0f}s; best validation {result['best_validation']}"
    return f"cached teacher logits for {result['rows']}"


def run_stage(stage: str, params_path: str = "params.yaml") -> dict:
    from distillery.config import load_params

    params = load_params(params_path)
    return _stage_function(stage)(params)


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(prog="distillery", description=__doc__)
    parser.add_argument("stage", choices=STAGES, help="pipeline stage to run")
    parser.add_argument("--params", default="params.yaml", help="params file (default: params.yaml)")
    args = parser.parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_EVALUATE_OFFLINE", "1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    started = time.perf_counter()
    try:
        result = run_stage(args.stage, args.params)
    except DistilleryError as exc:
        print(f"distillery {args.stage}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(_describe(args.stage, result))
    print(f"distillery {args.stage}: done in {time.perf_counter() - started:.1f}s")
    return 0
