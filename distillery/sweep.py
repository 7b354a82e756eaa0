"""``python -m distillery sweep``: the distilled student over ``sweep.alpha`` × ``sweep.temperature`` ×
``sweep.seeds``, with the setting chosen on the validation split.

It reuses the multi-seed machinery of ``kd_gain``: for each seed one student is built (the seed fixes
its new weights and the data order), and every run of that seed starts from a copy of it. The
labels-only baseline does not depend on α or T, so it is trained once per seed, and every cell's
paired difference (distilled − baseline, per seed, 95% t-interval) uses those same baselines.

The selected setting is the cell with the best mean ``sweep.metric`` on the **validation** split
(ties: the first in grid order, α then T); its test figures are reported, never used to choose.

Each finished run is kept in ``reports/sweep_runs/`` with a fingerprint of everything else it
depended on (the recipe, the training hyperparameters, the prepared data, the cached teacher
logits and the package's code), so an interrupted sweep resumes where it stopped and a changed
recipe or code starts afresh.
Outputs: ``reports/metrics/sweep.json``, ``reports/sweep.md``, ``reports/sweep.csv`` and
``reports/plots/sweep_heatmap.png``. Not part of ``dvc repro``: it trains
``len(seeds) × (1 + len(alpha) × len(temperature))`` students.
"""
from __future__ import annotations

import copy
import csv
import dataclasses
import json
from pathlib import Path
from typing import Union

import numpy as np

from distillery.config import Params, train_settings
from distillery.errors import ConfigError
from distillery.files import read_json, sha256_files, write_json, write_text
from distillery.kd_gain import (METRICS, collapse_warning, collapsed, paired_summary, train_and_score, variant,
                                verdict)
from distillery.paths import LOGITS_DIR, PREPARED_DIR, REPORTS_DIR, TEACHER_DIR
from distillery.prepared import load_labels, load_split
from distillery.stages.distill import distill_inputs
from distillery.task_types import VALIDATION_METRICS

RUNS_DIR = "sweep_runs"


def code_fingerprint(package: Union[Path, None] = None) -> str:
    """One hash over every module of the ``distillery`` package (relative paths and contents): a kept run
    trained by other code (a fixed loss, a changed Trainer setting) is not reused."""
    package = Path(package or Path(__file__).resolve().parent)
    files = sorted(p for p in package.rglob("*.py") if "__pycache__" not in p.parts)
    return sha256_files(files, "\n".join(p.relative_to(package).as_posix() for p in files))


def fingerprint(params: Params, prepared_dir: Path, logits_dir: Path) -> str:
    """What a run depends on besides its seed, α and T (the recipe, the data, the cached teacher outputs and the
    code); a kept run with another fingerprint is not reused."""
    recipe = {k: v for k, v in variant(params).items() if k not in ("alpha", "temperature")}
    # processes: these runs train in one process whatever it says, so it changes no figure (it retrained every run)
    train = {k: v for k, v in dataclasses.asdict(train_settings(params, "distill")).items() if k != "processes"}
    settings = json.dumps({"recipe": recipe, "train": train,
                           "student_max_length": params.student.max_length,
                           # which training rows keep their labels (a stratified sample seeded by `seed`)
                           "labelled_rows": params.distill.labelled_rows,
                           "labelled_seed": params.seed if params.distill.labelled_rows is not None else None,
                           "code": code_fingerprint()},
                          sort_keys=True, default=str)
    files = sorted(Path(prepared_dir).glob("*.parquet")) + [Path(prepared_dir) / "labels.json",
                                                            Path(logits_dir) / "manifest.json"]
    return sha256_files([f for f in files if f.is_file()], settings)


def _kept(runs_dir: Path, seed: int, cell: Union[tuple, None], key: str) -> Union[dict, None]:
    """The record kept for ``(seed, cell)`` in ``runs_dir`` when its fingerprint is ``key``, else None."""
    path = Path(runs_dir) / f"{run_name(seed, cell)}.json"
    record = read_json(path) if path.is_file() else None
    return record if record is not None and record.get("fingerprint") == key else None


def run_name(seed: int, cell: Union[tuple, None]) -> str:
    return f"seed-{seed}_baseline" if cell is None else f"seed-{seed}_alpha-{cell[0]:g}_T-{cell[1]:g}"


