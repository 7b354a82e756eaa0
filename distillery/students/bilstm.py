"""Student family ``bilstm`` (Tang et al. 2019, "Distilling Task-Specific Knowledge from BERT into Simple
Neural Networks"): embeddings over the teacher's tokenizer vocabulary, one bidirectional LSTM layer,
max-pooling over the valid time steps, and a ReLU MLP with dropout to the classes. The embeddings
start from ``teacher.model``'s word-embedding matrix (``student.bilstm.init_from_teacher``; the
width is then the teacher's) or at random with ``student.bilstm.embedding_dim``. The defaults
(300-wide embeddings, 150 LSTM units per direction, a 200-unit hidden layer) are the paper's.
"""
from __future__ import annotations

from distillery.students import embedding
from distillery.students.base import StudentFamily


class BiLSTM(StudentFamily):
    name = "bilstm"

    def build(self, params, task, labels, teacher_dir, seed):
        from distillery.students.modeling import BiLSTMConfig

        cfg = params.student.bilstm
        tokenizer, vocab_size, weights = embedding.teacher_vocabulary(params, task, labels, cfg.init_from_teacher)
        config = BiLSTMConfig(vocab_size=vocab_size, hidden_size=cfg.hidden_size, mlp_hidden=cfg.mlp_hidden,
                              dropout=cfg.dropout, pad_token_id=tokenizer.pad_token_id,
                              embedding_dim=cfg.embedding_dim if weights is None else weights.shape[1])
        return embedding.build(task, config, labels, seed, weights), tokenizer

    def describe(self, params) -> str:
        cfg = params.student.bilstm
        return (f"bilstm: {embedding.source(cfg)}, BiLSTM {cfg.hidden_size} per direction, max-pool, "
                f"MLP {cfg.mlp_hidden} (dropout {cfg.dropout})")


FAMILY = BiLSTM()
