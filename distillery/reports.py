"""Report files: training curves for DVC plots and the results table."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import numpy as np
import pandas as pd

from distillery.files import write_text

MODELS = ("teacher", "student", "baseline")


def _threads(count) -> str:
    return f"{count} thread{'' if count == 1 else 's'}"


def parameters(count) -> str:
    """A parameter count as a table shows it: 22.7M, 15.6M, 3.2K (an image primer's MLP), 850."""
    count = int(count or 0)
    if count >= 100_000:
        return f"{count / 1e6:.1f}M"
    return f"{count / 1e3:.1f}K" if count >= 1_000 else str(count)


def megabytes(size: float) -> str:
    """A size in MB to one decimal, or to three significant digits below 1 MB (a small image network is 0.02 MB,
    not 0.0)."""
    return f"{size:.1f}" if size >= 1 else f"{size:.3g}"


def memory(mb: float) -> str:
    """A model's added peak memory as a table shows it; under 1 MB (a tiny model: the allocator reuses memory
    the process already held) is "<1", not a "0" that reads as not measured."""
    return "<1" if mb < 1 else f"{mb:.0f}"


def curves(log_history: list[dict]) -> tuple[list[dict], list[dict]]:
    """(training loss per logging step, validation metrics per epoch) rows for DVC plots."""
    train = [{"step": e["step"], "epoch": round(e["epoch"], 3), "loss": e["loss"]}
             for e in log_history if "loss" in e and "eval_loss" not in e]
    evals = [{"epoch": round(e["epoch"], 3), "step": e["step"],
              **{k[5:]: v for k, v in e.items() if k.startswith("eval_") and isinstance(v, float)
                 and not k.endswith(("runtime", "per_second"))}}
             for e in log_history if "eval_loss" in e]
    return train, evals


def write_curves(name: str, log_history: list[dict], curves_dir: Union[str, Path]) -> None:
    """``<name>_loss.csv`` (loss per logging step) and ``<name>_eval.csv`` (validation metrics per epoch)."""
    train, evals = curves(log_history)
    curves_dir = Path(curves_dir)
    write_text(curves_dir / f"{name}_loss.csv", pd.DataFrame(train, columns=["step", "epoch", "loss"])
               .to_csv(index=False))
    write_text(curves_dir / f"{name}_eval.csv", pd.DataFrame(evals).to_csv(index=False))


NAMES = {"accuracy": "accuracy", "macro_f1": "macro-F1", "f1": "F1", "exact_match": "exact match"}


def results_table(results: dict, primary: str = "accuracy", secondary: str = "macro_f1") -> str:
    """Markdown table: teacher, distilled student and baseline on the test split."""
    if primary != "accuracy" or secondary != "macro_f1":
        return _scores_table(results, primary, secondary)
    rows = ["| model | accuracy | macro-F1 | ROC AUC | parameters | train seconds |",
            "|---|---:|---:|---:|---:|---:|"]
    for name in MODELS:
        r = results[name]
        auc = f"{r['roc_auc']:.3f}" if r.get("roc_auc") is not None else "n/a"
        rows.append(f"| {name} | {100 * r['accuracy']:.1f}% | {r['macro_f1']:.3f} | {auc} | "
                    f"{parameters(r['parameters'])} | {r['train_seconds']:.0f} |")
    lines = "\n".join(rows)
    return (f"{lines}\n\nStudent keeps {100 * results['student_accuracy_retention']:.1f}% of the teacher's accuracy; "
            f"distillation gain over the baseline: {100 * results['student_minus_baseline_accuracy']:+.1f} accuracy "
            f"points, {results['student_minus_baseline_macro_f1']:+.3f} macro-F1 "
            f"(test split, {results['test_rows']} rows).{_few_rows(results['test_rows'])}"
            f"{_weaker_than_labels(results, 'accuracy', 'accuracy')}{_one_answer(results)}\n")


def _few_rows(rows: int, row: str = "One test row is") -> str:
    """A caveat under a table of one seed on a small test split: its differences are mostly noise."""
    if not rows or rows >= 1000:
        return ""
    return (f" {row} {100 / rows:.3g} points here: one seed's differences on so few rows are mostly noise; "
            "`python -m distillery kd_gain` measures the gain over seeds, with its interval.")


BELOW_BASELINE_POINTS = 1.0  # a distilled student further below its labels-only twin than this is called out


def _below_baseline(gain_points: float, metric: str) -> str:
    """A warning when the distilled student scores clearly below the same student trained on labels alone: the
    product's claim failed on this run, and a number with a minus sign in a sentence is easy to miss."""
    if gain_points >= -BELOW_BASELINE_POINTS:
        return ""
    return (f"\n\nWarning: the distilled student is {-gain_points:.1f} {metric} points BELOW its labels-only "
            "baseline: distillation did not help on this run. `python -m distillery kd_gain` tells whether it holds "
            "over seeds; the usual causes are distill.train.learning_rate (a rate set by hand, too low or too high "
            "for the student family: learning_rate: auto takes the family's own; more epochs on small data), "
            "distill.alpha and distill.temperature (`python -m distillery sweep`).")


def _weaker_than_labels(results: dict, primary: str, metric: str) -> str:
    """The warnings of a run whose distillation did not pay: a teacher clearly below the labels-only baseline (the
    student has less to learn from it than from the labels, so the teacher is what to fix, and a retention above
    100% is no success), else a distilled student clearly below that baseline."""
    teacher_gap = 100 * (results["baseline"][primary] - results["teacher"][primary])
    if teacher_gap > BELOW_BASELINE_POINTS:
        return (f"\n\nWarning: the teacher is {teacher_gap:.1f} {metric} points BELOW the labels-only baseline: it "
                "has less to teach than the labels, so distillation cannot pay off and the student's retention of "
                "the teacher means little. Fix the teacher first (teacher.train.learning_rate, .epochs, teacher.model)"
                "; its curves are in reports/curves/teacher_*.csv." + _student_too(results, primary, metric))
    return _below_baseline(100 * results[f"student_minus_baseline_{primary}"], metric)


def _student_too(results: dict, primary: str, metric: str) -> str:
    """The distilled student's own gap, said beside the teacher's warning (a trial's was only a number in the table;
    the gate's above_baseline refuses it)."""
    gap = -100 * results[f"student_minus_baseline_{primary}"]
    return f" The distilled student is {gap:.1f} {metric} points below the baseline too." \
        if gap > BELOW_BASELINE_POINTS else ""


def one_answer(results: dict, name: str):
    """The label model ``name`` of evaluate's ``results`` (eval.json) gave every test row, when it gave them all one
    (its confusion matrix has one non-empty column), else None."""
    labels = results.get("labels") or []
    matrix = np.asarray(results.get(name, {}).get("confusion_matrix") or [], dtype=float)
    if matrix.ndim != 2 or matrix.shape[0] < 2 or matrix.sum() == 0:
        return None
    answered = np.flatnonzero(matrix.sum(axis=0))
    if len(answered) != 1:
        return None
    return labels[answered[0]] if answered[0] < len(labels) else int(answered[0])


def _one_answer(results: dict) -> str:
    """A warning per model that gives one label to every test row (its confusion matrix has one non-empty column):
    a training that collapsed (too low a learning rate or too few epochs on small data), said before the gate."""
    lines = []
    for name in MODELS:
        label = one_answer(results, name)
        if label is not None:
            lines.append(f"\n\nWarning: the {name} answers {label!r} for every test row: its training collapsed "
                         f"to the one label (a learning rate too low for the data, or too few epochs: "
                         f"{'teacher' if name == 'teacher' else 'distill'}.train.learning_rate, .epochs).")
    return "".join(lines)


def _scores_table(results: dict, primary: str, secondary: str) -> str:
    """The table for a task scored by two metrics in [0, 1] (extractive QA: F1 and exact match), in percent."""
    rows = [f"| model | {NAMES.get(primary, primary)} | {NAMES.get(secondary, secondary)} | parameters | "
            "train seconds |", "|---|---:|---:|---:|---:|"]
    for name in MODELS:
        r = results[name]
        rows.append(f"| {name} | {100 * r[primary]:.1f} | {100 * r[secondary]:.1f} | {parameters(r['parameters'])} | "
                    f"{r['train_seconds']:.0f} |")
    return ("\n".join(rows) + f"\n\nStudent keeps {100 * results[f'student_{primary}_retention']:.1f}% of the "
            f"teacher's {NAMES.get(primary, primary)}; distillation gain over the baseline: "
            f"{100 * results[f'student_minus_baseline_{primary}']:+.1f} {NAMES.get(primary, primary)} points, "
            f"{100 * results[f'student_minus_baseline_{secondary}']:+.1f} {NAMES.get(secondary, secondary)} points "
            f"(test split, {results['test_rows']} rows)."
            f"{_few_rows(results['test_rows'], 'One test row moves a score by up to')}"
            f"{_weaker_than_labels(results, primary, NAMES.get(primary, primary))}\n")


def _percent(value) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


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
        method = (f"\n\nModels timed in interleaved rounds in each cell, after {grid['warmup']} warm-up rounds{cap}: "
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
    return boot + method


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
