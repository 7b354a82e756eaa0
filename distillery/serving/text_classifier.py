"""The registered student: an MLflow pyfunc that takes raw text and returns label names and probabilities.

MLflow logs this file as the model's code ("models from code") next to three artifacts: the ONNX
model, the tokenizer's ``tokenizer.json`` and a small ``classifier.json`` (labels, max length, input
names, padding). It imports only numpy, pandas, onnxruntime, tokenizers and mlflow, never Distillery,
so ``mlflow models serve`` can serve it from the registry on a machine without Distillery.

Input: a list of texts, a list of ``[text, text_pair]`` pairs, or a DataFrame with a ``text`` column
(and ``text_pair`` for sentence-pair tasks; a one-column DataFrame is read as texts).
Output: a DataFrame with ``label``, ``score`` (its probability) and ``prob_<label>`` for every label.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
from mlflow.models import set_model
from mlflow.pyfunc import PythonModel

TEXT, PAIR = "text", "text_pair"


def _texts_and_pairs(model_input) -> tuple[list, list | None]:
    if isinstance(model_input, dict):
        model_input = pd.DataFrame(model_input)
    if isinstance(model_input, pd.Series):
        model_input = model_input.to_frame(TEXT)
    if isinstance(model_input, np.ndarray):
        model_input = model_input.tolist()
    if isinstance(model_input, (list, tuple)):
        rows = list(model_input)
        if rows and all(isinstance(row, (list, tuple)) and len(row) == 2 for row in rows):
            return [_text(a) for a, _ in rows], [_text(b) for _, b in rows]
        if rows and all(isinstance(row, dict) for row in rows):
            return _texts_and_pairs(pd.DataFrame(rows))
        return [_text(row) for row in rows], None
    if not isinstance(model_input, pd.DataFrame):
        raise TypeError(f"expected texts, text pairs or a DataFrame with a {TEXT!r} column, "
                        f"got {type(model_input).__name__}")
    frame = model_input
    if TEXT not in frame.columns:
        if len(frame.columns) != 1:
            raise ValueError(f"input has columns {list(frame.columns)}; name the text column {TEXT!r} "
                             f"(and the second text {PAIR!r})")
        frame = frame.rename(columns={frame.columns[0]: TEXT})
    texts = [_text(value) for value in frame[TEXT].tolist()]
    if PAIR in frame.columns and frame[PAIR].notna().any():
        return texts, [_text(value) for value in frame[PAIR].tolist()]
    return texts, None


def _text(value) -> str:
    """Missing values (None, NaN) are empty texts, not the strings "None" or "nan"."""
    return "" if value is None or (isinstance(value, float) and value != value) else str(value)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


class OnnxTextClassifier(PythonModel):
    """Tokenize with ``tokenizers``, run the ONNX model with onnxruntime, return labels and probabilities."""

    def load_context(self, context) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        with open(context.artifacts["config"], encoding="utf-8") as handle:
            config = json.load(handle)
        self.labels = list(config["labels"])
        self.input_names = list(config["input_names"])
        self.batch_size = int(config.get("batch_size", 32))
        self.pair_task = bool(config.get("text_pair", False))
        tokenizer = Tokenizer.from_file(context.artifacts["tokenizer"])
        tokenizer.enable_truncation(int(config["max_length"]), strategy="longest_first")
        tokenizer.enable_padding(pad_id=int(config["pad_id"]), pad_token=config["pad_token"],
                                 pad_type_id=int(config.get("pad_type_id", 0)))
        self.tokenizer = tokenizer
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(config.get("threads", 0))
        self.session = ort.InferenceSession(context.artifacts["onnx"], sess_options=options,
                                            providers=["CPUExecutionProvider"])

    def _encode(self, texts: list, pairs: list | None) -> dict:
        items = list(zip(texts, pairs)) if pairs is not None else texts
        encodings = self.tokenizer.encode_batch(items)
        arrays = {"input_ids": [e.ids for e in encodings], "attention_mask": [e.attention_mask for e in encodings],
                  "token_type_ids": [e.type_ids for e in encodings]}
        return {name: np.asarray(arrays[name], dtype=np.int64) for name in self.input_names}

    def logits(self, model_input) -> np.ndarray:
        texts, pairs = _texts_and_pairs(model_input)
        if self.pair_task and pairs is None:
            raise ValueError(f"this model classifies text pairs: give {TEXT!r} and {PAIR!r} columns")
        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        parts = []
        for start in range(0, len(texts), self.batch_size):
            batch = self._encode(texts[start:start + self.batch_size],
                                 pairs[start:start + self.batch_size] if pairs is not None else None)
            parts.append(self.session.run(["logits"], batch)[0])
        return np.concatenate(parts)

    def predict(self, context, model_input, params=None) -> pd.DataFrame:
        probabilities = _softmax(self.logits(model_input).astype(np.float64))
        best = probabilities.argmax(axis=-1) if len(probabilities) else np.zeros(0, dtype=int)
        frame = pd.DataFrame({"label": [self.labels[i] for i in best],
                              "score": probabilities.max(axis=-1) if len(probabilities) else []})
        for index, label in enumerate(self.labels):
            frame[f"prob_{label}"] = probabilities[:, index]
        return frame


set_model(OnnxTextClassifier())
