"""Sentence pairs end to end on a tiny model: SNLI-format JSON lines (with "-" rows) through every stage,
prepare to register, then served as named ``text`` / ``text_pair`` columns: by the registered model's
own code in process, and by ``mlflow models serve`` over HTTP."""
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests
import torch
from mlflow.exceptions import MlflowException

from conftest import tiny_params, write_params
from distillery.cli import main
from distillery.tracking import tracking_uri
from servers import env_with_venv, free_port, running
from snli_fixture import snli_rows


def _with_segment_ids(tiny_bert: Path, directory: Path) -> Path:
    """The tiny BERT whose tokenizer also returns token_type_ids, as BERT's (and MiniLM's) does: a pair's
    second text is segment 1 in training, in the ONNX graph and in the served model."""
    shutil.copytree(tiny_bert, directory)
    config_path = directory / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["model_input_names"] = ["input_ids", "token_type_ids", "attention_mask"]
    config_path.write_text(json.dumps(config))
    return directory


def test_pairs_train_export_and_serve(tmp_path, monkeypatch, tiny_bert):
    monkeypatch.chdir(tmp_path)
    tiny_bert = _with_segment_ids(tiny_bert, tmp_path / "pair-bert")
    rows = snli_rows(150, seed=3, no_agreement=5)
    with open(tmp_path / "snli.jsonl", "w") as handle:
        handle.writelines(json.dumps(row) + "\n" for row in rows)
    params = tiny_params(tiny_bert, Path("snli.jsonl"), **{
        "data.text_column": "sentence1", "data.text_pair_column": "sentence2", "data.label_column": "gold_label",
        "data.labels": ["entailment", "neutral", "contradiction"]})
    write_params(tmp_path / "params.yaml", params)
    for stage in ("prepare", "train_teacher", "teacher_logits", "distill", "evaluate", "export"):
        assert main([stage]) == 0, stage
    report = json.loads((tmp_path / "data/prepared/data_report.json").read_text())
    assert report["rejected_by_reason"] == {"unknown label '-'": 5}
    test = pd.read_parquet(tmp_path / "data/prepared/test.parquet")
    assert list(test.columns[:2]) == ["text", "text_pair"] and report["transfer_rows"] > 0
    parity = json.loads((tmp_path / "reports/metrics/parity.json").read_text())
    assert parity["student"]["fp32"]["max_abs_logit_diff"] <= 1e-4

    # the served model's code, on the fp32 ONNX student, against the PyTorch student given the same pairs
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from distillery.task_types.text_classification.serving import load_code_model, served_artifacts

    artifacts = served_artifacts(tmp_path, tmp_path, ["entailment", "neutral", "contradiction"], 32, test)
    artifacts["onnx"] = str(tmp_path / "models/onnx/student.onnx")
    served = load_code_model(artifacts)
    request = pd.DataFrame({"id": range(len(test)), "text_pair": test["text_pair"], "text": test["text"]})
    answer = served.predict(None, request)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "models/student")
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "models/student").eval()
    with torch.no_grad():
        batch = tokenizer(list(test["text"]), list(test["text_pair"]), truncation=True, max_length=32,
                          padding=True, return_tensors="pt")
        expected = torch.softmax(model(**batch).logits, dim=-1).numpy()
    probabilities = answer[["prob_entailment", "prob_neutral", "prob_contradiction"]].to_numpy()
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)
    assert list(answer["label"]) == [model.config.id2label[i] for i in expected.argmax(-1)]
    # the tiny student is nearly uniform, so check the pairs themselves: the served model encodes each row as
    # [CLS] text [SEP] text_pair [SEP], token by token as the HF tokenizer does, segment ids included
    encoded = served._encode(list(test["text"]), list(test["text_pair"]))
    np.testing.assert_array_equal(encoded["input_ids"], batch["input_ids"].numpy())
    np.testing.assert_array_equal(encoded["token_type_ids"], batch["token_type_ids"].numpy())
    assert (encoded["token_type_ids"] == 1).any(axis=1).all()
    with pytest.raises(MlflowException, match="this model classifies text pairs"):
        served.predict(None, pd.DataFrame({"text": ["a premise"]}))

    # registered, then served over HTTP: pairs in by column name, the deployable model's answers out
    for stage in ("benchmark", "register"):
        assert main([stage]) == 0, stage
    deployable = json.loads((tmp_path / "models/onnx/deployment.json").read_text())["deployable"]
    artifacts["onnx"] = str(tmp_path / "models/onnx" / deployable)
    direct = load_code_model(artifacts).predict(None, test[["text", "text_pair"]].head(8).reset_index(drop=True))
    port = free_port()
    command = [str(Path(sys.executable).parent / "mlflow"), "models", "serve", "-m",
               f"models:/{params['register']['model_name']}@champion", "--env-manager", "local", "-h", "127.0.0.1",
               "-p", str(port)]
    env = env_with_venv(MLFLOW_TRACKING_URI=tracking_uri(tmp_path))
    with running(command, f"http://127.0.0.1:{port}/ping", tmp_path / "serve.log", env=env):
        records = [{"id": i, "text_pair": p, "text": t} for i, (t, p) in
                   enumerate(zip(test["text"].head(8), test["text_pair"].head(8)))]
        answer = requests.post(f"http://127.0.0.1:{port}/invocations", json={"dataframe_records": records},
                               timeout=120)
        assert answer.status_code == 200, answer.text[:500]
        predictions = pd.DataFrame(answer.json()["predictions"])
        assert list(predictions["label"]) == list(direct["label"])
        np.testing.assert_allclose(predictions[direct.columns[1:]].to_numpy(float),
                                   direct[direct.columns[1:]].to_numpy(float), atol=1e-6)
        split = requests.post(f"http://127.0.0.1:{port}/invocations",
                              json={"inputs": {"text": list(test["text"].head(8)),
                                               "text_pair": list(test["text_pair"].head(8))}}, timeout=120)
        assert split.status_code == 200 and pd.DataFrame(split.json()["predictions"])["label"].tolist() == \
            list(direct["label"])
        alone = requests.post(f"http://127.0.0.1:{port}/invocations",
                              json={"dataframe_records": [{"text": "a premise"}]}, timeout=120)
        assert alone.status_code == 400 and "text_pair" in alone.json()["message"]  # refused, naming the column
        # in the data's own names alone, as the model card says (MLflow refused them: "missing inputs ['text', ...")
        own = requests.post(f"http://127.0.0.1:{port}/invocations", json={"dataframe_records": [
            {"sentence2": r["text_pair"], "sentence1": r["text"]} for r in records]}, timeout=120)
        assert own.status_code == 200, own.text[:300]
        assert pd.DataFrame(own.json()["predictions"])["label"].tolist() == list(direct["label"])
        neither = requests.post(f"http://127.0.0.1:{port}/invocations",
                                json={"dataframe_records": [{"id": 1, "premise": "a", "hypothesis": "b"}]}, timeout=120)
        assert neither.status_code == 400 and "'text'" in neither.json()["message"], neither.text[:300]