def grid(params: Params) -> list[tuple]:
    """The (α, T) cells, α then T; refused for the MSE loss, which has no temperature to sweep."""
    cfg = params.sweep
    if params.distill.loss == "mse" and len(cfg.temperature) > 1:
        raise ConfigError(f"sweep.temperature: distill.loss is mse, which has no temperature; list one value "
                          f"(got {cfg.temperature})")
    return [(float(a), float(t)) for a in cfg.alpha for t in cfg.temperature]


class _Runs:
    """Trains (or reuses) single runs; a seed's student and datasets are built once, on first need."""

    def __init__(self, params: Params, prepared_dir, teacher_dir, logits_dir, reports_dir, command: str = "sweep"):
        self.command, self.params = command, params
        self.dirs = (Path(prepared_dir), Path(teacher_dir), Path(logits_dir))
        self.runs_dir = Path(reports_dir) / RUNS_DIR
        self.frames = {s: load_split(s, prepared_dir) for s in ("test", "validation")}
        self.labels = load_labels(prepared_dir)
        self.key = fingerprint(params, Path(prepared_dir), Path(logits_dir))
        self.seed, self.inputs, self.initial = None, None, None
        if params.distill.train.processes > 1:  # it trained in one process without a word
            print(f"note: distill.train.processes is {params.distill.train.processes}, but these runs train one at a "
                  "time in this process (the setting is the distill stage's; a work pool runs them side by side)",
                  flush=True)

    def kept(self, seed: int, cell: Union[tuple, None]) -> Union[dict, None]:
        """The kept record of this run when it has the current fingerprint, else None."""
        return _kept(self.runs_dir, seed, cell, self.key)

    def run(self, seed: int, cell: Union[tuple, None], place: str = "") -> dict:
        """One run; ``place``: where it is in the caller's list ("3 of 6"), said as it starts."""
        kept = self.kept(seed, cell)
        if kept is not None:
            return kept
        who = "the baseline" if cell is None else f"the distilled student (alpha {cell[0]:g}, T {cell[1]:g})"
        print(f"{self.command}: training {who}, seed {seed}" + (f" ({place})" if place else ""), flush=True)
        path = self.runs_dir / f"{run_name(seed, cell)}.json"
        if self.seed != seed:
            self.inputs = distill_inputs(self.params, *self.dirs, seed=seed)
            self.seed, self.initial = seed, copy.deepcopy(self.inputs.student)
        inputs, params = self.inputs, self.params
        if cell is None:
            scores = train_and_score(params, inputs, copy.deepcopy(self.initial), inputs.baseline_dataset, None, seed,
                                     self.frames, self.labels, "sweep-baseline")
        else:
            options = dict(inputs.kd_options, alpha=cell[0], temperature=cell[1])
            scores = train_and_score(params, inputs, copy.deepcopy(self.initial), inputs.kd_dataset, options, seed,
                                     self.frames, self.labels, "sweep-student")
        record = {"seed": seed, "model": "baseline" if cell is None else "student",
                  "alpha": None if cell is None else cell[0], "temperature": None if cell is None else cell[1],
                  **scores, "fingerprint": self.key}
        write_json(path, record)
        return record


def kept_records(params: Params, runs: list[tuple], prepared_dir: Union[str, Path] = PREPARED_DIR,
                 logits_dir: Union[str, Path] = LOGITS_DIR, reports_dir: Union[str, Path] = REPORTS_DIR) -> list:
    """For each ``(seed, cell)`` of ``runs``, its kept record when it has the current fingerprint, else None."""
    key = fingerprint(params, Path(prepared_dir), Path(logits_dir))
    return [_kept(Path(reports_dir) / RUNS_DIR, seed, cell, key) for seed, cell in runs]


def sweep_run(params: Params, seed: int, cell: Union[tuple, None], prepared_dir: Union[str, Path] = PREPARED_DIR,
              teacher_dir: Union[str, Path] = TEACHER_DIR, logits_dir: Union[str, Path] = LOGITS_DIR,
              reports_dir: Union[str, Path] = REPORTS_DIR) -> dict:
    """One run of the grid on its own (``cell`` None: the seed's baseline), as a flow's task runs it; the kept
    record when it has the current fingerprint."""
    return _Runs(params, prepared_dir, teacher_dir, logits_dir, reports_dir).run(seed, cell)


