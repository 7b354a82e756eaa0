"""The kill matrix: SIGKILL the Prefect flow (its whole process group: the flow, its ephemeral Prefect
server, ``dvc repro`` and the stage) while a stage runs, some runs with overrides, then run the flow again.

Afterwards: the rerun completes; params.yaml is byte for byte what it was before the killed run (the
overrides did not leak); no scratch is left (no ``.*.tmp-*`` / ``.*.old-*`` in the project, no scratch of
the dead pids in the temp dir); and the outputs' contents equal an uninterrupted run's (the weights byte for byte; the
records of wall-clock time left out).

Each case starts from a copy of an uninterrupted run's project, with the killed stage's outputs, its
dvc.lock entry and DVC's run-cache removed, so that exactly that stage runs (and is killed); the stages after it find their
inputs unchanged. All cases are ``slow`` (``pytest -m slow``): even the smallest, kill during ``distill``
with overrides (stages up to distill only), took 7.4 min on a shared 2-core machine at load 15, as it
needs an uninterrupted reference run and two flow runs, each starting Prefect's ephemeral server.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from conftest import make_project

BIN = Path(sys.executable).parent
UP_TO_DISTILL = ["prepare", "train_teacher", "teacher_logits", "distill"]
ALL_STAGES = ["prepare", "train_teacher", "teacher_logits", "distill", "evaluate", "export", "benchmark", "register"]
# Outputs that legitimately differ between two uninterrupted runs, so they are left out of the comparison:
# - benchmark: latencies and throughput are wall-clock measurements (and the plots drawn from them);
# - register: the model card and register.json carry the MLflow run id, the model version number (a
#   killed register may already have created a version, so the rerun's is the next one) and timestamps.
NONDETERMINISTIC = {"reports/metrics/benchmark.json", "reports/benchmark.md", "reports/plots/benchmark_pareto.png",
                    "reports/plots/benchmark_latency.png", "reports/metrics/register.json",
                    "reports/summary.md",  # evaluate's table has each model's training seconds
                    "reports/model_card.md"}
SCRATCH = re.compile(r"^\..+\.(tmp|old)-(\d+)")
FLOW = ("import json, sys\n"
        "from flows.pipeline import pipeline\n"
        "pipeline(project_dir='.', stages=json.loads(sys.argv[1]) or None, overrides=json.loads(sys.argv[2]) or None)\n")


def _env(project: Path) -> dict:
    tmp = project.parent / "tmp"
    tmp.mkdir(exist_ok=True)
    env = dict(os.environ, TMPDIR=str(tmp), PREFECT_HOME=str(project.parent / "prefect-home"),
               PREFECT_SERVER_EPHEMERAL_ENABLED="true", PREFECT_LOGGING_TO_API_ENABLED="false",
               PREFECT_SERVER_ANALYTICS_ENABLED="false", DVC_NO_ANALYTICS="1",
               PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    env.pop("PREFECT_API_URL", None)
    return env


def _start_flow(project: Path, stages: list[str], overrides: dict, log: Path) -> subprocess.Popen:
    out = open(log, "w")
    return subprocess.Popen([sys.executable, "-c", FLOW, json.dumps(stages), json.dumps(overrides)], cwd=project,
                            env=_env(project), stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def _run_flow(project: Path, stages: list[str], overrides: dict, log: Path, timeout: float = 900) -> None:
    proc = _start_flow(project, stages, overrides, log)
    try:
        proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, log.read_text()[-4000:]


def _stage_process(root: psutil.Process, stage: str):
    for child in root.children(recursive=True):
        try:
            if child.cmdline()[-3:] == ["-m", "distillery", stage]:
                return child
        except psutil.Error:
            continue
    return None


def _scratch(directory: Path, pids: set[int] | None = None) -> list[Path]:
    found = []
    for path in directory.rglob(".*"):
        match = SCRATCH.match(path.name)
        if match and ".git" not in path.relative_to(directory).parts and (pids is None or int(match.group(2)) in pids):
            found.append(path)
    return found


def _kill_during(project: Path, stage: str, stages: list[str], overrides: dict, log: Path) -> set[int]:
    """Start the flow, SIGKILL its process group while ``stage`` is writing; return the pids killed."""
    proc = _start_flow(project, stages, overrides, log)
    tmp = project.parent / "tmp"
    try:
        root = psutil.Process(proc.pid)
        deadline = time.monotonic() + 600
        worker = None
        while worker is None:
            assert proc.poll() is None, f"the flow ended before {stage} ran:\n{log.read_text()[-4000:]}"
            assert time.monotonic() < deadline, f"{stage} never started:\n{log.read_text()[-4000:]}"
            worker = _stage_process(root, stage)
            time.sleep(0.1)
        # Kill when the stage has scratch on disk (the most fragile moment), or after 3 s of it running (a stage
        # that writes no scratch, e.g. evaluate on the tiny model, can finish within 20 s).
        writing = time.monotonic() + 3
        while time.monotonic() < writing and not _scratch(project, {worker.pid}) and not _scratch(tmp, {worker.pid}):
            assert worker.is_running(), f"{stage} finished before it could be killed:\n{log.read_text()[-4000:]}"
            time.sleep(0.05)
        group = [root, *root.children(recursive=True)]
        pids = {p.pid for p in group}
        assert worker.is_running() and worker.status() != psutil.STATUS_ZOMBIE, f"{stage} ended before the kill"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        # the whole group is gone (a killed process takes a moment to be torn down: wait for it, not for ever)
        _, alive = psutil.wait_procs([p for p in group if p.pid != proc.pid], timeout=30)
        assert [p for p in alive if p.status() != psutil.STATUS_ZOMBIE] == []
        return pids
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


# Inside the outputs, what records wall-clock time: the training record and the Trainer's pickled arguments
# (its scratch output_dir carries the pid); in JSON, keys naming seconds or times.
TIMING_FILES = {"training.json", "training_args.bin"}
TIMING_KEY = re.compile(r"seconds|time|_at$|^started|^finished")


def _without_timings(value):
    if isinstance(value, dict):
        return {k: _without_timings(v) for k, v in value.items() if not TIMING_KEY.search(k)}
    if isinstance(value, list):
        return [_without_timings(v) for v in value]
    return value


def _digest(path: Path) -> str:
    if path.suffix == ".json":
        return hashlib.md5(json.dumps(_without_timings(json.loads(path.read_text())), sort_keys=True).encode()).hexdigest()
    return hashlib.md5(path.read_bytes()).hexdigest()


def _out_hashes(project: Path) -> dict:
    """Every output file's digest, as dvc.lock lists the outputs, timings left out; and the lock's
    outputs per stage, so a stage missing from the lock fails the comparison too."""
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    digests = {}
    for stage, spec in lock["stages"].items():
        for out in spec.get("outs", []):
            if out["path"] in NONDETERMINISTIC:
                continue
            path = project / out["path"]
            files = sorted(f for f in path.rglob("*") if f.is_file()) if path.is_dir() else [path]
            digests[(stage, out["path"])] = {str(f.relative_to(project)): _digest(f) for f in files
                                             if f.name not in TIMING_FILES}
    return digests


def _stage_outs(project: Path, stage: str) -> list[str]:
    spec = yaml.safe_load((project / "dvc.yaml").read_text())["stages"][stage]
    paths = []
    for kind in ("outs", "metrics", "plots"):
        for entry in spec.get(kind, []):
            paths.append(entry if isinstance(entry, str) else next(iter(entry)))
    return paths


def _reference(base: Path, tiny_bert: Path, stages: list[str]) -> tuple[Path, dict]:
    """An uninterrupted flow run on a fresh tiny project: its directory and its outputs' hashes."""
    project = make_project(base / "project", tiny_bert)
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["benchmark"].update({"batch_sizes": [1], "sequence_lengths": [32], "warmup": 1, "runs": 10})
    # the cases override keys read by the stage they kill, outside the default allow-list
    params.setdefault("schedule", {})["allowed_overrides"] = ["data", "distill", "evaluate", "export", "benchmark"]
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    subprocess.run(["git", "commit", "-qam", "smaller benchmark"], cwd=project, check=True, capture_output=True)
    _run_flow(project, stages, {}, base / "reference.log")
    return project, _out_hashes(project)


