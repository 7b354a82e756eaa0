"""Student family ``model``: any Hugging Face model (a Hub id or a local directory) with its own
tokenizer, given a fresh head of the task's size."""
from __future__ import annotations

import torch

from distillery.hf import ensure_padding, load_tokenizer, resolve_model
from distillery.students.base import StudentFamily


class PretrainedModel(StudentFamily):
    name = "model"

    def build(self, params, task, labels, teacher_dir, seed):
        torch.manual_seed(seed)
        name = resolve_model(params.student.model, "student.model")
        model, tokenizer = task.load_model(name, "student.model", labels), load_tokenizer(name, "student.model")
        ensure_padding(model, tokenizer, "student.model")
        return model, tokenizer

    def describe(self, params) -> str:
        return f"model:{params.student.model}"


FAMILY = PretrainedModel()
