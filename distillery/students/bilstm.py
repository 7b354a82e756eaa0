"""Student family ``bilstm`` (Tang et al. 2019, "Distilling Task-Specific Knowledge from BERT into Simple
Neural Networks"): embeddings over the teacher's tokenizer vocabulary, one bidirectional LSTM layer,
max-pooling over the valid time steps, and a ReLU MLP with dropout to the classes. The embeddings
start from ``teacher.model``'s word-embedding matrix (``student.bilstm.init_from_teacher``; the
width is then the teacher's) or at random with ``student.bilstm.embedding_dim``. The defaults
(300-wide embeddings, 150 LSTM units per direction, a 200-unit hidden layer) are the paper's.
"""
from __future__ import annotations

from distillery.students import embedding


class BiLSTM(embedding.EmbeddingFamily):
    name = "bilstm"

    def model_config(self, cfg, **shared):
        from distillery.students.modeling import BiLSTMConfig

        return BiLSTMConfig(hidden_size=cfg.hidden_size, mlp_hidden=cfg.mlp_hidden, dropout=cfg.dropout, **shared)

    def describe(self, params) -> str:
        cfg = params.student.bilstm
        return (f"bilstm: {embedding.source(cfg)}, BiLSTM {cfg.hidden_size} per direction, max-pool, "
                f"MLP {cfg.mlp_hidden} (dropout {cfg.dropout})")


FAMILY = BiLSTM()
