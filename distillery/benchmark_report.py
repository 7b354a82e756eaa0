"""The benchmark's markdown report (``reports/benchmark.md``): latency per model at the headline cell (or, for a
task scored otherwise, at each length), the student-vs-teacher ratios with their intervals, how each cell was timed
and the distance to the hardware's limit."""
from __future__ import annotations

from typing import Optional

from distillery.reports import NAMES, _percent, _threads, megabytes, memory, parameters


def _percentile(value: float, runs: int, needed: int) -> str:
    """A percentile, marked ``*`` when fewer than ``needed`` runs back it (its tail is one or two runs)."""
    return f"{value:.2f}" + ("*" if runs < needed else "")


def _interval(ci: Optional[dict]) -> str:
    return "" if not ci else f" (95% CI {ci['low']:.1f}-{ci['high']:.1f}x)"


def _fp32_peak_source(peaks: dict) -> str:
    """Which runtime's GEMM set the fp32 peak (a benchmark.json of before both were measured: torch)."""
    if "fp32_gflops_onnxruntime" not in peaks:
        return "torch"
    torch_rate, ort_rate = peaks["fp32_gflops_torch"], peaks["fp32_gflops_onnxruntime"]
    return (f"ONNX Runtime; torch {torch_rate:.1f}" if ort_rate > torch_rate
            else f"torch; ONNX Runtime {ort_rate:.1f}")


def roofline_text(results: dict) -> str:
    """The distance to the hardware's limit at the headline cell, when the benchmark measured the peaks."""
    peaks = results.get("roofline")
    cell = results.get("headline", {}).get("cell")
    if not peaks or not cell:
        return ""
    parts = []
    for name, unit in (("student_onnx_int8", "int8_gops"), ("student_onnx_fp32", "fp32_gflops"),
                       ("teacher_pytorch_fp32", "fp32_gflops")):
        stats = results["models"].get(name, {}).get("cells", {}).get(cell, {})
        if "fraction_of_peak" in stats:
            parts.append(f"{name} {stats['gflop']:.3g} GFLOP per call, {stats['attained_g_per_s']:.3g} G/s = "
                         f"{100 * stats['fraction_of_peak']:.1f}% of the {'int8' if 'int8' in unit else 'fp32'} peak")
    return (f"\n\nDistance to the hardware's limit: a {peaks['size']}x{peaks['size']} matrix product reaches "
            f"{peaks['fp32_gflops']:.1f} GFLOP/s in fp32 ({_fp32_peak_source(peaks)}) and "
            f"{peaks['int8_gops']:.1f} GOP/s in int8 (ONNX Runtime) with {_threads(peaks['threads'])} on this machine; "
            f"at {cell}: " + "; ".join(parts) + ".")


def _deployed(head: dict) -> str:
    """The shipped student's own ratio, when it is not the int8 model of the headline."""
    mine = head.get("deployed")
    if not mine:
        return ""
    return (f" ({mine['model']}: {mine['p50_speedup']:.1f}x faster than the teacher at p50"
            f"{_interval(mine.get('p50_speedup_ci95'))}, {mine['p95_speedup']:.1f}x at p95)")


def _latency_cells(c: dict) -> str:
    """A cell's p50, its 95% interval, p95, p99 and runs, each tail marked ``*`` when too few runs back it."""
    ci = c.get("p50_ci95_ms")
    ci_text = (f"{ci[0]:.2f}-{ci[1]:.2f}" + ("*" if c["runs"] < 6 else "")) if ci else "n/a"
    return (f"{c['p50_ms']:.2f} | {ci_text} | {_percentile(c['p95_ms'], c['runs'], 20)} | "
            f"{_percentile(c['p99_ms'], c['runs'], 100)} | {c['runs']}")


def _how_timed(results: dict) -> str:
    """How the cells were timed (the interleaved rounds, their stopping rule, what ``*`` marks) and how the
    intervals were drawn."""
    head, grid = results["headline"], results["grid"]
    method = ""
    if "min_runs" in grid:
        stops = [f"{name} {c['runs']} runs ({c['stopped_by']}" + (
                     f"; {c['warmup_rounds']} warm-up round{'s' if c['warmup_rounds'] != 1 else ''}"
                     if c.get("warmup_rounds", grid["warmup"]) < grid["warmup"] else "") + ")"
                 for name, c in results.get("cells", {}).items()]
        cap = (f", or fewer once they have taken {grid['max_warmup_seconds']:g}s (never none)"
               if "max_warmup_seconds" in grid else "")
        warm = (f"after {grid['warmup']} warm-up rounds{cap}" if grid["warmup"] else
                "with no warm-up round (benchmark.warmup: 0; loading ran each model once on each cell, untimed)")
        method = (f"\n\nModels timed in interleaved rounds in each cell, {warm}: "
                  f"at least {grid['min_runs']} and at most {grid['runs']} runs per model, stopping once every p50's "
                  f"95% interval (order statistics) is within ±{100 * grid['target_precision']:g}% or after "
                  f"{grid['max_seconds_per_cell']:g}s; thread pools sleep between runs (no spinning; OpenMP wait "
                  f"policy {grid.get('omp_wait_policy', 'unset')}). Runs per model by cell: {'; '.join(stops)}. "
                  "\\* marks a p95 from fewer than 20 runs or a p99 from fewer than 100 (a tail of one or two runs), "
                  "and a p50 interval from fewer than 6 runs: their range, which holds the median with probability "
                  "1 - 2/2^runs, under 95%. The intervals take the runs as they came; a cell stopped once they were "
                  "narrow enough, so they are a guide, not an exact 95%.")
    runs = head.get("bootstrap", {}).get("runs")
    if runs and head["bootstrap"].get("unit") == "rounds":
        boot = (f" Intervals: percentile bootstrap, {head['bootstrap']['resamples']} resamples of the "
                f"{next(iter(runs.values()))} interleaved rounds (a round's runs of every model together, so drift "
                f"between rounds cancels in a ratio; seed {head['bootstrap']['seed']}); they cover this run's timing "
                f"noise, not how another run or host would differ.")
    else:
        boot = "" if not runs else (
            f" Intervals: percentile bootstrap, {head['bootstrap']['resamples']} resamples of each model's "
            f"{' and '.join(str(n) for n in runs.values())} runs (seed {head['bootstrap']['seed']}).")
    memory_note = "" if "runtime_startup_mb" not in results else (
        " Added peak memory: the growth of this process's resident memory while each model was loaded and run once "
        f"on every cell, after the runtimes' start-up ({results['runtime_startup_mb']:.0f} MB: the modules that load "
        "a model and a first run of each runtime, on throwaway tiny models), which no model's figure carries; memory "
        "one model frees may serve the next.")
    return boot + method + memory_note


