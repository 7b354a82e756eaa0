"""Text classification, the served model: its artifacts (the deployable ONNX model, ``tokenizer.json``,
``classifier.json``), its input and output schema, and scoring through it.

The served model's code is ``distillery/serving/text_classifier.py``; MLflow logs that file by path
("models from code"), so the registered model never imports Distillery. Its input is NAMED ``text``
(and ``text_pair``) columns, or the data's own names of them where they differ; its answer is ``label``, ``score``
and ``prob_<label>`` per row.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from distillery.errors import RegistryError
from distillery.files import read_json, write_json
from distillery.paths import ONNX_DIR, STUDENT_DIR
from distillery.prepared import LABEL, PAIR, TEXT
from distillery.registry import pyfunc
from distillery.tokenizer_padding import recorded_padding

MODEL_CLASS = "OnnxTextClassifier"  # the PythonModel in MODEL_CODE
MODEL_CODE = Path(__file__).resolve().parents[2] / "serving" / "text_classifier.py"
MAX_ROWS = 1000  # rows per predict call (one HTTP request); more is refused with a 400 naming the cap
TEXT_CHARACTERS = 100_000  # a longer text is read up to this many characters, on the side the tokenizer keeps
MAX_CHARACTERS = 2_000_000  # characters of text per predict call (after that cut); more is refused with a 400
METRICS = ("accuracy", "macro_f1")  # the gate's figures: the primary (retention, champion) first


def served_settings(params) -> dict:
    """What ``served_artifacts`` takes from params.yaml: the data's own names of the served columns."""
    return {"source_columns": source_columns(params.data)}


def source_columns(data) -> dict[str, str]:
    """The data's own name of each served column where it is another (``{"text": "review"}``): a request holding it
    is read from it (the served model's ``source_columns``), so records sent as they are in the data file, which
    may hold an unrelated column named ``text``, are answered from the column the model was trained on."""
    named = {TEXT: data.text_column, **({PAIR: data.text_pair_column} if data.text_pair_column else {})}
    return {served: own for served, own in named.items() if own != served}


def served_artifacts(root: Path, scratch: Path, labels: list[str], max_length: int, frame: pd.DataFrame,
                     max_rows: int = MAX_ROWS, source_columns: dict | None = None) -> dict[str, str]:
    """The pyfunc's artifacts: the deployable ONNX model, ``tokenizer.json`` and ``classifier.json``
    (``source_columns``: see :func:`source_columns`)."""
    import onnxruntime as ort

    deployment = read_json(root / ONNX_DIR / "deployment.json", "export")
    onnx_path = root / ONNX_DIR / deployment["deployable"]
    tokenizer_dir = root / deployment.get("tokenizer", str(STUDENT_DIR))
    tokenizer_json = tokenizer_dir / "tokenizer.json"
    if not onnx_path.is_file() or not tokenizer_json.is_file():
        raise RegistryError(f"{onnx_path if not onnx_path.is_file() else tokenizer_json}: not found; run "
                            f"`dvc repro export` first (the served model needs a fast tokenizer's tokenizer.json)")
    padding = recorded_padding(tokenizer_dir, deployment.get("tokenizer_padding"))
    inputs = [i.name for i in ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).get_inputs()]
    config = {"labels": labels, "max_length": max_length, "input_names": inputs, "text_pair": PAIR in frame.columns,
              "pad_id": padding["pad_id"], "pad_token": padding["pad_token"],
              "pad_type_id": padding["pad_type_id"], "batch_size": 32, "threads": 0,
              "max_rows": int(max_rows), "text_characters": TEXT_CHARACTERS, "max_characters": MAX_CHARACTERS,
              "truncation_side": padding["truncation_side"]}
    if source_columns:  # only where the data's names differ: the default's config stays as it was
        config["source_columns"] = dict(source_columns)
    write_json(scratch / "classifier.json", config)
    return {"onnx": str(onnx_path), "tokenizer": str(tokenizer_json), "config": str(scratch / "classifier.json")}


def input_spec(artifacts: dict[str, str]) -> dict:
    """What a served text model's requests may be beyond its ``text`` (and ``text_pair``) columns: the data's own
    names it also reads them from (``classifier.json``'s ``source_columns``; none for one registered before them)."""
    return {"source_columns": dict(read_json(Path(artifacts["config"])).get("source_columns") or {})}


def narrowing(candidate: dict, champion: dict, named: str = "the champion") -> list[str]:
    """What requests the champion (``input_spec``) answered that the candidate reads otherwise: a record holding the
    champion's own column name (``review``) beside an unrelated ``text`` column, answered from ``review`` by the
    champion, would be answered from ``text`` (or the candidate's own name). Reading more names narrows nothing."""
    ours, theirs = candidate.get("source_columns") or {}, champion.get("source_columns") or {}
    return [f"{named} read {served} from a request's '{own}' column, it "
            + (f"reads '{ours[served]}'" if ours.get(served) else f"reads '{served}' only")
            + ": a request holding it would be answered from another column"
            for served, own in theirs.items() if ours.get(served) != own]


def input_columns(frame: pd.DataFrame) -> list[str]:
    """``text``, and ``text_pair`` for pair tasks (a split with a ``text_pair`` column)."""
    return [TEXT, PAIR] if PAIR in frame.columns else [TEXT]


def row_key_columns(frame: pd.DataFrame) -> list[str]:
    """The prepared columns that identify a row's input: which rows a registered model saw."""
    return input_columns(frame)


def model_input(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[input_columns(frame)]


def signature_example(frame: pd.DataFrame) -> pd.DataFrame:
    """Input example: the first rows' NAMED ``text`` (and ``text_pair``) string columns.

    Named columns matter: with one unnamed column MLflow keeps a request's first column whatever its
    name, so ``[{"id": "u1", "text": "..."}]`` would be scored on ``"u1"``."""
    head = frame.head(3)
    return pd.DataFrame({column: head[column].astype(str).tolist() for column in input_columns(frame)})


def load_code_model(artifacts: dict[str, str]):
    """The pyfunc class from its code file, loaded against local artifacts (to infer the signature)."""
    return pyfunc.load_code_model(MODEL_CODE, MODEL_CLASS, artifacts)


def score(predict, frame: pd.DataFrame, labels: list[str]) -> dict[str, float]:
    """Accuracy and macro-F1 of a served model on ``frame``, comparing label *names*.

    Scored in slices within the served model's caps per call: ``MAX_ROWS`` rows, ``MAX_CHARACTERS`` characters."""
    from sklearn.metrics import f1_score

    inputs = model_input(frame)
    sizes = sum(inputs[column].astype(str).str.len().clip(upper=TEXT_CHARACTERS) for column in inputs.columns)
    parts = [predict(inputs.iloc[part].reset_index(drop=True))["label"].astype(str).to_numpy()
             for part in pyfunc.request_slices(sizes.to_numpy(), MAX_ROWS, MAX_CHARACTERS)]
    predicted = np.concatenate(parts) if parts else np.asarray([], dtype=str)
    truth = np.asarray([labels[i] for i in frame[LABEL].to_numpy()])
    return {"accuracy": float((predicted == truth).mean()),
            # over the classes in the split or the answers, as evaluate averages (a class in neither has no F1)
            "macro_f1": float(f1_score(truth, predicted, labels=[label for label in labels if label in
                                                                 set(truth) | set(predicted)],
                                       average="macro", zero_division=0)),
            "per_row": {"accuracy": (predicted == truth).astype(float).tolist()}}  # the gate's paired evidence
