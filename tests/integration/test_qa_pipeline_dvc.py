"""Extractive QA end to end: the ``qa`` profile (profiles/qa.yaml) on a tiny SQuAD-format file and a tiny
random BERT, through every stage in a temporary git + DVC repo (the text pipeline's ``make_project``; the stages run
in the test process and ``dvc commit`` records them: conftest's ``run_stages_in_process``; ``test_pipeline_dvc``
runs the stages as ``dvc repro`` does), then the
registered champion served by `mlflow models serve` and asked over HTTP."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests
import torch
import yaml

from conftest import ROOT, _merge, dvc, make_project, run_stages_in_process, write_params
from servers import env_with_venv, free_port, running
from tiny import make_squad

from distillery.stages import STAGES
from distillery.tracking import tracking_uri

NAME = "distillery-qa-student"
TRAIN = {"epochs": 2, "batch_size": 8, "eval_batch_size": 16, "learning_rate": 1e-3, "warmup": 0.0,
         "logging_steps": 5, "metric_for_best_model": "f1"}
TINY = {
    "seed": 0,
    "data": {"files": {"train": "data/raw/squad/train.json.gz", "test": "data/raw/squad/test.json"},
             "max_samples": {"train": 30, "validation": None, "test": None}},
    # the teacher's pass through ONNX Runtime whatever the machine (the profile's auto: fp32 on a bf16 machine, int8
    # on one without bf16 that computes int8 natively, when it agrees with fp32 on the validation windows)
    "teacher": {"model": "models/pretrained/tiny-bert", "max_length": 32, "train": TRAIN,
                "logits_runtime": "onnxruntime"},
    "student": {"layers": [0, 3], "max_length": 32},
    # the transfer set: the 12 questions beyond the cap; augmentation: a perturbed copy of each question, the
    # transfer questions too (the profile's include_transfer)
    "distill": {"train": TRAIN, "transfer_set": {"source": "remainder"}, "augment": {"copies": 1}},
    "question_answering": {"doc_stride": 8, "max_answer_length": 5},
    "evaluate": {"batch_size": 16},
    "benchmark": {"sequence_lengths": [16, 32], "warmup": 2, "runs": 20, "threads": 1},
    # a random tiny model passes every gate check: the registry state is deterministic
    "register": {"gate": {"min_retention": 0.0, "max_p95_ms": 1000.0, "max_size_mb": 1000.0, "tolerance": 0.999,
                              "min_compare_rows": 1, "above_baseline": False}},
}


def _qa_project(tmp_path: Path, tiny_bert: Path) -> Path:
    project = make_project(tmp_path / "project", tiny_bert)
    make_squad(project / "data/raw/squad/train.json.gz", articles=8, paragraphs=3, questions=2, seed=0)
    make_squad(project / "data/raw/squad/test.json", articles=3, paragraphs=3, questions=2, seed=1)
    params = _merge(yaml.safe_load((project / "params.yaml").read_text()),
                    yaml.safe_load((ROOT / "profiles/qa.yaml").read_text()))
    write_params(project / "params.yaml", _merge(params, TINY))
    subprocess.run(["git", "add", "-A"], cwd=project, check=True)
    subprocess.run(["git", "commit", "-qm", "the qa profile on tiny data"], cwd=project, check=True)
    return project


def _expected_answers(project: Path, frame: pd.DataFrame) -> list[str]:
    """The deployable ONNX model's answers through Distillery's own windows (transformers' tokenizer) and
    post-processing: an independent path to the served model's (``tokenizers``). Windows go in batches of 32,
    padded to the longest, as the served model sends them: int8 activations are quantized per batch, so
    another batching may move an answer."""
    from transformers import AutoTokenizer

    from distillery.onnx_runtime import session
    from distillery.task_types.question_answering import postprocess
    from distillery.task_types.question_answering.features import features_of
    from distillery.task_types.question_answering.onnx import window_logits

    deployment = json.loads((project / "models/onnx/deployment.json").read_text())
    tokenizer = AutoTokenizer.from_pretrained(str(project / "models/student"))
    columns = features_of(tokenizer, frame, deployment["max_length"], deployment["doc_stride"])
    windows = window_logits(torch.nn.Identity(), tokenizer, {"served": session(project / "models/onnx" /
                            deployment["deployable"])}, columns, 32, pytorch=False)["served"]
    found = postprocess.answers([w[0] for w in windows], [w[1] for w in windows], columns["offset_mapping"],
                                columns["example_index"], frame["context"].tolist(), deployment["n_best_size"],
                                deployment["max_answer_length"])
    return [a["text"] for a in found]


def test_qa_profile_through_every_stage_then_served_over_http(tmp_path, tiny_bert):
    project = _qa_project(tmp_path, tiny_bert)
    run_stages_in_process(project, through=STAGES[-1])
    status = dvc(project, "status")  # every stage's inputs and outputs are where dvc.yaml says
    assert status.returncode == 0 and "Data and pipelines are up to date" in status.stdout, status.stdout

    report = json.loads((project / "data/prepared/data_report.json").read_text())
    # 8 training articles: validation is 0.1 / 0.9 of them, rounded: 1 article; the test file's 3 articles
    assert report["articles"] == {"train": 7, "validation": 1, "test": 3}
    # 3 paragraphs x 2 questions per article: 42 training questions, 30 labelled, 12 unlabelled (transfer set)
    assert report["rows"] == {"train": 30, "validation": 6, "test": 18} and report["transfer_rows"] == 12
    manifest = json.loads((project / "data/teacher_logits/manifest.json").read_text())
    assert manifest["rows"]["train"] == 30 and manifest["outputs"]["train"] > 30  # long paragraphs: more windows
    assert manifest["runtime"] == "onnxruntime" and manifest["check"]["max_abs_diff_vs_pytorch"] <= 1e-4, manifest
    from distillery.config import load_params
    from distillery.stages.teacher_logits import pass_precision

    if pass_precision(load_params(project / "params.yaml")) == "int8":  # checked on answers, then kept or not
        assert manifest["int8_check"]["questions"] == 6 and manifest["precision"] == (
            "int8" if manifest["int8_check"]["agreement_with_fp32"] >= 0.97 else "fp32"), manifest
    else:
        assert manifest["precision"] == "fp32" and "int8_check" not in manifest, manifest
    assert manifest["rows"]["transfer"] == 12 and manifest["outputs"]["transfer"] > 12
    assert np.load(project / "data/teacher_logits/train.npy").shape == (manifest["outputs"]["train"], 2, 32)
    # augmented questions keep their context; the teacher labels their windows; with include_transfer, the transfer
    # questions are perturbed too
    augmented = pd.read_parquet(project / "data/teacher_logits/augmented.parquet")
    train = pd.read_parquet(project / "data/prepared/train.parquet")
    transfer = pd.read_parquet(project / "data/prepared/transfer.parquet")
    assert list(augmented.columns) == ["question", "context"] and 0 < manifest["rows"]["augmented"] == len(augmented)
    assert set(augmented["context"]) <= set(train["context"]) | set(transfer["context"])
    assert len(augmented) > len(train)  # one copy per question: more than the labelled ones, so transfer ones too
    pairs = set(zip(augmented["question"], augmented["context"]))
    known = set(zip(train["question"], train["context"])) | set(zip(transfer["question"], transfer["context"]))
    assert len(pairs) == len(augmented) and not pairs & known
    assert manifest["outputs"]["augmented"] >= len(augmented)
    trained = {m: json.loads((project / f"models/{m}/training.json").read_text()) for m in ("student", "baseline")}
    assert (trained["student"]["transfer_rows"], trained["baseline"]["transfer_rows"]) == (12, 0)
    assert (trained["student"]["augmented_rows"], trained["baseline"]["augmented_rows"]) == (len(augmented), 0)
    # the student's epochs ran over the labelled, transfer and augmented windows, the baseline's over the labelled only
    windows = manifest["outputs"]["train"] + manifest["outputs"]["transfer"] + manifest["outputs"]["augmented"]
    assert trained["student"]["train_examples"] == windows
    assert trained["student"]["steps"] == TRAIN["epochs"] * -(-windows // TRAIN["batch_size"])  # the Trainer's count
    assert trained["baseline"]["steps"] == TRAIN["epochs"] * -(-manifest["outputs"]["train"] // TRAIN["batch_size"])

    evaluation = json.loads((project / "reports/metrics/eval.json").read_text())
    test = pd.read_parquet(project / "data/prepared/test.parquet")
    for model in ("teacher", "student", "baseline"):
        # per question: the predicted answer is a span of its context, and the split's figures are the means
        answers = pd.read_csv(project / f"reports/plots/confusion/{model}.csv", keep_default_na=False)
        contexts = dict(zip(test["id"], test["context"]))
        assert len(answers) == 18 and all(p in contexts[i] for i, p in zip(answers["id"], answers["predicted"]))
        assert answers["f1"].mean() == pytest.approx(evaluation[model]["f1"])
        assert answers["exact_match"].mean() == pytest.approx(evaluation[model]["exact_match"])
    assert "student_f1_retention" in evaluation and "| student |" in (project / "reports/summary.md").read_text()

    parity = json.loads((project / "reports/metrics/parity.json").read_text())
    assert parity["student"]["windows"] > parity["student"]["rows"] == 18
    assert parity["student"]["fp32"]["passed"] and "f1_drop_points" in parity["student"]["int8"]
    assert parity["student"]["int8"]["rows"] == 18 and "f1_drop_standard_error_points" in parity["student"]["int8"]
    # the recipe search runs on QA too: candidates scored by the F1 gate on validation windows
    candidates = parity["student"]["recipes"]["candidates"]
    assert any(c["kept"] for c in candidates) and all("f1_drop_points" in c["validation"]["int8"]
                                                      for c in candidates if "validation" in c)
    benchmark = json.loads((project / "reports/metrics/benchmark.json").read_text())
    assert set(benchmark["models"]["student_onnx_int8"]["cells"]) == {"b1_s16", "b1_s32"}
    assert benchmark["metrics"] == ["f1", "exact_match"]
    table = (project / "reports/benchmark.md").read_text()  # each p50 with its interval and runs, tails marked
    runs = benchmark["models"]["student_onnx_int8"]["cells"]["b1_s16"]["runs"]
    assert table.count("| model | p50 ms | p50 95% CI ms | p95 ms | p99 ms | runs |") == 2, table
    assert f"| {runs} |" in table and "\\* marks a p95 from fewer than 20 runs" in table, table

    register = json.loads((project / "reports/metrics/register.json").read_text())
    assert register["decision"] == "promoted", register
    retention = next(c for c in register["checks"] if c["name"] == "retention")
    assert "of the teacher's f1" in retention["detail"]
    card = (project / "reports/model_card.md").read_text()
    assert "question_answering" in card and "| f1 (x100) |" in card
    # the registry listing shows the scores the gate used, the task's own
    listed = subprocess.run([sys.executable, "-m", "distillery", "models"], cwd=project, capture_output=True,
                            text=True, env=env_with_venv(MLFLOW_TRACKING_URI=tracking_uri(project)))
    assert listed.returncode == 0, listed.stderr[-2000:]
    header, _, row = listed.stdout.splitlines()[2:5]
    assert header.startswith("| version | aliases | created | f1 | exact_match | retention |"), listed.stdout
    assert row.split(" | ")[3:5] == [f"{register['candidate'][m]:.4f}" for m in ("f1", "exact_match")], row

    expected = _expected_answers(project, test)
    port = free_port()
    url = f"http://127.0.0.1:{port}/invocations"

    command = [str(Path(sys.executable).parent / "mlflow"), "models", "serve", "-m", f"models:/{NAME}@champion",
               "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)]
    with running(command, f"http://127.0.0.1:{port}/ping", tmp_path / "serve.log",
                 env=env_with_venv(MLFLOW_TRACKING_URI=tracking_uri(project))):
        records = [{"id": i, "question": q, "context": c} for i, q, c in zip(test["id"], test["question"], test["context"])]
        response = requests.post(url, json={"dataframe_records": records}, timeout=120)
        assert response.status_code == 200, response.text[:2000]
        served = response.json()["predictions"]
        assert [row["answer"] for row in served] == expected
        for row, context in zip(served, test["context"]):
            assert context[row["start"]:row["end"]] == row["answer"]
        columnwise = requests.post(url, json={"inputs": {"question": test["question"].tolist()[:3],
                                                          "context": test["context"].tolist()[:3]}}, timeout=120)
        assert columnwise.status_code == 200 and [r["answer"] for r in columnwise.json()["predictions"]] == expected[:3]
        refused = requests.post(url, json={"dataframe_records": [{"question": None, "context": "x"}]}, timeout=120)
        assert refused.status_code == 400 and "'question' of row 0 is null" in refused.json()["message"], refused.text
