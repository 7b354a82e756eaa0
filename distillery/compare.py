"""``python -m distillery compare``: the distillation recipes measured by ``kd_gain``, side by side.

Every ``kd_gain`` run leaves ``reports/kd_gain_runs/<variant>.json``. This command reads them all
and writes ``reports/compare.md`` (a table of test accuracy and macro-F1 as mean ± std over seeds,
the paired gain over the baseline, validation accuracy and training time, with the teacher
alongside) and ``reports/metrics/compare.json``. The recommended recipe is the one with the best
mean *validation* accuracy: the test split only reports, it never chooses.
"""
from __future__ import annotations

from pathlib import Path
from typing import Union

from distillery.config import Params
from distillery.errors import DataError
from distillery.files import read_json, write_json
from distillery.kd_gain import RUNS_DIR
from distillery.paths import REPORTS_DIR


def _pm(summary: dict, who: str) -> str:
    return f"{100 * summary[f'{who}_mean']:.2f} ± {100 * summary[f'{who}_std']:.2f}"


def _label(settings: dict) -> str:
    return "; ".join(f"{k} {v}" for k, v in settings.items())


def compare(params: Params, reports_dir: Union[str, Path] = REPORTS_DIR) -> dict:
    runs_dir = Path(reports_dir) / RUNS_DIR
    paths = sorted(runs_dir.glob("*.json"))
    if not paths:
        raise DataError(f"{runs_dir}: no kd_gain runs to compare; run `python -m distillery kd_gain` first")
    runs = [read_json(path) | {"file": path.name} for path in paths]
    best = max(runs, key=lambda r: r["validation"]["student_accuracy_mean"])
    lines = ["| recipe | seeds | test accuracy % | test macro-F1 ×100 | gain over baseline, accuracy points (95% CI) "
             "| validation accuracy % | distill s / seed |", "|---|---|---|---|---|---|---|"]
    baseline = runs[0]
    lines.append(f"| baseline (labels only) | {baseline['seeds']} | {_pm(baseline['accuracy'], 'baseline')} | "
                 f"{_pm(baseline['macro_f1'], 'baseline')} | | "
                 f"{100 * baseline['validation']['baseline_accuracy_mean']:.2f} | "
                 f"{baseline['train_seconds_mean']['baseline']:.0f} |")
    for run in runs:
        acc, f1 = run["accuracy"], run["macro_f1"]
        mark = " **(best on validation)**" if run is best else ""
        lines.append(f"| {_label(run['variant'])}{mark} | {run['seeds']} | {_pm(acc, 'student')} | "
                     f"{_pm(f1, 'student')} | "
                     f"{100 * acc['diff_mean']:+.2f} ({100 * acc['diff_ci95'][0]:+.2f} to "
                     f"{100 * acc['diff_ci95'][1]:+.2f}) | {100 * run['validation']['student_accuracy_mean']:.2f} | "
                     f"{run['train_seconds_mean']['student']:.0f} |")
    teacher = next((r["teacher"] for r in runs if "teacher" in r), None)
    if teacher:
        lines.append(f"| teacher | | {100 * teacher['accuracy']:.2f} | {100 * teacher['macro_f1']:.2f} | | | |")
    text = ("# Distillation recipes compared\n\nTest scores are mean ± sample standard deviation over the seeds; "
            "the gain is the paired difference from the baseline trained from the same initialisation. The "
            "recommendation uses validation accuracy only.\n\n" + "\n".join(lines) + "\n")
    (Path(reports_dir) / "compare.md").write_text(text, encoding="utf-8")
    result = {"runs": [{"file": r["file"], "variant": r["variant"], "test_accuracy_mean": r["accuracy"]["student_mean"],
                        "validation_accuracy_mean": r["validation"]["student_accuracy_mean"]} for r in runs],
              "best_on_validation": best["variant"], "table": text}
    write_json(Path(reports_dir) / "metrics" / "compare.json", result)
    return result
