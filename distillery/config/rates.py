"""``learning_rate: auto``: the peak learning rate of the model being trained, chosen by what it is.

A BiLSTM student trained at the transformer student's 1e-4 scored 66.3% on the default tweets as its labels-only
baseline, against 71.2% at 1e-3 (seed 1, 4 epochs, 2026-12-07): a user switching ``student.source`` had to know to
change the rate too. Each value below is the one its family was measured with (README: Student families; the image
profiles). ``train_settings`` is what every training reads.
"""
from __future__ import annotations

import dataclasses

# by student.source; `model` (any Hugging Face checkpoint) takes the `layers` student's, a fine-tuning rate
STUDENT_RATES = {"layers": 1e-4, "model": 1e-4, "config": 5e-4, "boe": 1e-3, "bilstm": 1e-3, "mlp": 5e-3, "cnn": 5e-3}
PRETRAINED_TEACHER_RATE = 5e-5  # a pretrained transformer fine-tuned (the default teacher)
SCRATCH_TEACHER_RATE = 2e-3     # teacher.model scratch:cnn | scratch:mlp (the image profiles)


def auto_rate(params, which: str) -> float:
    """The rate ``auto`` means for ``which`` (``teacher`` or ``distill``) under these params."""
    if which == "distill":
        return STUDENT_RATES[params.student.source]
    return SCRATCH_TEACHER_RATE if params.teacher.model.startswith("scratch:") else PRETRAINED_TEACHER_RATE


def train_settings(params, which: str):
    """``teacher.train`` or ``distill.train`` (``which``: ``teacher`` | ``distill``) with ``learning_rate: auto``
    made a number; as it is otherwise."""
    cfg = params.distill.train if which == "distill" else params.teacher.train
    if cfg.learning_rate != "auto":
        return cfg
    return dataclasses.replace(cfg, learning_rate=auto_rate(params, which))
