"""Latency measurement: a machine fingerprint, peak memory, timed calls and their percentiles.

Method (see STACK-NOTES): inputs prepared outside the timed loop; ``warmup`` untimed calls, then timed
calls, several models interleaved round by round (:func:`time_interleaved`) until each p50 is known to
a target precision (:func:`median_interval`) or a time cap; ratios carry a bootstrap interval
(:func:`bootstrap_ratio`). Speed comparisons hold only within one machine fingerprint.
"""
from __future__ import annotations

import math
import os
import platform
import threading
import time
from pathlib import Path
from typing import Callable, Union

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
    """Percentiles, mean and throughput of one cell, the p50's 95% interval, and the runs behind them."""
    p50, p95, p99 = np.percentile(timings_ms, [50, 95, 99])
    low, high = median_interval(timings_ms)
    return {"p50_ms": float(p50), "p95_ms": float(p95), "p99_ms": float(p99), "mean_ms": float(timings_ms.mean()),
            "throughput_per_s": float(batch * 1000 / timings_ms.mean()), "runs": int(len(timings_ms)),
            "p50_ci95_ms": [low, high]}


def median_interval(timings_ms: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """A distribution-free interval for the median: the order statistics ``x_(j)`` and ``x_(n+1-j)``
    (1-based), with ``j`` the largest rank such that ``P(B <= j - 1) <= (1 - confidence) / 2`` for
    ``B ~ Binomial(n, 1/2)``; it covers the true median with probability at least ``confidence``
    (Le Boudec, *Performance Evaluation of Computer and Communication Systems*, 2010, Thm 2.1).
    With too few runs for any such rank (n < 6 at 95%) the interval is the whole sample's range."""
    values = np.sort(np.asarray(timings_ms, dtype=float))
    n, tail, cumulative, j = len(values), (1 - confidence) / 2, 0.0, 0
    for rank in range(n // 2 + 1):  # cumulative = P(B <= rank) after this step
        cumulative += math.comb(n, rank) / 2 ** n
        if cumulative > tail:
            break
        j = rank + 1
    if j == 0:
        return float(values[0]), float(values[-1])
    return float(values[j - 1]), float(values[n - j])


def precise(timings_ms: np.ndarray, target: float) -> bool:
    """The p50's 95% interval lies within ±``target`` (a fraction) of the p50."""
    p50 = float(np.median(timings_ms))
    low, high = median_interval(timings_ms)
    return low >= p50 * (1 - target) and high <= p50 * (1 + target)


def time_interleaved(calls: dict[str, Callable[[], object]], warmup: int, min_runs: int, max_runs: int,
                     target_precision: float, max_seconds: float,
                     clock: Callable[[], float] = time.perf_counter, max_warmup_seconds: float = math.inf,
                     record: Union[dict, None] = None) -> dict[str, np.ndarray]:
    """Milliseconds per call for each of ``calls``, timed in interleaved rounds so that drift on a shared
    machine (another process, frequency scaling, a warm or cold cache) hits every model alike.

    ``warmup`` untimed rounds first, or fewer once ``max_warmup_seconds`` have passed (never fewer than one
    when ``warmup`` >= 1): a cell whose round takes seconds is warm after one. ``record`` (a dict), if given,
    receives ``warmup_rounds``, the untimed rounds run. Round ``r`` (0-based) then times each call once, starting at the
    ``r mod k``-th of the ``k`` calls and wrapping around, so no call always follows the same one. It stops
    after ``max_runs`` rounds, or once ``min_runs`` rounds are done and either every call's p50 has a 95%
    interval (:func:`median_interval`) within ±``target_precision``, or ``max_seconds`` have passed since
    the first timed round. ``min_runs`` is a floor: the time cap never cuts a cell shorter.
    """
    names = list(calls)
    warm_started, warm_rounds = clock(), 0
    while warm_rounds < warmup and (warm_rounds == 0 or clock() - warm_started < max_warmup_seconds):
        for name in names:
            calls[name]()
        warm_rounds += 1
    if record is not None:
        record["warmup_rounds"] = warm_rounds
    timings: dict[str, list[float]] = {name: [] for name in names}
    started = clock()
    for round_index in range(max_runs):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            start = clock()
            calls[name]()
            timings[name].append((clock() - start) * 1000)
        done = round_index + 1
        if done >= min(min_runs, max_runs) and (clock() - started >= max_seconds or
                                 all(precise(np.array(t), target_precision) for t in timings.values())):
            break
    return {name: np.array(t) for name, t in timings.items()}


def bootstrap_ratio(slow_ms: np.ndarray, fast_ms: np.ndarray, quantile: float = 50, resamples: int = 2000,
                    confidence: float = 0.95, seed: int = 0, paired: bool = False) -> tuple[float, float]:
    """Percentile-bootstrap interval of ``percentile(slow, q) / percentile(fast, q)`` (``resamples`` times, a fixed
    seed, so a rerun on the same timings gives the same interval).

    ``paired``: the i-th runs of both were timed in the same round (:func:`time_interleaved`), so whole rounds are
    resampled, both models' runs of a round together: drift of the machine between rounds hits both alike and
    cancels in the ratio, as the interleaving meant it to. Otherwise each model's runs are resampled on their own.
    The interval covers the timing noise of this one run, not how a later run or another host would differ."""
    rng = np.random.default_rng(seed)
    slow, fast = np.asarray(slow_ms, dtype=float), np.asarray(fast_ms, dtype=float)
    if paired:
        if len(slow) != len(fast):
            raise ValueError(f"paired timings need one run of each per round: {len(slow)} and {len(fast)} runs")
        rounds = rng.integers(0, len(slow), size=(resamples, len(slow)))
        slow_q = np.percentile(slow[rounds], quantile, axis=1)
        fast_q = np.percentile(fast[rounds], quantile, axis=1)
    else:
        slow_q = np.percentile(rng.choice(slow, size=(resamples, len(slow))), quantile, axis=1)
        fast_q = np.percentile(rng.choice(fast, size=(resamples, len(fast))), quantile, axis=1)
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(slow_q / fast_q, [tail, 100 - tail])
    return float(low), float(high)
