"""The networks of the embedding-based student families, as transformers models so that every stage
saves and loads them like any other: a bag of embeddings (``distillery_boe``) and Tang et al.'s
BiLSTM (``distillery_bilstm``).

Both read the teacher tokenizer's ``input_ids`` and ``attention_mask`` and ignore ``token_type_ids``
(a sentence pair is the two texts joined by the tokenizer's separator token). Padding never changes
an answer: pooling is masked, and the LSTM runs each direction over the valid tokens only.

:func:`register_auto_classes` makes ``AutoConfig`` and ``AutoModelForSequenceClassification`` know
them; the text-classification task type calls it before it loads or builds a model, so a saved
student directory loads with ``from_pretrained`` and no ``trust_remote_code``. Importing this module
registers nothing.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn
from transformers import PreTrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

BOE_TYPE, BILSTM_TYPE = "distillery_boe", "distillery_bilstm"


class BagOfEmbeddingsConfig(PreTrainedConfig):
    model_type = BOE_TYPE
    vocab_size: int = 30522
    embedding_dim: int = 300
    pooling: str = "mean"  # mean | sum over the valid (non-padding) tokens
    initializer_range: float = 0.02


class BiLSTMConfig(PreTrainedConfig):
    model_type = BILSTM_TYPE
    vocab_size: int = 30522
    embedding_dim: int = 300
    hidden_size: int = 150  # per direction
    mlp_hidden: int = 200
    dropout: float = 0.1
    initializer_range: float = 0.02


def _mask(input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor]) -> torch.Tensor:
    return torch.ones_like(input_ids) if attention_mask is None else attention_mask


def _output(logits: torch.Tensor, labels: Optional[torch.Tensor]) -> SequenceClassifierOutput:
    loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
    return SequenceClassifierOutput(loss=loss, logits=logits)


class _EmbeddingStudent(PreTrainedModel):
    """What both share: an embedding table over the teacher's vocabulary (``get_input_embeddings``)."""

    main_input_name = "input_ids"

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings = value


class BagOfEmbeddingsForSequenceClassification(_EmbeddingStudent):
    """The mean (or sum) of the token embeddings, then one linear layer: a FastText-style linear model."""

    config_class = BagOfEmbeddingsConfig
    base_model_prefix = "boe"

    def __init__(self, config: BagOfEmbeddingsConfig):
        super().__init__(config)
        self.embeddings = nn.Embedding(config.vocab_size, config.embedding_dim)
        self.classifier = nn.Linear(config.embedding_dim, config.num_labels)
        self.post_init()

    def forward(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None,
                token_type_ids: Optional[torch.Tensor] = None, labels: Optional[torch.Tensor] = None,
                **kwargs) -> SequenceClassifierOutput:
        mask = _mask(input_ids, attention_mask).unsqueeze(-1).to(self.embeddings.weight.dtype)
        pooled = (self.embeddings(input_ids) * mask).sum(dim=1)
        if self.config.pooling == "mean":
            pooled = pooled / mask.sum(dim=1).clamp(min=1.0)
        return _output(self.classifier(pooled), labels)


def reverse_valid(tensor: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Each row's first ``lengths[row]`` steps in reverse order, the padding after them left in place.

    Applied twice it gives back the input, so it also maps the backward LSTM's outputs back into
    reading order."""
    positions = torch.arange(tensor.shape[1], device=tensor.device).unsqueeze(0)
    last = lengths.unsqueeze(1) - 1
    index = torch.where(positions <= last, last - positions, positions)
    return tensor.gather(1, index.unsqueeze(-1).expand(-1, -1, tensor.shape[2]))


class BiLSTMForSequenceClassification(_EmbeddingStudent):
    """Tang et al. 2019, "Distilling Task-Specific Knowledge from BERT into Simple Neural Networks":
    embeddings, one bidirectional LSTM layer, max-pooling over time, a ReLU MLP to the classes.

    The two directions are two one-directional LSTMs; the backward one reads each row's valid tokens
    reversed (:func:`reverse_valid`), so right padding (the teacher tokenizer's) never reaches a
    valid step, and the max is taken over valid steps only. A padded batch thus gives each row's
    unpadded answer, in PyTorch and in the exported ONNX graph alike."""

    config_class = BiLSTMConfig
    base_model_prefix = "bilstm"

    def __init__(self, config: BiLSTMConfig):
        super().__init__(config)
        self.embeddings = nn.Embedding(config.vocab_size, config.embedding_dim)
        self.lstm_forward = nn.LSTM(config.embedding_dim, config.hidden_size, batch_first=True)
        self.lstm_backward = nn.LSTM(config.embedding_dim, config.hidden_size, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(2 * config.hidden_size, config.mlp_hidden), nn.ReLU(),
                                 nn.Dropout(config.dropout))
        self.classifier = nn.Linear(config.mlp_hidden, config.num_labels)
        self.post_init()

    def forward(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None,
                token_type_ids: Optional[torch.Tensor] = None, labels: Optional[torch.Tensor] = None,
                **kwargs) -> SequenceClassifierOutput:
        mask = _mask(input_ids, attention_mask)
        lengths = mask.sum(dim=1)
        embedded = self.embeddings(input_ids)
        forward_states, _ = self.lstm_forward(embedded)
        backward_states, _ = self.lstm_backward(reverse_valid(embedded, lengths))
        states = torch.cat([forward_states, reverse_valid(backward_states, lengths)], dim=-1)
        # LSTM outputs lie in (-1, 1): a padding step filled with -2 never wins the max
        pooled = states.masked_fill(mask.unsqueeze(-1) == 0, -2.0).max(dim=1).values
        return _output(self.classifier(self.mlp(pooled)), labels)


_REGISTERED = False


def register_auto_classes() -> None:
    """Make ``AutoConfig`` / ``AutoModelForSequenceClassification`` load and build these models (idempotent)."""
    global _REGISTERED
    if _REGISTERED:
        return
    from transformers import AutoConfig, AutoModelForSequenceClassification

    for config, model in ((BagOfEmbeddingsConfig, BagOfEmbeddingsForSequenceClassification),
                          (BiLSTMConfig, BiLSTMForSequenceClassification)):
        AutoConfig.register(config.model_type, config, exist_ok=True)
        AutoModelForSequenceClassification.register(config, model, exist_ok=True)
    _REGISTERED = True
