"""The register stage, its promotion gate, promote/rollback, and the served pyfunc, on tiny exported models.

Each project gets two tiny classifiers, A and B, exported to ONNX; B is A with its head's rows rolled, so
it never agrees with A. The test split's labels are one model's own predictions: that model scores 100%
and the other 0%, which makes "a champion that is better" deterministic.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests
import yaml
from mlflow import MlflowClient

from conftest import seed_store, tiny_params, update_params, write_params
from distillery.cli import main
from distillery.config import load_params
from distillery.errors import DataError, LockTimeout, RegistryError, TrackingUnavailable
from distillery.locking import registry_lock
from distillery.registry import commands
from distillery.stages import register as stage
from distillery.tracking import tracking_uri
from servers import env_with_venv, free_port, running
from tiny import make_texts

LABELS = ["negative", "neutral", "positive"]
NAME = "distillery-student"


def _classifier(tiny_bert: Path, shift: int):
    """A fixed random classifier; ``shift`` rolls its head's rows, so its label is (A's label + shift) mod 3.

    A random tiny BERT's pooled outputs barely differ between texts, so a random head gives one label to every
    text (and a test split labelled by it would hold one class, where no model beats answering that label). The
    head instead splits the texts' pooled outputs into three sectors around their mean, in the plane where they
    vary most: every label comes up."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_bert), num_labels=3).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_bert))
    with torch.no_grad():
        pooled = model.bert(**tokenizer(make_texts(120, seed=0)["text"].tolist(), padding=True,
                                        return_tensors="pt")).pooler_output.double()
        mean = pooled.mean(0)
        directions = torch.linalg.svd(pooled - mean, full_matrices=False).Vh[:2]
        angles = torch.arange(3, dtype=torch.float64) * 2 * torch.pi / 3
        weight = 100 * (torch.stack([angles.cos(), angles.sin()], 1) @ directions) / (pooled - mean).norm(dim=1).mean()
        bias = -weight @ mean
        model.classifier.weight.copy_(torch.roll(weight, shift, dims=0).float())
        model.classifier.bias.copy_(torch.roll(bias, shift, dims=0).float())
    return model


def _export(project: Path, tiny_bert: Path, shift: int) -> None:
    from transformers import AutoTokenizer

    from distillery.task_types.text_classification.onnx import export_onnx

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_bert))
    tokenizer.save_pretrained(project / "models/student")
    (project / "models/onnx").mkdir(parents=True, exist_ok=True)
    export_onnx(_classifier(tiny_bert, shift), tokenizer, project / "models/onnx/student.onnx")
    shutil.copy(project / "models/onnx/student.onnx", project / f"models/onnx/shift{shift}.onnx")  # for labelling
    (project / "models/onnx/deployment.json").write_text(json.dumps(
        {"deployable": "student.onnx", "int8_deployable": False, "labels": LABELS, "tokenizer": "models/student",
         "max_length": 32}))


def direct_logits(project: Path, texts: list[str], batch_size: int = 32, onnx: str = "student.onnx") -> np.ndarray:
    """Distillery's own ONNX path (transformers tokenizer + onnxruntime), batched as the pyfunc batches."""
    from transformers import AutoTokenizer

    from distillery.onnx_runtime import run_session, session

    tokenizer = AutoTokenizer.from_pretrained(str(project / "models/student"))
    sess = session(project / "models/onnx" / onnx)
    parts = [run_session(sess, dict(tokenizer(texts[i:i + batch_size], padding=True, truncation=True, max_length=32,
                                              return_tensors="np"))) for i in range(0, len(texts), batch_size)]
    return np.concatenate(parts)


def _write_test_split(project: Path, texts: list[str], shift: int) -> None:
    """The test split, labelled with model ``shift``'s predictions (so it scores 100% and the other 0%)."""
    labels = direct_logits(project, texts, onnx=f"shift{shift}.onnx").argmax(-1)
    pd.DataFrame({"text": texts, "label": labels}).to_parquet(project / "data/prepared/test.parquet")


def _write_reports(project: Path, teacher_accuracy: float = 0.95, p95_ms: float = 2.0) -> None:
    """Stand-in reports of the stages before register; the teacher (0.95) above answering one label, as a real one."""
    metrics = project / "reports/metrics"
    metrics.mkdir(parents=True, exist_ok=True)
    model = {"accuracy": 0.5, "macro_f1": 0.5, "parameters": 1000}
    (metrics / "eval.json").write_text(json.dumps({"labels": LABELS, "teacher": {**model, "accuracy": teacher_accuracy},
                                                   "student": model, "baseline": model}))
    (metrics / "parity.json").write_text(json.dumps({"student": {"int8": {"label_agreement_vs_fp32": 0.99}}}))
    cells = {"b1_s32": {"p50_ms": p95_ms / 2, "p95_ms": p95_ms}}
    (metrics / "benchmark.json").write_text(json.dumps({"headline": {"cell": "b1_s32"}, "models": {
        "student_onnx_fp32": {"size_mb": 1.0, "cells": cells}}}))
    curves = project / "reports/curves"
    curves.mkdir(parents=True, exist_ok=True)
    for name in ("teacher", "student", "baseline"):
        (curves / f"{name}_loss.csv").write_text("step,epoch,loss\n5,0.5,1.1\n10,1.0,0.9\n")
        (curves / f"{name}_eval.csv").write_text("epoch,step,loss,accuracy\n1.0,10,0.9,0.6\n")


@pytest.fixture(autouse=True)
def _served_memory_not_measured(monkeypatch):
    """The served process's memory is a measurement a registration adds to its report (a fresh Python importing
    MLflow, ~2.5 s); these tests register many times and check the gate, so they skip it. The pipeline tests
    (test_pipeline_dvc) check the real figure."""
    monkeypatch.setattr(stage, "served_process_memory", lambda *args, **kwargs: {"error": "not measured in this test"})


@pytest.fixture(scope="session")
def _built(tmp_path_factory, tiny_bert) -> Path:
    """``build_project``'s files, made once: each test's project is a copy (the export took ~0.6 s a test)."""
    return build_project(tmp_path_factory.mktemp("registry-template") / "project", tiny_bert)


@pytest.fixture
def project(request, tmp_path, _built, monkeypatch) -> Path:
    """A project directory holding what `register` reads, with model A exported, and an empty MLflow store (a
    copy of one made once: a new store's schema migrations take ~1 s) unless the test is marked ``no_store``."""
    root = tmp_path / "project"
    shutil.copytree(_built, root)
    if request.node.get_closest_marker("no_store") is None:
        seed_store(root)
    monkeypatch.chdir(root)
    return root


def build_project(root: Path, tiny_bert: Path) -> Path:
    """What `register` reads, at ``root``: params, prepared labels and test split, model A exported, reports."""
    (root / "data/prepared").mkdir(parents=True)
    write_params(root / "params.yaml", tiny_params(tiny_bert, Path("data/raw/tweets.csv"),
                                                   **{"register.gate.above_one_label": True}))  # the gate under test
    (root / "data/prepared/labels.json").write_text(json.dumps({"names": LABELS}))
    (root / "data/prepared/data_report.json").write_text(json.dumps({"rows": {"test": 40}}))
    _export(root, tiny_bert, shift=0)
    _write_test_split(root, make_texts(40, seed=3)["text"].tolist(), shift=0)
    _write_reports(root)
    return root


def _params(root: Path, **gate):
    raw = yaml.safe_load((root / "params.yaml").read_text())
    raw["register"]["gate"].update(gate)
    (root / "params.yaml").write_text(yaml.safe_dump(raw))
    return load_params(root / "params.yaml")


def _client(root: Path) -> MlflowClient:
    uri = tracking_uri(root)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _aliases(root: Path) -> dict:
    return {a: str(v) for a, v in _client(root).get_registered_model(NAME).aliases.items()}


