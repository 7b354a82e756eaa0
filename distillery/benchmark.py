"""The ``benchmark`` stage: latency of teacher and student in PyTorch and ONNX Runtime.

Method (see STACK-NOTES): tokenise outside the timed loop; the same thread count for torch and
onnxruntime; ``warmup`` untimed runs, then ``runs`` timed runs on one reused session per grid cell
(batch size × sequence length). Speed comparisons hold only within one machine fingerprint, so the
headline figures are ratios taken in this one run.
"""
from __future__ import annotations

import gc
import os
import platform
import threading
import time
from pathlib import Path
from typing import Callable, Union

import numpy as np

from distillery.config import Params
from distillery.data import PAIR, TEXT, load_split
from distillery.errors import ConfigError, ModelError
from distillery.files import read_json, write_json, write_text
from distillery.paths import ONNX_DIR, PREPARED_DIR, REPORTS_DIR
from distillery.reports import benchmark_table

# name -> (runtime, model dir with tokenizer + training.json, ONNX file or None)
MODELS = {
    "teacher_pytorch_fp32": ("pytorch", "teacher", None),
    "student_pytorch_fp32": ("pytorch", "student", None),
    "student_onnx_fp32": ("onnx", "student", "student.onnx"),
    "student_onnx_int8": ("onnx", "student", "student.int8.onnx"),
    "teacher_onnx_int8": ("onnx", "teacher", "teacher.int8.onnx"),
}
HEADLINE = ("teacher_pytorch_fp32", "student_onnx_int8")


def fingerprint(threads: int) -> dict:
    import onnxruntime
    import torch

    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "threads": threads, "machine": platform.machine(),
            "python": platform.python_version(), "torch": torch.__version__, "onnxruntime": onnxruntime.__version__}


class PeakRSS:
    """Peak resident memory above the level at start, sampled every few milliseconds."""

    def __init__(self):
        import psutil

        self._process, self._stop = psutil.Process(), threading.Event()
        self.base = self.peak = self._process.memory_info().rss

    def _sample(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def __enter__(self):
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)

    @property
    def mb(self) -> float:
        return (self.peak - self.base) / 1e6


