"""Plots as PNG files: the benchmark's latency vs accuracy (the Pareto front) and latency per grid cell, kd_gain's
per-seed scores, and the sweep's α × T heatmap."""
from __future__ import annotations

from pathlib import Path

COLOURS = {"teacher_pytorch_fp32": "#d62728", "student_pytorch_fp32": "#ff7f0e", "student_onnx_fp32": "#1f77b4",
           "student_onnx_int8": "#2ca02c", "teacher_onnx_int8": "#9467bd"}


def _pyplot():
    import logging

    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    # a machine without the STIX fonts its mathtext asks for: 21 lines of "findfont: ... Falling back to DejaVu Sans"
    # in the benchmark's output, for a plot drawn the same either way
    logging.getLogger("matplotlib.font_manager").setLevel(logging.ERROR)
    import matplotlib.pyplot as plt

    return plt


def plot_benchmark(results: dict, plots_dir: Path) -> list[Path]:
    plt = _pyplot()
    plots_dir.mkdir(parents=True, exist_ok=True)
    cell = results["headline"]["cell"]
    models = results["models"]

    fig, ax = plt.subplots(figsize=(7, 4.5))
    metric = results.get("metrics", ["accuracy"])[0]
    points = [(m["cells"][cell]["p50_ms"], 100 * (m[metric] or 0), name) for name, m in models.items()]
    for latency, accuracy, name in points:
        ax.scatter(latency, accuracy, s=60, color=COLOURS.get(name), zorder=3)
        ax.annotate(name, (latency, accuracy), textcoords="offset points", xytext=(6, 4), fontsize=8)
    front, best = [], -1.0
    for latency, accuracy, _ in sorted(points):
        if accuracy > best:
            front.append((latency, accuracy))
            best = accuracy
    ax.plot(*zip(*front), "--", color="grey", zorder=2, label="Pareto front")
    ax.set_xscale("log")
    ax.set_xlabel(f"p50 latency, ms ({cell.replace('_', ', ').replace('b', 'batch ').replace('s', 'seq ')})")
    ax.set_ylabel(f"test {metric.replace('_', ' ')}, %")
    ax.set_title(f"Latency vs {metric.replace('_', ' ')}")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    pareto = plots_dir / "benchmark_pareto.png"
    fig.savefig(pareto, dpi=110)
    plt.close(fig)

    cells = list(next(iter(models.values()))["cells"])
    fig, ax = plt.subplots(figsize=(max(8, len(cells) * 1.3), 4.5))
    width = 0.8 / len(models)
    for i, (name, m) in enumerate(models.items()):
        xs = [j + (i - (len(models) - 1) / 2) * width for j in range(len(cells))]
        ax.bar(xs, [m["cells"][c]["p50_ms"] for c in cells], width, label=name, color=COLOURS.get(name))
    ax.set_xticks(range(len(cells)), [c.replace("_", "\n") for c in cells])
    ax.set_yscale("log")
    ax.set_ylabel("p50 latency, ms (log)")
    threads = results["fingerprint"]["threads"]
    ax.set_title(f"Latency per batch size and sequence length ({threads} thread{'' if threads == 1 else 's'})")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    bars = plots_dir / "benchmark_latency.png"
    fig.savefig(bars, dpi=110)
    plt.close(fig)
    return [pareto, bars]


def plot_kd_gain(result: dict, path: Path) -> Path:
    """Per-seed test accuracy of the distilled student and the baseline, with the teacher as a line."""
    plt = _pyplot()
    metric = result.get("metrics", ["accuracy"])[0]  # f1 for extractive QA
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 4))
    for x, name, colour in ((0, "baseline", "#ff7f0e"), (1, "student", "#2ca02c")):
        values = [100 * r[name][metric] for r in result["per_seed"]]
        ax.scatter([x] * len(values), values, color=colour, zorder=3)
        ax.errorbar(x + 0.12, 100 * result[metric][f"{name}_mean"], yerr=100 * result[metric][f"{name}_std"],
                    fmt="o", color="black", capsize=4)
    for row in result["per_seed"]:
        ax.plot([0, 1], [100 * row["baseline"][metric], 100 * row["student"][metric]], color="grey", alpha=0.5)
    if "teacher" in result:
        ax.axhline(100 * result["teacher"][metric], color="#d62728", linestyle="--", label="teacher")
        ax.legend(loc="lower right")
    ax.set_xticks([0, 1], ["baseline (labels only)", "distilled student"])
    ax.set_ylabel(f"test {metric.replace('_', ' ')}, %")
    gain = result[metric]
    ax.set_title(f"Distillation gain over {len(result['per_seed'])} seeds: {100 * gain['diff_mean']:+.2f} points "
                 f"(95% CI {100 * gain['diff_ci95'][0]:+.2f} to {100 * gain['diff_ci95'][1]:+.2f})", fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def colour_scale(grid, gain: bool) -> dict:
    """A panel's colours: a gain on a diverging scale centred on 0 (red below, blue above, white at 0), so the least
    bad of all-negative gains is not drawn bright; other figures on viridis over their range."""
    import numpy as np

    if not gain:
        return {"cmap": "viridis"}
    reach = max(float(np.nanmax(np.abs(grid))), 1e-9)
    return {"cmap": "RdBu", "vmin": -reach, "vmax": reach}


def plot_sweep_heatmap(result: dict, path: Path) -> None:
    """Three panels over α (rows) × T (columns): validation metric, test primary metric, its paired test gain."""
    import numpy as np
    from matplotlib.patches import Rectangle

    plt = _pyplot()

    alphas = sorted({r["alpha"] for r in result["cells"]})
    temperatures = sorted({r["temperature"] for r in result["cells"]})
    metric, first = result["metric"], result["metrics"][0]
    panels = [(f"validation {metric} % (selects)", lambda r: 100 * r["validation"][f"student_{metric}_mean"]),
              (f"test {first} %", lambda r: 100 * r[first]["student_mean"]),
              (f"test {first} gain over baseline, points", lambda r: 100 * r[first]["diff_mean"])]
    fig, axes = plt.subplots(1, 3, figsize=(4.2 * 3, 0.7 * len(alphas) + 2.2))
    for ax, (title, value) in zip(axes, panels):
        grid = np.full((len(alphas), len(temperatures)), np.nan)
        for row in result["cells"]:
            i, j = alphas.index(row["alpha"]), temperatures.index(row["temperature"])
            grid[i, j] = value(row)
            ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=9)
            if row.get("selected"):
                ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, linewidth=2.5, edgecolor="black"))
        image = ax.imshow(grid, aspect="auto", **colour_scale(grid, gain="gain" in title))
        fig.colorbar(image, ax=ax, fraction=0.046)
        ax.set_xticks(range(len(temperatures)), [f"{t:g}" for t in temperatures])
        ax.set_yticks(range(len(alphas)), [f"{a:g}" for a in alphas])
        ax.set_xlabel("temperature T")
        ax.set_ylabel("alpha")
        ax.set_title(title, fontsize=10)
    fig.suptitle(f"α × T over seeds {result['seeds']} (mean); boxed: selected on validation", fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
