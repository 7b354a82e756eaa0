"""Image classification, featurising: datasets for the Trainer, the collator, and batched inference over a
prepared split, with the pixel processor (the image task's "tokenizer", :mod:`.processor`).

The processor only reshapes: prepared pixel bytes become float32 ``[channels, height, width]`` raw
intensities. The normalisation is in the model (``pixel_mean``/``pixel_std`` in its config), so the
exported ONNX model and the served model take the raw pixels too.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd
import torch

from distillery.losses import IGNORE_INDEX
from distillery.prepared import LABEL
from distillery.progress import batches
from distillery.task_types.image_classification.processor import INPUT, PROCESSOR_FILE, PixelProcessor  # noqa: F401

TEACHER_LOGITS = "teacher_logits"


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
