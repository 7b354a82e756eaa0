"""Student family ``cnn`` (task image_classification): blocks of a conv (same padding), ReLU and 2x2
max-pooling, one per entry of ``student.cnn.channels``, a ReLU layer of ``hidden_size``, the classes."""
from __future__ import annotations

from distillery.students.image import ImageFamily, check_pooling, image_spec


class ImageCnn(ImageFamily):
    name = "cnn"

    def model_config(self, cfg, spec, key=""):
        from distillery.students.vision import ImageCNNConfig

        check_pooling(list(cfg.channels), spec, key or "student.cnn")
        return ImageCNNConfig(conv_channels=list(cfg.channels), kernel_size=cfg.kernel_size,
                              hidden_size=cfg.hidden_size, dropout=cfg.dropout, **image_spec(spec))

    def describe(self, params) -> str:
        cfg = params.student.cnn
        return f"cnn: channels {list(cfg.channels)}, kernel {cfg.kernel_size}, hidden {cfg.hidden_size}"


FAMILY = ImageCnn()
