"""Running on a Prefect work pool: deployments that ``prefect worker start`` processes run.

A *process* work pool holds the flow runs; each worker (``prefect worker start --pool <pool> --limit 1``,
one per machine or per core group, started in the project's virtual environment) picks them up and runs
each in a subprocess, in the repository the deployment names. Here:

- ``ensure_pool``: the pool, created as a process pool when it does not exist yet;
- ``deploy``: a flow of this repository registered in the pool (``flow.from_source`` on the repository's
  directory, then ``.deploy``), so the workers load the repository's own code;
- ``fan_out``: one flow run per parameter set, submitted at once; waits until every one has finished and
  raises, naming them, if any did not complete. Workers take as many at a time as their ``--limit``.

Every worker must see the repository at the same path (the same machine, or a shared file system):
the runs read its prepared data and cached teacher outputs and write their records into it.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from distillery.errors import ConfigError

POOL_TYPE = "process"


def ensure_pool(pool: str) -> None:
    """Create ``pool`` as a process work pool if the server has none of that name; refuse another type."""
    from prefect import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            existing = client.read_work_pool(pool)
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(name=pool, type=POOL_TYPE))
            return
    if existing.type != POOL_TYPE:
        raise ConfigError(f"work pool {pool!r} is a {existing.type!r} pool; Distillery's deployments need a "
                          f"{POOL_TYPE!r} pool (prefect work-pool create {pool}-process --type {POOL_TYPE})")


def deploy(flow_obj, entrypoint: str, project_dir: Path, pool: str, name: str, **options: Any) -> str:
    """Register ``flow_obj`` (``entrypoint``: ``flows/<file>.py:<function>`` in this repository) in ``pool``
    under ``name``, run in ``project_dir``; return ``<flow name>/<name>``. ``options`` go to ``deploy``
    (schedules, triggers, concurrency_limit, parameters, tags, description)."""
    from flows.deploy import HEARTBEAT_SECONDS
    from flows.pipeline import PROJECT_DIR_ENV

    project_dir = Path(project_dir).resolve()
    ensure_pool(pool)
    remote = flow_obj.from_source(source=str(project_dir), entrypoint=entrypoint)
    remote.deploy(name=name, work_pool_name=pool, build=False, push=False, print_next_steps=False,
                  job_variables={"working_dir": str(project_dir), "env": {
                      PROJECT_DIR_ENV: str(project_dir), "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_SECONDS)}},
                  **options)
    return f"{flow_obj.name}/{name}"


def fan_out(deployment: str, runs: list[dict], names: list[str], pool: str, logger: logging.Logger,
            poll_seconds: float = 2.0, idle_warning_seconds: float = 60.0) -> list:
    """Submit one flow run of ``deployment`` per parameter dict in ``runs`` (``names``: their run names) and
    wait for all; return the finished flow runs. Raises ``RuntimeError`` naming the runs that did not
    complete."""
    from prefect import get_client
    from prefect.deployments import run_deployment

    submitted = [run_deployment(deployment, parameters=parameters, flow_run_name=name, timeout=0)
                 for parameters, name in zip(runs, names)]
    logger.info("%d runs submitted to work pool %r (deployment %s); its workers run them", len(submitted), pool,
                deployment)
    finished: dict = {}
    started, warned = time.monotonic(), False
    with get_client(sync_client=True) as client:
        while len(finished) < len(submitted):
            for flow_run in submitted:
                if flow_run.id not in finished:
                    current = client.read_flow_run(flow_run.id)
                    if current.state is not None and current.state.is_final():
                        finished[flow_run.id] = current
                        logger.info("%s: %s (%d of %d finished)", current.name, current.state.name, len(finished),
                                    len(submitted))
            if not warned and not finished and time.monotonic() - started > idle_warning_seconds:
                states = {client.read_flow_run(r.id).state_type for r in submitted}
                if all(str(s).endswith("SCHEDULED") or str(s).endswith("PENDING") for s in states):
                    logger.warning("no worker has started a run in %.0f s; start one in the project's environment: "
                                   "prefect worker start --pool %s --limit 1", idle_warning_seconds, pool)
                    warned = True
            if len(finished) < len(submitted):
                time.sleep(poll_seconds)
    runs_out = [finished[r.id] for r in submitted]
    failed = [r.name for r in runs_out if not r.state.is_completed()]
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(runs_out)} runs on work pool {pool!r} did not complete: "
                           f"{', '.join(failed)} (their logs are in the Prefect UI or `prefect flow-run logs <id>`)")
    return runs_out