@pytest.fixture(scope="module")
def references(tmp_path_factory, tiny_bert):
    built = {}

    def get(stages: list[str]):
        key = tuple(stages)
        if key not in built:
            built[key] = _reference(tmp_path_factory.mktemp("reference"), tiny_bert, stages)
        return built[key]
    return get


def _case(tmp_path: Path, references, stage: str, overrides: dict, stages: list[str]) -> None:
    reference, expected = references(stages)
    project = tmp_path / "project"
    shutil.copytree(reference, project, symlinks=True)
    # or DVC restores the outputs instead of running the stage: from its run-cache, or from the object cache
    # when dvc.lock still records them
    shutil.rmtree(project / ".dvc" / "cache" / "runs", ignore_errors=True)
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    del lock["stages"][stage]
    (project / "dvc.lock").write_text(yaml.safe_dump(lock, sort_keys=False))
    for out in _stage_outs(project, stage):
        path = project / out
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)
    params_before = (project / "params.yaml").read_bytes()

    started = time.perf_counter()
    killed = _kill_during(project, stage, stages, overrides, tmp_path / "killed.log")
    killed_at = time.perf_counter() - started
    if overrides:  # the killed run had written them; only the next run can put params.yaml back
        assert (project / "params.yaml").read_bytes() != params_before

    _run_flow(project, stages, {}, tmp_path / "rerun.log")
    print(f"\n[measure] kill during {stage} after {killed_at:.1f}s; rerun {time.perf_counter() - started - killed_at:.1f}s")

    assert (project / "params.yaml").read_bytes() == params_before
    assert not (project / ".distillery" / "params.yaml.before-overrides").exists()
    assert _scratch(project) == []
    assert _scratch(tmp_path / "tmp", killed) == []
    assert _out_hashes(project) == expected


@pytest.mark.slow
def test_kill_during_distill_with_overrides_then_rerun(tmp_path, references):
    _case(tmp_path, references, "distill", {"distill.alpha": 0.3}, UP_TO_DISTILL)


@pytest.mark.slow
@pytest.mark.parametrize("stage, overrides", [
    ("prepare", {"data.max_samples.train": 45}),
    ("train_teacher", {}),
    ("teacher_logits", {"evaluate.batch_size": 16}),
    ("distill", {}),
    ("evaluate", {}),
    ("export", {"export.parity_batch_size": 8}),
    ("benchmark", {"benchmark.runs": 5}),
    ("register", {}),
])
def test_kill_during_each_stage_then_rerun(tmp_path, references, stage, overrides):
    _case(tmp_path, references, stage, overrides, ALL_STAGES)
