"""The ``benchmark`` stage: latency of teacher and student in PyTorch and ONNX Runtime.

Method (see STACK-NOTES and :mod:`distillery.timing`): featurise outside the timed loop; the same thread count for torch and
onnxruntime; every model loaded once and kept (one reused session each). In each grid cell (batch size ×
sequence length) the models are timed in interleaved rounds, each round running every model once, so that
drift on a shared machine hits all of them alike: ``warmup`` untimed rounds (fewer once they have taken
``max_warmup_seconds``, never none), then at least ``min_runs`` and
at most ``runs`` timed rounds, stopping early once every p50's 95% interval is within ±``target_precision``
or after ``max_seconds_per_cell``. No model's threads spin between runs (ONNX Runtime's ``allow_spinning`` off,
``OMP_WAIT_POLICY=PASSIVE`` for torch): with spinning, a 2-core machine timed MiniLM-L6 in PyTorch 2x slower
interleaved with an ONNX Runtime model than alone. Speed comparisons hold only within one machine fingerprint, so the
headline figures are ratios taken in this one run, each with a bootstrap 95% interval.
"""
from __future__ import annotations

import gc
import os
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Union

from distillery.config import Params
from distillery.errors import ConfigError, DataError, ModelError
from distillery.files import read_json, sha256_files, write_json, write_text
from distillery.hf import usable_positions
from distillery.onnx_runtime import run_session, session
from distillery.paths import ONNX_DIR, PREPARED_DIR, REPORTS_DIR
from distillery.prepared import check_trained_on, load_split
from distillery.registry.latency import served_length
from distillery.roofline import fraction, gemm_peaks, model_flops
from distillery.benchmark_report import benchmark_table
from distillery.task_types.load import task_type
from distillery.timing import PeakRSS, bootstrap_ratio, fingerprint, precise, summarise, time_interleaved

# name -> (runtime, model dir with tokenizer + training.json, ONNX file or None)
MODELS = {
    "teacher_pytorch_fp32": ("pytorch", "teacher", None),
    "student_pytorch_fp32": ("pytorch", "student", None),
    "student_onnx_fp32": ("onnx", "student", "student.onnx"),
    "student_onnx_int8": ("onnx", "student", "student.int8.onnx"),
    "teacher_onnx_int8": ("onnx", "teacher", "teacher.int8.onnx"),
}
HEADLINE = ("teacher_pytorch_fp32", "student_onnx_int8")
DEPLOYED = {"student.int8.onnx": "student_onnx_int8", "student.onnx": "student_onnx_fp32"}  # deployment.json's file
BOOTSTRAP = {"resamples": 2000, "seed": 0}  # the headline ratios' intervals


def _runner(task, runtime: str, model_dir: Path, onnx_path: Union[Path, None], threads: int):
    """A function from a numpy batch to outputs, plus what it holds (kept alive while timing)."""
    if runtime == "pytorch":
        import torch

        model = task.load_model(str(model_dir), str(model_dir)).eval()

        def run(batch):
            with torch.inference_mode():
                return task.outputs_of(model(**{k: torch.from_numpy(v) for k, v in batch.items()}))
        return run, model
    sess = session(onnx_path, threads, spin=False)  # a spinning pool slowed the next model timed 2x (see session)
    return (lambda batch: run_session(sess, batch)), sess


