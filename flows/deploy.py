"""Serve the pipeline as a Prefect deployment: ``python -m flows.deploy``.

The deployment ``distillery-pipeline/distillery-<repository name>`` (flow name / deployment name; the
repository name is the directory name and 6 hex digits of its absolute path, so repositories sharing a
server never collide; ``--name`` sets it) has

- a schedule: ``schedule.cron`` in params.yaml (in ``schedule.timezone``), or ``--cron`` /
  ``--interval`` / ``--no-schedule``;
- an event trigger: a run starts when ``schedule.event`` (``distillery.data.updated``) arrives for
  this repository's resource, ``distillery.data.<repository name>`` (``--resource-id``);
  ``python -m flows.watch`` emits it when the data source's content changes;
- a debounce window: once an event has started a run, further events within
  ``schedule.debounce_seconds`` start none (the trigger's ``within``);
- a concurrency limit of one run (a second run waits for a slot; two ``dvc repro`` runs in one
  repository collide);
- the parameters ``project_dir`` (this repository), ``stages`` and ``overrides`` (params keys for one
  run, saved as a DVC experiment: ``prefect deployment run distillery-pipeline/distillery
  --param overrides='{"distill.alpha": 0.3}'``). Only keys under ``schedule.allowed_overrides`` may be
  overridden, and a run refuses any ``project_dir`` but the one served here (``DISTILLERY_PROJECT_DIR``).

Schedules need a Prefect server (``prefect server start``, ``PREFECT_API_URL`` pointing at it);
the ephemeral API that ``python -m flows.pipeline`` uses does not run them. The process runs the
flow runs itself, in subprocesses, until it is stopped. With ``--pool <work pool>`` it registers the
same deployment (schedule, trigger, debounce, concurrency limit, parameters) in a Prefect *process*
work pool instead, and exits: ``prefect worker start --pool <work pool>`` processes run the flow runs
(see flows/pool.py).
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import os
import sys
from pathlib import Path
from typing import Optional

def repository_name(project_dir: Path) -> str:
    """``<directory name>-<6 hex digits of its absolute path>``: two checkouts with the same directory name
    (on two machines, or two users' homes) stay apart on one Prefect server."""
    path = Path(project_dir).resolve()
    return f"{path.name}-{hashlib.sha256(str(path).encode('utf-8')).hexdigest()[:6]}"


def deployment_name(project_dir: Path) -> str:
    """The default deployment name: ``distillery-<repository name>``."""
    return f"distillery-{repository_name(project_dir)}"


def resource_id(project_dir: Path) -> str:
    """The event resource naming this repository's data: ``distillery.data.<repository name>``."""
    return f"distillery.data.{repository_name(project_dir)}"


def deployment_options(project_dir: Path, name: Optional[str] = None, cron: Optional[str] = None,
                       timezone: str = "UTC", interval: Optional[float] = None, event: Optional[str] = None,
                       resource: Optional[str] = None, debounce_seconds: float = 0.0) -> dict:
    """Name, schedules, trigger, concurrency limit, parameters and tags of the pipeline's deployment: the same
    whether this process serves it or a work pool's workers run it."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
    from prefect.events import DeploymentEventTrigger
    from prefect.schedules import Cron, Interval

    project_dir = Path(project_dir).resolve()
    name = name or deployment_name(project_dir)
    schedules = []
    if interval:
        schedules.append(Interval(datetime.timedelta(seconds=interval), timezone=timezone))
    elif cron:
        schedules.append(Cron(cron, timezone=timezone))
    triggers = []
    if event:
        # Reactive, threshold 1: the first event fires at once; Prefect then ignores this trigger's events
        # until ``within`` has passed since that event (its next bucket starts there), so a storm of events
        # is one run. A change in that window is read by the run it started only if it lands before the
        # run's prepare stage; otherwise the next event or the schedule picks it up.
        triggers.append(DeploymentEventTrigger(
            name=f"{name}: {event}", expect={event}, posture="Reactive", threshold=1,
            within=datetime.timedelta(seconds=debounce_seconds),
            match={"prefect.resource.id": resource or resource_id(project_dir)}))
    return dict(name=name, schedules=schedules, triggers=triggers, parameters={"project_dir": str(project_dir)},
                concurrency_limit=ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE),
                tags=["distillery"], description=f"Distillery pipeline in {project_dir}: every stage through DVC")


HEARTBEAT_SECONDS = 60  # a deployment's flow run tells the server it is alive this often (Prefect's default: 180)
UNRESPONSIVE_AFTER = 3 * HEARTBEAT_SECONDS  # no heartbeat and no final state for this long: marked Crashed
AUTOMATION = "distillery: mark unresponsive runs Crashed"


def crash_unresponsive_runs() -> bool:
    """Create, once per server, the automation that marks a Distillery flow run (tag ``distillery``) Crashed when
    its heartbeats stop without a final state (Prefect's recipe, "detect zombie flows"). A worker killed with its
    flow run (a machine lost) left the run Running for good, with no notification, and the next run waited for
    the concurrency slot's lease to run out (a trial). Whether it created it."""
    from prefect.automations import Automation
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    try:
        Automation.read(name=AUTOMATION)
        return False
    except ValueError:  # not on this server yet
        pass
    ends = {f"prefect.flow-run.{state}" for state in ("Completed", "Failed", "Cancelled", "Crashed")}
    Automation(
        name=AUTOMATION, description=f"A Distillery flow run silent for {UNRESPONSIVE_AFTER} s (its process and "
                                     "worker gone) is marked Crashed: flows.deploy made this",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"}, expect={"prefect.flow-run.heartbeat", *ends},
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            match_related=ResourceSpecification({"prefect.resource.role": "tag",
                                                 "prefect.resource.id": "prefect.tag.distillery"}),
            for_each={"prefect.resource.id"}, posture=Posture.Proactive, threshold=1,
            within=datetime.timedelta(seconds=UNRESPONSIVE_AFTER)),
        actions=[ChangeFlowRunState(state=StateType.CRASHED, message=(
            f"no heartbeat for {UNRESPONSIVE_AFTER} s: its process and its worker are gone (a machine lost or "
            "killed); `python -m flows.recover` in the project puts back what it left half-done"))]).create()
    return True


def _watch_for_unresponsive_runs() -> None:
    try:
        crash_unresponsive_runs()
    except Exception as exc:  # a server without automations (or refusing them): the deployment still works
        from distillery.tracking import redact_uri

        said = redact_uri(str(exc).splitlines()[0])[:160] if str(exc) else "no detail"
        print(f"flows.deploy: warning: could not create the automation {AUTOMATION!r} ({type(exc).__name__}: "
              f"{said}); a run killed with its worker stays Running until marked by hand", file=sys.stderr)


def build_deployment(project_dir: Path, **options):
    """The RunnerDeployment that ``serve`` registers with the server (``options``: see deployment_options)."""
    from prefect.deployments.runner import EntrypointType

    from flows.pipeline import pipeline

    return pipeline.to_deployment(**deployment_options(project_dir, **options),
                                  entrypoint_type=EntrypointType.MODULE_PATH)


def deploy_to_pool(project_dir: Path, pool: str, **options) -> str:
    """Register the pipeline's deployment in the process work pool ``pool`` (created if missing); its workers
    run the flow runs. Returns ``<flow>/<deployment>``."""
    from flows.pipeline import pipeline
    from flows.pool import deploy

    settings = deployment_options(project_dir, **options)
    return deploy(pipeline, "flows/pipeline.py:pipeline", Path(project_dir).resolve(), pool, settings.pop("name"),
                  **settings)


def main(argv: Optional[list] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.deploy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--project-dir", default=".", help="the repository (holds dvc.yaml and params.yaml)")
    parser.add_argument("--name", help="deployment name (default: distillery-<directory name>-<6 hex digits of the "
                                       "repository's absolute path>, unique per repository on a shared server)")
    when = parser.add_mutually_exclusive_group()
    when.add_argument("--cron", help="cron expression (default: schedule.cron in params.yaml)")
    when.add_argument("--interval", type=float, help="run every this many seconds instead of the cron schedule")
    when.add_argument("--no-schedule", action="store_true", help="no schedule: runs start by trigger or by hand")
    parser.add_argument("--no-trigger", action="store_true", help="no event trigger")
    parser.add_argument("--debounce-seconds", type=float, help="events within this many seconds of the one that "
                                                               "started a run start none (default: "
                                                               "schedule.debounce_seconds in params.yaml)")
    parser.add_argument("--resource-id", help="event resource that triggers a run "
                                              "(default: distillery.data.<repository name>)")
    parser.add_argument("--pool", help="register the deployment in this Prefect process work pool (created if "
                                       "missing) for `prefect worker start --pool` workers to run, and exit; "
                                       "default: serve it from this process")
    args = parser.parse_args(argv)

    from distillery.config import load_schedule
    from distillery.errors import DistilleryError

    project_dir = Path(args.project_dir).resolve()
    try:
        schedule = load_schedule(project_dir / "params.yaml")
    except DistilleryError as exc:
        print(f"flows.deploy: error: {exc}", file=sys.stderr)
        return 2
    if not os.environ.get("PREFECT_API_URL"):
        print("flows.deploy: warning: PREFECT_API_URL is not set; schedules do not run on the ephemeral API "
              "(start `prefect server start` and export PREFECT_API_URL=http://127.0.0.1:4200/api)",
              file=sys.stderr)
    else:  # a server that is down or refuses this client's auth string: one line, not the client's traceback
        from flows.watch import ServerUnavailable, require_server

        try:
            require_server()
        except ServerUnavailable as exc:
            print(f"flows.deploy: error: {exc}", file=sys.stderr)
            return exc.exit_code
    cron = None if args.no_schedule or args.interval else (args.cron or schedule.cron)
    options = dict(name=args.name, cron=cron, timezone=schedule.timezone, interval=args.interval,
                   event=None if args.no_trigger else schedule.event, resource=args.resource_id,
                   debounce_seconds=schedule.debounce_seconds if args.debounce_seconds is None
                   else args.debounce_seconds)
    if args.pool:
        try:
            name = deploy_to_pool(project_dir, args.pool, **options)
        except DistilleryError as exc:
            print(f"flows.deploy: error: {exc}", file=sys.stderr)
            return 2
        _watch_for_unresponsive_runs()
        print(f"flows.deploy: {name} is in work pool {args.pool!r}; its workers run it. Start one (or one per "
              f"machine) in this project's environment: prefect worker start --pool {args.pool} --limit 1",
              flush=True)
        return 0
    deployment = build_deployment(project_dir, **options)

    from prefect import serve

    from flows.pipeline import PROJECT_DIR_ENV

    os.environ[PROJECT_DIR_ENV] = str(project_dir)  # the flow runs served here refuse any other project_dir
    os.environ.setdefault("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", str(HEARTBEAT_SECONDS))  # its runs' processes
    if os.environ.get("PREFECT_API_URL"):
        _watch_for_unresponsive_runs()
    print(f"flows.deploy: serving distillery-pipeline/{deployment.name}; events for resource "
          f"{args.resource_id or resource_id(project_dir)} start a run", flush=True)
    serve(deployment)
    return 0


if __name__ == "__main__":
    sys.exit(main())