LATENCY_HEADER = "| model | p50 ms | p50 95% CI ms | p95 ms | p99 ms | runs |"


def benchmark_table(results: dict) -> str:
    """Markdown: per model, latency at the headline cell (p50 with its 95% interval, the runs behind it),
    size, parameters, accuracy; then the ratios with their bootstrap intervals and how each cell was timed.

    A task scored by other metrics (extractive QA: ``f1``, ``exact_match``) shows those instead."""
    head = results["headline"]
    metrics = results.get("metrics", ["accuracy", "macro_f1"])
    if metrics != ["accuracy", "macro_f1"]:
        return _benchmark_scores_table(results, metrics)
    cell = head["cell"]
    fp = results["fingerprint"]
    rows = [LATENCY_HEADER + " size MB | parameters | added peak memory MB | accuracy | macro-F1 |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, m in results["models"].items():
        f1 = "n/a" if m["macro_f1"] is None else f"{m['macro_f1']:.3f}"
        rows.append(f"| {name} | {_latency_cells(m['cells'][cell])} | {megabytes(m['size_mb'])} | "
                    f"{parameters(m['parameters'])} | {memory(m['peak_memory_mb'])} | {_percent(m['accuracy'])} | "
                    f"{f1} |")
    return (f"Latency at {cell} ({_threads(fp['threads'])}, {fp['cpu']}, torch {fp['torch']}, "
            f"onnxruntime {fp['onnxruntime']}):\n\n" + "\n".join(rows) +
            f"\n\nStudent ONNX int8 vs teacher PyTorch fp32, same run: {head['p50_speedup']:.1f}x faster at p50"
            f"{_interval(head.get('p50_speedup_ci95'))}, {head['p95_speedup']:.1f}x at p95"
            f"{_interval(head.get('p95_speedup_ci95'))}, {head['size_ratio']:.1f}x smaller; accuracy "
            f"{head['accuracy_change_points']:+.1f} points. Deployable student model: {results['deployable']}"
            f"{_deployed(head)}.{_how_timed(results)}{roofline_text(results)}\n")


def _benchmark_scores_table(results: dict, metrics: list[str]) -> str:
    head, fp = results["headline"], results["fingerprint"]
    primary, secondary = metrics
    names = [NAMES.get(m, m) for m in metrics]
    lines = []
    grid = results["grid"]
    batch = 1 if 1 in grid["batch_sizes"] else min(grid["batch_sizes"])
    for cell in [f"b{batch}_s{length}" for length in grid["sequence_lengths"]]:
        rows = [LATENCY_HEADER + f" size MB | parameters | added peak memory MB | {names[0]} | {names[1]} |",
                "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for name, m in results["models"].items():
            rows.append(f"| {name} | {_latency_cells(m['cells'][cell])} | {megabytes(m['size_mb'])} | "
                        f"{parameters(m['parameters'])} | {memory(m['peak_memory_mb'])} | {_percent(m[primary])} | "
                        f"{_percent(m[secondary])} |")
        lines.append(f"Latency at {cell} ({_threads(fp['threads'])}, {fp['cpu']}, torch {fp['torch']}, "
                     f"onnxruntime {fp['onnxruntime']}):\n\n" + "\n".join(rows))
    return ("\n\n".join(lines) +
            f"\n\nStudent ONNX int8 vs teacher PyTorch fp32 at {head['cell']}, same run: {head['p50_speedup']:.1f}x "
            f"faster at p50{_interval(head.get('p50_speedup_ci95'))}, {head['p95_speedup']:.1f}x at p95, "
            f"{head['size_ratio']:.1f}x smaller; {names[0]} {head[f'{primary}_change_points']:+.1f} points. Deployable "
            f"student model: {results['deployable']}{_deployed(head)}.{_how_timed(results)}{roofline_text(results)}\n")
