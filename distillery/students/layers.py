"""Student family ``layers``: the teacher's embeddings and a chosen subset of its encoder layers,
copied exactly (DistilBERT-style initialisation, Sanh et al. 2019). ``student.init`` picks the
source: the pretrained ``teacher.model`` (a fresh head) or the fine-tuned teacher (its head too).
"""
from __future__ import annotations

import copy
import re
from typing import Union

import torch
from torch import nn

from distillery.errors import ModelError
from distillery.hf import ensure_padding, load_tokenizer, resolve_model
from distillery.students.base import StudentFamily


def layer_list_name(model: nn.Module) -> str:
    """Dotted name of the ``ModuleList`` holding the encoder layers (``bert.encoder.layer`` for BERT)."""
    depth = model.config.num_hidden_layers
    for name, module in model.named_modules():
        # ALBERT's layer groups are not its layers (shared ALBERT has one group; one group per layer still keeps
        # num_hidden_groups, which a shallower copy cannot fill)
        if isinstance(module, nn.ModuleList) and len(module) == depth and not name.endswith("albert_layer_groups"):
            return name
    raise ModelError(f"cannot find the encoder layers of {type(model).__name__}; "
                     "use student.source: model or config for this architecture")


def per_layer(config, layers: list[int]) -> None:
    """Re-index the config's per-layer settings to the chosen layers: ModernBERT's (and others') ``layer_types``,
    one attention kind per layer, must have one entry per layer, and a copied layer keeps its own kind (an index
    past the list's end wraps around: a config student deeper than its teacher repeats the pattern)."""
    kinds = getattr(config, "layer_types", None)
    if isinstance(kinds, (list, tuple)) and kinds:
        config.layer_types = [kinds[i % len(kinds)] for i in layers]


def resolve_layers(layers: Union[list, str], depth: int) -> list[int]:
    if layers == "every_other":
        return list(range(0, depth, 2))
    bad = [i for i in layers if i >= depth]
    if bad:
        raise ModelError(f"student.layers: index {bad[0]} does not exist; the source model has {depth} "
                         f"encoder layers (0-{depth - 1})")
    return list(layers)


def select_layers(task, source: nn.Module, layers: list[int]) -> nn.Module:
    """A shallower copy of ``source``: embeddings, the chosen encoder layers, pooler and head, copied exactly."""
    config = copy.deepcopy(source.config)
    config.num_hidden_layers = len(layers)
    per_layer(config, layers)
    student = task.head_from_config(config, None)
    prefix = layer_list_name(source) + "."
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    source_state = source.state_dict()
    state = {}
    for key in student.state_dict():
        match = pattern.match(key)
        source_key = key if match is None else \
            f"{prefix}{layers[int(match.group(1))]}.{key[match.end():]}"
        state[key] = source_state[source_key].detach().clone()
    student.load_state_dict(state)
    return student


class LayerSelection(StudentFamily):
    name = "layers"

    def build(self, params, task, labels, teacher_dir, seed):
        cfg = params.student
        torch.manual_seed(seed)
        if cfg.init == "finetuned":
            source = task.load_model(str(teacher_dir), "models/teacher")
            tokenizer = load_tokenizer(str(teacher_dir), "models/teacher")
        else:
            pretrained = resolve_model(params.teacher.model, "teacher.model")
            source = task.load_model(pretrained, "teacher.model", labels)
            tokenizer = load_tokenizer(pretrained, "teacher.model")
            ensure_padding(source, tokenizer, "teacher.model")  # as train_teacher does: GPT-2 style has no pad token
        layers = resolve_layers(cfg.layers, source.config.num_hidden_layers)
        return select_layers(task, source, layers), tokenizer

    def layer_map(self, params, teacher):
        layers = resolve_layers(params.student.layers, teacher.config.num_hidden_layers)
        return [(i, layer) for i, layer in enumerate(layers)]

    def describe(self, params) -> str:
        return f"layers {params.student.layers} from {params.student.init}"


FAMILY = LayerSelection()
