"""Task type ``image_classification``: an image in, one label out (the primer's digits).

Prepared rows hold each image's pixels (raw bytes) and shape (:mod:`.images`, :mod:`.rows`); the
"tokenizer" is a :class:`~.processor.PixelProcessor` that turns them into float32
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

from distillery.errors import DataError, ModelError
from distillery.files import read_json
from distillery.task_types.image_classification import features, onnx
from distillery.task_types.text_classification.task import TextClassification


def image_spec(prepared_dir: Path) -> dict:
    """The images' shape and pixel statistics, from the data report ``prepare`` wrote."""
    report = read_json(Path(prepared_dir) / "data_report.json", "prepare")
    if "image" not in report:
        raise DataError(f"{Path(prepared_dir) / 'data_report.json'}: no image spec; the data was not prepared for "
                        "task image_classification: run `dvc repro prepare`")
    return report["image"]


class ImageClassification(TextClassification):
    """Text classification's head, cache, losses and metrics over logits; images as its inputs."""

    name = "image_classification"
    teacher_key = features.TEACHER_LOGITS
    padded_inputs = False
    sequence_inputs = False

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

    def auto_model(self):
        from transformers import AutoModelForImageClassification

        from distillery.students.vision import register_auto_classes

        register_auto_classes()
        return AutoModelForImageClassification

    def predict(self, model, tokenizer, frame, max_length, batch_size):
        return features.predict_logits(model, tokenizer, frame, batch_size)

    def export_onnx(self, model, tokenizer, path, opset):
        return onnx.export_onnx(model, tokenizer, path, opset)

    def parity(self, model, tokenizer, fp32_path, int8_path, frame, max_length, export_cfg) -> dict:
        return onnx.parity(model, tokenizer, fp32_path, int8_path, frame, export_cfg)

    def benchmark_lengths(self, params, prepared_dir) -> list[int]:
        """No sequence length: one cell per batch size, named by the pixels per image (``b1_s784`` for 28x28)."""
        spec = image_spec(prepared_dir)
        return [int(spec["height"]) * int(spec["width"])]

    def benchmark_inputs(self, tokenizer, frame, batch, length) -> dict:
        return features.batch(tokenizer, frame, batch)


TASK_TYPE = ImageClassification()
