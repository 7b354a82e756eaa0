"""What the embedding-based families (``boe``, ``bilstm``) share: the teacher's tokenizer and vocabulary,
and optionally its word-embedding matrix as their starting embeddings."""
from __future__ import annotations

from typing import Optional

import torch

from distillery.errors import ModelError
from distillery.hf import load_tokenizer, resolve_model
from distillery.students.base import StudentFamily


class EmbeddingFamily(StudentFamily):
    """A family whose model config comes from its params section (``student.<name>``) and the teacher's
    vocabulary: subclasses give ``model_config``."""

    def model_config(self, cfg, **shared):
        """The model's config from ``student.<name>`` and ``shared`` (vocab_size, pad_token_id, embedding_dim)."""
        raise NotImplementedError

    def build(self, params, task, labels, teacher_dir, seed):
        cfg = getattr(params.student, self.name)
        tokenizer, vocab_size, weights = teacher_vocabulary(params, task, labels, cfg.init_from_teacher)
        config = self.model_config(cfg, vocab_size=vocab_size, pad_token_id=tokenizer.pad_token_id,
                                   embedding_dim=cfg.embedding_dim if weights is None else weights.shape[1])
        return build(task, config, labels, seed, weights), tokenizer


def teacher_vocabulary(params, task, labels: list,
                       init_from_teacher: bool) -> tuple[object, int, Optional[torch.Tensor]]:
    """(the teacher's tokenizer, the vocabulary size, the word-embedding matrix of ``teacher.model`` or None).

    The tokenizer pads on the right (saved so with the student, so every stage and the served model pad
    alike): the BiLSTM takes each row's valid tokens to be its first ones."""
    name = resolve_model(params.teacher.model, "teacher.model")
    tokenizer = load_tokenizer(name, "teacher.model")
    if tokenizer.pad_token_id is None:
        raise ModelError("teacher.model: its tokenizer has no pad token, so batches cannot be padded for "
                         f"student.source: {params.student.source}")
    tokenizer.padding_side = tokenizer.init_kwargs["padding_side"] = "right"  # init_kwargs: what save_pretrained keeps
    if not init_from_teacher:
        return tokenizer, len(tokenizer), None
    embeddings = task.load_model(name, "teacher.model", labels).get_input_embeddings()
    if embeddings is None:
        raise ModelError(f"teacher.model: {name} has no input embeddings to start from; set "
                         f"student.{params.student.source}.init_from_teacher: false")
    weights = embeddings.weight.detach().clone()
    if weights.shape[0] < len(tokenizer):
        raise ModelError(f"teacher.model: its embedding matrix has {weights.shape[0]} rows but its tokenizer "
                         f"{len(tokenizer)} tokens; set student.{params.student.source}.init_from_teacher: false")
    return tokenizer, weights.shape[0], weights


def build(task, config, labels: list, seed: int, weights: Optional[torch.Tensor]):
    """The model for ``config`` (random for ``seed``), its embeddings copied from ``weights`` when given."""
    torch.manual_seed(seed)
    model = task.head_from_config(config, labels)
    if weights is not None:
        with torch.no_grad():
            model.get_input_embeddings().weight.copy_(weights)
    return model


def source(cfg) -> str:
    """How the embeddings start, for ``describe``."""
    return "the teacher's word embeddings" if cfg.init_from_teacher else f"{cfg.embedding_dim}-wide random embeddings"
