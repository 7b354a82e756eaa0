"""The benchmark's timing method on synthetic latencies: interleaved order, the stopping rule, the p50's
interval and the bootstrap interval of a ratio. No model runs; a fake clock advances by each call's latency."""
import numpy as np
import pytest

from distillery.timing import bootstrap_ratio, median_interval, precise, summarise, time_interleaved


class FakeClock:
    """Seconds that pass only when a fake model runs; each model's latencies are replayed in a cycle."""

    def __init__(self, latencies: dict):
        self.now, self.latencies, self.calls, self.order = 0.0, latencies, {n: 0 for n in latencies}, []

    def __call__(self) -> float:
        return self.now

    def model(self, name):
        def run():
            cycle = self.latencies[name]
            self.now += cycle[self.calls[name] % len(cycle)]
            self.calls[name] += 1
            self.order.append(name)
        return run

    def calls_of(self, names):
        return {name: self.model(name) for name in names}


def test_rounds_interleave_and_rotate():
    clock = FakeClock({"a": [1.0], "b": [1.0], "c": [1.0]})
    timings = time_interleaved(clock.calls_of("abc"), warmup=1, min_runs=3, max_runs=3, target_precision=0.05,
                               max_seconds=1e9, clock=clock)
    # warm-up round a b c; then round 0 starts at a, round 1 at b, round 2 at c
    assert "".join(clock.order) == "abc" + "abc" + "bca" + "cab"
    assert {name: len(t) for name, t in timings.items()} == {"a": 3, "b": 3, "c": 3}


def test_warm_up_rounds_stop_at_their_time_cap_but_never_before_the_first():
    # rounds of 3 s (a 1 s + b 2 s): a 5-s cap allows a second round (3 s < 5 s) but not a third (6 s)
    clock, record = FakeClock({"a": [1.0], "b": [2.0]}), {}
    timings = time_interleaved(clock.calls_of("ab"), warmup=10, min_runs=2, max_runs=2, target_precision=0.05,
                               max_seconds=1e9, clock=clock, max_warmup_seconds=5.0, record=record)
    assert record == {"warmup_rounds": 2} and "".join(clock.order) == "abab" + "ab" + "ba"
    assert len(timings["a"]) == 2
    # a cap shorter than one round still warms once; warmup=0 runs none; an ample cap runs them all
    for warmup, cap, rounds in ((10, 0.5, 1), (0, 0.5, 0), (4, 1e9, 4)):
        clock, record = FakeClock({"a": [1.0], "b": [2.0]}), {}
        time_interleaved(clock.calls_of("ab"), warmup=warmup, min_runs=1, max_runs=1, target_precision=0.05,
                         max_seconds=1e9, clock=clock, max_warmup_seconds=cap, record=record)
        assert record["warmup_rounds"] == rounds and len(clock.order) == 2 * rounds + 2


def test_constant_latencies_stop_at_min_runs():
    clock = FakeClock({"teacher": [0.010], "student": [0.001]})
    timings = time_interleaved(clock.calls_of(["teacher", "student"]), warmup=0, min_runs=20, max_runs=100,
                               target_precision=0.05, max_seconds=1e9, clock=clock)
    assert len(timings["teacher"]) == len(timings["student"]) == 20  # zero-width intervals from the first check
    assert timings["teacher"] == pytest.approx(np.full(20, 10.0)) and timings["student"] == pytest.approx(np.ones(20))


def test_noisy_latency_runs_to_the_time_cap():
    # a: 1 s every call; b: 1 s, 3 s, 1 s, 3 s... (p50 interval [1, 3] s: never within ±5%).
    # Rounds alternate 2 s and 4 s, so 30 s have passed after 10 rounds (26 s after 9).
    clock = FakeClock({"a": [1.0], "b": [1.0, 3.0]})
    timings = time_interleaved(clock.calls_of("ab"), warmup=0, min_runs=5, max_runs=1000, target_precision=0.05,
                               max_seconds=30.0, clock=clock)
    assert len(timings["a"]) == len(timings["b"]) == 10
    assert list(timings["b"][:4]) == [1000.0, 3000.0, 1000.0, 3000.0]