def report(params: Params, records: list[dict], prepared_dir: Union[str, Path] = PREPARED_DIR,
           reports_dir: Union[str, Path] = REPORTS_DIR) -> dict:
    """Summarise the grid's runs, select on validation, and write the table, the JSON and the heatmap."""
    metrics = VALIDATION_METRICS[params.task]
    result = summarise(records, params.sweep.seeds, grid(params), params.sweep.metric or metrics[0], metrics)
    result.update(variant=variant(params), test_rows=int(len(load_split("test", prepared_dir))),
                  validation_rows=int(len(load_split("validation", prepared_dir))), collapsed=collapsed(records))
    write_reports(result, Path(reports_dir))
    return result


def sweep(params: Params, prepared_dir: Union[str, Path] = PREPARED_DIR, teacher_dir: Union[str, Path] = TEACHER_DIR,
          logits_dir: Union[str, Path] = LOGITS_DIR, reports_dir: Union[str, Path] = REPORTS_DIR) -> dict:
    """The whole grid in this process, seed by seed (the baseline first: it does not depend on α or T)."""
    cells = grid(params)
    runs = _Runs(params, prepared_dir, teacher_dir, logits_dir, reports_dir)
    todo = [(seed, cell) for seed in params.sweep.seeds for cell in [None, *cells]]
    records = [runs.run(seed, cell, f"run {n} of {len(todo)}") for n, (seed, cell) in enumerate(todo, 1)]
    return report(params, records, prepared_dir, reports_dir)


def summarise(records: list[dict], seeds: list[int], cells: list[tuple], metric: str,
              metrics: tuple = METRICS) -> dict:
    """Per cell: validation means, test mean ± std of student and baseline, the paired difference; the
    cell with the best mean validation ``metric`` selected. ``metrics``: the task's two scores, primary
    first (accuracy, macro_f1; f1, exact_match for extractive QA)."""
    metrics = tuple(metrics)
    baseline = {r["seed"]: r for r in records if r["model"] == "baseline"}
    rows = []
    for alpha, temperature in cells:
        student = {r["seed"]: r for r in records if r["model"] == "student" and r["alpha"] == alpha
                   and r["temperature"] == temperature}
        row = {"alpha": alpha, "temperature": temperature,
               "validation": {f"{who}_{m}_mean": float(np.mean([runs[s][f"validation_{m}"] for s in seeds]))
                              for who, runs in (("student", student), ("baseline", baseline)) for m in metrics},
               **{m: paired_summary([student[s][m] for s in seeds], [baseline[s][m] for s in seeds])
                  for m in metrics},
               "per_seed": {str(s): {"student": {m: student[s][m] for m in metrics},
                                     "baseline": {m: baseline[s][m] for m in metrics}} for s in seeds}}
        row["validation"][f"student_{metric}_std"] = float(np.std([student[s][f"validation_{metric}"] for s in seeds],
                                                                  ddof=1))
        rows.append(row)
    best = max(range(len(rows)), key=lambda i: rows[i]["validation"][f"student_{metric}_mean"])  # first on ties
    rows[best]["selected"] = True
    return {"seeds": list(seeds), "metric": metric, "metrics": list(metrics),
            "selected_by": f"validation {metric} (mean over seeds)",
            "cells": rows, "selected": {k: rows[best][k] for k in ("alpha", "temperature", "validation", *metrics)},
            "baseline": {m: {"mean": float(np.mean([baseline[s][m] for s in seeds])),
                             "std": float(np.std([baseline[s][m] for s in seeds], ddof=1))} for m in metrics}}


def _pm(mean: float, std: float, scale: float = 100.0) -> str:
    return f"{scale * mean:.2f} ± {scale * std:.2f}"


