"""Student family ``config``: the teacher's architecture, built from scratch at the sizes in
``student.config`` (layers, width, heads, feed-forward size), with the teacher's tokenizer. Nothing
is copied from the teacher: every weight starts random, so the student owes what it knows to the
training data and, when distilled, to the teacher's outputs.
"""
from __future__ import annotations

import torch

from distillery.errors import ConfigError
from distillery.hf import from_pretrained, load_tokenizer, resolve_model
from distillery.students.base import StudentFamily
from distillery.students.layers import per_layer


# The feed-forward width under each architecture's own name, in the order looked for: BERT-likes, DistilBERT,
# GPT-2, BART/OPT, T5.
FFN_KEYS = ("intermediate_size", "hidden_dim", "n_inner", "ffn_dim", "d_ff")


def student_config(params):
    """The teacher's transformers config with the sizes of ``student.config``."""
    from transformers import AutoConfig

    sizes = params.student.config  # validated at load: hidden_size is divisible by num_heads
    name = resolve_model(params.teacher.model, "teacher.model")
    config = from_pretrained(AutoConfig, name, "teacher.model")
    native = config.to_dict()  # its own names: a DistilBERT config has hidden_dim, not intermediate_size
    ffn = next((key for key in FFN_KEYS if key in native), None)
    if ffn is None:
        raise ConfigError(f"student.config: the teacher's architecture ({config.model_type}) names its feed-forward "
                          f"width none of {', '.join(FFN_KEYS)}; use student.source: layers or model")
    config.hidden_size = sizes.hidden_size  # through the config's attribute_map where it renames these
    config.num_hidden_layers = sizes.num_layers
    per_layer(config, list(range(sizes.num_layers)))  # the teacher's pattern of layer kinds, from its first layer
    config.num_attention_heads = sizes.num_heads
    setattr(config, ffn, sizes.intermediate_size)
    built = (config.hidden_size, config.num_hidden_layers, config.num_attention_heads)
    if built != (sizes.hidden_size, sizes.num_layers, sizes.num_heads):
        raise ConfigError(f"student.config: the teacher's architecture ({config.model_type}) did not take the sizes "
                          f"(hidden, layers, heads {built}); use student.source: layers or model")
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
