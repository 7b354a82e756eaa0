"""Report files: training curves for DVC plots and the results table."""
from __future__ import annotations

from pathlib import Path
from typing import Union

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
            f"{_weaker_than_labels(results, 'accuracy', 'accuracy')}{_one_answer(results)}"
            f"{_teacher_near_one_label(results)}\n")


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


def _confusion(results: dict, name: str):
    """Model ``name``'s test confusion matrix from evaluate's ``results`` (rows: the true labels), or None when
    there is none to read (QA, or a matrix of fewer than two labels or no rows)."""
    matrix = np.asarray(results.get(name, {}).get("confusion_matrix") or [], dtype=float)
    return None if matrix.ndim != 2 or matrix.shape[0] < 2 or matrix.sum() == 0 else matrix


def one_answer(results: dict, name: str):
    """The label model ``name`` of evaluate's ``results`` (eval.json) gave every test row, when it gave them all one
    (its confusion matrix has one non-empty column), else None."""
    labels = results.get("labels") or []
    matrix = _confusion(results, name)
    if matrix is None:
        return None
    answered = np.flatnonzero(matrix.sum(axis=0))
    if len(answered) != 1:
        return None
    return labels[answered[0]] if answered[0] < len(labels) else int(answered[0])


def _teacher_near_one_label(results: dict) -> str:
    """A warning when the teacher is not clearly better than answering the most frequent test label for every row
    (within two standard errors of its accuracy): it has barely learnt the task, so what it teaches and the students'
    retention of it mean little. A teacher giving one label to every row has its own warning (``_one_answer``)."""
    matrix = _confusion(results, "teacher")
    if matrix is None or one_answer(results, "teacher") is not None:
        return ""
    rows, counts = matrix.sum(), matrix.sum(axis=1)
    accuracy, floor = np.trace(matrix) / rows, counts.max() / rows
    margin = 2 * np.sqrt(accuracy * (1 - accuracy) / rows)
    if accuracy - floor >= margin or np.count_nonzero(counts) < 2:  # a test split of one label has no such floor
        return ""
    labels = results.get("labels") or []
    top = int(counts.argmax())
    label = labels[top] if top < len(labels) else top
    where = f"{100 * (floor - accuracy):.1f} points BELOW" if accuracy < floor else \
        f"within {100 * margin:.1f} points (two standard errors on {rows:,.0f} rows) of"
    return (f"\n\nWarning: the teacher's accuracy ({accuracy:.1%}) is {where} answering {label!r} for every test row "
            f"({floor:.1%}): by accuracy it has barely learnt the task, so what it teaches and the students' "
            "retention of it mean little. Fix the teacher first (teacher.train.learning_rate, .epochs, more training "
            "rows, teacher.model); on imbalanced classes, also read its macro-F1.")


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
