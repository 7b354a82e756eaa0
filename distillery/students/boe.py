"""Student family ``boe``: a bag of embeddings, FastText-style (Joulin et al. 2017; as in "Distilling
BERT to a linear model"): the mean (or sum) of the token embeddings over the teacher's tokenizer
vocabulary, then one linear layer to the classes. The embeddings start from ``teacher.model``'s
word-embedding matrix (``student.boe.init_from_teacher``; the width is then the teacher's) or at
random with ``student.boe.embedding_dim``. Tang et al. 2019 train such students on the MSE between
logits with alpha = 0 (``distill.loss: mse``, ``distill.alpha: 0``); ``kl`` works as well.
"""
from __future__ import annotations

from distillery.students import embedding
from distillery.students.base import StudentFamily


class BagOfEmbeddings(StudentFamily):
    name = "boe"

    def build(self, params, task, labels, teacher_dir, seed):
        from distillery.students.modeling import BagOfEmbeddingsConfig

        cfg = params.student.boe
        tokenizer, vocab_size, weights = embedding.teacher_vocabulary(params, task, labels, cfg.init_from_teacher)
        config = BagOfEmbeddingsConfig(vocab_size=vocab_size, pooling=cfg.pooling, pad_token_id=tokenizer.pad_token_id,
                                       embedding_dim=cfg.embedding_dim if weights is None else weights.shape[1])
        return embedding.build(task, config, labels, seed, weights), tokenizer

    def describe(self, params) -> str:
        cfg = params.student.boe
        return f"boe: {cfg.pooling} of {embedding.source(cfg)}, then a linear layer"


FAMILY = BagOfEmbeddings()