def time_calls(call: Callable[[], object], warmup: int, runs: int) -> np.ndarray:
    """Milliseconds per call, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        call()
    timings = np.empty(runs)
    for i in range(runs):
        start = time.perf_counter()
        call()
        timings[i] = (time.perf_counter() - start) * 1000
    return timings


def summarise(timings_ms: np.ndarray, batch: int) -> dict:
    p50, p95, p99 = np.percentile(timings_ms, [50, 95, 99])
    return {"p50_ms": float(p50), "p95_ms": float(p95), "p99_ms": float(p99), "mean_ms": float(timings_ms.mean()),
            "throughput_per_s": float(batch * 1000 / timings_ms.mean()), "runs": int(len(timings_ms))}


def _inputs(tokenizer, frame, batch: int, length: int) -> dict:
    rows = [i % len(frame) for i in range(batch)]
    texts = frame[TEXT].iloc[rows].tolist()
    pairs = frame[PAIR].iloc[rows].tolist() if PAIR in frame.columns else None
    return dict(tokenizer(texts, pairs, padding="max_length", truncation=True, max_length=length, return_tensors="np"))


def _runner(runtime: str, model_dir: Path, onnx_path: Union[Path, None], threads: int):
    """A function from a numpy batch to logits, plus what it holds (kept alive while timing)."""
    if runtime == "pytorch":
        import torch

        from distillery.modeling import load_classifier

        model = load_classifier(str(model_dir), str(model_dir)).eval()

        def run(batch):
            with torch.inference_mode():
                return model(**{k: torch.from_numpy(v) for k, v in batch.items()}).logits
        return run, model
    from distillery.onnx_runtime import run_session, session

    sess = session(onnx_path, threads)
    return (lambda batch: run_session(sess, batch)), sess


def check_grid(params: Params, models_dir: Path) -> None:
    for model in ("teacher", "student"):
        config = read_json(models_dir / model / "config.json", "train_teacher" if model == "teacher" else "distill")
        limit = config.get("max_position_embeddings")
        too_long = [n for n in params.benchmark.sequence_lengths if limit and n > limit]
        if too_long:
            raise ConfigError(f"benchmark.sequence_lengths: {too_long[0]} exceeds the {model}'s maximum of "
                              f"{limit} positions (max_position_embeddings in {models_dir / model / 'config.json'})")


def _size_mb(runtime: str, model_dir: Path, onnx_path: Union[Path, None]) -> float:
    if runtime == "onnx":
        return onnx_path.stat().st_size / 1e6
    return sum(p.stat().st_size for p in model_dir.glob("*.safetensors")) / 1e6


def _quality(name: str, evaluation: dict, parity: dict) -> dict:
    model = name.split("_")[0]
    if name.endswith("pytorch_fp32"):
        source = evaluation.get(model, {})
    elif name.endswith("onnx_fp32"):
        source = parity.get(model, {}).get("fp32_onnx", {})
    else:
        source = parity.get(model, {}).get("int8", {})
    return {"accuracy": source.get("accuracy"), "macro_f1": source.get("macro_f1")}


def benchmark(params: Params, models_dir: Union[str, Path] = "models", onnx_dir: Union[str, Path] = ONNX_DIR,
              prepared_dir: Union[str, Path] = PREPARED_DIR, reports_dir: Union[str, Path] = REPORTS_DIR) -> dict:
    import torch

    from distillery.modeling import load_tokenizer

    cfg, models_dir, onnx_dir, reports_dir = params.benchmark, Path(models_dir), Path(onnx_dir), Path(reports_dir)
    check_grid(params, models_dir)
    torch.set_num_threads(cfg.threads)
    test = load_split("test", prepared_dir)
    evaluation = read_json(reports_dir / "metrics" / "eval.json", "evaluate")
    parity = read_json(reports_dir / "metrics" / "parity.json", "export")
    deployment = read_json(onnx_dir / "deployment.json", "export")
    results: dict = {"fingerprint": fingerprint(cfg.threads), "grid": {"batch_sizes": cfg.batch_sizes,
                     "sequence_lengths": cfg.sequence_lengths, "warmup": cfg.warmup, "runs": cfg.runs},
                     "deployable": deployment["deployable"], "models": {}}
    for name, (runtime, model_name, onnx_file) in MODELS.items():
        model_dir = models_dir / model_name
        onnx_path = onnx_dir / onnx_file if onnx_file else None
        if onnx_path is not None and not onnx_path.is_file():
            raise ModelError(f"{onnx_path}: ONNX model not found; run `dvc repro export`")
        tokenizer = load_tokenizer(str(model_dir), str(model_dir))
        gc.collect()
        cells = {}
        with PeakRSS() as memory:
            run, _held = _runner(runtime, model_dir, onnx_path, cfg.threads)
            for batch in cfg.batch_sizes:
                for length in cfg.sequence_lengths:
                    inputs = _inputs(tokenizer, test, batch, length)
                    cells[f"b{batch}_s{length}"] = summarise(time_calls(lambda: run(inputs), cfg.warmup, cfg.runs),
                                                             batch)
        del run, _held
        training = read_json(model_dir / "training.json")
        results["models"][name] = {"runtime": runtime, "size_mb": _size_mb(runtime, model_dir, onnx_path),
                                   "parameters": training["parameters"], "peak_memory_mb": memory.mb,
                                   **_quality(name, evaluation, parity), "cells": cells}
    results["headline"] = headline(results, cfg.batch_sizes, cfg.sequence_lengths)
    from distillery.plots import plot_benchmark

    plot_benchmark(results, reports_dir / "plots")
    write_text(reports_dir / "benchmark.md", benchmark_table(results))
    write_json(reports_dir / "metrics" / "benchmark.json", results)  # last: the stage's record of success
    return results


def headline(results: dict, batch_sizes: list, lengths: list) -> dict:
    """Teacher PyTorch fp32 over student ONNX int8 at batch 1, sequence 64 (or the nearest cell)."""
    batch = 1 if 1 in batch_sizes else min(batch_sizes)
    length = min(lengths, key=lambda n: abs(n - 64))
    cell = f"b{batch}_s{length}"
    slow, fast = (results["models"][m] for m in HEADLINE)
    return {"cell": cell,
            "p50_speedup": slow["cells"][cell]["p50_ms"] / fast["cells"][cell]["p50_ms"],
            "p95_speedup": slow["cells"][cell]["p95_ms"] / fast["cells"][cell]["p95_ms"],
            "size_ratio": slow["size_mb"] / fast["size_mb"],
            "accuracy_change_points": 100 * ((fast["accuracy"] or 0) - (slow["accuracy"] or 0))}
