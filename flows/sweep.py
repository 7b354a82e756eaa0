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
from distillery.errors import ConfigError  # noqa: E402
from distillery.paths import LOGITS_DIR, PREPARED_DIR, REPORTS_DIR, TEACHER_DIR  # noqa: E402
from distillery.tracked import require_upstream_params  # noqa: E402
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


@flow(name="distillery-sweep-run", log_prints=True)
def sweep_run_flow(project_dir: str, seed: int, alpha: Optional[float] = None,
                   temperature: Optional[float] = None) -> dict:
    """One run of the grid as its own flow run: what a work pool's worker runs for ``--pool``."""
    root = check_project_dir(project_dir)
    return sweep_run_task.fn(str(root), seed, alpha, temperature)


def _records(root: Path, params, runs: list[tuple], pool: Optional[str], logger) -> list[dict]:
    """The record of every (seed, cell) run: trained by this flow's tasks, or fanned out over ``pool``."""
    from distillery.sweep import kept_records, run_name

    dirs = (root / PREPARED_DIR, root / LOGITS_DIR, root / REPORTS_DIR)
    if pool is None:
        futures = sweep_run_task.with_options(task_run_name="sweep_run-seed{seed}-alpha{alpha}-T{temperature}").map(
            unmapped(str(root)), [seed for seed, _ in runs], [c[0] if c else None for _, c in runs],
            [c[1] if c else None for _, c in runs])
        return [future.result() for future in futures]
    from flows.deploy import deployment_name
    from flows.pool import deploy, fan_out

    todo = [run for run, kept in zip(runs, kept_records(params, runs, *dirs)) if kept is None]
    if todo:
        deployment = deploy(sweep_run_flow, "flows/sweep.py:sweep_run_flow", root, pool, deployment_name(root),
                            tags=["distillery"], description=f"One Distillery sweep or kd_gain run in {root}")
        fan_out(deployment, [{"project_dir": str(root), "seed": seed, "alpha": cell[0] if cell else None,
                              "temperature": cell[1] if cell else None} for seed, cell in todo],
                [run_name(seed, cell) for seed, cell in todo], pool, logger)
    logger.info("%d runs kept from earlier, %d run on work pool %r", len(runs) - len(todo), len(todo), pool)
    records = kept_records(params, runs, *dirs)
    for (seed, cell), record in zip(runs, records):
        if record is None:
            raise ConfigError(f"{root / REPORTS_DIR / 'sweep_runs' / (run_name(seed, cell) + '.json')}: the run "
                              f"completed on a worker but its record is not in this repository; every worker must "
                              f"see the repository at {root} (the same machine or a shared file system)")
    return records


@flow(name="distillery-sweep", log_prints=True, task_runner=ThreadPoolTaskRunner(max_workers=1))
def sweep_flow(project_dir: str = ".", pool: Optional[str] = None) -> dict:
    """Map ``sweep_run`` over seeds × (baseline + every (α, T) cell), here or on the work pool ``pool``; then
    select on validation and report."""
    from distillery.sweep import grid, report, summary

    root = check_project_dir(project_dir)
    logger = get_run_logger()
    params = load_params(root / "params.yaml")
    runs = [(seed, cell) for seed in params.sweep.seeds for cell in [None, *grid(params)]]
    with repository_lock(root, logger):
        require_upstream_params("the sweep", root)  # inside the lock: a pipeline run may hold params.yaml overridden
        records = _records(root, params, runs, pool, logger)
        result = report(params, records, root / PREPARED_DIR, root / REPORTS_DIR)
    logger.info(summary(result))
    return result


@flow(name="distillery-kd-gain", log_prints=True, task_runner=ThreadPoolTaskRunner(max_workers=1))
def kd_gain_flow(project_dir: str = ".", pool: Optional[str] = None) -> dict:
    """``python -m distillery kd_gain`` as runs of the grid: per seed in ``evaluate.seeds``, the baseline and
    the student at ``distill.alpha`` and ``distill.temperature``, here or on the work pool ``pool``."""
    from distillery.kd_gain import report_from_runs

    root = check_project_dir(project_dir)
    logger = get_run_logger()
    params = load_params(root / "params.yaml")
    cell = (float(params.distill.alpha), float(params.distill.temperature))
    runs = [(seed, c) for seed in params.evaluate.seeds for c in (None, cell)]
    with repository_lock(root, logger):
        require_upstream_params("kd_gain", root)
        records = _records(root, params, runs, pool, logger)
        result = report_from_runs(params, records, root / PREPARED_DIR, root / REPORTS_DIR, root / LOGITS_DIR)
    primary = result["metrics"][0]
    logger.info("kd_gain over seeds %s: %s student %.4f ± %.4f, baseline %.4f ± %.4f, paired gain %+.4f",
                result["seeds"], primary, result[primary]["student_mean"], result[primary]["student_std"],
                result[primary]["baseline_mean"], result[primary]["baseline_std"], result[primary]["diff_mean"])
    return result


def run(project_dir: str = ".", max_workers: int = 1, pool: Optional[str] = None, kd_gain: bool = False) -> dict:
    """The sweep (or kd_gain) flow with ``max_workers`` runs at once here, or its runs on ``pool``."""
    chosen = kd_gain_flow if kd_gain else sweep_flow
    return chosen.with_options(task_runner=ThreadPoolTaskRunner(max_workers=max_workers))(project_dir=project_dir,
                                                                                            pool=pool)


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(prog="python -m flows.sweep", description=__doc__.splitlines()[0])
    parser.add_argument("--project-dir", default=".")
    parser.add_argument("--max-workers", type=int, default=1, help="runs trained at once here (default 1)")
    parser.add_argument("--pool", help="a Prefect process work pool: its workers train the runs (needs a Prefect "
                                       "server: PREFECT_API_URL)")
    parser.add_argument("--kd-gain", action="store_true", help="the kd_gain runs (distill.alpha, distill.temperature "
                                                               "over evaluate.seeds) instead of the sweep grid")
    arguments = parser.parse_args()
    run(arguments.project_dir, arguments.max_workers, arguments.pool, arguments.kd_gain)
