"""Shared fixtures: tiny offline models and data, and a throw-away project repository."""
from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from tiny import make_csv, make_tiny_bert  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_EVALUATE_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.pop("MLFLOW_TRACKING_URI", None)  # tests use their project's SQLite store, or start their own server
# Each test process (the controller and every xdist worker) gets its own lock directory, removed when it exits
_LOCK_DIR = tempfile.mkdtemp(prefix="distillery-locks-")
os.environ["DISTILLERY_LOCK_DIR"] = _LOCK_DIR
atexit.register(shutil.rmtree, _LOCK_DIR, ignore_errors=True)
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
# One compute thread per process (before torch is imported; every stage, server and worker the tests start
# inherits it): the suite runs xdist workers side by side, each starting stage processes, and torch's default
# of every core oversubscribes a 2-core machine, its OpenMP threads spinning against each other. Measured on
# the 2-core CI machine type, test_dvc_repro_then_nothing_then_only_distill_onwards alone: 662 s with the
# default, 380 s with one thread (CPU 524 s -> 263 s). A test about threads sets its own.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")


# The test files that take longest, longest first (seconds of one xdist worker on the 2-core Intel Xeon, 2026-12-06
# morning: 146, 140, 126, 125, 114, 51, 49, 37, 31, 30, 27; at b923b25: 135, 139, 139, 112, 112, 52, 48, 34, 30, 27,
# 27, and test_work_pool 116 s alone since 39201a4). pyproject's addopts keep xdist from reordering the files by their
# number of tests (--no-loadscope-reorder), which started these last and left one core idle for the last minute;
# handed out first, they finish while the many short files fill both cores.
LONGEST_FIRST = ("test_pipeline_dvc.py", "test_prefect_server.py", "test_work_pool.py", "test_pipeline_prefect.py",
                 "test_registry.py", "test_multiprocess_training.py", "test_team_servers.py", "test_dvc_remote.py",
                 "test_operations.py", "test_qa_pipeline_dvc.py", "test_sweep.py")