def write_reports(result: dict, reports_dir: Path) -> None:
    metric = result["metric"]
    first, second = result["metrics"]
    lines = [f"| α | T | validation {metric} % | test {first} % | test {second} ×100 | gain, {first} points "
             f"(95% CI) | gain, {second} ×100 (95% CI) |", "|---:|---:|---:|---:|---:|---:|---:|"]
    csv_rows = []
    for row in result["cells"]:
        acc, f1, val = row[first], row[second], row["validation"]
        mark = " **selected**" if row.get("selected") else ""
        lines.append(f"| {row['alpha']:g} | {row['temperature']:g}{mark} | "
                     f"{_pm(val[f'student_{metric}_mean'], val[f'student_{metric}_std'])} | "
                     f"{_pm(acc['student_mean'], acc['student_std'])} | {_pm(f1['student_mean'], f1['student_std'])} | "
                     f"{100 * acc['diff_mean']:+.2f} ({100 * acc['diff_ci95'][0]:+.2f} to "
                     f"{100 * acc['diff_ci95'][1]:+.2f}) | {100 * f1['diff_mean']:+.2f} "
                     f"({100 * f1['diff_ci95'][0]:+.2f} to {100 * f1['diff_ci95'][1]:+.2f}) |")
        csv_rows.append({"alpha": row["alpha"], "temperature": row["temperature"],
                         "selected": bool(row.get("selected")),
                         f"validation_{metric}_mean": val[f"student_{metric}_mean"],
                         **{f"{who}_{m}_{stat}": row[m][f"{who}_{stat}"] for m in (first, second)
                            for who in ("student", "baseline") for stat in ("mean", "std")},
                         **{f"diff_{m}_{k}": v for m in (first, second) for k, v in
                            (("mean", row[m]["diff_mean"]), ("ci95_low", row[m]["diff_ci95"][0]),
                             ("ci95_high", row[m]["diff_ci95"][1]))}})
    base, chosen = result["baseline"], result["selected"]
    text = (f"# α × T sweep\n\nSeeds {result['seeds']}; mean ± sample standard deviation over the seeds. The "
            f"baseline (labels only, trained once per seed): test {first} {_pm(**base[first])}%, {second} ×100 "
            f"{_pm(**base[second])}. The gain is the paired difference from it, per seed. The setting is "
            f"selected on the **validation** split ({result['selected_by']}); the test columns only report.\n\n"
            + "\n".join(lines) + f"\n\nSelected: α = {chosen['alpha']:g}, T = {chosen['temperature']:g} (validation "
            f"{metric} {100 * chosen['validation'][f'student_{metric}_mean']:.2f}%, the baseline's "
            f"{100 * chosen['validation'][f'baseline_{metric}_mean']:.2f}%); test "
            f"{first} {_pm(chosen[first]['student_mean'], chosen[first]['student_std'])}%, paired gain "
            f"{100 * chosen[first]['diff_mean']:+.2f} points (95% CI "
            f"{100 * chosen[first]['diff_ci95'][0]:+.2f} to {100 * chosen[first]['diff_ci95'][1]:+.2f}"
            f"{_bounded(chosen[first])}): "
            f"{verdict(chosen[first], len(result['seeds']), first, 'sweep.seeds')}.{_none_gains(result, first)}"
            f"{collapse_warning(result.get('collapsed', []))}\n")
    write_text(reports_dir / "sweep.md", text)
    csv_path = reports_dir / "sweep.csv"
    with open(csv_path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(csv_rows[0]))
        writer.writeheader()
        writer.writerows(csv_rows)
    write_json(reports_dir / "metrics" / "sweep.json", result)
    from distillery.plots import plot_sweep_heatmap

    plot_sweep_heatmap(result, reports_dir / "plots" / "sweep_heatmap.png")


def _bounded(gain: dict) -> str:
    return ", bounded to possible values" if gain.get("diff_ci95_bounded") else ""


def _none_gains(result: dict, metric: str) -> str:
    """Said when no setting of the grid beat the baseline on test, on average over the seeds."""
    if any(cell[metric]["diff_mean"] > 0 for cell in result["cells"]):
        return ""
    return (f" No setting of this grid beat the labels-only baseline on test {metric}, on average over the seeds: "
            "the selected one is the least bad.")


def summary(result: dict) -> str:
    first = result["metrics"][0]
    chosen, base, metric = result["selected"], result["baseline"][first], result["metric"]
    acc = chosen[first]
    return (f"{len(result['cells'])} settings x seeds {result['seeds']}; selected on validation: alpha "
            f"{chosen['alpha']:g}, T {chosen['temperature']:g} (validation {metric} "
            f"{100 * chosen['validation'][f'student_{metric}_mean']:.2f}%); its test {first} "
            f"{_pm(acc['student_mean'], acc['student_std'])}% vs baseline {_pm(base['mean'], base['std'])}%, paired "
            f"gain {100 * acc['diff_mean']:+.2f} points (95% CI {100 * acc['diff_ci95'][0]:+.2f} to "
            f"{100 * acc['diff_ci95'][1]:+.2f}{_bounded(acc)}): "
            f"{verdict(acc, len(result['seeds']), first, 'sweep.seeds')}; "
            "reports/sweep.md, reports/plots/sweep_heatmap.png" + collapse_warning(result.get("collapsed", [])))
