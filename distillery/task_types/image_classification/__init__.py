"""Task type ``image_classification``: an image in, one label out (the primer's digits).

Prepared rows hold each image's pixels (raw bytes) and shape (:mod:`.images`, :mod:`.rows`); the
"tokenizer" is a :class:`~.features.PixelProcessor` that turns them into float32
``[channels, height, width]``. The networks (``mlp``, ``cnn``; :mod:`distillery.students.vision`)
normalise inside, with the training split's pixel mean and standard deviation recorded in their
config, so the ONNX model (input ``pixel_values`` ``[batch, channels, height, width]``) and the served
model take raw pixels. The teacher is built from scratch (``teacher.model: scratch:cnn`` or
``scratch:mlp``, at ``teacher.cnn`` / ``teacher.mlp``'s sizes) or loaded from a trained image model's
directory. The cache, loss, metrics and gate are text classification's: logits, KL or MSE, accuracy
and macro-F1.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
import torch.nn.functional as F

from distillery.errors import DataError, ModelError
from distillery.files import read_json
from distillery.hf import quiet_from_pretrained
from distillery.losses import IGNORE_INDEX, distillation_loss
from distillery.metrics import classification_metrics
from distillery.prepared import LABEL
from distillery.task_types.base import TaskType
from distillery.task_types.image_classification import features, onnx
from distillery.task_types.text_classification import scoring


def _label_kwargs(labels: Optional[list]) -> dict:
    if labels is None:
        return {}
    return dict(num_labels=len(labels), id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)})


def image_spec(prepared_dir: Path) -> dict:
    """The images' shape and pixel statistics, from the data report ``prepare`` wrote."""
    report = read_json(Path(prepared_dir) / "data_report.json", "prepare")
    if "image" not in report:
        raise DataError(f"{Path(prepared_dir) / 'data_report.json'}: no image spec; the data was not prepared for "
                        "task image_classification: run `dvc repro prepare`")
    return report["image"]


class ImageClassification(TaskType):
    name = "image_classification"
    primary_metric, secondary_metric = "accuracy", "macro_f1"
    teacher_outputs = ("logits",)
    teacher_key = features.TEACHER_LOGITS
    padded_inputs = False

    def new_teacher(self, params, labels, prepared_dir):
        spec = image_spec(prepared_dir)
        name = params.teacher.model
        if name.startswith("scratch:"):
            from distillery.students.vision import CONFIGS

            kind = name.split(":", 1)[1]
            config = CONFIGS[kind](getattr(params.teacher, kind), spec, f"teacher.{kind}")
            return self.head_from_config(config, labels), features.PixelProcessor.from_spec(spec)
        processor = features.PixelProcessor.from_pretrained(name, "teacher.model")
        if (processor.channels, processor.height, processor.width) != (spec["channels"], spec["height"],
                                                                       spec["width"]):
            raise ModelError(f"teacher.model: {name} takes [{processor.channels}, {processor.height}, "
                             f"{processor.width}] images, the data's are [{spec['channels']}, {spec['height']}, "
                             f"{spec['width']}]")
        return self.load_model(name, "teacher.model", labels), processor

    def load_featuriser(self, model_dir, key):
        return features.PixelProcessor.from_pretrained(model_dir, key)

    def featurise(self, frame, tokenizer, max_length, teacher_outputs=None):
        return features.dataset(frame, tokenizer, teacher_outputs)

    def collator(self, tokenizer):
        return features.Collator()

    def load_model(self, name: str, key: str, labels: Optional[list] = None):
        from transformers import AutoModelForImageClassification

        from distillery.students.vision import register_auto_classes

        register_auto_classes()
        kwargs = {**_label_kwargs(labels), "ignore_mismatched_sizes": True} if labels is not None else {}
        return quiet_from_pretrained(AutoModelForImageClassification, name, key, **kwargs)

    def head_from_config(self, config, labels: list):
        from transformers import AutoModelForImageClassification

        from distillery.students.vision import register_auto_classes

        register_auto_classes()
        for key, value in _label_kwargs(labels).items():
            setattr(config, key, value)
        return AutoModelForImageClassification.from_config(config)

    def predict(self, model, tokenizer, frame, max_length, batch_size) -> np.ndarray:
        return features.predict_logits(model, tokenizer, frame, batch_size)

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
        metrics = classification_metrics(np.asarray(eval_pred.predictions), np.asarray(eval_pred.label_ids))
        return {k: v for k, v in metrics.items() if v is not None}

    def export_onnx(self, model, tokenizer, path, opset):
        return onnx.export_onnx(model, tokenizer, path, opset)

    def parity(self, model, tokenizer, fp32_path, int8_path, frame, max_length, export_cfg) -> dict:
        return onnx.parity(model, tokenizer, fp32_path, int8_path, frame, export_cfg)

    def benchmark_inputs(self, tokenizer, frame, batch, length) -> dict:
        return features.batch(tokenizer, frame, batch)


TASK_TYPE = ImageClassification()
