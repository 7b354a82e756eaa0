"""Student family ``cnn`` (task image_classification): blocks of a conv (same padding), ReLU and 2x2
max-pooling, one per entry of ``student.cnn.channels``, a ReLU layer of ``hidden_size``, the classes."""
from __future__ import annotations

from distillery.students.image import ImageFamily


class ImageCnn(ImageFamily):
    name = "cnn"

    def describe(self, params) -> str:
        cfg = params.student.cnn
        return f"cnn: channels {list(cfg.channels)}, kernel {cfg.kernel_size}, hidden {cfg.hidden_size}"


FAMILY = ImageCnn()
