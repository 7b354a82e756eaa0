"""Student family ``config``: the teacher's architecture, built from scratch at the sizes in
``student.config`` (layers, width, heads, feed-forward size), with the teacher's tokenizer. Nothing
is copied from the teacher: every weight starts random, so the student owes what it knows to the
training data and, when distilled, to the teacher's outputs.
"""
from __future__ import annotations

import torch

from distillery.hf import from_pretrained, load_tokenizer, resolve_model
from distillery.students.base import StudentFamily


def student_config(params):
    """The teacher's transformers config with the sizes of ``student.config``."""
    from transformers import AutoConfig

    sizes = params.student.config  # validated at load: hidden_size is divisible by num_heads
    name = resolve_model(params.teacher.model, "teacher.model")
    config = from_pretrained(AutoConfig, name, "teacher.model")
    config.hidden_size = sizes.hidden_size
    config.num_hidden_layers = sizes.num_layers
    config.num_attention_heads = sizes.num_heads
    config.intermediate_size = sizes.intermediate_size
    return config, name


class FromConfig(StudentFamily):
    name = "config"

    def build(self, params, task, labels, teacher_dir, seed):
        config, name = student_config(params)
        torch.manual_seed(seed)
        return task.head_from_config(config, labels), load_tokenizer(name, "teacher.model")

    def describe(self, params) -> str:
        sizes = params.student.config
        return (f"config: {sizes.num_layers} layers, width {sizes.hidden_size}, {sizes.num_heads} heads, "
                f"ffn {sizes.intermediate_size}, from scratch")


FAMILY = FromConfig()
