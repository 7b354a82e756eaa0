"""The exported classifier's last encoder layer on the first token only.

A BERT-style sequence classifier reads one position of the last layer, the first ([CLS], ``<s>``): BERT's pooler
takes ``hidden[:, 0]``, RoBERTa's and ELECTRA's heads ``features[:, 0, :]``. In the last layer every other
position's query, attention output and feed-forward block are computed and thrown away: for the 1-layer default
student at 64 tokens, three quarters of its matrix work. :class:`FirstTokenClassifier` computes the same logits
without them: every layer but the last as the model does, then the last layer's keys and values over all tokens
and its query, attention output and feed-forward block on the first token alone.

Exact, not approximate: :func:`first_token_classifier` builds it only for an architecture it knows
(``KNOWN``, absolute positions, an encoder) and only when its logits equal the model's on a padded check batch;
otherwise the export traces the whole model as before. The export's fp32 parity gate then compares the file with
the whole PyTorch model on every test row. Files exported so say ``FIRST_TOKEN`` under ``LAST_LAYER_KEY`` in their
metadata: the benchmark counts their FLOPs on this module, not on the whole model.
"""
from __future__ import annotations

import copy
from typing import Optional

import torch

KNOWN = ("bert", "roberta", "xlm-roberta", "camembert", "electra")
FIRST_TOKEN = "first_token"  # an exported file's LAST_LAYER_KEY metadata (distillery.onnx_runtime) when so exported
CHECK_ATOL = 1e-4


def _without_last_layer(base: torch.nn.Module) -> torch.nn.Module:
    """``base`` (a BertModel-like encoder) sharing its weights, without its last layer and pooler."""
    trunk = copy.copy(base)
    trunk._modules = dict(base._modules)  # children are looked up here: the copy's own dict, not the model's
    encoder = copy.copy(base.encoder)
    encoder._modules = dict(base.encoder._modules)
    encoder._modules["layer"] = torch.nn.ModuleList(list(base.encoder.layer)[:-1])
    trunk._modules["encoder"] = encoder
    if "pooler" in trunk._modules:
        trunk._modules["pooler"] = None
    return trunk


class FirstTokenClassifier(torch.nn.Module):
    """Positional inputs in, logits out, as the whole model's, with the last layer computed for position 0."""

    def __init__(self, model: torch.nn.Module, input_names: list[str]):
        super().__init__()
        self.model, self.input_names = model, input_names
        base = model.base_model
        self.trunk = _without_last_layer(base)
        self.last = base.encoder.layer[-1]
        self.pooler = getattr(base, "pooler", None)

    def _attention(self, hidden: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
        attention = self.last.attention.self
        size, heads = attention.attention_head_size, attention.num_attention_heads
        batch, length = hidden.shape[0], hidden.shape[1]
        query = attention.query(hidden[:, :1]).view(batch, 1, heads, size).transpose(1, 2)
        key = attention.key(hidden).view(batch, length, heads, size).transpose(1, 2)
        value = attention.value(hidden).view(batch, length, heads, size).transpose(1, 2)
        scores = torch.matmul(query, key.transpose(2, 3)) * attention.scaling
        if mask is not None:  # as the model's additive mask: the dtype's minimum where there is padding
            scores = scores + (1.0 - mask[:, None, None, :].to(scores.dtype)) * torch.finfo(scores.dtype).min
        weights = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)
        return torch.matmul(weights, value).transpose(1, 2).reshape(batch, 1, heads * size)

    def forward(self, *inputs: torch.Tensor, **named: torch.Tensor) -> torch.Tensor:
        named = {**dict(zip(self.input_names, inputs)), **named}  # positional as traced, or by keyword
        hidden = self.trunk(**named).last_hidden_state  # the last layer's input, every position
        first = self.last.attention.output(self._attention(hidden, named.get("attention_mask")), hidden[:, :1])
        first = self.last.feed_forward_chunk(first)  # (batch, 1, hidden): the only position the head reads
        if self.pooler is not None:  # BERT: pooler on position 0, dropout, linear classifier
            return self.model.classifier(self.model.dropout(self.pooler(first)))
        return self.model.classifier(first)  # RoBERTa, ELECTRA: the head takes features[:, 0, :] itself


def _eligible(model: torch.nn.Module) -> bool:
    config = getattr(model, "config", None)
    base = getattr(model, "base_model", None)
    if config is None or base is None or getattr(config, "model_type", None) not in KNOWN:
        return False
    if getattr(config, "is_decoder", False) or getattr(config, "position_embedding_type", "absolute") != "absolute":
        return False
    layers = getattr(getattr(base, "encoder", None), "layer", None)
    if not layers or not isinstance(getattr(model, "classifier", None), torch.nn.Module):
        return False
    attention = getattr(getattr(layers[-1], "attention", None), "self", None)
    needed = ("query", "key", "value", "attention_head_size", "num_attention_heads", "scaling")
    if attention is None or not all(hasattr(attention, name) for name in needed):
        return False
    has_pooler = getattr(base, "pooler", None) is not None
    return not has_pooler or (isinstance(model.classifier, torch.nn.Linear) and hasattr(model, "dropout"))


def _check_batch(model: torch.nn.Module, input_names: list[str]) -> dict:
    """Three rows of 12 tokens, two of them padded: a fixed, seeded check of the logits."""
    generator = torch.Generator().manual_seed(0)
    vocabulary = int(getattr(model.config, "vocab_size", 1000))
    ids = torch.randint(5, max(6, vocabulary), (3, 12), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0
    mask[2, 3:] = 0
    pad = getattr(model.config, "pad_token_id", None) or 0
    ids = ids.masked_fill(mask == 0, pad)
    batch = {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}
    return {name: batch[name] for name in input_names}


def first_token_classifier(model: torch.nn.Module, input_names: list[str]) -> Optional[FirstTokenClassifier]:
    """The first-token module of ``model`` (in the model's train/eval mode), or None: an architecture it does not
    know, or logits that differ from the model's by more than ``CHECK_ATOL`` on the check batch."""
    if not _eligible(model) or "input_ids" not in input_names:
        return None
    was_training = model.training
    model.eval()
    try:
        wrapper = FirstTokenClassifier(model, input_names).eval()
        batch = _check_batch(model, input_names)
        with torch.inference_mode():
            expected = model(**batch).logits
            got = wrapper(*batch.values())
        if got.shape != expected.shape or not torch.allclose(got, expected, atol=CHECK_ATOL, rtol=0):
            return None
        return wrapper.train(was_training)  # in the model's mode, as its shared modules are left
    except Exception:  # an architecture whose modules look alike but work otherwise: export the whole model
        return None
    finally:
        model.train(was_training)