def test_gate_pass_then_each_failure_then_better_champion_then_rescore(project, tiny_bert):
    first = stage.register(_params(project))
    assert first["decision"] == "promoted" and first["version"] == "1"
    assert first["candidate"]["accuracy"] == 1.0 and [c["passed"] for c in first["checks"]] == [True] * 7
    assert json.loads((project / "reports/metrics/register.json").read_text())["version"] == "1"

    # Same model again: no new version; the gate is re-run on it and it stays champion.
    again = stage.register(_params(project))
    assert again["version"] == "1" and again["decision"] == "already champion"

    # Model B, on data where B is right (A re-scored: 0%): each budget check fails on its own.
    _export(project, tiny_bert, shift=1)
    _write_test_split(project, make_texts(40, seed=4)["text"].tolist(), shift=1)
    loose = {"min_retention": 0.0, "max_p95_ms": 1000.0, "max_size_mb": 1000.0}
    for gate, failing in (({"min_retention": 0.99}, "retention"), ({"max_p95_ms": 1.0}, "latency"),
                          ({"max_size_mb": 0.001}, "size")):
        if failing == "retention":
            _write_reports(project, teacher_accuracy=1.0 / 0.98)  # B keeps 98% of this teacher
        result = stage.register(_params(project, **{**loose, **gate}))
        _write_reports(project)
        assert result["decision"] == "rejected", result["checks"]
        assert [c["name"] for c in result["checks"] if not c["passed"]] == [failing]
        assert _aliases(project) == {"champion": "1", "challenger": "2"}
        tag = _client(project).get_model_version(NAME, "2").tags[f"distillery.gate.failed.{failing}"]
        assert tag.startswith("value ") and "threshold" in tag

    # Back on A's data: the champion is better (B answers none right, below answering one label for every row).
    _write_test_split(project, make_texts(40, seed=3)["text"].tolist(), shift=0)
    result = stage.register(_params(project, **loose))
    assert [c["name"] for c in result["checks"] if not c["passed"]] == ["above_one_label", "champion"]
    assert _aliases(project) == {"champion": "1", "challenger": "2"}

    # New data on which B is right: the champion is re-scored on it, B wins and A is recorded to restore.
    _write_test_split(project, make_texts(40, seed=5)["text"].tolist(), shift=1)
    promoted = stage.register(_params(project, min_retention=0.0))
    champion_check = next(c for c in promoted["checks"] if c["name"] == "champion")
    assert promoted["decision"] == "promoted" and "re-scored" in champion_check["detail"]
    assert _aliases(project) == {"champion": "2"}
    assert _client(project).get_model_version(NAME, "2").tags["distillery.previous_champion"] == "1"

    # rollback; re-registering the rolled-back model does not undo it; then a recorded manual promotion.
    assert main(["rollback", "--reason", "bad reviews"]) == 0
    assert _aliases(project)["champion"] == "1"
    assert _client(project).get_model_version(NAME, "2").tags["distillery.rollback_reason"] == "bad reviews"
    rolled = commands.list_models(load_params(project / "params.yaml"))["versions"][1]
    assert rolled["version"] == "2" and rolled["gate"].startswith("passed, rolled back 20")
    again = stage.register(_params(project, min_retention=0.0))
    assert again["decision"] == "rejected" and [c["name"] for c in again["checks"] if not c["passed"]] == \
        ["not_rolled_back"]
    assert _aliases(project) == {"champion": "1", "challenger": "2"}
    assert main(["promote", "2", "--reason", "reviewed by hand"]) == 0
    assert _aliases(project)["champion"] == "2"
    tags = _client(project).get_model_version(NAME, "2").tags
    assert tags["distillery.promoted"] == "manual" and tags["distillery.promotion_reason"] == "reviewed by hand"
    assert "distillery.rolled_back_at" not in tags and "challenger" not in _aliases(project)
    assert "distillery.rollback_reason" not in tags  # lifted with the guard: the rollback's MLflow run keeps it
    listing = commands.list_models(load_params(project / "params.yaml"))
    assert [row["version"] for row in listing["versions"]] == ["1", "2"]
    assert listing["versions"][1]["aliases"] == ["champion"]
    assert list(listing["versions"][1]["metrics"]) == ["accuracy", "macro_f1"]  # the gate's metric first
    # the champion by hand is said so, and each version's test split is named: v1's figures are of its first split
    assert listing["versions"][1]["gate"] == "failed, promoted by hand"  # its last gate: rolled back
    from distillery.files import sha256_files

    first, now = (row["test_split"] for row in listing["versions"])
    assert now == sha256_files([project / "data/prepared/test.parquet"])[:8] and len(first) == 8 and first != now
    assert commands.models_table(listing).splitlines()[2].startswith(
        "| version | aliases | created | accuracy | macro_f1 | retention |")


def test_a_student_of_a_teacher_that_answers_one_label_is_not_promoted(project, tiny_bert):
    """A trial's stray float TIFF collapsed the teacher to one label; its student "kept 140%" of that score, and with
    no champion yet would have been promoted."""
    texts = make_texts(40, seed=3)["text"].tolist()
    _export(project, tiny_bert, shift=0)
    _write_test_split(project, texts, shift=0)
    results = json.loads((project / "reports/metrics/eval.json").read_text())
    results["teacher"]["confusion_matrix"] = [[0, 4, 0], [0, 7, 0], [0, 9, 0]]  # every row answered 'neutral'
    (project / "reports/metrics/eval.json").write_text(json.dumps(results))
    result = stage.register(_params(project, min_retention=0.0))
    assert result["decision"] == "rejected" and "champion" not in _aliases(project)
    assert [c["name"] for c in result["checks"] if not c["passed"]] == ["retention"]
    assert "the teacher answers 'neutral' for every test row" in \
        next(c for c in result["checks"] if c["name"] == "retention")["detail"]


def test_a_student_below_its_labels_only_baseline_in_evaluate_is_not_promoted(project, tiny_bert):
    """A trial's QA student, 8.9 F1 points under its baseline in evaluate, was promoted on its retention."""
    texts = make_texts(40, seed=3)["text"].tolist()
    _export(project, tiny_bert, shift=0)
    _write_test_split(project, texts, shift=0)
    results = json.loads((project / "reports/metrics/eval.json").read_text())
    results["baseline"]["accuracy"] = results["student"]["accuracy"] + 0.089
    (project / "reports/metrics/eval.json").write_text(json.dumps(results))
    result = stage.register(_params(project, min_retention=0.0, above_baseline=True))
    assert result["decision"] == "rejected" and "champion" not in _aliases(project)
    assert [c["name"] for c in result["checks"] if not c["passed"]] == ["above_baseline"]
    assert stage.register(_params(project, min_retention=0.0, above_baseline=False))["decision"] == "promoted"


def test_a_first_model_no_better_than_answering_one_label_is_not_promoted(project, tiny_bert):
    # the test split labelled by B: A answers no row right, below answering the split's most frequent label
    texts = make_texts(40, seed=3)["text"].tolist()
    _export(project, tiny_bert, shift=1)
    _export(project, tiny_bert, shift=0)  # A is the candidate
    _write_test_split(project, texts, shift=1)
    result = stage.register(_params(project, min_retention=0.0))
    assert result["decision"] == "rejected" and "champion" not in _aliases(project)
    assert [c["name"] for c in result["checks"] if not c["passed"]] == ["above_one_label"]
    check = next(c for c in result["checks"] if c["name"] == "above_one_label")
    shares = pd.read_parquet(project / "data/prepared/test.parquet")["label"].value_counts(normalize=True)
    assert check["value"] == 0.0 and check["threshold"] == round(shares.max(), 4) and shares.max() < 0.9
    assert check["detail"].startswith(f"accuracy 0.0000 is no better than answering '{LABELS[shares.idxmax()]}' for "
                                      "every test row")
    # switched off, the check leaves no tag of the failure behind (trial S: "gate=passed" beside
    # "gate.above_one_label: fail: ..." and "gate.failed.above_one_label", which later warnings listed)
    again = stage.register(_params(project, min_retention=0.0, above_one_label=False))
    assert again["decision"] == "promoted" and "above_one_label" not in [c["name"] for c in again["checks"]]
    tags = _client(project).get_model_version(NAME, "1").tags
    assert tags["distillery.gate"] == "passed" and not [key for key in tags if "above_one_label" in key], tags
    # the same model on rows it answers right passes it
    _write_test_split(project, texts, shift=0)
    assert stage.register(_params(project, min_retention=0.0))["decision"] == "already champion"


def test_the_gate_scores_a_champion_on_its_files_never_running_the_code_the_registry_holds(project, tiny_bert,
                                                                                           tmp_path):
    """Whoever can write to the registry's artifact store could change a champion's code file; the gate re-scores the
    champion on every refresh, in the process that holds this machine's credentials. It must read the champion's
    files with this Distillery's serving code, and refuse a version whose code is not Distillery's."""
    assert stage.register(_params(project))["decision"] == "promoted"
    marker = tmp_path / "ran"
    (code,) = list((project / "mlruns").rglob("text_classifier.py"))  # v1's code file, as the store holds it
    code.write_text(code.read_text() + f"\nopen({str(marker)!r}, 'w').write('ran')\n")
    again = stage.register(_params(project))  # the same model again: v1 is gated again, on its files
    assert (again["version"], again["decision"]) == ("1", "already champion") and not marker.exists()
    _export(project, tiny_bert, shift=1)
    _write_test_split(project, make_texts(40, seed=5)["text"].tolist(), shift=1)  # new data: A is re-scored
    result = stage.register(_params(project, min_retention=0.0))
    check = next(c for c in result["checks"] if c["name"] == "champion")
    assert not marker.exists()
    assert result["decision"] == "promoted" and (check["value"], check["threshold"]) == (1.0, 0.0), check
    assert "re-scored" in check["detail"]

    # a champion whose code file is not a Distillery serving file cannot be scored: the check fails, it stays
    for mlmodel in (project / "mlruns").rglob("MLmodel"):  # v1's and v2's
        mlmodel.write_text(mlmodel.read_text().replace("text_classifier.py", "other_model.py"))
    _export(project, tiny_bert, shift=2)  # a third model (A's files would be v1 again)
    _write_test_split(project, make_texts(40, seed=6)["text"].tolist(), shift=2)
    refused = stage.register(_params(project, min_retention=0.0))
    detail = next(c for c in refused["checks"] if c["name"] == "champion")["detail"]
    assert refused["decision"] == "rejected" and "its served code is other_model.py, not Distillery's " \
        "text_classifier.py" in detail, detail
    assert _aliases(project)["champion"] == "2"