def pytest_collection_modifyitems(config, items):
    """The files in ``LONGEST_FIRST`` first, in its order; every file's tests keep their order (a stable sort)."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


@pytest.fixture(autouse=True)
def _each_test_asks_for_the_hub_afresh(monkeypatch):
    """Whether the Hub could be reached is asked once per process (``distillery.errors.PROBED``): a test that found
    it out of reach must not decide that for the next test on the same worker."""
    from distillery import errors

    monkeypatch.setattr(errors, "PROBED", {})
    monkeypatch.setattr(errors, "PROBED_AT", {})
    monkeypatch.setenv(errors.OUT_OF_REACH, "")  # undone after the test, whatever the code under test set


@pytest.fixture(autouse=True)
def _log_handlers_outlive_the_test_streams():
    """A log handler set up during a test keeps the stream it found: Prefect's console handler, configured by
    the first flow run in a process, holds the ``sys.stderr`` of that test, which ``capsys`` closes at the
    end of it. Every later Prefect log line then fails, and the failure report recurses (RecursionError in
    any later flow test on the same xdist worker). After each test, a handler left on a closed stream is
    pointed at the current ``sys.stderr``."""
    yield
    import logging

    loggers = [logging.getLogger()] + [logger for logger in list(logging.Logger.manager.loggerDict.values())
                                       if isinstance(logger, logging.Logger)]
    for logger in loggers:
        for handler in list(logger.handlers):
            stream = getattr(handler, "stream", None)
            if stream is not None and getattr(stream, "closed", False):
                handler.stream = sys.stderr  # not setStream: it flushes the closed stream first
                if getattr(handler, "console", None) is not None:  # Prefect's rich console writes to its own file
                    handler.console.file = sys.stderr


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    """A random 4-layer BERT (hidden 32) with a WordPiece tokenizer, no classifier head."""
    return make_tiny_bert(tmp_path_factory.mktemp("models") / "tiny-bert", num_layers=4)


@pytest.fixture(scope="session")
def tiny_bert_other(tmp_path_factory) -> Path:
    """A different tiny BERT (2 layers, hidden 16): a student with its own tokenizer and width."""
    return make_tiny_bert(tmp_path_factory.mktemp("models") / "tiny-bert-other", num_layers=2, hidden=16)


def tiny_params(model: Path, data: Path, **overrides) -> dict:
    """Params for a pipeline run in seconds on the tiny model and CSV."""
    # fp32 pinned: the default `auto` is bf16 on some machine types, and the tiny runs' thresholds were set in fp32
    train = {"epochs": 2, "batch_size": 8, "eval_batch_size": 32, "learning_rate": 1e-3, "warmup": 0.0,
             "logging_steps": 5, "precision": "fp32"}
    params = {
        "seed": 0,
        "data": {"source": str(data), "label_column": "sentiment", "max_samples": {"train": 60}, "min_rows_per_class": 2},
        "teacher": {"model": str(model), "max_length": 32, "logits_precision": "fp32", "train": train},
        "student": {"layers": [0, 3], "max_length": 32},
        "distill": {"alpha": 0.5, "temperature": 2.0, "transfer_set": {"source": "remainder", "max_rows": 100},
                    "train": train},
        "evaluate": {"batch_size": 32},
        "export": {"selection_seconds": 0.3},  # the recipe search's timing rounds: a fraction of a second, not 10 s
        "benchmark": {"batch_sizes": [1, 4], "sequence_lengths": [16, 32], "warmup": 2, "runs": 20, "threads": 1,
                      "peak_seconds": 0.1},  # the GEMM peaks: a rough figure is enough here
        # Random tiny models pass every gate check, so the pipeline's registry state is deterministic (a tiny
        # model trained for seconds may be at chance: above_one_label off); the checks themselves are tested in
        # tests/unit/test_gate.py and tests/integration/test_registry.py.
        "register": {"gate": {"min_retention": 0.0, "max_p95_ms": 1000.0, "max_size_mb": 1000.0,
                              "tolerance": 0.999,
                              "min_compare_rows": 1, "above_one_label": False, "above_baseline": False}},
    }
    params = _merge(yaml.safe_load((ROOT / "params.yaml").read_text()), params)  # DVC wants every key present
    return set_dotted(params, overrides)


def set_dotted(params: dict, keys: dict) -> dict:
    """Set dotted keys (``"register.lock": ...``) in a params dict; return it."""
    for dotted, value in keys.items():
        node = params
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return params


def update_params(path: Path, **keys) -> None:
    """Set dotted keys in the params file at ``path``."""
    write_params(path, set_dotted(yaml.safe_load(path.read_text()), keys))


def _merge(base: dict, override: dict) -> dict:
    merged = dict(base)
    for key, value in override.items():
        merged[key] = _merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) \
            and value else value
    return merged


def write_params(path: Path, params: dict) -> Path:
    path.write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    return path


def refused_when_read(path: Path, text: str, message: str, allowed: tuple) -> None:
    """params.yaml ``text`` at ``path`` is refused when read, with ``message`` (a regular expression); with the
    replacement ``allowed`` (old, new) made, it loads."""
    from distillery.config import load_params
    from distillery.errors import ConfigError

    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_params(path)
    path.write_text(text.replace(*allowed))
    load_params(path)


def _git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def tiny_project(tmp_path, tiny_bert) -> Path:
    """A git + DVC repository holding this project's code, tiny params and a tiny CSV."""
    return make_project(tmp_path / "project", tiny_bert)


