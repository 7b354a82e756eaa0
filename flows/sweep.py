"""The α × T sweep as a Prefect flow that maps one task over the grid: ``python -m flows.sweep``.

Each task is one run of ``distillery.sweep.sweep_run``: a seed's labels-only baseline (once per
seed: it does not depend on α or T) or the distilled student of one (seed, α, T). A run kept in
``reports/sweep_runs/`` with the current fingerprint is reused, so a failed or cancelled flow run
resumes where it stopped. Then ``distillery.sweep.report`` selects the setting on the validation
split and writes the same table, JSON and heatmap as ``python -m distillery sweep``. The runs go
one at a time by default (``max_workers``: on a 2-core machine parallel training only competes
for the cores); the flow holds the repository's pipeline lock, so no pipeline run changes the
prepared data or the cached logits under it. Run ``dvc repro teacher_logits`` first.
"""
from __future__ import annotations

import os

os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_ENABLED", "true")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

from pathlib import Path  # noqa: E402
from typing import Optional  # noqa: E402

from prefect import flow, get_run_logger, task, unmapped  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402
from prefect.task_runners import ThreadPoolTaskRunner  # noqa: E402

from distillery.config import load_params  # noqa: E402
from distillery.paths import LOGITS_DIR, PREPARED_DIR, REPORTS_DIR, TEACHER_DIR  # noqa: E402
from flows.operations import repository_lock  # noqa: E402
from flows.pipeline import check_project_dir  # noqa: E402


@task(name="sweep_run", cache_policy=NO_CACHE)
def sweep_run_task(project_dir: str, seed: int, alpha: Optional[float], temperature: Optional[float]) -> dict:
    """One run of the grid (alpha None: the seed's baseline); returns its record (plain numbers)."""
    from distillery.sweep import sweep_run

    root = Path(project_dir)
    cell = None if alpha is None else (alpha, temperature)
    return sweep_run(load_params(root / "params.yaml"), seed, cell, root / PREPARED_DIR, root / TEACHER_DIR,
                     root / LOGITS_DIR, root / REPORTS_DIR)


@flow(name="distillery-sweep", log_prints=True, task_runner=ThreadPoolTaskRunner(max_workers=1))
def sweep_flow(project_dir: str = ".") -> dict:
    """Map ``sweep_run`` over seeds × (baseline + every (α, T) cell), then select on validation and report."""
    from distillery.sweep import grid, report, summary

    root = check_project_dir(project_dir)
    logger = get_run_logger()
    params = load_params(root / "params.yaml")
    runs = [(seed, cell) for seed in params.sweep.seeds for cell in [None, *grid(params)]]
    with repository_lock(root, logger):
        futures = sweep_run_task.with_options(task_run_name="sweep_run-seed{seed}-alpha{alpha}-T{temperature}").map(
            unmapped(str(root)), [seed for seed, _ in runs], [c[0] if c else None for _, c in runs],
            [c[1] if c else None for _, c in runs])
        records = [future.result() for future in futures]
        result = report(params, records, root / PREPARED_DIR, root / REPORTS_DIR)
    logger.info(summary(result))
    return result


def run(project_dir: str = ".", max_workers: int = 1) -> dict:
    """The flow with ``max_workers`` runs at once."""
    return sweep_flow.with_options(task_runner=ThreadPoolTaskRunner(max_workers=max_workers))(project_dir=project_dir)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project-dir", default=".")
    parser.add_argument("--max-workers", type=int, default=1, help="runs trained at once (default 1)")
    arguments = parser.parse_args()
    run(arguments.project_dir, arguments.max_workers)