def test_noisy_latency_without_a_cap_runs_to_max_runs_and_the_cap_never_cuts_below_min_runs():
    clock = FakeClock({"a": [1.0], "b": [1.0, 3.0]})
    assert len(time_interleaved(clock.calls_of("ab"), 0, 5, 37, 0.05, 1e9, clock=clock)["b"]) == 37
    clock = FakeClock({"a": [1.0], "b": [1.0, 3.0]})
    assert len(time_interleaved(clock.calls_of("ab"), 0, 25, 100, 0.05, 0.0, clock=clock)["a"]) == 25
    clock = FakeClock({"a": [1.0]})  # min_runs above runs: runs wins
    assert len(time_interleaved(clock.calls_of("a"), 0, 20, 8, 0.05, 1e9, clock=clock)["a"]) == 8


def test_median_interval_by_hand():
    # n = 20: P(B <= 5) = 21700 / 2^20 = 0.0207 <= 0.025 < P(B <= 6) = 0.0577, so ranks 6 and 15 (1-based)
    assert median_interval(np.arange(1.0, 21.0)[::-1]) == (6.0, 15.0)
    # n = 100: ranks 40 and 61 (Le Boudec 2010, Table A.1)
    assert median_interval(np.random.default_rng(0).permutation(np.arange(1.0, 101.0))) == (40.0, 61.0)
    # n = 5: even the extremes cover only 1 - 2/32 = 93.75%: the whole range
    assert median_interval(np.array([3.0, 1.0, 2.0, 5.0, 4.0])) == (1.0, 5.0)


def test_precision_rule_by_hand():
    assert precise(np.full(20, 7.0), 0.05)
    # 1..20: p50 10.5, interval [6, 15]: 43% below, not within ±5%
    assert not precise(np.arange(1.0, 21.0), 0.05)
    # 18 runs at 100 ms and one each at 50 and 200: the interval [100, 100] is exact despite the outliers
    assert precise(np.array([100.0] * 18 + [50.0, 200.0]), 0.05)
    assert summarise(np.arange(1.0, 21.0), batch=1)["p50_ci95_ms"] == [6.0, 15.0]


def test_bootstrap_of_identical_samples_is_the_exact_ratio():
    assert bootstrap_ratio(np.full(30, 10.0), np.full(25, 2.0)) == (5.0, 5.0)
    assert bootstrap_ratio(np.full(30, 10.0), np.full(25, 2.0), quantile=95) == (5.0, 5.0)


def test_bootstrap_interval_covers_the_true_ratio_and_excludes_wrong_ones():
    rng = np.random.default_rng(1)
    # log-normal latencies with medians 10 ms and 1 ms: the true p50 ratio is 10
    slow, fast = 10 * np.exp(rng.normal(0, 0.1, 200)), np.exp(rng.normal(0, 0.1, 200))
    low, high = bootstrap_ratio(slow, fast)
    assert low < 10 < high
    assert 9 < low and high < 11  # ±10% is excluded: the medians of 200 runs at σ = 10% are known to ~1%
    assert bootstrap_ratio(slow, fast, seed=0) == (low, high)  # a fixed seed: the same interval again


def test_a_paired_bootstrap_resamples_rounds_so_drift_between_rounds_cancels_in_the_ratio():
    """Resampled on their own, the runs of two models timed in the same rounds gave an interval ~1.8 times too
    wide when the machine drifted: the interleaving's precision was thrown away."""
    rng = np.random.default_rng(3)
    drift = np.exp(rng.normal(0, 0.15, 40))  # the machine's speed, round by round: both models share it
    slow = 24.1 * drift * np.exp(rng.normal(0, 0.02, 40))
    fast = 1.0 * drift * np.exp(rng.normal(0, 0.02, 40))
    paired, alone = bootstrap_ratio(slow, fast, paired=True), bootstrap_ratio(slow, fast)
    assert paired[0] < 24.1 < paired[1] and alone[0] < 24.1 < alone[1]
    assert (paired[1] - paired[0]) < 0.5 * (alone[1] - alone[0])
    assert 23.0 < paired[0] and paired[1] < 25.2  # within 5%: each ratio's own noise is 2 * 2%
    # rounds are resampled whole: a round's pair stays a pair (a constant ratio per round is the exact ratio)
    assert bootstrap_ratio(10 * drift, drift, paired=True) == pytest.approx((10.0, 10.0))
    with pytest.raises(ValueError, match="one run of each per round: 40 and 39 runs"):
        bootstrap_ratio(slow, fast[:39], paired=True)