def make_project(project: Path, tiny_bert: Path) -> Path:
    """Build the ``tiny_project`` repository at ``project`` (for fixtures of a wider scope)."""
    project.mkdir()
    for name in ("distillery", "tasks", "flows"):
        shutil.copytree(ROOT / name, project / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("dvc.yaml", ".gitignore"):
        shutil.copy(ROOT / name, project / name)
    for name in ("models/pretrained/README.md", "models/pretrained/.gitignore"):
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, project / name)
    shutil.copytree(tiny_bert, project / "models" / "pretrained" / "tiny-bert")  # a tracked local checkpoint
    data = make_csv(project / "data" / "raw" / "tweets.csv", n=150)
    write_params(project / "params.yaml", tiny_params(Path("models/pretrained/tiny-bert"), Path("data/raw/tweets.csv")))
    _git("init", "-q", cwd=project)
    _git("config", "user.email", "ci@example.com", cwd=project)
    _git("config", "user.name", "CI", cwd=project)
    subprocess.run([sys.executable, "-m", "dvc", "init", "-q"], cwd=project, check=True, capture_output=True)
    shutil.copy(ROOT / ".dvcignore", project / ".dvcignore")  # this project's, over `dvc init`'s template
    subprocess.run([sys.executable, "-m", "dvc", "config", "core.analytics", "false"], cwd=project, check=True)
    _git("add", "-A", cwd=project)
    _git("commit", "-q", "-m", "tiny project", cwd=project)
    assert data.is_file()
    return project


def run_stages_in_process(project: Path, through: str) -> None:
    """Run the pipeline's stages up to ``through`` in this process, as ``python -m distillery <stage>`` runs
    them, and record them in ``dvc.lock`` with ``dvc commit``, as ``dvc repro`` would have (``register`` after
    the commit of the stages before it: it reads their hashes there). ``dvc status`` then finds them up to date.

    For fixtures that need a project part or wholly built: a tiny stage process spends 4.5-5.3 s of its 6-10 s
    importing torch, transformers and MLflow, which this process has already imported.
    ``tests/integration/test_pipeline_dvc.py`` and ``test_pipeline_prefect.py`` run the stages as processes."""
    from distillery.cli import main
    from distillery.stages import STAGES

    stages = STAGES[:STAGES.index(through) + 1]
    last = stages[-1]
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(project)
        for stage in stages:
            if stage == "register":
                ok(dvc(project, "commit", "--force", *stages[:-1]))
            assert main([stage]) == 0, f"{stage} failed in {project}"
    # every stage that ran (a stage is not always upstream of the next: evaluate is not export's), and
    # check_params, which is no stage's upstream
    ok(dvc(project, "commit", "--force", *([last] if last == "register" else stages), "check_params"))


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    """``result``, once it is known to have exited 0 (else its output's ends are the failure message)."""
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


_EMPTY_STORE: list[Path] = []  # this process's empty MLflow store, made on first use


def seed_store(project: Path) -> Path:
    """Give ``project`` the empty MLflow store its first registration would make (``mlruns/mlflow.db``, the
    Default experiment's artifacts under ``mlruns/0`` as MLflow places them), copied from one made once in this
    process: MLflow's schema migrations take about 1 s for each new store. ``test_registry`` tests the making."""
    import sqlite3

    if not _EMPTY_STORE:
        from mlflow import MlflowClient

        template = Path(tempfile.mkdtemp(prefix="distillery-empty-store-")) / "mlflow.db"
        atexit.register(shutil.rmtree, template.parent, ignore_errors=True)
        MlflowClient(tracking_uri=f"sqlite:///{template}").search_experiments(max_results=1)
        _EMPTY_STORE.append(template)
    store = project / "mlruns" / "mlflow.db"
    store.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(_EMPTY_STORE[0], store)
    with contextlib.closing(sqlite3.connect(store)) as db, db:
        db.execute("UPDATE experiments SET artifact_location = ? WHERE name = 'Default'",
                   (str(store.parent.resolve() / "0"),))
    return store


def dvc(project: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run DVC in ``project`` with this interpreter's ``python`` first on PATH (and ``env`` added)."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", **(env or {})}
    return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=project, env=env, capture_output=True,
                          text=True, timeout=1800)
