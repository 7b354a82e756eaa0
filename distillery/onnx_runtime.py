"""ONNX export, int8 dynamic quantization and ONNX Runtime sessions, for any task type."""
from __future__ import annotations

import contextlib
import logging
import os
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator, Optional, Union

import numpy as np
import torch

from distillery.errors import ModelError

PathLike = Union[str, Path]


@contextlib.contextmanager
def _eager_attention(module: torch.nn.Module) -> Iterator[None]:
    """A Hugging Face model switched to eager attention while it is traced: the exporter writes SDPA as a
    graph ONNX Runtime's attention fusion does not recognise, and eager attention as one it fuses. The
    same arithmetic either way (the fp32 parity gate checks it); the model's setting is restored after."""
    config = getattr(module, "config", None)
    previous = getattr(config, "_attn_implementation", None)
    switch = previous not in (None, "eager") and hasattr(module, "set_attn_implementation")
    if switch:
        try:
            module.set_attn_implementation("eager")
        except (ValueError, ImportError, AttributeError):
            switch = False  # an architecture without an eager path exports as it is
    try:
        yield
    finally:
        if switch:
            module.set_attn_implementation(previous)


def export_module(wrapper: torch.nn.Module, sample: tuple, path: PathLike, input_names: list[str],
                  output_names: list[str], dynamic_axes: dict, opset: int) -> None:
    """Export a module taking positional tensors to a single-file ONNX model (the legacy exporter,
    whose output ``quantize_dynamic`` accepts; see STACK-NOTES)."""
    wrapper.eval()  # a fresh Module is in training mode; export restores that mode
    model = getattr(wrapper, "model", wrapper)
    try:
        with warnings.catch_warnings(), _eager_attention(model):
            warnings.simplefilter("ignore")  # tracer warnings about Python branches on shapes
            torch.onnx.export(wrapper, sample, str(path), input_names=input_names, output_names=output_names,
                              dynamic_axes=dynamic_axes, opset_version=opset, dynamo=False)
    except Exception as exc:
        raise ModelError(f"ONNX export of {type(model).__name__} to {path} failed: "
                         f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    # onnxruntime logs "consider pre-processing" advice to the root logger on every call: silenced for the call
    # only (setting the root level for good once hid every later warning of the process)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def quantize_int8(source: PathLike, target: PathLike, per_channel: bool = False,
                  calibration: Optional[list[dict]] = None) -> None:
    """int8 weights. Without ``calibration``: dynamic quantization (activations quantized on the fly). With
    it (batches of model inputs): static quantization in QDQ format, activation ranges from those batches
    (MinMax). ``per_channel``: one weight scale per output channel."""
    from onnx import TensorProto
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic,
                                          quantize_static)

    class Batches(CalibrationDataReader):
        """The calibration batches, fed once each."""

        def __init__(self, feeds: list[dict]):
            self._feeds = iter(feeds)

        def get_next(self) -> Optional[dict]:
            return next(self._feeds, None)

    # a fused graph holds contrib ops shape inference cannot type: their outputs are float tensors
    extra = {"DefaultTensorType": TensorProto.FLOAT}
    with _quiet_root_logger():
        if calibration is None:
            quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=per_channel,
                             extra_options=extra)
        else:
            sess = session(source)
            feeds = [_feed(sess, batch) for batch in calibration]
            quantize_static(str(source), str(target), Batches(feeds), quant_format=QuantFormat.QDQ,
                            per_channel=per_channel, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8, extra_options=extra)


def fuse_transformer(source: PathLike, target: PathLike, model=None) -> dict:
    """ONNX Runtime's transformer fusions (attention, embedding layer norm, bias GELU) of ``source`` written
    to ``target``; returns the fused operators found (an empty dict: none matched, as for a graph that is not
    a transformer encoder).

    The residual add and its layer norm stay two nodes in the file: ONNX Runtime fuses them into one
    SkipLayerNormalization when it loads the model, unless the file asks it not to (``without_skip_layer_norm``),
    so that choice is made by timing both, per model and machine (``export_recipes``)."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import MODEL_TYPES, optimize_model

    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", "bert")
    model_type = model_type if model_type in MODEL_TYPES else "bert"
    options = FusionOptions(model_type)
    options.enable_skip_layer_norm = False
    with _quiet_root_logger(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        optimized = optimize_model(str(source), model_type=model_type,
                                   num_heads=int(getattr(config, "num_attention_heads", 0) or 0),
                                   hidden_size=int(getattr(config, "hidden_size", 0) or 0), opt_level=0,
                                   optimization_options=options)
        fused = {name: int(count) for name, count in optimized.get_fused_operator_statistics().items() if count}
        optimized.save_model_to_file(str(target))
    return fused


# A model file's own ONNX Runtime settings, in its metadata (``metadata_props``), so that every session of it runs
# the graph that export timed and checked: the served pyfunc reads the same key (distillery/serving/*.py).
DISABLED_OPTIMIZERS_KEY = "onnxruntime.disabled_optimizers"  # comma-separated names of ONNX Runtime graph optimizers
# What an exported classifier computes in its last layer, when less than its model: "first_token" (every other
# position of the last layer is dropped; distillery/task_types/text_classification/first_token.py). Absent: all.
LAST_LAYER_KEY = "distillery.last_layer"
# ONNX Runtime's load-time fusion of a residual add and its layer norm. Its CPU kernel took 65-115 us per node on a
# 64x384 tensor where LayerNormalization took 15 (ONNX Runtime 1.31, AMD EPYC): the default int8 student ran 1.02 ms
# without it against 1.19 (docs/measurements.md), so export times each candidate with and without it.
SKIP_LAYER_NORM_FUSION = "SkipLayerNormFusion"


def _optimizer_names(value: str) -> list[str]:
    return [name.strip() for name in value.split(",") if name.strip()]


def metadata(path: PathLike, key: str) -> str:
    """The value of ``key`` in the file's metadata (``metadata_props``), or ""."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next((p.value for p in model.metadata_props if p.key == key), "")


