"""Image classification, the served model: its artifacts (the deployable ONNX model and ``image.json``), its
input and output schema, and scoring through it.

The served model's code is ``distillery/serving/image_classifier.py`` (it never imports Distillery). Its input
is a NAMED ``image`` column of nested pixel lists or base64 PNGs; its answer is ``label``, ``score`` and
``prob_<label>``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from distillery.errors import RegistryError
from distillery.files import read_json, write_json
from distillery.paths import ONNX_DIR, PREPARED_DIR, STUDENT_DIR
from distillery.prepared import LABEL
from distillery.registry import pyfunc
from distillery.task_types.image_classification.pixels import PIXELS
from distillery.task_types.image_classification.processor import PixelProcessor

MODEL_CLASS = "OnnxImageClassifier"  # the PythonModel in MODEL_CODE
MODEL_CODE = Path(__file__).resolve().parents[2] / "serving" / "image_classifier.py"
MAX_ROWS = 1000  # images per predict call (one HTTP request)
METRICS = ("accuracy", "macro_f1")  # the gate's figures: the primary (retention, champion) first
IMAGE = "image"
REQUIREMENTS = ("pillow",)  # base64 PNG input; beside the pip requirements every served model has


def served_artifacts(root: Path, scratch: Path, labels: list[str], max_length: int, frame: pd.DataFrame,
                     max_rows: int = MAX_ROWS) -> dict[str, str]:
    deployment = read_json(root / ONNX_DIR / "deployment.json", "export")
    onnx_path = root / ONNX_DIR / deployment["deployable"]
    if not onnx_path.is_file():
        raise RegistryError(f"{onnx_path}: not found; run `dvc repro export` first")
    processor = PixelProcessor.from_pretrained(root / deployment.get("tokenizer", str(STUDENT_DIR)))
    spec = processor.spec()
    # Whether the served model resizes is the prepared data's (data.image_size): setting it to the images' own size,
    # or back to null, leaves the pixels, and so every stage between, as they were
    report = root / PREPARED_DIR / "data_report.json"
    image = read_json(report).get("image", {}) if report.is_file() else {}
    if "channels" in image and [image.get("height"), image.get("width")] == [spec["height"], spec["width"]]:
        spec = {key: value for key, value in spec.items() if key != "resize"}
        spec.update({"resize": True} if image.get("resized_to") is not None else {})
    write_json(scratch / "image.json", {"labels": labels, **spec, "batch_size": 256, "threads": 0,
                                        "max_rows": int(max_rows)})
    return {"onnx": str(onnx_path), "config": str(scratch / "image.json")}


RANGE_SLACK = 0.1  # a pixel range within this share of the champion's span of it is the same range
ENCODED_CHANNELS = (1, 3, 4)  # the channels an encoded image is read in (grey, RGB, RGBA): the served model's
SPEC_KEYS = ("channels", "height", "width", "pixel_min", "pixel_max", "resize")  # image.json's request contract


def input_spec(artifacts: dict[str, str]) -> dict:
    """What a served image model's requests must be beyond its ``image`` column: its ``image.json``'s shape,
    pixel range and whether it resizes an encoded image (``pixel_min`` None: registered before it was recorded)."""
    config = read_json(Path(artifacts["config"]))
    return {key: (bool(config.get(key)) if key == "resize" else config.get(key)) for key in SPEC_KEYS}


def narrowing(candidate: dict, champion: dict, named: str = "the champion") -> list[str]:
    """What requests the champion (``input_spec``) answered that the candidate refuses or reads otherwise, one
    phrase each; none when every request the champion took means the same to the candidate. Pixel arrays are
    never resized, so any other height or width refuses them; a model takes arrays of its own channels only (and a
    3- or 4-channel one grey arrays too); an encoded image is read by a 1-, 3- or 4-channel model only, and one of
    another size is refused unless the candidate resizes; pixel arrays on another range (beyond ``RANGE_SLACK`` of
    the champion's) would be refused or, worse, read on the wrong scale."""
    ours, theirs = candidate, champion
    said = []
    if (ours["height"], ours["width"]) != (theirs["height"], theirs["width"]):
        said.append(f"it takes images of {ours['width']} x {ours['height']} pixels (width x height), {named} "
                    f"{theirs['width']} x {theirs['height']}")
    mine, yours = int(ours["channels"]), int(theirs["channels"])
    if mine != yours and not (yours == 1 and mine in (3, 4)):  # a 3- or 4-channel model takes grey arrays too
        said.append(f"it takes {mine} channel{'s' if mine != 1 else ''}, {named} {yours}: {yours}-channel pixel "
                    "arrays are refused")
    if yours in ENCODED_CHANNELS and mine not in ENCODED_CHANNELS:
        said.append(f"it takes no encoded images (PNG, JPEG), {named} did: {mine} channels are pixel lists only")
    if theirs["resize"] and not ours["resize"]:
        said.append(f"{named} resized an encoded image of any size, it does not")
    ranges = [(None if spec["pixel_min"] is None else float(spec["pixel_min"]), float(spec["pixel_max"] or 255))
              for spec in (ours, theirs)]
    # float pixels' range is the one the training data showed: a refresh moves it a little (0-16 to 0-15.9), which
    # the in-graph normalisation absorbs; another scale (0-1 against 0-255) is what breaks a request
    slack = RANGE_SLACK * (ranges[1][1] - (ranges[1][0] or 0.0))
    if abs(ranges[0][1] - ranges[1][1]) > slack or None not in (ranges[0][0], ranges[1][0]) and \
            abs(ranges[0][0] - ranges[1][0]) > slack:
        shown = [f"{low:g}-{high:g}" if low is not None else f"up to {high:g}" for low, high in ranges]
        said.append(f"it reads pixel arrays on {shown[0]}, {named} on {shown[1]}")
    return said


def _nested(frame: pd.DataFrame) -> list:
    """The frame's images as nested lists (``[height][width]``, or ``[channels][height][width]``)."""
    from distillery.task_types.image_classification.pixels import to_arrays

    arrays = to_arrays(frame)
    return [(a[0] if a.shape[0] == 1 else a).tolist() for a in arrays]


def row_key_columns(frame: pd.DataFrame) -> list[str]:
    """The prepared column that identifies an image: its pixels (which rows a registered model saw)."""
    return [PIXELS]


def model_input(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({IMAGE: _nested(frame)})


def signature_example(frame: pd.DataFrame) -> pd.DataFrame:
    """Input example: two images as nested lists in a NAMED ``image`` column."""
    return model_input(frame.head(2))


def load_code_model(artifacts: dict[str, str]):
    return pyfunc.load_code_model(MODEL_CODE, MODEL_CLASS, artifacts)


def score(predict, frame: pd.DataFrame, labels: list[str]) -> dict[str, float]:
    """Accuracy and macro-F1 of a served model on ``frame``, comparing label names, ``MAX_ROWS`` images a call."""
    from sklearn.metrics import f1_score

    parts = [predict(model_input(frame.iloc[start:start + MAX_ROWS]))["label"].astype(str).to_numpy()
             for start in range(0, len(frame), MAX_ROWS)]
    predicted = np.concatenate(parts) if parts else np.asarray([], dtype=str)
    truth = np.asarray([labels[i] for i in frame[LABEL].to_numpy()])
    return {"accuracy": float((predicted == truth).mean()),
            # over the classes in the split or the answers, as evaluate averages (a class in neither has no F1)
            "macro_f1": float(f1_score(truth, predicted, labels=[label for label in labels if label in
                                                                 set(truth) | set(predicted)],
                                       average="macro", zero_division=0)),
            "per_row": {"accuracy": (predicted == truth).astype(float).tolist()}}  # the gate's paired evidence
