"""Kill a registry command at its N-th MLflow write, then rerun it normally; report the registry after each.

``python tests/kill_driver.py SPEC.json``, run with the project as cwd. SPEC: ``project``, ``snapshot`` (a copy of
the project's ``mlruns`` to start each case from), ``argv`` (the CLI command), ``rerun`` (the normal rerun),
``kill_at`` (list of N; 0 = no kill, counts the writes) and ``out`` (JSON report). Every MLflow store write
(tracking and registry: create_*, log_*, set_*, delete_*, update_*, finalize_*, record_*) and artifact write
goes through a counter; at the N-th the process SIGKILLs itself before the write. The imports are done once
and each case runs in a forked child, so a case costs the command, not the interpreter start.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

STATE = {"kill_at": 0, "count": 0}
PREFIXES = ("create_", "log_", "set_", "delete_", "update_", "finalize_", "record_", "_log_", "_set_tags")


def _counted(method):
    def wrapper(*args, **kwargs):
        STATE["count"] += 1
        if STATE["count"] == STATE["kill_at"]:
            os.kill(os.getpid(), signal.SIGKILL)
        return method(*args, **kwargs)
    return wrapper


def install() -> None:
    from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as Registry
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore as Tracking

    for cls in (Tracking, Registry, LocalArtifactRepository):
        for attr, value in list(vars(cls).items()):
            if callable(value) and attr.startswith(PREFIXES) and not attr.startswith("_set_zero"):
                setattr(cls, attr, _counted(value))


def state(project: Path) -> dict:
    from mlflow import MlflowClient

    uri = f"sqlite:///{project / 'mlruns' / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    name = "distillery-student"
    aliases = {a: str(v) for a, v in client.get_registered_model(name).aliases.items()}
    versions = {str(v.version): dict(v.tags) for v in client.search_model_versions(f"name='{name}'")}
    experiments = [e.experiment_id for e in client.search_experiments()]
    running = [r.info.run_id for r in client.search_runs(experiments, "attributes.status = 'RUNNING'")]
    return {"aliases": aliases, "versions": versions, "running": running}


def fork(job) -> int:
    """``job()`` in a child; its exit code, or -signal."""
    pid = os.fork()
    if pid == 0:
        try:
            code = job()
        except BaseException as exc:  # noqa: BLE001 - report and leave
            print(f"child failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            code = 99
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code or 0)
    _, status = os.waitpid(pid, 0)
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    project, snapshot = Path(spec["project"]), Path(spec["snapshot"])
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's distillery, not an installed one
    import mlflow.pyfunc  # noqa: F401 - the imports once, before forking
    import onnxruntime  # noqa: F401
    import transformers  # noqa: F401

    import distillery
    import distillery.stages.register  # noqa: F401
    from distillery.cli import main as cli

    assert Path(distillery.__file__).resolve().parents[1] == Path(__file__).resolve().parents[1]

    install()
    scratch = Path(tempfile.mkdtemp())

    def command(argv, kill_at):
        def job():
            STATE.update(kill_at=kill_at, count=0)
            code = cli(argv)
            (scratch / "count").write_text(str(STATE["count"]))
            return code
        return job

    def snapshot_state():
        def job():
            (scratch / "state.json").write_text(json.dumps(state(project)))
            return 0
        assert fork(job) == 0
        return json.loads((scratch / "state.json").read_text())

    report = []
    plan = spec["kill_at"]  # a list of N, or {"head": H, "tail": T}: 0, then 1..H and the last T writes
    queue = [0] if isinstance(plan, dict) else list(plan)
    while queue:
        kill_at = queue.pop(0)
        shutil.rmtree(project / "mlruns")
        shutil.copytree(snapshot, project / "mlruns")
        case = {"kill_at": kill_at, "killed": fork(command(spec["argv"], kill_at))}
        if kill_at == 0:
            case["writes"] = writes = int((scratch / "count").read_text())
            if isinstance(plan, dict):
                queue = sorted(set(range(1, min(plan["head"], writes) + 1))
                               | set(range(max(1, writes - plan["tail"] + 1), writes + 1)))
        case["after_kill"] = snapshot_state()
        case["rerun"] = fork(command(spec["rerun"], 0))
        case["after_rerun"] = snapshot_state()
        report.append(case)
        Path(spec["out"]).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