def test_a_champion_moved_elsewhere_during_the_gate_is_not_overwritten(project, tiny_bert, monkeypatch):
    """register.lock `file` orders one machine's registrations; a teammate's, on a shared server, can move the champion
    while this one gates against the old one. The move is refused; the next register gates against the new one."""
    assert stage.register(_params(project))["decision"] == "promoted"  # A: v1
    _export(project, tiny_bert, shift=1)
    assert stage.register(_params(project))["decision"] == "rejected"  # B: v2, challenger (A's data)
    _export(project, tiny_bert, shift=2)
    _write_test_split(project, make_texts(40, seed=9)["text"].tolist(), shift=2)  # C is right here
    real_gate = stage.gate

    def gate_while_a_teammate_promotes_v2(*args, **kwargs):
        decision = real_gate(*args, **kwargs)
        _client(project).set_registered_model_alias(NAME, "champion", "2")
        return decision

    monkeypatch.setattr(stage, "gate", gate_while_a_teammate_promotes_v2)
    with pytest.raises(RegistryError, match="the champion of 'distillery-student' moved from v1 to v2 while v3 was "
                                            "gated against the first; nothing was moved: run register again"):
        stage.register(_params(project, min_retention=0.0))
    assert _aliases(project)["champion"] == "2"
    monkeypatch.setattr(stage, "gate", real_gate)
    again = stage.register(_params(project, min_retention=0.0))
    assert (again["version"], again["champion_before"], again["decision"]) == ("3", "2", "promoted")


def _as_an_older_distillery_registered_it(project: Path, version: str, tmp_path: Path) -> None:
    """Version ``version``'s tags as an older Distillery wrote them: the hash of its served files alone, classifier.json
    without the keys added since, and no weights tag."""
    import mlflow

    from distillery.files import sha256_files

    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{NAME}/{version}",
                                                     dst_path=str(tmp_path / f"v{version}")))
    files = {path.name: path for path in local.rglob("*") if path.name in ("student.onnx", "tokenizer.json",
                                                                            "classifier.json")}
    config = json.loads(files["classifier.json"].read_text())
    older = {k: v for k, v in config.items() if k not in ("text_characters", "max_characters", "truncation_side")}
    (tmp_path / f"old{version}").mkdir()
    written = tmp_path / f"old{version}" / "classifier.json"
    written.write_text(json.dumps(older, indent=2) + "\n")  # as the older writer did
    client = _client(project)
    client.set_model_version_tag(NAME, version, "distillery.model_sha256", sha256_files(
        [files["student.onnx"], files["tokenizer.json"], written]))
    client.delete_model_version_tag(NAME, version, "distillery.weights_sha256")


def test_a_rolled_back_model_stays_down_when_newer_code_serves_it(project, tiny_bert, tmp_path):
    """An older Distillery hashed the served files alone; after an upgrade the same model got a new hash, was
    registered again and promoted, past the guard of its rolled-back version. The guard belongs to the weights now:
    a version of them served by newer code, registered before or after the rollback, stays down until one of them
    is promoted by hand; the same files and code are one version; and a new request cap reaches what is served."""
    import mlflow

    assert stage.register(_params(project))["decision"] == "promoted"  # A: v1
    _as_an_older_distillery_registered_it(project, "1", tmp_path)
    _export(project, tiny_bert, shift=1)
    _write_test_split(project, make_texts(40, seed=5)["text"].tolist(), shift=1)
    assert stage.register(_params(project, min_retention=0.0))["decision"] == "promoted"  # B: v2
    _as_an_older_distillery_registered_it(project, "2", tmp_path)
    # B under newer code, registered before the rollback (not promoted), then B rolled back
    raw = yaml.safe_load((project / "params.yaml").read_text())
    raw["register"]["promote"] = False
    (project / "params.yaml").write_text(yaml.safe_dump(raw))
    assert stage.register(_params(project, min_retention=0.0))["version"] == "3"
    raw["register"]["promote"] = True
    (project / "params.yaml").write_text(yaml.safe_dump(raw))
    assert main(["rollback", "--reason", "B is bad"]) == 0 and _aliases(project)["champion"] == "1"
    for attempt in range(2):  # B's files and code: v3 again, down as v2 is
        again = stage.register(_params(project, min_retention=0.0))
        assert again["version"] == "3" and again["decision"] == "rejected", again
        assert [c["name"] for c in again["checks"] if not c["passed"]] == ["not_rolled_back"]
    assert _aliases(project)["champion"] == "1"
    assert main(["promote", "2", "--reason", "B after all"]) == 0  # by hand: the model is restored, v3 too
    assert stage.register(_params(project, min_retention=0.0))["decision"] == "promoted"
    assert _aliases(project)["champion"] == "3"
    # A's weights with another request cap: a new version that serves the cap
    _export(project, tiny_bert, shift=0)
    _write_test_split(project, make_texts(40, seed=3)["text"].tolist(), shift=0)
    import distillery.task_types.text_classification.serving as text_serving

    original = text_serving.MAX_CHARACTERS
    try:
        text_serving.MAX_CHARACTERS = 12_345
        capped = stage.register(_params(project))
    finally:
        text_serving.MAX_CHARACTERS = original
    assert (capped["version"], capped["decision"]) == ("4", "promoted"), capped
    served = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{NAME}@champion", dst_path=str(tmp_path / "c")))
    assert json.loads(next(served.rglob("classifier.json")).read_text())["max_characters"] == 12_345


def test_the_champions_own_weights_under_newer_code_take_its_place(project, tiny_bert, tmp_path):
    """After an upgrade the unchanged champion is registered again, under the new serving code. On a 40-row split the
    row floor refused it for good (the champion kept the old code), and a rollback from it landed on the same
    weights. It is not a new model: the floor does not apply, and a rollback returns to the model before."""
    assert stage.register(_params(project))["decision"] == "promoted"  # A: v1
    _export(project, tiny_bert, shift=1)
    _write_test_split(project, make_texts(40, seed=5)["text"].tolist(), shift=1)
    assert stage.register(_params(project, min_retention=0.0))["decision"] == "promoted"  # B: v2
    _as_an_older_distillery_registered_it(project, "2", tmp_path)
    upgraded = stage.register(_params(project, min_retention=0.0, min_compare_rows=100))
    assert (upgraded["version"], upgraded["decision"]) == ("3", "promoted"), upgraded["checks"]
    assert _client(project).get_model_version(NAME, "3").tags["distillery.previous_champion"] == "1"
    assert main(["rollback", "--reason", "B is bad"]) == 0 and _aliases(project)["champion"] == "1"
    # another model on 40 rows is held to the floor's rule: a clear win (here 40 rows better, none worse)
    _export(project, tiny_bert, shift=2)
    _write_test_split(project, make_texts(40, seed=6)["text"].tolist(), shift=2)
    other = stage.register(_params(project, min_retention=0.0, min_compare_rows=100))
    assert other["decision"] == "promoted" and "fewer than register.gate.min_compare_rows (100), so only a clear " \
        "win replaces it; better on 40 of them" in next(c for c in other["checks"] if c["name"] == "champion")["detail"]


def test_on_fewer_rows_than_the_floor_only_a_clear_win_replaces_the_champion(project, tiny_bert):
    """With min_compare_rows 100, a small project's champion could never be replaced: 86.7% against 53.3% on 15
    rows was refused. On few rows the candidate must be better on significantly more rows than worse (a sign test);
    a near tie stays refused."""
    b_rows = make_texts(40, seed=5)["text"].tolist()
    # one split for A and B: 30 rows labelled as B answers, 10 as A does (the two never agree), so B is registered on
    # the split A was, A's figures are read from its tags, and A's rows are scored afresh for the paired count
    _export(project, tiny_bert, shift=1)
    labels = np.concatenate([direct_logits(project, b_rows[:30], onnx="shift1.onnx").argmax(-1),
                             direct_logits(project, b_rows[30:], onnx="shift0.onnx").argmax(-1)])
    pd.DataFrame({"text": b_rows, "label": labels}).to_parquet(project / "data/prepared/test.parquet")
    _export(project, tiny_bert, shift=0)
    first = stage.register(_params(project, min_retention=0.0, min_compare_rows=100, above_one_label=False))  # A: 25%
    assert first["decision"] == "promoted" and first["candidate"]["accuracy"] == 0.25, first
    _export(project, tiny_bert, shift=1)
    clear = stage.register(_params(project, min_retention=0.0, min_compare_rows=100))  # B on the same 40 rows: 75%
    check = next(c for c in clear["checks"] if c["name"] == "champion")
    assert clear["decision"] == "promoted", check
    assert "better on 30 of them, worse on 10 (one-sided sign test on accuracy: p = 0.00111, < 0.05)" in check["detail"]
    # C against B on 41 rows: 21 labelled as C answers, 20 as B does
    _export(project, tiny_bert, shift=2)
    c_rows = make_texts(21, seed=9)["text"].tolist()
    labels = np.concatenate([direct_logits(project, c_rows, onnx="shift2.onnx").argmax(-1),
                             direct_logits(project, b_rows[:20], onnx="shift1.onnx").argmax(-1)])
    pd.DataFrame({"text": c_rows + b_rows[:20], "label": labels}).to_parquet(project / "data/prepared/test.parquet")
    close = stage.register(_params(project, min_retention=0.0, min_compare_rows=100))
    check = next(c for c in close["checks"] if c["name"] == "champion")
    assert close["decision"] == "rejected" and "better on 21 of them, worse on 20" in check["detail"], check
    assert "not < 0.05" in check["detail"] and _aliases(project)["champion"] == "2"


