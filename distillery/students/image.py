"""What the image families (``mlp``, ``cnn``) share: the student is built on the teacher's pixel processor and
normalisation, at the sizes of its params section (the networks and their configs: :mod:`.vision`)."""
from __future__ import annotations

from pathlib import Path

from distillery.files import read_json
from distillery.students.base import StudentFamily


class ImageFamily(StudentFamily):
    """An image network whose sizes are ``student.<name>``."""

    def build(self, params, task, labels, teacher_dir, seed):
        import torch

        from distillery.students.vision import CONFIGS

        teacher_dir = Path(teacher_dir)
        processor = task.load_featuriser(str(teacher_dir), "models/teacher")
        teacher = read_json(teacher_dir / "config.json", "train_teacher")
        spec = {**processor.spec(), "pixel_mean": teacher.get("pixel_mean", 0.0),
                "pixel_std": teacher.get("pixel_std", 1.0)}
        config = CONFIGS[self.name](getattr(params.student, self.name), spec, f"student.{self.name}")
        torch.manual_seed(seed)
        return task.head_from_config(config, labels), processor