def runtime_startup(task, models_dir: Path, threads: int) -> float:
    """MB of resident memory the first model of each runtime would otherwise carry in its figure: the modules that
    load a model (transformers' and each PyTorch model's architecture: about 160 MB on the default task; a trial
    found 152 MB charged to a 0.2 MB teacher) and a first run of each runtime, on throwaway tiny models."""
    import importlib

    import numpy as np
    import torch

    with PeakRSS() as startup:  # the imports too: the first model's load would make them
        import onnx
        import torch.nn.functional as F
        import transformers.modeling_utils  # noqa: F401 - from_pretrained's module
        from onnx import TensorProto, helper
        from transformers import AutoConfig

        getattr(task, "auto_model", lambda: None)()  # registers Distillery's own architectures (boe, bilstm, cnn)
        for name in sorted({model for runtime, model, _ in MODELS.values() if runtime == "pytorch"}):
            try:  # the architecture's modeling module, e.g. transformers.models.bert.modeling_bert
                module = type(AutoConfig.from_pretrained(str(models_dir / name))).__module__
                importlib.import_module(module.replace(".configuration_", ".modeling_"))
            except Exception:  # an accounting aid only: loading the model itself says what is wrong
                pass
        with torch.inference_mode():
            x = F.layer_norm(F.embedding(torch.randint(0, 64, (2, 8)), torch.randn(64, 32)), (32,))
            q = F.linear(x, torch.randn(32, 32)).view(2, 8, 2, 16).transpose(1, 2)
            F.gelu(F.scaled_dot_product_attention(q, q, q)).softmax(-1).sum()
        nodes = [helper.make_node("MatMul", ["x", "w"], ["y"]), helper.make_node("Softmax", ["y"], ["s"]),
                 helper.make_node("DynamicQuantizeLinear", ["s"], ["q", "scale", "zero"]),
                 helper.make_node("MatMulInteger", ["q", "wq"], ["z"])]
        graph = helper.make_graph(nodes, "startup", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8])],
                                  [helper.make_tensor_value_info("z", TensorProto.INT32, [2, 8])],
                                  [helper.make_tensor("w", TensorProto.FLOAT, [8, 8], np.ones(64, np.float32)),
                                   helper.make_tensor("wq", TensorProto.UINT8, [8, 8], np.ones(64, np.uint8))])
        with tempfile.TemporaryDirectory() as tmp:  # the benchmark's own sessions' settings (as roofline's GEMMs)
            path = Path(tmp) / "startup.onnx"
            onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)
            session(path, threads, spin=False).run(None, {"x": np.ones((2, 8), np.float32)})
    return startup.mb


def check_grid(params: Params, models_dir: Path) -> None:
    for model in ("teacher", "student"):
        config = read_json(models_dir / model / "config.json", "train_teacher" if model == "teacher" else "distill")
        limit = usable_positions(config)
        too_long = [n for n in params.benchmark.sequence_lengths if limit and n > limit]
        if too_long:
            raise ConfigError(f"benchmark.sequence_lengths: {too_long[0]} exceeds the {model}'s maximum of "
                              f"{limit} tokens (from max_position_embeddings in {models_dir / model / 'config.json'})")


def check_inputs_current(models_dir: Path, prepared_dir: Path, reports_dir: Path, evaluation: dict) -> None:
    """Refuse models trained on other splits, or an ``eval.json`` of another test split, than ``prepare`` wrote
    last (a stage run by hand after ``prepare``): the report would put old figures beside new ones."""
    for name in ("teacher", "student"):
        model_dir, stage = models_dir / name, "train_teacher" if name == "teacher" else "distill"
        check_trained_on(read_json(model_dir / "training.json", stage), model_dir, prepared_dir, stage)
    if evaluation.get("test_sha256") not in (None, sha256_files([prepared_dir / "test.parquet"])):
        raise DataError(f"{reports_dir / 'metrics' / 'eval.json'} scored another test split than "
                        f"{prepared_dir / 'test.parquet'} holds now; run `python -m distillery evaluate` and `export` "
                        "(or `dvc repro`) first")


def _size_mb(runtime: str, model_dir: Path, onnx_path: Union[Path, None]) -> float:
    if runtime == "onnx":
        return onnx_path.stat().st_size / 1e6
    return sum(p.stat().st_size for p in model_dir.glob("*.safetensors")) / 1e6


def _quality(name: str, evaluation: dict, parity: dict, metrics: tuple = ("accuracy", "macro_f1")) -> dict:
    model = name.split("_")[0]
    if name.endswith("pytorch_fp32"):
        source = evaluation.get(model, {})
    elif name.endswith("onnx_fp32"):
        source = parity.get(model, {}).get("fp32_onnx", {})
    else:
        source = parity.get(model, {}).get("int8", {})
    return {metric: source.get(metric) for metric in metrics}


def _load(task, name: str, models_dir: Path, onnx_dir: Path, test, cells: list, threads: int) -> dict:
    """One model ready to time: its runner, its inputs per cell, and the peak memory of loading it and
    running it once on every cell (untimed)."""
    runtime, model_name, onnx_file = MODELS[name]
    model_dir = models_dir / model_name
    onnx_path = onnx_dir / onnx_file if onnx_file else None
    if onnx_path is not None and not onnx_path.is_file():
        raise ModelError(f"{onnx_path}: ONNX model not found; run `dvc repro export`")
    tokenizer = task.load_featuriser(str(model_dir), str(model_dir))
    gc.collect()
    with PeakRSS() as memory:
        run, held = _runner(task, runtime, model_dir, onnx_path, threads)
        inputs = {f"b{batch}_s{length}": task.benchmark_inputs(tokenizer, test, batch, length)
                  for batch, length in cells}
        for batch in inputs.values():
            run(batch)
    training = read_json(model_dir / "training.json")
    # FLOPs per inference, counted on the PyTorch forward pass; an ONNX model does its PyTorch model's work, or
    # less: a file exported with its last layer on the first token only (its metadata) is counted on that module
    counted = held if runtime == "pytorch" else task.exported_module(
        lambda: task.load_model(str(model_dir), str(model_dir)).eval(), tokenizer, onnx_path)
    flops = {cell: model_flops(counted, batch) for cell, batch in inputs.items()} if counted is not None else None
    return {"run": run, "held": held, "inputs": inputs, "flops": flops, "model": model_name,
            "entry": {"runtime": runtime, "size_mb": _size_mb(runtime, model_dir, onnx_path),
                      "parameters": training["parameters"], "peak_memory_mb": memory.mb}}