def test_a_rollback_never_returns_to_weights_that_were_rolled_back(project, tiny_bert):
    """A (v1), then B (v2), then A's weights under newer code (v3, another request cap) beat B; a rollback to v2
    guards A's weights, and a second rollback went to v1, A again, served with no guard."""
    import distillery.task_types.text_classification.serving as text_serving

    assert stage.register(_params(project))["decision"] == "promoted"  # A: v1
    _export(project, tiny_bert, shift=1)
    _write_test_split(project, make_texts(40, seed=5)["text"].tolist(), shift=1)
    assert stage.register(_params(project, min_retention=0.0))["decision"] == "promoted"  # B: v2
    _export(project, tiny_bert, shift=0)
    _write_test_split(project, make_texts(40, seed=3)["text"].tolist(), shift=0)
    original = text_serving.MAX_CHARACTERS
    try:
        text_serving.MAX_CHARACTERS = 12_345
        assert stage.register(_params(project, min_retention=0.0))["version"] == "3"  # A's weights, newer limits
    finally:
        text_serving.MAX_CHARACTERS = original
    assert _aliases(project)["champion"] == "3"
    assert main(["rollback", "--reason", "A is bad"]) == 0 and _aliases(project)["champion"] == "2"
    assert main(["rollback", "--reason", "again"]) == 2  # v1 is A: its weights were rolled back
    assert _aliases(project)["champion"] == "2"


def test_a_champion_that_cannot_be_scored_for_the_paired_rows_fails_the_check_not_the_stage(project, tiny_bert):
    """Below min_compare_rows the champion, whose figures were read from its tags, is scored again for the per-row
    comparison; with its files gone that raised out of register and left the candidate's gate pending."""
    assert stage.register(_params(project, min_compare_rows=100))["decision"] == "promoted"  # A: v1
    for path in (project / "mlruns").rglob("student.onnx"):
        path.unlink()
    _export(project, tiny_bert, shift=1)
    result = stage.register(_params(project, min_retention=0.0, min_compare_rows=100))  # the same 40 rows
    check = next(c for c in result["checks"] if c["name"] == "champion")
    assert result["decision"] == "rejected" and "could not be scored" in check["detail"], check
    assert _client(project).get_model_version(NAME, "2").tags["distillery.gate"] == "failed"
    assert _aliases(project)["champion"] == "1"


def test_with_promote_false_a_passing_candidate_is_recorded_as_passed_and_the_champion_stays(project, tiny_bert):
    """An exploratory `dvc exp run -S register.promote=false` registers and gates its student but never moves
    champion, even when it passes (a tie with the champion passes at tolerance 0); promoting it is a recorded
    manual step."""
    first = stage.register(_params(project))
    assert first["decision"] == "promoted" and _aliases(project) == {"champion": "1"}
    _export(project, tiny_bert, shift=1)
    _write_test_split(project, make_texts(40, seed=5)["text"].tolist(), shift=1)  # B right, A re-scored wrong
    _params(project, min_retention=0.0)
    update_params(project / "params.yaml", **{"register.promote": False})
    explored = stage.register(load_params(project / "params.yaml"))
    assert explored["passed"] and [c["passed"] for c in explored["checks"]] == [True] * 7, explored["checks"]
    assert explored["decision"] == "passed, not promoted (register.promote is false)", explored
    assert explored["alias"] == "challenger" and explored["champion_after"] == "1"
    assert _aliases(project) == {"champion": "1", "challenger": "2"}
    assert _client(project).get_model_version(NAME, "2").tags["distillery.gate"] == "passed"
    # a version whose model files are gone is never made champion: it would break every client of @champion
    model_id = _client(project).get_model_version(NAME, "2").source.rstrip("/").split("/")[-1]  # models:/m-...
    (model_dir,) = [p for p in project.rglob(model_id) if p.is_dir()]
    mlmodel = next(model_dir.rglob("MLmodel"))
    files = mlmodel.parent / "artifacts"  # the ONNX model, tokenizer, config: gone, while the MLmodel file naming
    moved = files.with_name(files.name + ".moved")  # them stays
    files.rename(moved)
    assert mlmodel.is_file()
    with pytest.raises(RegistryError, match=r"v2 of 'distillery-student' cannot be loaded \(.*\); making it champion "
                                            r"would break models:/distillery-student@champion"):
        commands.promote(_params(project), "2", "the exploration won")
    assert _aliases(project) == {"champion": "1", "challenger": "2"}
    moved.rename(files)
    assert main(["promote", "2", "--reason", "the exploration won"]) == 0
    assert _aliases(project) == {"champion": "2"}
    # an exploration of the champion's own weights whose gate fails (another benchmark cell, a stricter budget)
    # leaves the champion's record as it was: it once marked it failed, and `rollback` then said it had failed
    recorded = _client(project).get_model_version(NAME, "2").tags
    with pytest.MonkeyPatch.context() as patch:  # a later commit: its provenance tags are not the version's
        patch.setattr(stage, "provenance", lambda tags: {"distillery.git.commit": "a-later-commit"})
        explored = stage.register(_params(project, max_p95_ms=1e-6))
    assert (explored["version"], explored["decision"]) == ("2", "already champion (fails the gate now; kept)")
    assert explored["rollback_to"] == recorded["distillery.previous_champion"] == "1"  # it said "2", itself
    assert [c["name"] for c in explored["checks"] if not c["passed"]] == ["latency"]
    assert _client(project).get_model_version(NAME, "2").tags == recorded and _aliases(project) == {"champion": "2"}
    update_params(project / "params.yaml", **{"register.promote": True})  # a real run records its gate
    assert stage.register(load_params(project / "params.yaml"))["decision"] == \
        "already champion (fails the gate now; kept)"
    assert _client(project).get_model_version(NAME, "2").tags["distillery.gate"] == "failed"


def test_a_second_rollback_never_returns_to_a_rolled_back_version_and_nothing_flips_the_champion(project, tiny_bert,
                                                                                                  capsys):
    """promote 1, promote 2, rollback (to 1, 2 guarded), rollback: it went back to the guarded v2, and `recover`
    then took that guarded champion for a rollback killed half-way, so every later command flipped the champion."""
    from distillery.registry.client import recover

    stage.register(_params(project))
    _export(project, tiny_bert, shift=1)
    _write_test_split(project, make_texts(40, seed=5)["text"].tolist(), shift=1)
    assert stage.register(_params(project, min_retention=0.0))["decision"] == "promoted"  # v2, previous 1
    assert main(["promote", "1", "--reason", "a"]) == 0 and main(["promote", "2", "--reason", "b"]) == 0
    assert main(["rollback", "--reason", "r1"]) == 0 and _aliases(project)["champion"] == "1"
    capsys.readouterr()
    assert main(["rollback", "--reason", "r2"]) == 2  # v1's previous champion is the rolled-back v2
    assert "previous champion v2 of 'distillery-student' was itself rolled back, or a version of its weights was (at " \
           "20" in capsys.readouterr().err
    for _ in range(3):  # nothing moves it: neither the commands' recovery nor a registration
        assert recover(_client(project), NAME) == {} and _aliases(project)["champion"] == "1"
    # refused as rolled back (and as passed over: v1 was promoted by hand after v2 was registered)
    assert [c["name"] for c in stage.register(_params(project, min_retention=0.0))["checks"]][-2:] == [
        "not_rolled_back", "not_passed_over"]
    assert _aliases(project)["champion"] == "1"

    # The state the old rollback left: both guarded, each the other's previous champion. Recovery leaves it; a
    # manual promotion of the champion lifts its guard.
    client = _client(project)
    client.set_model_version_tag(NAME, "1", "distillery.rolled_back_at", "2026-12-05T00:54:09")
    client.set_model_version_tag(NAME, "1", "distillery.rollback_reason", "old")
    client.set_model_version_tag(NAME, "1", "distillery.previous_champion", "2")
    assert recover(client, NAME) == {} and _aliases(project)["champion"] == "1"
    capsys.readouterr()
    assert main(["promote", "1", "--reason", "settled by hand"]) == 0
    assert "is already the champion; its rollback guard is lifted" in capsys.readouterr().out
    assert not {"distillery.rolled_back_at", "distillery.rollback_reason"} & set(client.get_model_version(NAME, "1").tags)
    assert client.get_model_version(NAME, "1").tags["distillery.promotion_reason"] == "settled by hand"


def test_re_gating_a_version_never_undoes_a_manual_promotion_made_after_it_was_registered(project, tiny_bert):
    """A trial: v2 promoted by the gate, v1 promoted back by hand, then a `register` re-run with only a gate setting
    changed re-gated v2 and made it champion again, saying nothing of the person's choice it undid."""
    stage.register(_params(project))
    _export(project, tiny_bert, shift=1)
    _write_test_split(project, make_texts(40, seed=5)["text"].tolist(), shift=1)
    assert stage.register(_params(project, min_retention=0.0))["decision"] == "promoted"  # v2
    assert main(["promote", "1", "--reason", "v2 misreads sarcasm"]) == 0 and _aliases(project)["champion"] == "1"
    again = stage.register(_params(project, min_retention=0.0, max_size_mb=999.0))  # the same v2, gated again
    assert again["version"] == "2" and again["decision"] != "promoted" and _aliases(project)["champion"] == "1"
    failed = [c for c in again["checks"] if not c["passed"]]
    assert [c["name"] for c in failed] == ["not_passed_over"], again["checks"]
    assert "champion v1 was promoted by hand at 20" in failed[0]["detail"] and "'v2 misreads sarcasm'" in \
        failed[0]["detail"]
    # a model registered after that choice is gated as any other: it may beat the champion
    _export(project, tiny_bert, shift=2)
    newer = stage.register(_params(project, min_retention=0.0))
    assert newer["version"] == "3" and not any(c["name"] == "not_passed_over" for c in newer["checks"]), newer


