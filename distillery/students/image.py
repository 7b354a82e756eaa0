"""What the image families (``mlp``, ``cnn``) share: their model config from a params section and the
images' spec, and the student built on the teacher's pixel processor and normalisation."""
from __future__ import annotations

from pathlib import Path

from distillery.errors import ModelError
from distillery.files import read_json
from distillery.students.base import StudentFamily


class ImageFamily(StudentFamily):
    """An image network whose sizes are ``student.<name>`` (and, as a teacher, ``teacher.<name>``)."""

    def model_config(self, cfg, spec: dict, key: str = ""):
        """The transformers config for sizes ``cfg`` (the params section at ``key``) and images ``spec``
        (channels, height, width, pixel_mean, pixel_std)."""
        raise NotImplementedError

    def build(self, params, task, labels, teacher_dir, seed):
        import torch

        teacher_dir = Path(teacher_dir)
        processor = task.load_featuriser(str(teacher_dir), "models/teacher")
        teacher = read_json(teacher_dir / "config.json", "train_teacher")
        spec = {**processor.spec(), "pixel_mean": teacher.get("pixel_mean", 0.0),
                "pixel_std": teacher.get("pixel_std", 1.0)}
        torch.manual_seed(seed)
        return task.head_from_config(self.model_config(getattr(params.student, self.name), spec), labels), processor


def image_spec(spec: dict) -> dict:
    """The config keys every image network records: its input shape and its normalisation."""
    return {"channels": int(spec["channels"]), "height": int(spec["height"]), "width": int(spec["width"]),
            "pixel_mean": float(spec["pixel_mean"]), "pixel_std": float(spec["pixel_std"])}


def check_pooling(channels: list[int], spec: dict, key: str) -> None:
    from distillery.students.vision import pooled_size

    side = min(pooled_size(spec["height"], len(channels)), pooled_size(spec["width"], len(channels)))
    if side < 1:
        raise ModelError(f"{key}.channels: {len(channels)} blocks of 2x2 max-pooling shrink "
                         f"{spec['height']}x{spec['width']} images to nothing; use at most "
                         f"{min(spec['height'], spec['width']).bit_length() - 1} blocks")
