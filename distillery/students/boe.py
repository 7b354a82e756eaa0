"""Student family ``boe``: a bag of embeddings, FastText-style (Joulin et al. 2017; as in "Distilling
BERT to a linear model"): the mean (or sum) of the token embeddings over the teacher's tokenizer
vocabulary, then one linear layer to the classes. The embeddings start from ``teacher.model``'s
word-embedding matrix (``student.boe.init_from_teacher``; the width is then the teacher's) or at
random with ``student.boe.embedding_dim``. Tang et al. 2019 train such students on the MSE between
logits with alpha = 0 (``distill.loss: mse``, ``distill.alpha: 0``); ``kl`` works as well.
"""
from __future__ import annotations

from distillery.students import embedding


class BagOfEmbeddings(embedding.EmbeddingFamily):
    name = "boe"

    def model_config(self, cfg, **shared):
        from distillery.students.modeling import BagOfEmbeddingsConfig

        return BagOfEmbeddingsConfig(pooling=cfg.pooling, **shared)

    def describe(self, params) -> str:
        cfg = params.student.boe
        return f"boe: {cfg.pooling} of {embedding.source(cfg)}, then a linear layer"


FAMILY = BagOfEmbeddings()