def test_after_a_data_refresh_the_champion_is_compared_only_on_test_rows_it_did_not_train_on(project, tiny_bert,
                                                                                             monkeypatch):
    """A refresh re-draws the splits, so rows of the champion's training split can land in the new test split.
    Here 30 of the 40 new test rows are A's training rows (10 of them near-copies: other case, other spacing),
    labelled as A answers them, and 10 are new rows labelled as B answers them. On the whole split A leads (75%
    vs 25%); on the 10 rows A never saw, B does."""
    from distillery.registry.seen import SEEN_FILE, SEEN_FILES, SEEN_TAG

    seen_texts = make_texts(60, seed=7)["text"].tolist()
    (project / "data/prepared/train.parquet").unlink(missing_ok=True)
    pd.DataFrame({"text": seen_texts[:40], "label": 0}).to_parquet(project / "data/prepared/train.parquet")
    pd.DataFrame({"text": seen_texts[40:], "label": 0}).to_parquet(project / "data/prepared/validation.parquet")
    first = stage.register(_params(project))
    assert first["decision"] == "promoted"
    logged = _client(project).download_artifacts(first["mlflow_run_id"], f"data/{SEEN_FILE}", str(project))
    assert len(np.load(logged)) == len(set(seen_texts))  # one key per distinct train or validation row

    _export(project, tiny_bert, shift=1)  # model B, trained on new splits (its own rows do not matter here)
    fresh = make_texts(10, seed=8)["text"].tolist()
    # near-copies of A's rows, labelled as A answers them (B, A with its labels rotated, gets each one wrong)
    near = [" " + text.upper().replace(" ", "  ") + " " for text in seen_texts[:10]]
    test = pd.DataFrame({"text": near + seen_texts[10:30] + fresh, "label": np.concatenate([
        direct_logits(project, near + seen_texts[10:30], onnx="shift0.onnx").argmax(-1),
        direct_logits(project, fresh, onnx="shift1.onnx").argmax(-1)])})
    test.to_parquet(project / "data/prepared/test.parquet")
    # B answers 25% of the whole split right, below answering its most frequent label: that check is off here
    result = stage.register(_params(project, min_retention=0.0, above_one_label=False))
    check = next(c for c in result["checks"] if c["name"] == "champion")
    assert result["decision"] == "promoted", result["checks"]
    assert "above_one_label" not in [c["name"] for c in result["checks"]]
    assert (check["value"], check["threshold"]) == (1.0, 0.0) and result["candidate"]["accuracy"] == 0.25
    assert "both on the 10 of 40 current test rows champion v1 did not train, validate or distill on" in check["detail"]
    assert result["champion_rows"] == {"test_rows": 40, "left_out": 30, "checked": True, "matched": "normalised"}
    assert _aliases(project) == {"champion": "2"}

    # With data.leak_check: exact, only the 20 identical rows are A's: A is compared on the 10 near-copies too.
    raw = yaml.safe_load((project / "params.yaml").read_text())
    raw["data"]["leak_check"] = "exact"
    (project / "params.yaml").write_text(yaml.safe_dump(raw))
    client = _client(project)
    client.set_registered_model_alias(NAME, "champion", "1")
    exact = stage.register(_params(project, min_retention=0.0))
    assert exact["champion_rows"] == {"test_rows": 40, "left_out": 20, "checked": True, "matched": "exact"}
    # A champion registered before the normalised keys were logged is matched exactly, and the check says so.
    raw["data"]["leak_check"] = "normalised"
    (project / "params.yaml").write_text(yaml.safe_dump(raw))
    old = client.create_run(client.get_run(first["mlflow_run_id"]).info.experiment_id).info.run_id
    client.log_artifact(old, logged, "data")  # the exact set alone
    client.set_model_version_tag(NAME, "1", SEEN_TAG, old)
    client.set_registered_model_alias(NAME, "champion", "1")
    earlier = stage.register(_params(project, min_retention=0.0))
    assert earlier["champion_rows"]["left_out"] == 20 and earlier["champion_rows"]["matched"] == "exact"
    assert "recorded before near-copies were matched" in next(
        c for c in earlier["checks"] if c["name"] == "champion")["detail"]
    logged_sets = {p.path.split("/")[-1] for p in client.list_artifacts(first["mlflow_run_id"], "data")}
    assert set(SEEN_FILES.values()) <= logged_sets
    client.set_registered_model_alias(NAME, "champion", "2")

    # A test split made only of rows the champion (now B, which saw these train/validation rows) trained on:
    # nothing is left to compare on, so the champion stays.
    pd.DataFrame({"text": seen_texts[:40], "label": 0}).to_parquet(project / "data/prepared/test.parquet")
    _export(project, tiny_bert, shift=2)
    refused = stage.register(_params(project, min_retention=0.0))
    assert [c["name"] for c in refused["checks"] if not c["passed"]] == ["champion"]
    assert "all 40 current test rows were in its training, validation or transfer data" in \
        next(c for c in refused["checks"] if c["name"] == "champion")["detail"]
    assert _aliases(project)["champion"] == "2"

    # A champion whose record of rows cannot be read now fails the check (never "unchecked", never a pass) ...
    def unreachable(*args, **kwargs):
        raise OSError("artifact store unreachable")
    with monkeypatch.context() as patched:
        patched.setattr("mlflow.MlflowClient.list_artifacts", unreachable)
        unreadable = stage.register(_params(project, min_retention=0.0))
    assert [c["name"] for c in unreadable["checks"] if not c["passed"]] == ["champion"]
    assert "OSError: artifact store unreachable" in \
        next(c for c in unreadable["checks"] if c["name"] == "champion")["detail"]
    assert _aliases(project)["champion"] == "2"
    # ... and one whose rows were never recorded (its run logged none) is compared on the whole split, the
    # check saying the overlap is unchecked.
    client = _client(project)
    bare = client.create_run(client.get_run(first["mlflow_run_id"]).info.experiment_id).info.run_id
    client.set_model_version_tag(NAME, "2", SEEN_TAG, bare)
    unchecked = stage.register(_params(project, min_retention=0.0))
    assert unchecked["champion_rows"] == {"test_rows": 40, "left_out": 0, "checked": False}
    assert "overlap is unchecked" in next(c for c in unchecked["checks"] if c["name"] == "champion")["detail"]


@pytest.mark.no_store
def test_a_model_with_other_inputs_fails_the_gate_and_is_promoted_only_when_asked(project, tiny_bert, capsys,
                                                                                   monkeypatch):
    assert stage.register(_params(project))["decision"] == "promoted"
    # the first registration creates the store, and says so (a mistyped MLFLOW_TRACKING_URI did it unannounced)
    assert "register: no MLflow store at " in capsys.readouterr().out
    assert json.loads(_client(project).get_model_version(NAME, "1").tags["distillery.inputs"]) == ["text"]
    # A champion registered before its inputs were tagged: its logged signature is read instead.
    _client(project).delete_model_version_tag(NAME, "1", "distillery.inputs")

    # Model B on sentence pairs, same labels: the inputs check fails (and the floor: B scores 0 on A's labels); the
    # champion, which reads other columns, is not compared.
    _export(project, tiny_bert, shift=1)
    test = pd.read_parquet(project / "data/prepared/test.parquet")
    test.insert(1, "text_pair", test["text"].iloc[::-1].tolist())
    test.to_parquet(project / "data/prepared/test.parquet")
    pairs = stage.register(_params(project, min_retention=0.0))
    assert "no MLflow store" not in capsys.readouterr().out  # the store is there now
    assert pairs["version"] == "2" and pairs["decision"] == "rejected", pairs["checks"]
    assert [c["name"] for c in pairs["checks"] if not c["passed"]] == ["above_one_label", "inputs"], pairs["checks"]
    assert next(c for c in pairs["checks"] if c["name"] == "champion")["skipped"]
    # the card says "skipped", and the run logs no pass/fail figure for a check that was not made
    assert "\n- champion: skipped (not compared: " in (project / "reports/model_card.md").read_text()
    logged = _client(project).get_run(pairs["mlflow_run_id"]).data.metrics
    assert logged["gate.inputs.passed"] == 0.0 and "gate.champion.passed" not in logged, sorted(logged)
    check = next(c for c in pairs["checks"] if c["name"] == "inputs")
    assert (check["value"], check["threshold"]) == (["text", "text_pair"], ["text"])
    assert _aliases(project) == {"champion": "1", "challenger": "2"}

    # By hand: refused in one line naming both, unless asked for.
    with pytest.raises(RegistryError, match=r"v2 of 'distillery-student' takes \['text', 'text_pair'\], champion v1 "
                                            r"takes \['text'\].*--other-inputs"):
        commands.promote(_params(project), "2", "pairs now")
    assert _aliases(project) == {"champion": "1", "challenger": "2"}
    # a side whose inputs cannot be read (no tag, no signature) is not taken to fit
    with monkeypatch.context() as patched:
        patched.setattr(commands, "version_inputs",
                        lambda name, version: None if str(version.version) == "2" else ["text"])
        with pytest.raises(RegistryError, match=r"cannot tell whether v2 of 'distillery-student' answers the requests "
                                                r"sent to models:/distillery-student@champion: v2's input columns are "
                                                r"unknown .*--other-inputs"):
            commands.promote(_params(project), "2", "pairs now")
    assert _aliases(project) == {"champion": "1", "challenger": "2"}
    assert main(["promote", "2", "--reason", "pairs now", "--other-inputs"]) == 0
    out = capsys.readouterr().out
    assert "champion v1 -> v2" in out and _aliases(project)["champion"] == "2"
    # allowed (the override), never silent: v2 failed its gate
    warning, note = out.splitlines()[-2:]
    assert note == ("note: a running `mlflow models serve -m models:/distillery-student@champion` keeps the version it "
                    "loaded at its start: restart it to serve v2")
    assert warning.startswith("warning: v2 failed the last gate recorded on it, on 2 checks: above_one_label: ") \
        and "; inputs: " in warning, out
    # the way back is never refused, but said
    assert main(["rollback", "--reason", "clients not ready"]) == 0
    assert capsys.readouterr().out.splitlines()[-2] == ("note: v1 takes ['text'], not ['text', 'text_pair']: the "
                                                        "clients of models:/distillery-student@champion must change "
                                                        "back")


