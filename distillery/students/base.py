"""The interface every student family implements."""
from __future__ import annotations

from pathlib import Path
from typing import Optional


class StudentFamily:
    """How one kind of student is built (and from what), which teacher layers it mirrors, how it exports."""

    name: str = ""

    def build(self, params, task, labels: list, teacher_dir: Path, seed: int) -> tuple[object, object]:
        """The untrained student and its featuriser (tokenizer), deterministically for ``seed``."""
        raise NotImplementedError

    def layer_map(self, params, teacher) -> Optional[list[tuple[int, int]]]:
        """(student layer, teacher layer) pairs for the hidden-state loss, or None when layers do not correspond."""
        return None

    def describe(self, params) -> str:
        """One line naming the student, for reports that set recipes side by side."""
        raise NotImplementedError

    def export_onnx(self, task, model, tokenizer, path: Path, opset: int) -> list[str]:
        """ONNX export; transformer students export through their task type's head."""
        return task.export_onnx(model, tokenizer, path, opset)
