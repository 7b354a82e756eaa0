"""How close a model comes to the machine: the attainable GEMM throughput of this machine (fp32: the faster of
PyTorch and ONNX Runtime; int8 in ONNX Runtime; with the benchmark's threads), and each model's FLOPs per
inference, so a latency becomes a fraction of the peak the hardware allows.

The peaks come from a short microbenchmark of square matrix products (the best of a few timed runs): the
rate a well-shaped GEMM reaches here, not the datasheet's. A model's FLOPs are counted by
``torch.utils.flop_counter`` on its PyTorch forward pass (matrix products, convolutions, attention): the
same work its ONNX export does, fp32 or int8. Small batches do far less than the peak (short GEMMs, memory
bound, framework overhead per call); the fraction says how much.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np


def _best_seconds(run, budget_s: float, min_runs: int = 3) -> float:
    run()  # warm-up
    best, started, runs = float("inf"), time.perf_counter(), 0
    while runs < min_runs or time.perf_counter() - started < budget_s:
        t0 = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - t0)
        runs += 1
    return best


def gemm_peaks(threads: int, size: int = 1024, budget_s: float = 1.5) -> dict:
    """``{"fp32_gflops", "int8_gops", "size", "threads", ...}``: the best rate of an ``size``-square matrix
    product, fp32 through torch's ``mm`` and ONNX Runtime's MatMul (``fp32_gflops`` is the faster: each
    runtime's own GEMM is measured, and an fp32 ONNX model timed against torch's alone once reached 104% of
    that "peak"), uint8 x int8 through ONNX Runtime's MatMulInteger."""
    import onnx
    import torch
    from onnx import TensorProto, helper

    from distillery.onnx_runtime import session

    torch.set_num_threads(threads)
    generator = torch.Generator().manual_seed(0)
    a, b = (torch.randn(size, size, generator=generator) for _ in range(2))
    with torch.inference_mode():
        fp32 = _best_seconds(lambda: torch.mm(a, b), budget_s)
    rng = np.random.default_rng(0)
    weights = rng.integers(-127, 128, (size, size), dtype=np.int8)
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "w"], ["y"])], "gemm",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, [size, size])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [size, size])],
        [helper.make_tensor("w", TensorProto.INT8, [size, size], weights.tobytes(), raw=True)])
    activations = rng.integers(0, 256, (size, size), dtype=np.uint8)
    float_graph = helper.make_graph(
        [helper.make_node("MatMul", ["a", "w"], ["y"])], "gemm_fp32",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [size, size])],
        [helper.make_tensor("w", TensorProto.FLOAT, [size, size], b.numpy().tobytes(), raw=True)])
    with tempfile.TemporaryDirectory() as tmp:
        timed = {}
        for name, model_graph, feed in (("int8", graph, activations), ("fp32", float_graph, a.numpy())):
            path = Path(tmp) / f"gemm_{name}.onnx"
            onnx.save(helper.make_model(model_graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8),
                      path)
            sess = session(path, threads, spin=False)
            timed[name] = _best_seconds(lambda: sess.run(None, {"a": feed}), budget_s)
            del sess
    work = 2.0 * size ** 3
    torch_gflops, ort_gflops = work / fp32 / 1e9, work / timed["fp32"] / 1e9
    return {"fp32_gflops": max(torch_gflops, ort_gflops), "fp32_gflops_torch": torch_gflops,
            "fp32_gflops_onnxruntime": ort_gflops, "int8_gops": work / timed["int8"] / 1e9, "size": size,
            "threads": threads,
            "method": f"best of >= 3 runs in {budget_s:g}s of a {size}x{size} matrix product: fp32 the faster of "
                      "torch.mm and ONNX Runtime MatMul, int8 ONNX Runtime MatMulInteger (uint8 x int8)"}


_GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}


def recurrent_flops(module, tokens: int) -> int:
    """The matrix-product FLOPs of an ``nn.LSTM``/``nn.GRU``/``nn.RNN`` over ``tokens`` time steps (summed
    over the batch): per step, layer and direction, the gates' input and recurrent products, plus the
    projection when ``proj_size`` is set."""
    gates, hidden = _GATES[module.mode], module.hidden_size
    out = module.proj_size or hidden
    directions = 2 if module.bidirectional else 1
    total = 0
    for layer in range(module.num_layers):
        inputs = module.input_size if layer == 0 else out * directions
        per_step = 2 * gates * hidden * (inputs + out) + (2 * hidden * out if module.proj_size else 0)
        total += directions * per_step * tokens
    return total


def model_flops(model, batch: dict) -> int:
    """Floating-point operations of one forward pass of ``model`` on ``batch`` (numpy arrays): what
    ``torch.utils.flop_counter`` counts, plus :func:`recurrent_flops` for a recurrent layer in which it
    counted nothing. On CPU torch runs a plain ``nn.LSTM`` as one fused ``aten::lstm``, which has no FLOP
    formula (a GRU, an RNN or a projected LSTM decompose into counted matrix products), so a BiLSTM
    student would otherwise count only its head."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    root = type(model).__name__
    recurrent: dict[str, int] = {}

    def hook(name: str):
        def count(module, args, output) -> None:
            x = args[0]
            if isinstance(x, torch.nn.utils.rnn.PackedSequence):
                tokens = int(x.data.shape[0])
            else:
                tokens = int(x.shape[0] * x.shape[1]) if x.dim() == 3 else int(x.shape[0])
            recurrent[name] = recurrent.get(name, 0) + recurrent_flops(module, tokens)
        return count

    hooks = [module.register_forward_hook(hook(f"{root}.{name}" if name else root))
             for name, module in model.named_modules() if isinstance(module, torch.nn.RNNBase)]
    inputs = {k: torch.from_numpy(np.asarray(v)) for k, v in batch.items()}
    counter = FlopCounterMode(display=False)
    # The counter's module tracker hooks the gradients of module inputs; a parameter passed as one (DeBERTa's
    # rel_embeddings) failed with "'NoneType' object has no attribute 'next_functions'". Counted without grad.
    trainable = [p for p in model.parameters() if p.requires_grad]
    model.requires_grad_(False)
    try:
        with torch.inference_mode(), counter:
            model(**inputs)
    finally:
        for handle in hooks:
            handle.remove()
        for parameter in trainable:
            parameter.requires_grad_(True)
    counted = counter.get_flop_counts()
    missed = sum(flops for name, flops in recurrent.items() if not sum(counted.get(name, {}).values()))
    return int(counter.get_total_flops()) + missed


def fraction(flops: int, p50_ms: float, peak_per_s: float) -> dict:
    """The attained rate at the p50 latency and its share of ``peak_per_s`` (GFLOP/s or GOP/s)."""
    attained = flops / (p50_ms / 1000) / 1e9 if p50_ms > 0 else 0.0
    return {"gflop": flops / 1e9, "attained_g_per_s": attained, "fraction_of_peak": attained / peak_per_s}
