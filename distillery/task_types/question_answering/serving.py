"""Extractive QA, the served model: its artifacts (the deployable ONNX model, ``tokenizer.json``, ``qa.json``
and the post-processing module), its input and output schema, and scoring through it (the gate's F1).

The served model's code is ``distillery/serving/question_answerer.py`` (it never imports Distillery).
Input: NAMED ``question`` and ``context`` columns; answer: ``answer``, ``start``, ``end``, ``score``.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from distillery.errors import RegistryError
from distillery.files import read_json, write_json
from distillery.paths import ONNX_DIR, STUDENT_DIR
from distillery.registry import pyfunc
from distillery.tokenizer_padding import recorded_padding
from distillery.task_types.question_answering import postprocess
from distillery.task_types.question_answering.columns import ANSWER_TEXTS, CONTEXT, MAX_CHARACTERS, QUESTION
from distillery.task_types.question_answering.squad import squad_metrics, squad_scores

MODEL_CLASS = "OnnxQuestionAnswerer"  # the PythonModel in MODEL_CODE
MODEL_CODE = Path(__file__).resolve().parents[2] / "serving" / "question_answerer.py"
CODE_ARTIFACTS = {"postprocess": str(Path(postprocess.__file__).resolve())}  # artifacts that are code: ours, always
MAX_ROWS = 1000  # questions per predict call (one HTTP request)
METRICS = ("f1", "exact_match")  # the gate's figures: the primary (retention, champion) first
INPUTS = [QUESTION, CONTEXT]


def served_artifacts(root: Path, scratch: Path, labels: list[str], max_length: int, frame: pd.DataFrame,
                     max_rows: int = MAX_ROWS) -> dict[str, str]:
    """The pyfunc's artifacts; the windowing and answer settings are the exported model's (deployment.json)."""
    import onnxruntime as ort

    deployment = read_json(root / ONNX_DIR / "deployment.json", "export")
    onnx_path = root / ONNX_DIR / deployment["deployable"]
    tokenizer_dir = root / deployment.get("tokenizer", str(STUDENT_DIR))
    tokenizer_json = tokenizer_dir / "tokenizer.json"
    if not onnx_path.is_file() or not tokenizer_json.is_file():
        raise RegistryError(f"{onnx_path if not onnx_path.is_file() else tokenizer_json}: not found; run "
                            f"`dvc repro export` first (the served model needs a fast tokenizer's tokenizer.json)")
    missing = [k for k in ("doc_stride", "max_answer_length", "n_best_size") if k not in deployment]
    if missing:
        raise RegistryError(f"{root / ONNX_DIR / 'deployment.json'}: no {missing[0]}; it was not exported for "
                            "question answering: run `dvc repro export`")
    padding = recorded_padding(tokenizer_dir, deployment.get("tokenizer_padding"))
    inputs = [i.name for i in ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).get_inputs()]
    config = {"max_length": int(deployment.get("max_length", max_length)), "doc_stride": deployment["doc_stride"],
              "max_answer_length": deployment["max_answer_length"], "n_best_size": deployment["n_best_size"],
              "input_names": inputs, "pad_id": padding["pad_id"],
              "pad_type_id": padding["pad_type_id"], "batch_size": 32, "threads": 0,
              "max_rows": int(max_rows), "max_characters": MAX_CHARACTERS}
    write_json(scratch / "qa.json", config)
    return {"onnx": str(onnx_path), "tokenizer": str(tokenizer_json), "config": str(scratch / "qa.json"),
            **CODE_ARTIFACTS}


def row_key_columns(frame: pd.DataFrame) -> list[str]:
    """The prepared columns that identify a row's input: which rows a registered model saw."""
    return list(INPUTS)


def model_input(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[INPUTS]


def signature_example(frame: pd.DataFrame) -> pd.DataFrame:
    """Input example: the first rows' NAMED ``question`` and ``context`` columns."""
    head = frame.head(2)
    return pd.DataFrame({column: head[column].astype(str).tolist() for column in INPUTS})


def load_code_model(artifacts: dict[str, str]):
    """The pyfunc class from its code file, loaded against local artifacts."""
    return pyfunc.load_code_model(MODEL_CODE, MODEL_CLASS, artifacts)


def score(predict, frame: pd.DataFrame, labels: list[str]) -> dict[str, float]:
    """SQuAD EM and F1 of a served model on ``frame``, in slices within its caps per call (``MAX_ROWS`` questions,
    ``MAX_CHARACTERS`` characters)."""
    inputs = model_input(frame)
    sizes = sum(inputs[column].astype(str).str.len() for column in inputs.columns)
    predicted = []
    for part in pyfunc.request_slices(sizes.to_numpy(), MAX_ROWS, MAX_CHARACTERS):
        predicted += predict(inputs.iloc[part].reset_index(drop=True))["answer"].astype(str).tolist()
    golds = [list(g) for g in frame[ANSWER_TEXTS]]
    return {**squad_metrics(predicted, golds), "per_row": squad_scores(predicted, golds)}  # the gate's paired evidence
