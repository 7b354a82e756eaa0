"""Latency measurement: a machine fingerprint, peak memory, timed calls and their percentiles.

Method (see STACK-NOTES): inputs prepared outside the timed loop; ``warmup`` untimed calls, then
``runs`` timed calls. Speed comparisons hold only within one machine fingerprint.
"""
from __future__ import annotations

import os
import platform
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np


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