def _stop_reason(timings: dict, cfg) -> str:
    runs = len(next(iter(timings.values())))
    if all(precise(t, cfg.target_precision) for t in timings.values()):
        return "precision"
    return "max runs" if runs >= cfg.runs else "time cap"


def benchmark(params: Params, models_dir: Union[str, Path] = "models", onnx_dir: Union[str, Path] = ONNX_DIR,
              prepared_dir: Union[str, Path] = PREPARED_DIR, reports_dir: Union[str, Path] = REPORTS_DIR) -> dict:
    import torch

    task = task_type(params.task, params)
    cfg, models_dir, onnx_dir, reports_dir = params.benchmark, Path(models_dir), Path(onnx_dir), Path(reports_dir)
    sequence_lengths = task.benchmark_lengths(params, prepared_dir)
    if task.sequence_inputs:
        check_grid(params, models_dir)
    elif list(cfg.sequence_lengths) != sequence_lengths:
        print(f"benchmark: {task.name} inputs have no sequence length; benchmark.sequence_lengths "
              f"{cfg.sequence_lengths} is not used: one cell per batch size, named s{sequence_lengths[0]} by the "
              "inputs' own size", file=sys.stderr, flush=True)
    torch.set_num_threads(cfg.threads)
    test = load_split("test", prepared_dir)
    evaluation = read_json(reports_dir / "metrics" / "eval.json", "evaluate")
    parity = read_json(reports_dir / "metrics" / "parity.json", "export")
    check_inputs_current(models_dir, Path(prepared_dir), reports_dir, evaluation)
    deployment = read_json(onnx_dir / "deployment.json", "export")
    results: dict = {"fingerprint": fingerprint(cfg.threads), "grid": {
        "batch_sizes": cfg.batch_sizes, "sequence_lengths": sequence_lengths, "sequence_inputs": task.sequence_inputs,
        "warmup": cfg.warmup,
        "max_warmup_seconds": cfg.max_warmup_seconds, "runs": cfg.runs, "min_runs": min(cfg.min_runs, cfg.runs), "target_precision": cfg.target_precision,
        "max_seconds_per_cell": cfg.max_seconds_per_cell, "order": "interleaved rounds",
        "threads_spin": False, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset")},
        "deployable": deployment["deployable"], "metrics": [task.primary_metric, task.secondary_metric],
        "models": {}, "cells": {}}
    grid = [(batch, length) for batch in cfg.batch_sizes for length in sequence_lengths]
    results["runtime_startup_mb"] = runtime_startup(task, models_dir, cfg.threads)  # in no model's figure
    loaded = {name: _load(task, name, models_dir, onnx_dir, test, grid, cfg.threads) for name in MODELS}
    for name, model in loaded.items():
        results["models"][name] = {**model["entry"], **_quality(name, evaluation, parity, (task.primary_metric, task.secondary_metric)),
                                   "cells": {}}
    raw: dict = {}  # cell -> model -> timings, for the headline's bootstrap
    for index, (batch, length) in enumerate(grid, 1):
        cell = f"b{batch}_s{length}"
        started = time.perf_counter()
        record: dict = {}
        raw[cell] = time_interleaved({name: partial(m["run"], m["inputs"][cell]) for name, m in loaded.items()},
                                     cfg.warmup, cfg.min_runs, cfg.runs, cfg.target_precision,
                                     cfg.max_seconds_per_cell, max_warmup_seconds=cfg.max_warmup_seconds,
                                     record=record)
        runs, stop = len(next(iter(raw[cell].values()))), _stop_reason(raw[cell], cfg)
        results["cells"][cell] = {"runs": runs, "stopped_by": stop, "warmup_rounds": record["warmup_rounds"],
                                  "seconds": round(time.perf_counter() - started, 2)}
        for name, timings in raw[cell].items():
            results["models"][name]["cells"][cell] = summarise(timings, batch)
        print(f"benchmark: cell {cell} ({index}/{len(grid)}): {runs} runs per model, stopped by {stop}, "
              f"{results['cells'][cell]['seconds']:.1f}s", file=sys.stderr, flush=True)
    whole = {m["model"]: m["flops"] for name, m in loaded.items() if MODELS[name][0] == "pytorch"}
    flops = {name: m["flops"] or whole[m["model"]] for name, m in loaded.items()}
    del loaded
    results["roofline"] = gemm_peaks(cfg.threads, budget_s=cfg.peak_seconds)
    for name, model in results["models"].items():
        peak = results["roofline"]["int8_gops" if "int8" in name else "fp32_gflops"]
        for cell, stats in model["cells"].items():
            stats.update(fraction(flops[name][cell], stats["p50_ms"], peak))
    # the gate's cell (register): the student's max length; inputs without one (images), the benchmark's one length
    served = params.student.max_length if task.sequence_inputs else sequence_lengths[0]
    results["headline"] = headline(results, cfg.batch_sizes, sequence_lengths, raw, served,
                                  task.primary_metric)
    from distillery.plots import plot_benchmark

    plot_benchmark(results, reports_dir / "plots")
    write_text(reports_dir / "benchmark.md", benchmark_table(results))
    # which deployable file was timed: register refuses the figures of another one (an `export` run by hand since)
    results["deployable_sha256"] = sha256_files([onnx_dir / deployment["deployable"]])
    write_json(reports_dir / "metrics" / "benchmark.json", results)  # last: the stage's record of success
    return results


def headline(results: dict, batch_sizes: list, lengths: list, raw: Union[dict, None] = None,
             target_length: int = 64, metric: str = "accuracy") -> dict:
    """Teacher PyTorch fp32 over student ONNX int8 at batch 1, in the cell the gate reads its latency from
    (``served_length``: sequence ``target_length``, the student's max length, else the shortest longer one; the
    longest when none is as long), each speed-up with a bootstrap 95% interval when the raw timings are given."""
    batch = 1 if 1 in batch_sizes else min(batch_sizes)
    length = served_length(lengths, target_length) or max(lengths)
    cell = f"b{batch}_s{length}"
    slow, fast = (results["models"][m] for m in HEADLINE)
    head = {"cell": cell,
            "p50_speedup": slow["cells"][cell]["p50_ms"] / fast["cells"][cell]["p50_ms"],
            "p95_speedup": slow["cells"][cell]["p95_ms"] / fast["cells"][cell]["p95_ms"],
            "size_ratio": slow["size_mb"] / fast["size_mb"],
            f"{metric}_change_points": 100 * ((fast[metric] or 0) - (slow[metric] or 0))}
    if raw is not None:
        slow_ms, fast_ms = (raw[cell][m] for m in HEADLINE)
        for quantile in (50, 95):
            low, high = bootstrap_ratio(slow_ms, fast_ms, quantile, BOOTSTRAP["resamples"], seed=BOOTSTRAP["seed"],
                                        paired=True)  # the runs of one cell come in interleaved rounds
            head[f"p{quantile}_speedup_ci95"] = {"low": low, "high": high}
        head["bootstrap"] = dict(BOOTSTRAP, unit="rounds", runs={m: int(len(raw[cell][m])) for m in HEADLINE})
    # the headline pair is fixed (int8 is what the target is about); when the student that ships is another
    # file (export.deploy: fp32, or an int8 that failed its gate) its own ratio is given beside it
    shipped = DEPLOYED.get(results.get("deployable"))
    if shipped and shipped != HEADLINE[1] and shipped in results["models"]:
        mine = results["models"][shipped]["cells"][cell]
        head["deployed"] = {"model": shipped, "p50_speedup": slow["cells"][cell]["p50_ms"] / mine["p50_ms"],
                            "p95_speedup": slow["cells"][cell]["p95_ms"] / mine["p95_ms"]}
        if raw is not None:
            low, high = bootstrap_ratio(raw[cell][HEADLINE[0]], raw[cell][shipped], 50, BOOTSTRAP["resamples"],
                                        seed=BOOTSTRAP["seed"], paired=True)
            head["deployed"]["p50_speedup_ci95"] = {"low": low, "high": high}
    return head


def summary(result: dict) -> str:
    return benchmark_table(result)