def test_a_refresh_that_no_longer_reads_the_champion_s_own_column_name_is_not_promoted(project, tiny_bert):
    """v1 was trained on the data's ``review`` column, and its clients send records in that name (beside an
    unrelated ``text``); v2, trained under the served name, takes the same ``text`` column but would answer those
    records from ``text``: the gate fails ``inputs`` with the column named, and a promotion by hand needs
    ``--other-inputs``."""
    def with_text_column(column: str, **gate):
        raw = yaml.safe_load((project / "params.yaml").read_text())
        raw["data"]["text_column"] = column
        (project / "params.yaml").write_text(yaml.safe_dump(raw))
        return _params(project, **gate)

    assert stage.register(with_text_column("review"))["decision"] == "promoted"
    assert json.loads(_client(project).get_model_version(NAME, "1").tags["distillery.input_spec"]) == {
        "source_columns": {"text": "review"}}
    _client(project).delete_model_version_tag(NAME, "1", "distillery.input_spec")  # as registered before: its files
    _export(project, tiny_bert, shift=1)
    _write_test_split(project, make_texts(40, seed=5)["text"].tolist(), shift=1)  # B is right, A is not
    result = stage.register(with_text_column("text", min_retention=0.0))
    assert result["version"] == "2" and result["decision"] == "rejected", result["checks"]
    assert [c["name"] for c in result["checks"] if not c["passed"]] == ["inputs"], result["checks"]
    assert "the champion read text from a request's 'review' column, it reads 'text' only" in next(
        c for c in result["checks"] if c["name"] == "inputs")["detail"]
    assert _aliases(project) == {"champion": "1", "challenger": "2"}
    with pytest.raises(RegistryError, match=r"v2 of 'distillery-student' takes \['text'\] as champion v1 does, but the "
                                            r"champion read text from a request's 'review' column.*--other-inputs"):
        commands.promote(_params(project), "2", "new data")
    assert main(["promote", "2", "--reason", "clients moved", "--other-inputs"]) == 0
    assert _aliases(project)["champion"] == "2"
    undone = commands.rollback(_params(project), "clients stayed")
    assert undone["champion"] == "1" and "requests_changed" not in undone  # v1 reads every name v2 read


def test_a_different_label_set_is_refused_even_for_a_champion_without_the_labels_tag(project):
    first = stage.register(_params(project))
    assert first["decision"] == "promoted"
    assert json.loads(_client(project).get_model_version(NAME, "1").tags["distillery.labels"]) == LABELS

    # Same ONNX model, same test split, labels renamed: every other check passes, the labels check does not.
    (project / "data/prepared/labels.json").write_text(json.dumps({"names": ["neg", "neutral", "pos"]}))
    renamed = stage.register(_params(project))
    assert renamed["version"] == "2" and renamed["decision"] == "rejected"
    assert [c["name"] for c in renamed["checks"] if not c["passed"]] == ["labels"]
    labels = next(c for c in renamed["checks"] if c["name"] == "labels")
    assert "missing ['negative', 'positive']" in labels["detail"] and "new ['neg', 'pos']" in labels["detail"]
    assert _aliases(project) == {"champion": "1", "challenger": "2"}
    assert _client(project).get_model_version(NAME, "2").tags["distillery.gate.failed.labels"].startswith("value ")

    # A champion registered before labels were tagged: its packaged classifier.json is read instead.
    _client(project).delete_model_version_tag(NAME, "1", "distillery.labels")
    again = stage.register(_params(project))
    assert again["version"] == "2" and [c["name"] for c in again["checks"] if not c["passed"]] == ["labels"]
    assert "missing ['negative', 'positive']" in next(c for c in again["checks"] if c["name"] == "labels")["detail"]

    # By hand: refused in one line unless asked for (trial S: promoted with a note, and prob_neutral was gone)
    with pytest.raises(RegistryError, match=r"v2 of 'distillery-student' answers the labels \['neg', 'neutral', 'pos'\], "
                                            r"champion v1 \['negative', 'neutral', 'positive'\]: .*--other-labels"):
        commands.promote(_params(project), "2", "renamed")
    assert _aliases(project) == {"champion": "1", "challenger": "2"}
    assert main(["promote", "2", "--reason", "clients renamed too", "--other-labels"]) == 0
    assert _aliases(project)["champion"] == "2"
    assert main(["rollback", "--reason", "back"]) == 0  # the way back is never refused

    # Back to the champion's labels: the same files, so the same version, still the champion.
    (project / "data/prepared/labels.json").write_text(json.dumps({"names": LABELS}))
    assert stage.register(_params(project))["decision"] == "already champion"


@pytest.mark.no_store
def test_registry_commands_reject_bad_requests(project, capsys):
    params = _params(project)
    store = project / "mlruns" / "mlflow.db"
    for command in (lambda: commands.rollback(params, "back"), lambda: commands.promote(params, "1", "first")):
        with pytest.raises(RegistryError, match=r"^no store at sqlite:///.*mlruns/mlflow.db "
                                                r"\(nothing registered yet"):
            command()
        assert not store.exists()  # refused before connecting: no empty store made
    from distillery.tracking import connect

    connect(project)  # a store with nothing registered in it
    with pytest.raises(RegistryError, match="no champion to roll back"):
        commands.rollback(params, "back")
    stage.register(params)
    with pytest.raises(RegistryError, match="replaced no earlier champion"):
        commands.rollback(params, "back")
    with pytest.raises(RegistryError, match=r"^rollback needs --reason"):  # a blank one too, as promote's
        commands.rollback(params, "  ")
    assert main(["promote", "7", "--reason", "x"]) == 2
    assert "has no version '7'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stopped:
        main(["promote", "1"])
    assert stopped.value.code == 2 and "required: --reason" in capsys.readouterr().err
    assert main(["promote", "1", "--reason", " "]) == 2  # a blank reason is no reason
    assert "needs --reason" in capsys.readouterr().err
    assert main(["models"]) == 0
    assert "| 1 | champion |" in capsys.readouterr().out
    # a listing names its store and creates none: a mistyped address is seen, not made into an empty store
    missing = project.parent / "no-such-dir" / "mlflow.db"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{missing}")
        assert main(["models"]) == 0
        out = capsys.readouterr().out
        assert main(["promote", "1", "--reason", "x"]) == 2 and main(["rollback", "--reason", "x"]) == 2
    assert f"in sqlite:///{missing}" in out and "no store there" in out and not missing.parent.exists()
    assert [line for line in capsys.readouterr().err.splitlines() if "no store at" in line] == [
        f"distillery {command}: error: no store at sqlite:///{missing} (nothing registered yet, or a "
        f"mistyped MLFLOW_TRACKING_URI); nothing was created" for command in ("promote", "rollback")]
    unknown = project / "params-unknown-name.yaml"
    unknown.write_text((project / "params.yaml").read_text().replace(
        "model_name: distillery-student", "model_name: distillery-studnet"))
    assert main(["models", "--params", str(unknown)]) == 0
    assert "no versions of distillery-studnet in this store" in capsys.readouterr().out


@pytest.mark.parametrize("where", ["decide", "model_card"])
def test_a_failure_before_the_alias_move_leaves_the_champion(project, tiny_bert, monkeypatch, where):
    stage.register(_params(project))
    _export(project, tiny_bert, shift=1)
    _write_test_split(project, make_texts(40, seed=5)["text"].tolist(), shift=1)  # B would win on this split

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt(f"killed in {where}")

    monkeypatch.setattr(stage, where, interrupted)  # mid-gate, or after the decision but before the alias
    with pytest.raises(KeyboardInterrupt):
        stage.register(_params(project, min_retention=0.0))
    assert _aliases(project) == {"champion": "1"}
    assert json.loads((project / "reports/metrics/register.json").read_text())["version"] == "1"
    expected = "pending" if where == "decide" else "passed"
    assert _client(project).get_model_version(NAME, "2").tags["distillery.gate"] == expected


