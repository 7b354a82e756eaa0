"""ONNX export, int8 dynamic quantization and ONNX Runtime sessions, for any task type."""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Union

import numpy as np
import torch

from distillery.errors import ModelError

PathLike = Union[str, Path]


def export_module(wrapper: torch.nn.Module, sample: tuple, path: PathLike, input_names: list[str],
                  output_names: list[str], dynamic_axes: dict, opset: int) -> None:
    """Export a module taking positional tensors to a single-file ONNX model (the legacy exporter,
    whose output ``quantize_dynamic`` accepts; see STACK-NOTES)."""
    wrapper.eval()  # a fresh Module is in training mode; export restores that mode
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about Python branches on shapes
            torch.onnx.export(wrapper, sample, str(path), input_names=input_names, output_names=output_names,
                              dynamic_axes=dynamic_axes, opset_version=opset, dynamo=False)
    except Exception as exc:
        model = getattr(wrapper, "model", wrapper)
        raise ModelError(f"ONNX export of {type(model).__name__} to {path} failed: "
                         f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None


def quantize_int8(source: PathLike, target: PathLike) -> None:
    """onnxruntime dynamic quantization: int8 weights, activations quantized on the fly."""
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    # onnxruntime logs "consider pre-processing" advice to the root logger on every call: silenced for the call
    # only (setting the root level for good once hid every later warning of the process)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)


def session(path: PathLike, threads: int = 0, spin: bool = True):
    """An ONNX Runtime CPU session; a file that fails to load raises ModelError naming it.

    ``spin=False``: its threads sleep between runs instead of spinning (ONNX Runtime's default spins), so a
    model timed right after it gets the cores; the benchmark times several models in interleaved rounds."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads > 0:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ModelError(f"{path}: ONNX model failed to load: {str(exc).splitlines()[0]}") from None


def _feed(sess, batch: dict) -> dict:
    feed = {}
    for i in sess.get_inputs():
        dtype = np.int64 if "int64" in i.type else np.float32
        feed[i.name] = np.asarray(batch[i.name], dtype=dtype)
    return feed


def run_session(sess, batch: dict) -> np.ndarray:
    """The first output for one batch (numpy or torch tensors; integer inputs as int64, others float32)."""
    return sess.run([sess.get_outputs()[0].name], _feed(sess, batch))[0]


def run_outputs(sess, batch: dict) -> list[np.ndarray]:
    """Every output for one batch, in the model's output order."""
    return sess.run(None, _feed(sess, batch))


def int8_gate(fp32_score: float, int8_score: float, max_drop_points: float, metric: str = "accuracy") -> dict:
    """Is the int8 model deployable? Its drop in ``metric`` (in percentage points) against fp32."""
    drop = 100 * (fp32_score - int8_score)
    deployable = drop <= max_drop_points
    reason = None if deployable else (f"int8 {metric} drop {drop:.2f} points exceeds "
                                      f"export.int8_max_accuracy_drop = {max_drop_points}")
    return {f"{metric}_drop_points": round(drop, 4), "deployable": deployable, "reason": reason}
