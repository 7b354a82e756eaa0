"""The promotion gate's checks on the candidate's own figures (:mod:`distillery.registry.gate` holds the rest and
the decision): ``retention``, ``above_one_label``, ``min_metric`` and ``above_baseline``. Plain dicts in, a check
``{"name", "passed", "value", "threshold", "detail"}`` out."""
from __future__ import annotations

from typing import Any, Optional

from distillery.reports import BELOW_BASELINE_POINTS

ROUNDING = 1e-9  # a figure equal to its threshold passes, whatever float rounding did to it (0.72 / 0.8 < 0.9)


def check(name: str, passed: bool, value: Any, threshold: Any, detail: str) -> dict:
    return {"name": name, "passed": bool(passed), "value": value, "threshold": threshold, "detail": detail}


def retention(candidate: dict, gate: dict) -> dict:
    retention, needed = candidate["retention"], gate["min_retention"]
    metric, collapsed = candidate.get("retention_metric", "accuracy"), candidate.get("teacher_one_label")
    if collapsed is not None and gate.get("above_one_label", True):  # a trial's broken data: the teacher at one
        # label, a student "keeping" 140% of it (above_one_label: false, for tiny test models, lets it pass)
        return check("retention", False, round(retention, 4), needed,
                     f"{retention:.4f} of the teacher's {metric}, but the teacher answers {collapsed!r} for every test "
                     "row (its training collapsed), so keeping its score means nothing")
    one_label = candidate.get("one_label") or {}
    teacher = candidate[metric] / retention if retention > 0 and candidate.get(metric) is not None else None
    if teacher is not None and metric in one_label and teacher <= one_label[metric] + ROUNDING and \
            gate.get("above_one_label", True):  # a trial's SNLI teacher at 31.7% under answering one label's 34.3%
        return check("retention", False, round(retention, 4), needed,
                     f"{retention:.4f} of the teacher's {metric}, but the teacher's {teacher:.4f} is no better than "
                     f"answering {one_label['label']!r} for every test row ({one_label[metric]:.4f}), so keeping its "
                     "score means nothing")
    return check("retention", retention >= needed - ROUNDING, round(retention, 4), needed,
                 f"{retention:.4f} of the teacher's {metric}, needs >= {needed}")


def above_baseline(candidate: dict, gate: dict) -> Optional[dict]:
    """This run's distilled student at least as good as its labels-only baseline in ``evaluate`` (both PyTorch, the
    same test rows): a trial's QA student 8.9 F1 points under its baseline was promoted on its retention of a
    teacher that was itself under the baseline."""
    evaluated, metric = candidate.get("evaluated") or {}, gate["metric"]
    student, baseline = (evaluated.get(who, {}).get(metric) for who in ("student", "baseline"))
    if not gate.get("above_baseline", True) or student is None or baseline is None:
        return None
    margin = BELOW_BASELINE_POINTS / 100  # one run's noise: evaluate's own warning starts there too
    said = f"distilled student {metric} {student:.4f} in evaluate, labels-only baseline {baseline:.4f}"
    if student >= baseline - margin - ROUNDING:
        return check("above_baseline", True, round(student, 4), round(baseline, 4), f"{said} (needs >= baseline - "
                                                                                   f"{margin:g})")
    return check("above_baseline", False, round(student, 4), round(baseline, 4),
                 f"{said}: more than {margin:g} below it, distillation made this student worse than training on the "
                 "labels alone (check the teacher's figures; `python -m distillery kd_gain` compares them over seeds)")


def above_one_label(candidate: dict, gate: dict) -> Optional[dict]:
    """The candidate's ``gate["metric"]`` above that of answering the test split's most frequent label for every
    row (``candidate["one_label"]``; classification only): a model at chance, or a teacher at chance that its
    student kept 100% of, is never promoted, even with no champion to compare with."""
    one_label, metric = candidate.get("one_label"), gate["metric"]
    if not gate.get("above_one_label", True) or not one_label or metric not in one_label or \
            candidate.get(metric) is None:
        return None
    value, floor = candidate[metric], one_label[metric]
    answer = f"answering {one_label['label']!r} for every test row"
    if value > floor + ROUNDING:
        return check("above_one_label", True, round(value, 4), round(floor, 4),
                     f"{metric} {value:.4f}, above {floor:.4f} for {answer}")
    return check("above_one_label", False, round(value, 4), round(floor, 4),
                 f"{metric} {value:.4f} is no better than {answer} ({floor:.4f}): the model has not learnt the task "
                 "(check the labels, the teacher's figures and the training curves)")


def min_metric(candidate: dict, gate: dict) -> Optional[dict]:
    """The candidate's ``gate["metric"]`` at least ``gate["min_metric"]`` (when set): an absolute floor, whatever the
    teacher scored. A candidate without that figure fails: no figure, no pass."""
    floor, metric = gate.get("min_metric"), gate["metric"]
    if floor is None:
        return None
    value = candidate.get(metric)
    if value is None:
        return check("min_metric", False, None, floor, f"the candidate has no {metric} figure to hold against "
                                                       f"register.gate.min_metric {floor}")
    verdict = "needs" if value >= floor - ROUNDING else "is below register.gate.min_metric, needs"
    return check("min_metric", value >= floor - ROUNDING, round(value, 4), floor,
                 f"{metric} {value:.4f} on the test split {verdict} >= {floor}")