def test_unreachable_tracking_server_fails_fast_and_clearly(project, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    waits, sleep = [], time.sleep  # check_reachable's back-off between attempts: recorded, not slept

    def backoff(seconds):
        if sys._getframe(1).f_code.co_name == "check_reachable":
            waits.append(seconds)
        else:
            sleep(seconds)
    monkeypatch.setattr(time, "sleep", backoff)
    started = time.perf_counter()
    with pytest.raises(TrackingUnavailable, match=r"unreachable after 3 attempts \(ConnectionError: \[Errno 111\] "
                                                  r"Connection refused\); start it, or unset MLFLOW_TRACKING_URI"):
        stage.register(_params(project))  # the reason, not a message cut mid-word ("port=599")
    assert time.perf_counter() - started < 30 and waits == [1, 2]
    assert main(["register"]) == 3  # transient: the Prefect flow retries it
    assert "distillery register: transient error: MLflow tracking server" in capsys.readouterr().err
    assert not (project / "reports/metrics/register.json").exists()


def test_registrations_of_one_model_never_overlap(tmp_path, capsys):
    with registry_lock("sqlite:///x.db", NAME, timeout_s=1):
        started = time.perf_counter()
        with pytest.raises(LockTimeout, match=rf"\(pid {os.getpid()} on \S+, a registration, since "):
            with registry_lock("sqlite:///x.db", NAME, timeout_s=0.5, poll_s=0.1):
                pass
        assert time.perf_counter() - started >= 0.5
        # said once as the wait began (a trial's registration waited in silence), with the holder in words
        waits = [line for line in capsys.readouterr().err.splitlines() if line.startswith("register: waiting")]
        assert len(waits) == 1 and re.fullmatch(
            rf"register: waiting up to 0.5s \(register.lock_timeout_s\) for another registration of '{NAME}' \(\S+: "
            rf"pid {os.getpid()} on \S+, a registration, since \d\d:\d\d:\d\d\)", waits[0]), waits
        with registry_lock("sqlite:///x.db", "another-model", timeout_s=0):
            pass  # other names are not blocked
    with registry_lock("sqlite:///x.db", NAME, timeout_s=0):
        pass  # released


def test_pyfunc_on_raw_text_without_distillery(project):
    stage.register(_params(project))
    texts = make_texts(40, seed=3)["text"].tolist()
    expected = direct_logits(project, texts)
    code = f"""
import json, sys, mlflow
mlflow.set_tracking_uri({tracking_uri(project)!r})
model = mlflow.pyfunc.load_model("models:/{NAME}@champion")
texts = json.loads(sys.stdin.read())
out = model.predict({{"text": texts}})
as_frame = model.predict(__import__("pandas").DataFrame({{"id": range(len(texts)), "text": texts}}))
assert out.equals(as_frame)
assert not [m for m in sys.modules if m.split(".")[0] in ("distillery", "transformers", "torch")], "heavy imports"
print(out.to_json(orient="records"))
"""
    proc = subprocess.run([sys.executable, "-c", code], input=json.dumps(texts), capture_output=True, text=True,
                          cwd="/", timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(proc.stdout.strip().splitlines()[-1])
    _assert_same_answers(rows, expected)


def _probabilities(logits: np.ndarray) -> np.ndarray:
    probabilities = np.exp(logits - logits.max(-1, keepdims=True))
    return probabilities / probabilities.sum(-1, keepdims=True)


def _assert_same_answers(rows: list[dict], logits: np.ndarray) -> None:
    probabilities = _probabilities(logits)
    assert [row["label"] for row in rows] == [LABELS[i] for i in logits.argmax(-1)]
    served = np.array([[row[f"prob_{label}"] for label in LABELS] for row in rows])
    np.testing.assert_allclose(served, probabilities, atol=1e-5)


def test_mlflow_models_serve_answers_like_direct_onnx(project, tmp_path):
    """The request/answer contract of the README's "Serve the champion", over real HTTP."""
    stage.register(_params(project))
    texts = make_texts(50, seed=3)["text"].tolist()
    port = free_port()
    url = f"http://127.0.0.1:{port}/invocations"
    command = [str(Path(sys.executable).parent / "mlflow"), "models", "serve", "-m", f"models:/{NAME}@champion",
               "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)]
    env = env_with_venv(MLFLOW_TRACKING_URI=tracking_uri(project))
    with running(command, f"http://127.0.0.1:{port}/ping", tmp_path / "serve.log", env=env):
        def post(body: dict) -> requests.Response:
            return requests.post(url, json=body, timeout=120)

        response = post({"inputs": texts})
        assert response.status_code == 200, response.text
        _assert_same_answers(response.json()["predictions"], direct_logits(project, texts))

        # Records are matched by column name: an id before the text is ignored, never classified.
        # (The tiny random model's outputs differ little between texts, so compare probabilities closely.)
        ids, rows = ["u1", "u2"], texts[:2]
        by_id, by_text = _probabilities(direct_logits(project, ids)), _probabilities(direct_logits(project, rows))
        assert np.abs(by_id - by_text).max() > 1e-5  # scoring the wrong column would show
        records = post({"dataframe_records": [{"id": i, "text": t} for i, t in zip(ids, rows)]})
        split = post({"dataframe_split": {"columns": ["id", "text"], "data": [list(pair) for pair in zip(ids, rows)]}})
        for answer in (records, split):
            assert answer.status_code == 200, answer.text
            served = np.array([[row[f"prob_{label}"] for label in LABELS] for row in answer.json()["predictions"]])
            np.testing.assert_allclose(served, by_text, atol=1e-6)

        # No rows in, no rows out.
        empty = post({"inputs": []})
        assert (empty.status_code, empty.json()) == (200, {"predictions": []}), empty.text

        # Null or non-string texts: 400 saying why.
        for body, why in (({"inputs": [None]}, "'text' of row 0 is null"),
                          ({"inputs": ["fine", None]}, "'text' of row 1 is null"),
                          ({"dataframe_records": [{"id": "u1", "text": None}]}, "'text' of row 0 is null"),
                          ({"inputs": [1, 2]}, "'text' of row 0 is not a string (int '1')")):
            refused = post(body)
            assert refused.status_code == 400, (body, refused.status_code, refused.text[:500])
            assert refused.json()["error_code"] == "INVALID_PARAMETER_VALUE", refused.text[:500]
            assert why in refused.json()["message"], (body, refused.json()["message"][-500:])

        # A 1 MB text is answered (truncated to max_length tokens, like direct inference).
        huge = " ".join(["great"] * 175_000)[:1_000_000]
        answer = post({"inputs": [huge]})
        assert answer.status_code == 200, answer.text[:500]
        _assert_same_answers(answer.json()["predictions"], direct_logits(project, [huge]))

        # Over the row cap: 400 naming the cap.
        over = post({"inputs": ["ok"] * 10_000})
        assert over.status_code == 400, over.text[:500]
        assert "10000 rows in one request" in over.json()["message"]
        assert "at most 1000 rows per request" in over.json()["message"]
        at_cap = post({"inputs": ["ok"] * 1000})
        assert at_cap.status_code == 200 and len(at_cap.json()["predictions"]) == 1000


@pytest.mark.no_store
def test_concurrent_first_use_creates_the_store_once(project):
    """Three processes at once connect to a project with no store yet, as registrations starting together do:
    MLflow's migration must not run twice, and the store they leave is one a listing reads."""
    code = "from pathlib import Path; from distillery.tracking import connect; connect(Path.cwd())"
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=project, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outputs = [proc.communicate(timeout=300) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0, 0], [err[-2000:] for _, err in outputs]
    assert (project / "mlruns/mlflow.db").is_file()
    listed = subprocess.run([sys.executable, "-m", "distillery", "models"], cwd=project, capture_output=True, text=True)
    assert listed.returncode == 0 and "no versions of distillery-student in this store" in listed.stdout


def test_tracking_credentials_never_reach_register_json_the_model_card_artifacts_or_the_output(
        project, tmp_path, monkeypatch, capsys, caplog):
    """A tracking URI with user:password@ works, and the credentials are written and printed nowhere."""
    from servers import mlflow_server

    with mlflow_server(tmp_path / "mlflow") as uri:
        secret_uri = uri.replace("http://", "http://alice:s3cret@")
        monkeypatch.setenv("MLFLOW_TRACKING_URI", secret_uri)
        assert main(["register"]) == 0
        out = capsys.readouterr()
        register = json.loads((project / "reports/metrics/register.json").read_text())
        assert register["tracking_uri"] == uri and register["decision"] == "promoted"
        client = MlflowClient(tracking_uri=uri, registry_uri=uri)
        artifacts = {name: client.download_artifacts(register["mlflow_run_id"], name, str(tmp_path))
                     for name in ("gate_decision.json", "model_card.md")}
        written = [(project / "reports/metrics/register.json").read_text(),
                   (project / "reports/model_card.md").read_text(),
                   *(Path(path).read_text() for path in artifacts.values()), out.out, out.err, caplog.text]
    assert f"at {uri}" in out.out
    for text in written:
        assert "s3cret" not in text and "alice" not in text


def test_a_copied_checkout_writes_into_its_own_store_after_the_original_is_gone(project, tiny_bert, tmp_path,
                                                                                 monkeypatch, caplog):
    stage.register(_params(project))
    copy = tmp_path / "moved" / "project"
    shutil.copytree(project, copy)
    shutil.rmtree(project)
    monkeypatch.chdir(copy)
    _export(copy, tiny_bert, shift=1)
    _write_test_split(copy, make_texts(40, seed=5)["text"].tolist(), shift=1)  # B wins: A is re-scored from the store

    result = stage.register(_params(copy, min_retention=0.0))
    assert result["decision"] == "promoted" and result["version"] == "2", result["checks"]
    champion_check = next(c for c in result["checks"] if c["name"] == "champion")
    assert "re-scored" in champion_check["detail"]  # v1 was loaded from the copy's artifacts
    assert "MLflow store moved" in caplog.text and str(copy / "mlruns") in caplog.text
    client = _client(copy)
    here = (copy / "mlruns").resolve()
    experiment = client.get_experiment_by_name("distillery")
    assert experiment.artifact_location == (here / "artifacts").as_uri()
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) >= 8 and all(run.info.artifact_uri.startswith(here.as_uri() + "/") for run in runs)
    for version in ("1", "2"):
        assert client.get_model_version_download_uri(NAME, version).startswith(here.as_uri() + "/")
    assert not project.exists()  # nothing was written to the old place
    assert _aliases(copy) == {"champion": "2"}


@pytest.mark.no_store
def test_a_dvc_experiments_temporary_copy_registers_into_the_projects_store(project, tiny_bert, monkeypatch):
    """`dvc exp run --queue` and `--temp` run the pipeline in <project>/.dvc/tmp/exps/<tmp>, deleted afterwards:
    its registrations went to a store inside the copy, and went with it; with MLFLOW_TRACKING_URI at the project's
    store, the new experiment's artifacts did, so `@champion` could not be loaded."""
    import mlflow

    from distillery.tracking import artifact_location, own_store_uri, store_root

    (project / "dvc.yaml").write_text("stages: {}\n")  # a DVC project: its pipeline is what DVC copies
    copy = project / ".dvc" / "tmp" / "exps" / "standalone" / "tmpq1x2"
    shutil.copytree(project, copy, ignore=shutil.ignore_patterns(".dvc"))
    assert store_root(copy) == project.resolve() and own_store_uri(copy) == own_store_uri(project)
    monkeypatch.chdir(copy)
    raw = yaml.safe_load((copy / "params.yaml").read_text())
    raw["register"]["experiment"] = "explore"  # a new experiment: created from inside the copy
    (copy / "params.yaml").write_text(yaml.safe_dump(raw))
    result = stage.register(load_params(copy / "params.yaml"))
    assert result["decision"] == "promoted" and not (copy / "mlruns").exists()
    shutil.rmtree(project / ".dvc")  # DVC deletes the copy after its run
    monkeypatch.chdir(project)
    client = _client(project)
    assert client.get_experiment_by_name("explore").artifact_location == (project / "mlruns/artifacts").resolve().as_uri()
    mlflow.set_tracking_uri(tracking_uri(project))
    served = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
    assert len(served.predict(pd.DataFrame({"text": ["a good day"]}))) == 1
    # a SQLite store named by MLFLOW_TRACKING_URI keeps new experiments' artifacts beside its database outside the
    # project, in the project's git-ignored mlruns/ inside it (sqlite:///mlflow.db, relative to the project)
    elsewhere = f"sqlite:///{project.parent / 'shared' / 'mlflow.db'}"
    assert artifact_location(copy, elsewhere) == (project.parent / "shared" / "artifacts").resolve().as_uri()
    assert artifact_location(project, "sqlite:///mlflow.db") == (project / "mlruns/artifacts").resolve().as_uri()
    # a checkout that merely lives under some project's .dvc/tmp/exps, without a pipeline above it, is its own
    other = project.parent / "ci" / ".dvc" / "tmp" / "exps" / "checkouts" / "mine"
    other.mkdir(parents=True)
    assert store_root(other) == other.resolve()


def test_an_experiment_whose_artifacts_live_outside_the_project_is_refused(project, tmp_path, capsys):
    elsewhere = tmp_path / "elsewhere" / "artifacts"
    _params(project)
    from distillery.tracking import connect

    connect(project)
    _client(project).create_experiment("distillery", artifact_location=elsewhere.as_uri())
    assert main(["register"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert str(elsewhere) in err and str(project) in err and "set register.experiment to a new name" in err
    assert not elsewhere.exists()


def test_an_early_single_text_champion_logged_with_an_unnamed_column_takes_text(tmp_path, monkeypatch):
    """Before named signatures, a single-text model was logged from a list of texts: its signature's one column
    has no name, and its inputs were read as ['0'], so every later candidate failed the inputs check."""
    import mlflow
    from mlflow.models import infer_signature

    from distillery.registry.client import version_inputs

    class Echo(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):
            return pd.DataFrame({"label": ["positive"] * len(model_input)})

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    example = ["good day", "bad day"]
    with mlflow.start_run():
        info = mlflow.pyfunc.log_model(name="model", python_model=Echo(), input_example=example, signature=
                                       infer_signature(example, pd.DataFrame({"label": ["positive", "positive"]})))
    version = MlflowClient().get_model_version(NAME, mlflow.register_model(info.model_uri, NAME).version)
    assert version_inputs(NAME, version) == ["text"]


def test_reports_of_another_test_split_or_model_file_are_refused_before_anything_is_registered(project):
    """`prepare` run by hand on a refreshed test file, then `register`: the retention check divided the candidate's
    accuracy on the new split by the teacher's on the old one (1.48 "of the teacher's accuracy"). The same for a
    benchmark of the model file export wrote before."""
    from distillery.files import sha256_files

    metrics = project / "reports/metrics"
    evaluation, benchmark = (json.loads((metrics / f"{n}.json").read_text()) for n in ("eval", "benchmark"))
    deployable = project / "models/onnx" / json.loads((project / "models/onnx/deployment.json").read_text())[
        "deployable"]
    current = {"eval": {**evaluation, "test_sha256": sha256_files([project / "data/prepared/test.parquet"])},
               "benchmark": {**benchmark, "deployable_sha256": sha256_files([deployable])}}
    for report, key in (("eval", "test_sha256"), ("benchmark", "deployable_sha256")):
        for name, content in current.items():
            (metrics / f"{name}.json").write_text(json.dumps(content))
        (metrics / f"{report}.json").write_text(json.dumps({**current[report], key: "0" * 64}))
        said = "scored another test split" if report == "eval" else "timed another models/onnx/"
        with pytest.raises(DataError, match=f"reports/metrics/{report}.json {said}.*run `dvc repro`"):
            stage.register(_params(project))
        assert not (project / "mlruns").exists() or not _client(project).search_registered_models()
    for name, content in current.items():
        (metrics / f"{name}.json").write_text(json.dumps(content))
    # trial S: the file changed by hand after export, then benchmarked by hand, was registered with the provenance
    # of the file export wrote: export's own record of it refuses that
    written = (project / "models/onnx/deployment.json").read_text()
    (project / "models/onnx/deployment.json").write_text(json.dumps({**json.loads(written),
                                                                    "deployable_sha256": "0" * 64}))
    with pytest.raises(DataError, match=r"models/onnx/student\S*.onnx is not the file export wrote and checked for "
                                        r"parity \(it changed since\); run `dvc repro`"):
        stage.register(_params(project))
    (project / "models/onnx/deployment.json").write_text(written)
    assert stage.register(_params(project))["decision"] == "promoted"


def test_an_orchestrator_says_which_stages_ran_and_the_tags_follow_it(project, monkeypatch):
    """On a shared tracking server a clone's fresh run made the same outputs as another clone's, so its stages were
    tagged cached though this run ran them (and a first run's cached ones ran). The flow now says what it ran."""
    (project / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": {
        "prepare": {"cmd": "python -m distillery prepare", "outs": [{"path": "data/prepared", "md5": "a.dir"}]},
        "distill": {"cmd": "python -m distillery distill", "outs": [{"path": "models/student", "md5": "b.dir"}]}}}))

    def stage_tags(run_id):
        tags = _client(project).get_run(run_id).data.tags
        return {k[len("distillery.stage."):]: v for k, v in tags.items() if k.startswith("distillery.stage.")}

    first = stage.register(_params(project))  # outputs never tracked before: ran
    assert stage_tags(first["mlflow_run_id"]) == {"prepare": "ran", "distill": "ran", "register": "ran"}
    # without an orchestrator's word, a stage whose outputs an earlier execution had is cached
    second = stage.register(_params(project))
    assert stage_tags(second["mlflow_run_id"]) == {"prepare": "cached", "distill": "cached", "register": "ran"}
    # another clone's run on the same server made the very same student: this flow run ran distill all the same
    monkeypatch.setenv("DISTILLERY_ORCHESTRATOR", "prefect")
    monkeypatch.setenv("DISTILLERY_ORCHESTRATOR_RUN_ID", "flow-run-1")
    monkeypatch.setenv("DISTILLERY_STAGES_RAN", "distill")  # this run found prepare up to date
    third = stage.register(_params(project))
    assert stage_tags(third["mlflow_run_id"]) == {"prepare": "cached", "distill": "ran", "register": "ran"}
