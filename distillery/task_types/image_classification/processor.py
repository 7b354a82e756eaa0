"""The pixel processor, the image task's "tokenizer": it only reshapes prepared pixel bytes into float32
``[channels, height, width]`` raw intensities, and is saved next to every model
(``pixel_processor.json``) with the shape the model expects. In a module of its own (no torch), so
``register`` (:mod:`.serving`) reads it without loading the featuriser.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from distillery.errors import DataError, ModelError
from distillery.task_types.image_classification.pixels import to_arrays

PROCESSOR_FILE = "pixel_processor.json"
INPUT = "pixel_values"


class PixelProcessor:
    """What a model's images must be: ``[channels, height, width]``, raw intensities up to ``pixel_max``;
    ``pixel_min`` is the training data's darkest value (None in a processor saved before it was recorded)."""

    model_input_names = [INPUT]
    needs_padding = False  # nothing is padded: every image has the model's shape

    def __init__(self, channels: int, height: int, width: int, pixel_max: float = 255.0,
                 pixel_min: Optional[float] = None, resize: bool = False):
        self.channels, self.height, self.width, self.pixel_max = int(channels), int(height), int(width), \
            float(pixel_max)
        self.pixel_min = None if pixel_min is None else float(pixel_min)
        self.resize = bool(resize)  # data.image_size resized the training images: the served model resizes too

    @classmethod
    def from_spec(cls, spec: dict) -> "PixelProcessor":
        # 8-bit images run from 0 to 255, whatever the darkest pixel the training split happened to hold
        return cls(spec["channels"], spec["height"], spec["width"], spec.get("pixel_max", 255.0),
                   0.0 if spec.get("dtype") in ("uint8", "uint16") else spec.get("pixel_min"),
                   resize=spec.get("resized_to") is not None)

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
        spec = {"channels": self.channels, "height": self.height, "width": self.width, "pixel_max": self.pixel_max}
        spec = spec if self.pixel_min is None else {**spec, "pixel_min": self.pixel_min}
        return {**spec, "resize": True} if self.resize else spec  # written only when set: older files unchanged

    def arrays(self, frame: pd.DataFrame) -> np.ndarray:
        """The frame's images as float32 ``[rows, channels, height, width]``; refused if another shape."""
        array = to_arrays(frame)
        if len(frame) and array.shape[1:] != (self.channels, self.height, self.width):
            raise DataError(f"the prepared images are {list(array.shape[1:])}, but the model takes "
                            f"[{self.channels}, {self.height}, {self.width}]; run `dvc repro` from prepare")
        return array