def test_headline_is_at_the_students_length_with_intervals_from_the_raw_runs():
    from distillery.stages.benchmark import headline

    def model(p50, p95, size):
        return {"size_mb": size, "accuracy": 0.9,
                "cells": {f"b1_s{n}": {"p50_ms": p50 * n, "p95_ms": p95 * n} for n in (16, 64, 128)}}

    results = {"models": {"teacher_pytorch_fp32": model(10.0, 20.0, 90.0), "student_onnx_int8": model(1.0, 4.0, 9.0)}}
    raw = {"b1_s128": {"teacher_pytorch_fp32": np.full(20, 1280.0), "student_onnx_int8": np.full(20, 128.0)}}
    head = headline(results, [1, 8], [16, 64, 128], raw, target_length=128)
    assert head["cell"] == "b1_s128"
    assert head["p50_speedup"] == 10.0 and head["p95_speedup"] == 5.0 and head["size_ratio"] == 10.0
    assert head["p50_speedup_ci95"] == {"low": 10.0, "high": 10.0}  # constant runs: the exact ratio
    assert head["bootstrap"]["runs"] == {"teacher_pytorch_fp32": 20, "student_onnx_int8": 20}
    assert head["bootstrap"]["unit"] == "rounds"
    assert headline(results, [1, 8], [16, 64, 128])["cell"] == "b1_s64"  # the default: sequence 64
    assert "deployed" not in head  # no deployment named, or int8 ships: the headline is the shipped student's

    # fp32 ships (export.deploy: fp32, or int8 failed its gate): its own ratio is given beside the int8 headline
    results["models"]["student_onnx_fp32"] = model(2.5, 8.0, 30.0)
    results["deployable"] = "student.onnx"
    raw["b1_s128"]["student_onnx_fp32"] = np.full(20, 320.0)
    head = headline(results, [1, 8], [16, 64, 128], raw, target_length=128)
    assert head["p50_speedup"] == 10.0  # the int8 headline is unchanged
    assert head["deployed"] == {"model": "student_onnx_fp32", "p50_speedup": 4.0, "p95_speedup": 2.5,
                                "p50_speedup_ci95": {"low": 4.0, "high": 4.0}}
    results["deployable"] = "student.int8.onnx"
    assert "deployed" not in headline(results, [1, 8], [16, 64, 128], raw, target_length=128)
    assert headline(results, [1, 8], [16, 64, 128], target_length=100)["cell"] == "b1_s128"
    # the cell the gate reads its latency from (registry/latency.py): never a shorter one than the student's max
    # length, though nearer (a trial: 24 tokens gave "Latency at b1_s16" while the gate read b1_s64)
    assert headline(results, [1, 8], [16, 64, 128], target_length=24)["cell"] == "b1_s64"
    assert headline(results, [1, 8], [16, 64, 128], target_length=200)["cell"] == "b1_s128"  # none as long


def test_the_method_says_no_warm_up_round_when_warmup_is_0():
    """A trial: `benchmark.warmup: 0` gave "after 0 warm-up rounds, or fewer once they have taken 2s (never none)"."""
    from distillery.benchmark_report import _how_timed

    grid = {"warmup": 10, "max_warmup_seconds": 2.0, "min_runs": 20, "runs": 100, "target_precision": 0.05,
            "max_seconds_per_cell": 20.0}
    cells = {"b1_s64": {"runs": 20, "stopped_by": "time cap", "warmup_rounds": 10}}
    assert "after 10 warm-up rounds, or fewer once they have taken 2s (never none): at least 20" in _how_timed(
        {"headline": {}, "grid": grid, "cells": cells})
    text = _how_timed({"headline": {}, "grid": {**grid, "warmup": 0}, "cells": {"b1_s64": {**cells["b1_s64"],
                                                                                            "warmup_rounds": 0}}})
    assert "with no warm-up round (benchmark.warmup: 0;" in text and "never none" not in text, text