def set_metadata(source: PathLike, key: str, value: str, target: Optional[PathLike] = None) -> None:
    """``source`` with ``key`` set to ``value`` in its metadata, written to ``target`` (default: in place)."""
    import onnx

    model = onnx.load(str(source))
    kept = [p for p in model.metadata_props if p.key != key]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(target if target is not None else source))


def disabled_optimizers(path: PathLike) -> list[str]:
    """The ONNX Runtime optimizers ``path`` asks to run without (its metadata; none for most files)."""
    return _optimizer_names(metadata(path, DISABLED_OPTIMIZERS_KEY))


def without_skip_layer_norm(source: PathLike, target: PathLike) -> None:
    """``source`` copied to ``target``, asking ONNX Runtime not to fuse its residual adds into their layer norms."""
    set_metadata(source, DISABLED_OPTIMIZERS_KEY, SKIP_LAYER_NORM_FUSION, target)


def fuses_skip_layer_norm(path: PathLike) -> bool:
    """Whether ONNX Runtime, loading ``path`` with its defaults, fuses a residual add and its layer norm into a
    SkipLayerNormalization: the only case where disabling ``SkipLayerNormFusion`` changes what runs. Asked of
    ONNX Runtime itself (the graph it would run), so any opset and any model family give the true answer."""
    import tempfile

    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED  # where the fusion runs
    with tempfile.TemporaryDirectory(prefix="distillery-loaded-") as tmp:
        options.optimized_model_filepath = str(Path(tmp) / "loaded.onnx")
        ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        graph = onnx.load(options.optimized_model_filepath, load_external_data=False).graph
    return any(node.op_type == "SkipLayerNormalization" for node in graph.node)


def environment_threads() -> int:
    """``OMP_NUM_THREADS`` as a thread count when it is one, else 0 (ONNX Runtime's own default, a thread per
    physical core). ONNX Runtime does not read it; torch does, and a process given a share of the machine's cores
    (a pool worker, a test worker, a torchrun process) is told it there."""
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(value) if value.isdigit() else 0


def session(path: PathLike, threads: int = 0, spin: bool = True):
    """An ONNX Runtime CPU session; a file that fails to load raises ModelError naming it. The optimizers the
    file's metadata disables (``DISABLED_OPTIMIZERS_KEY``) stay off. ``threads`` 0 is :func:`environment_threads`.

    ``spin=False``: its threads sleep between runs instead of spinning (ONNX Runtime's default spins), so a
    model timed right after it gets the cores; the benchmark times several models in interleaved rounds."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    threads = threads or environment_threads()
    if threads > 0:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.log_severity_level = 3
    try:
        sess = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        disabled = _optimizer_names(sess.get_modelmeta().custom_metadata_map.get(DISABLED_OPTIMIZERS_KEY, ""))
        if disabled:
            sess = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"],
                                        disabled_optimizers=disabled)
        return sess
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


class SessionModel:
    """An ONNX Runtime session that answers as the PyTorch model it was exported from: called with the same
    keyword tensors, it returns an object whose attributes are the ONNX outputs (``logits``, or
    ``start_logits`` and ``end_logits``) as torch tensors, and it keeps the model's ``config``. The teacher's
    pass in ``teacher_logits`` runs through it (``teacher.logits_runtime``) with the task type's own batching."""

    def __init__(self, sess, config):
        self.sess, self.config = sess, config
        self.input_names = [i.name for i in sess.get_inputs()]
        self.output_names = [o.name for o in sess.get_outputs()]

    def eval(self) -> "SessionModel":
        return self

    def __call__(self, **inputs):
        feed = {name: (value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value))
                for name, value in inputs.items() if name in self.input_names}
        outputs = run_outputs(self.sess, feed)
        return SimpleNamespace(**{name: torch.from_numpy(value) for name, value in zip(self.output_names, outputs)})


def int8_gate(fp32_score: float, int8_score: float, max_drop_points: float, metric: str = "accuracy",
              row_drops=None) -> dict:
    """Is the int8 model deployable? Its drop in ``metric`` (in percentage points) against fp32.

    ``row_drops``: each row's fp32 score minus its int8 score (a row's correctness, a question's F1), when
    the metric is their mean. The gate still decides on the mean drop, but reports its paired standard error
    and the row count beside it: on a small validation split a drop of one point may be one or two rows,
    within the noise."""
    drop = 100 * (fp32_score - int8_score)
    # a drop at the limit is allowed, whatever float rounding did to it: 100 * (0.45 - 0.44) is 1.0000000000000009
    deployable = drop <= max_drop_points + 1e-9
    noise, spread = "", {}
    if row_drops is not None and len(row_drops) > 1:
        row_drops = np.asarray(row_drops, dtype=np.float64)
        error = 100 * float(row_drops.std(ddof=1)) / np.sqrt(len(row_drops))
        spread = {f"{metric}_drop_standard_error_points": round(error, 4), "rows": int(len(row_drops))}
        noise = f" (standard error {error:.2f}, {len(row_drops)} rows)"
    reason = None if deployable else (f"int8 {metric} drop {drop:.2f} points{noise} exceeds "
                                      f"export.int8_max_accuracy_drop = {max_drop_points}")
    return {f"{metric}_drop_points": round(drop, 4), **spread, "deployable": deployable, "reason": reason}
