"""The Distillery pipeline as a Prefect flow: ``python -m flows.pipeline``.

It runs the stages in order through DVC (see tasks/stages.py), then prints and returns the results
table. It works on Prefect's local ephemeral API: no server, no account.
"""
from __future__ import annotations

import os

# Outermost layer: settings for running without a server, before Prefect is imported.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_ENABLED", "true")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # no network here; telemetry only logs errors
os.environ.setdefault("DVC_NO_ANALYTICS", "1")

import json  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Optional  # noqa: E402

from prefect import flow, get_run_logger  # noqa: E402
from prefect.artifacts import create_markdown_artifact  # noqa: E402

from tasks.stages import STAGE_TASKS, STAGES  # noqa: E402


@flow(name="distillery-pipeline", log_prints=True)
def pipeline(project_dir: str = ".", stages: Optional[list[str]] = None) -> dict:
    """Bring every stage up to date, in order, and summarise the run."""
    logger = get_run_logger()
    ran = {}
    for stage in stages or STAGES:
        result = STAGE_TASKS[stage](project_dir)
        ran[stage] = "ran" if result["ran"] else "up to date"
        logger.info("%s: %s (%.1fs)", stage, ran[stage], result["seconds"])
    root = Path(project_dir)
    eval_path = root / "reports" / "metrics" / "eval.json"
    table = "\n".join(path.read_text(encoding="utf-8") for path in (root / "reports" / "summary.md",
                                                                    root / "reports" / "benchmark.md")
                      if path.is_file())
    results = json.loads(eval_path.read_text(encoding="utf-8")) if eval_path.is_file() else {}
    stage_lines = "\n".join(f"- `{stage}`: {status}" for stage, status in ran.items())
    create_markdown_artifact(f"## Distillery run\n\n{table}\n### Stages\n{stage_lines}\n", key="distillery-summary",
                             description="Teacher vs distilled student vs baseline on the test split")
    print(f"\n{table}")
    return {"stages": ran, "table": table,
            "accuracy": {m: results[m]["accuracy"] for m in ("teacher", "student", "baseline") if m in results}}


if __name__ == "__main__":
    pipeline()
