"""ONNX export, int8 dynamic quantization and ONNX Runtime sessions for sequence classifiers."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Union

import numpy as np
import torch

from distillery.errors import ModelError

PathLike = Union[str, Path]


class _LogitsOnly(torch.nn.Module):
    """Positional inputs in, logits out: the shape the legacy ONNX exporter wants."""

    def __init__(self, model: torch.nn.Module, input_names: list[str]):
        super().__init__()
        self.model, self.input_names = model, input_names

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.input_names, inputs))).logits


def input_names(tokenizer) -> list[str]:
    """The tokenizer's model inputs, in a fixed order (e.g. input_ids, token_type_ids, attention_mask)."""
    return [name for name in ("input_ids", "token_type_ids", "attention_mask") if name in tokenizer.model_input_names]


def export_onnx(model: torch.nn.Module, tokenizer, path: PathLike, opset: int = 17) -> list[str]:
    """Export to a single-file ONNX model with dynamic batch and sequence axes; return its input names."""
    names = input_names(tokenizer)
    sample = tokenizer(["a short example", "a somewhat longer example sentence to pad against"], padding=True,
                       return_tensors="pt")
    wrapper = _LogitsOnly(model, names).eval()  # a fresh Module is in training mode; export restores that mode
    axes = {name: {0: "batch", 1: "sequence"} for name in names}
    axes["logits"] = {0: "batch"}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about Python branches on shapes
            torch.onnx.export(wrapper, tuple(sample[n] for n in names), str(path), input_names=names,
                              output_names=["logits"], dynamic_axes=axes, opset_version=opset, dynamo=False)
    except Exception as exc:
        raise ModelError(f"ONNX export of {type(model).__name__} to {path} failed: "
                         f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    model.eval()
    return names


def quantize_int8(source: PathLike, target: PathLike) -> None:
    """onnxruntime dynamic quantization: int8 weights, activations quantized on the fly."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.getLogger().setLevel(logging.ERROR)  # "consider pre-processing" advice on every call
    quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)


def session(path: PathLike, threads: int = 0):
    """An ONNX Runtime CPU session; a file that fails to load raises ModelError naming it."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads > 0:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ModelError(f"{path}: ONNX model failed to load: {str(exc).splitlines()[0]}") from None


def run_session(sess, batch: dict) -> np.ndarray:
    """Logits for one tokenised batch (numpy or torch tensors)."""
    feed = {i.name: np.asarray(batch[i.name], dtype=np.int64) for i in sess.get_inputs()}
    return sess.run(["logits"], feed)[0]
