"""Image classification, featurising: the pixel processor (the image task's "tokenizer"), datasets for the
Trainer, the collator, and batched inference over a prepared split.

The processor only reshapes: prepared pixel bytes become float32 ``[channels, height, width]`` raw
intensities. The normalisation is in the model (``pixel_mean``/``pixel_std`` in its config), so the
exported ONNX model and the served model take the raw pixels too. The processor is saved next to
every model (``pixel_processor.json``) with the shape the model expects.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
import torch

from distillery.errors import DataError, ModelError
from distillery.losses import IGNORE_INDEX
from distillery.prepared import LABEL
from distillery.progress import batches
from distillery.task_types.image_classification.images import to_arrays

TEACHER_LOGITS = "teacher_logits"
PROCESSOR_FILE = "pixel_processor.json"
INPUT = "pixel_values"


class PixelProcessor:
    """What a model's images must be: ``[channels, height, width]``, raw intensities up to ``pixel_max``."""

    model_input_names = [INPUT]
    needs_padding = False  # nothing is padded: every image has the model's shape

    def __init__(self, channels: int, height: int, width: int, pixel_max: float = 255.0):
        self.channels, self.height, self.width, self.pixel_max = int(channels), int(height), int(width), \
            float(pixel_max)

    @classmethod
    def from_spec(cls, spec: dict) -> "PixelProcessor":
        return cls(spec["channels"], spec["height"], spec["width"], spec.get("pixel_max", 255.0))

    @classmethod
    def from_pretrained(cls, directory, key: str = "") -> "PixelProcessor":
        path = Path(directory) / PROCESSOR_FILE
        try:
            return cls(**json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            raise ModelError(f"{key or directory}: no {PROCESSOR_FILE}; it is not an image model trained by "
                             "Distillery") from None
        except (ValueError, TypeError) as exc:
            raise ModelError(f"{path}: unreadable ({exc})") from None

    def save_pretrained(self, directory, **_) -> list[str]:
        path = Path(directory) / PROCESSOR_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.spec(), indent=2) + "\n", encoding="utf-8")
        return [str(path)]

    def spec(self) -> dict:
        return {"channels": self.channels, "height": self.height, "width": self.width, "pixel_max": self.pixel_max}

    def arrays(self, frame: pd.DataFrame) -> np.ndarray:
        """The frame's images as float32 ``[rows, channels, height, width]``; refused if another shape."""
        array = to_arrays(frame)
        if len(frame) and array.shape[1:] != (self.channels, self.height, self.width):
            raise DataError(f"the prepared images are {list(array.shape[1:])}, but the model takes "
                            f"[{self.channels}, {self.height}, {self.width}]; run `dvc repro` from prepare")
        return array


class ImageRows(torch.utils.data.Dataset):
    """Images, labels and optional teacher logits, held as arrays (a 60,000-image split is 188 MB)."""

    def __init__(self, pixels: np.ndarray, labels: np.ndarray, teacher_logits: Optional[np.ndarray] = None):
        self.pixels, self.labels, self.teacher_logits = pixels, labels, teacher_logits

    def __len__(self) -> int:
        return len(self.pixels)

    def __getitem__(self, index: int) -> dict:
        item = {INPUT: self.pixels[index], "labels": self.labels[index]}
        if self.teacher_logits is not None:
            item[TEACHER_LOGITS] = self.teacher_logits[index]
        return item


def dataset(frame: pd.DataFrame, processor: PixelProcessor, teacher_logits: Optional[np.ndarray] = None) -> ImageRows:
    labels = frame[LABEL].to_numpy(dtype=np.int64) if LABEL in frame.columns \
        else np.full(len(frame), IGNORE_INDEX, dtype=np.int64)
    logits = None if teacher_logits is None else np.asarray(teacher_logits, dtype=np.float32)
    return ImageRows(processor.arrays(frame), labels, logits)


class Collator:
    """Stacks images, labels and teacher logits."""

    def __call__(self, features: list[dict]) -> dict:
        batch = {INPUT: torch.from_numpy(np.stack([f[INPUT] for f in features])),
                 "labels": torch.tensor([int(f["labels"]) for f in features], dtype=torch.long)}
        if TEACHER_LOGITS in features[0]:
            batch[TEACHER_LOGITS] = torch.from_numpy(np.stack([f[TEACHER_LOGITS] for f in features]))
        return batch


@torch.inference_mode()
def predict_logits(model, processor: PixelProcessor, frame: pd.DataFrame, batch_size: int) -> np.ndarray:
    """Logits ``[len(frame), num_labels]`` in the frame's row order."""
    model.eval()
    pixels = processor.arrays(frame)
    logits = np.zeros((len(frame), model.config.num_labels), dtype=np.float32)
    for start in batches(len(frame), batch_size):
        logits[start:start + batch_size] = model(pixel_values=torch.from_numpy(pixels[start:start + batch_size])) \
            .logits.float().numpy()
    return logits


def batch(processor: PixelProcessor, frame: pd.DataFrame, size: int) -> dict:
    """``size`` real images (cycled), as the ONNX model's numpy input."""
    rows = [i % len(frame) for i in range(size)]
    return {INPUT: processor.arrays(frame.iloc[rows])}
