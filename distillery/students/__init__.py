"""Student families: how a student is built, how it starts, and how it exports.

``FAMILIES`` is the one table from ``student.source`` in params.yaml to the module that builds it;
each module defines ``FAMILY``, an instance of :class:`~distillery.students.base.StudentFamily`.
Adding a family is one module here, its params keys and its tests. A family module is imported
only when a stage builds a student. The networks of families that are not transformers
(``boe``, ``bilstm``) live in :mod:`.modeling`, registered with the transformers auto classes by the
task type, so their saved students load like any other.
"""
from __future__ import annotations


FAMILIES: dict[str, str] = {
    "layers": "encoder layers selected from the teacher's pretrained (or fine-tuned) model, DistilBERT-style",
    "model": "any Hugging Face model (Hub id or local path) with its own tokenizer",
    "config": "the teacher's architecture built from scratch at the sizes in student.config, teacher's tokenizer",
    "boe": "bag of embeddings: mean (or sum) of token embeddings, then a linear layer; teacher's tokenizer",
    "bilstm": "Tang et al. 2019: embeddings, one BiLSTM layer, max-pooling, a ReLU MLP; teacher's tokenizer",
    "mlp": "images: flattened pixels, ReLU layers of student.mlp.hidden_sizes, the classes (the primer's networks)",
    "cnn": "images: conv + ReLU + max-pool blocks (student.cnn.channels), a ReLU layer, the classes",
}
