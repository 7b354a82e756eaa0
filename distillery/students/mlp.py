"""Student family ``mlp`` (task image_classification): flattened pixels, ReLU layers of
``student.mlp.hidden_sizes``, then the classes. The primer's student is ``hidden_sizes: [4]`` (3.2K
parameters on 28x28 images) and its teacher ``[16]`` (13K)."""
from __future__ import annotations

from distillery.students.image import ImageFamily


class ImageMlp(ImageFamily):
    name = "mlp"

    def describe(self, params) -> str:
        cfg = params.student.mlp
        return f"mlp: hidden {list(cfg.hidden_sizes)}"


FAMILY = ImageMlp()
