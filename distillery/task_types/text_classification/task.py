"""Task type ``text_classification``: single texts, or text pairs (``data.text_pair_column``), in; one
label out. The teacher's cached output is its logits ``[rows, classes]``; the student learns from
them through the KD loss of :mod:`distillery.losses`; scoring is accuracy, macro P/R/F1 and ROC AUC;
the ONNX model takes the tokenizer's inputs and returns ``logits``; the served model takes ``text``
(and ``text_pair``) and answers a label with its probabilities.

Rows are read and checked in :mod:`.rows` (the ``prepare`` stage only), and the served model is
packaged and scored in :mod:`.serving` (the ``register`` stage only).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd
import torch.nn.functional as F

from distillery.hf import quiet_from_pretrained
from distillery.losses import IGNORE_INDEX, distillation_loss
from distillery.metrics import classification_metrics
from distillery.prepared import LABEL
from distillery.task_types.base import TaskType
from distillery.task_types.text_classification import features, onnx, scoring


def _label_kwargs(labels: Optional[list]) -> dict:
    if labels is None:
        return {}
    return dict(num_labels=len(labels), id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)})


def register_student_models() -> None:
    """The student families' own sequence classifiers (bag of embeddings, BiLSTM) load like any transformers
    model once registered with its auto classes: a saved student directory then needs no Distillery-specific
    loading in any stage."""
    from distillery.students.modeling import register_auto_classes

    register_auto_classes()


class TextClassification(TaskType):
    name = "text_classification"
    primary_metric, secondary_metric = "accuracy", "macro_f1"
    teacher_outputs = ("logits",)
    teacher_key = features.TEACHER_LOGITS

    def featurise(self, frame, tokenizer, max_length, teacher_outputs=None):
        return features.tokenize(frame, tokenizer, max_length, teacher_outputs)

    def collator(self, tokenizer):
        return features.Collator(tokenizer)

    def auto_model(self):
        """The transformers auto class of this task's head, with Distillery's own networks registered."""
        from transformers import AutoModelForSequenceClassification

        register_student_models()
        return AutoModelForSequenceClassification

    def load_model(self, name: str, key: str, labels: Optional[list] = None):
        kwargs = {**_label_kwargs(labels), "ignore_mismatched_sizes": True} if labels is not None else {}
        return quiet_from_pretrained(self.auto_model(), name, key, **kwargs)

    def head_from_config(self, config, labels: list):
        for key, value in _label_kwargs(labels).items():
            setattr(config, key, value)
        return self.auto_model().from_config(config)

    def predict(self, model, tokenizer, frame, max_length, batch_size) -> np.ndarray:
        return features.predict_logits(model, tokenizer, frame, max_length, batch_size)

    def empty_outputs(self, num_labels: int) -> np.ndarray:
        return np.zeros((0, num_labels), dtype=np.float32)

    def outputs_of(self, model_output):
        return model_output.logits

    def supervised_loss(self, student_outputs, labels):
        return F.cross_entropy(student_outputs, labels, ignore_index=IGNORE_INDEX)

    def distillation_loss(self, student_outputs, teacher_outputs, labels, alpha, temperature, kind):
        return distillation_loss(student_outputs, teacher_outputs, labels, alpha, temperature, kind)

    def metrics(self, outputs: np.ndarray, frame: pd.DataFrame, labels: list) -> dict:
        return classification_metrics(outputs, frame[LABEL].to_numpy(), len(labels))

    def evaluation_report(self, outputs: np.ndarray, frame: pd.DataFrame, labels: list) -> dict:
        return scoring.evaluation_report(outputs, frame, labels)

    def trainer_metrics(self, eval_pred) -> dict:
        logits, references = eval_pred.predictions, eval_pred.label_ids
        metrics = classification_metrics(np.asarray(logits), np.asarray(references))
        return {k: v for k, v in metrics.items() if v is not None}

    def export_onnx(self, model, tokenizer, path, opset):
        return onnx.export_onnx(model, tokenizer, path, opset)

    def exported_module(self, load_model, tokenizer, onnx_path):
        return onnx.exported_module(load_model, tokenizer, onnx_path)

    def parity(self, model, tokenizer, fp32_path, int8_path, frame, max_length, export_cfg) -> dict:
        return onnx.parity(model, tokenizer, fp32_path, int8_path, frame, max_length, export_cfg)

    def benchmark_inputs(self, tokenizer, frame, batch, length) -> dict:
        return features.padded_batch(tokenizer, frame, batch, length)


TASK_TYPE = TextClassification()
