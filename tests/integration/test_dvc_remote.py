"""A shared DVC remote: one clone runs the tiny pipeline and pushes its data and models, another clone pulls them
and ``dvc repro`` runs no stage; a directory remote (a team's shared disk) and an S3 remote (moto on loopback,
through ``dvc-s3``). The registered model names the DVC remote and the hashes it came from.

The module runs the (smaller still) tiny pipeline once, in the first clone, with MLflow on the project's own
SQLite store; moto is started once and stopped at the end. The stages run in this process and ``dvc commit``
records them (conftest's ``run_stages_in_process``): a ``dvc repro`` of eight processes each importing torch
took 105 s of the module's 150 s, and ``tests/integration/test_pipeline_dvc.py`` runs that path already.
"""
from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from mlflow import MlflowClient

from conftest import dvc, make_project, ok, run_stages_in_process, write_params
from distillery.stages import STAGES
from servers import S3_KEYS, moto_s3, s3_keys

BUCKET = "dvc"
# The outputs DVC caches (so pushes and pulls), and a file of each that the second clone must get byte for byte.
FETCHED = ["models/pretrained/tiny-bert/model.safetensors", "data/prepared/test.parquet", "data/teacher_logits/train.npy", "models/teacher/model.safetensors",
           "models/student/model.safetensors", "models/baseline/config.json", "models/onnx/student.onnx",
           "models/onnx/student.int8.onnx"]


def _ran(output: str) -> list[str]:
    return re.findall(r"Running stage '([a-z_]+)'", output)


def _git(project: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=project, check=True, capture_output=True, text=True).stdout.strip()


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _lock_outs(project: Path) -> dict[str, str]:
    """dvc.lock's hash of every cached data and model output."""
    lock = yaml.safe_load((project / "dvc.lock").read_text())["stages"]
    return {out["path"]: out["md5"] for stage in lock.values() for out in stage.get("outs", [])
            if out["path"].startswith(("data/", "models/"))}


@pytest.fixture(scope="module")
def pushed(tmp_path_factory, tiny_bert):
    """The first clone: remotes configured and committed, the pipeline run and committed, pushed to both remotes."""
    work = tmp_path_factory.mktemp("dvc-remote")
    with moto_s3(work / "moto", buckets=(BUCKET,)) as endpoint:
        s3_env = dict(S3_KEYS)  # dvc-s3 reads the keys from the environment; the endpoint is in .dvc/config
        first = make_project(work / "first", tiny_bert)
        params = yaml.safe_load((first / "params.yaml").read_text())  # smaller still: the module runs in CI
        for section in ("teacher", "distill"):
            params[section]["train"]["epochs"] = 1
        params["benchmark"].update({"batch_sizes": [1], "sequence_lengths": [32], "warmup": 1, "runs": 5, "min_runs": 5})
        params["distill"]["transfer_set"]["max_rows"] = 30
        write_params(first / "params.yaml", params)
        # A local checkpoint is git-ignored (models/pretrained/.gitignore): a team shares it through DVC too.
        ok(dvc(first, "add", "models/pretrained/tiny-bert"))
        directory = work / "shared-disk" / "dvc"
        ok(dvc(first, "remote", "add", "--default", "shared", str(directory)))
        ok(dvc(first, "remote", "add", "s3", f"s3://{BUCKET}/store"))
        ok(dvc(first, "remote", "modify", "s3", "endpointurl", endpoint))
        _git(first, "add", "-A")
        _git(first, "commit", "-qm", "remotes: a shared directory (default) and S3")
        commit_before_run = _git(first, "rev-parse", "HEAD")

        run_stages_in_process(first, through=STAGES[-1])
        status = ok(dvc(first, "status"))
        assert "Data and pipelines are up to date" in status.stdout, status.stdout
        _git(first, "add", "-A")  # dvc.lock, metrics and reports; DVC's .gitignore files keep data and models out
        _git(first, "commit", "-qm", "pipeline results")
        assert not _git(first, "ls-files", "models/onnx", "data/prepared", "mlruns")  # in DVC's cache, not git
        ok(dvc(first, "push"))  # to the default remote
        ok(dvc(first, "push", "-r", "s3", env=s3_env))
        yield {"first": first, "work": work, "directory": directory, "endpoint": endpoint, "s3_env": s3_env,
               "commit_before_run": commit_before_run}


def _clone_pull_repro(pushed: dict, name: str, *pull_args: str, env: dict | None = None) -> Path:
    """``git clone`` of the first clone, ``dvc pull``, then ``dvc repro``: which must run no stage."""
    clone = pushed["work"] / name
    subprocess.run(["git", "clone", "-q", str(pushed["first"]), str(clone)], check=True, capture_output=True)
    assert not (clone / "models/onnx/student.onnx").exists()  # nothing came with git
    ok(dvc(clone, "pull", *pull_args, env=env))
    for path in FETCHED:
        assert _sha(clone / path) == _sha(pushed["first"] / path), path
    repro = ok(dvc(clone, "repro"))
    assert _ran(repro.stdout) == [], repro.stdout
    status = ok(dvc(clone, "status"))
    assert "Data and pipelines are up to date" in status.stdout, status.stdout
    return clone


def test_a_second_clone_pulls_from_the_directory_remote_and_reproduces_nothing(pushed):
    _clone_pull_repro(pushed, "second")  # the default remote: the shared directory
    for path, md5 in _lock_outs(pushed["first"]).items():  # every output is in the directory remote, by hash
        assert (pushed["directory"] / "files" / "md5" / md5[:2] / md5[2:]).is_file(), path


def test_a_third_clone_pulls_from_s3_and_reproduces_nothing(pushed):
    keys = set(s3_keys(pushed["endpoint"], BUCKET, "store/"))
    for path, md5 in _lock_outs(pushed["first"]).items():  # every output is in the bucket, by hash
        assert f"store/files/md5/{md5[:2]}/{md5[2:]}" in keys, path
    _clone_pull_repro(pushed, "third", "-r", "s3", env=pushed["s3_env"])


def test_the_registered_version_names_its_dvc_remote_hashes_and_commit(pushed):
    first = pushed["first"]
    uri = f"sqlite:///{first / 'mlruns' / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    version = client.get_model_version("distillery-student", "1")
    tags = version.tags
    assert (tags["dvc.remote"], tags["dvc.remote_url"]) == ("shared", str(pushed["directory"]))
    assert tags["git.commit"] == pushed["commit_before_run"]
    outs = _lock_outs(first)
    assert {key[len("dvc."):]: value for key, value in tags.items()
            if key.startswith("dvc.") and key not in ("dvc.remote", "dvc.remote_url")} == outs
    assert outs["models/onnx"].endswith(".dir")  # the served ONNX model's directory, fetchable by this hash
    run = client.get_run(version.run_id)
    assert run.data.tags["dvc.remote"] == "shared" and run.data.tags["dvc.models/onnx"] == outs["models/onnx"]
