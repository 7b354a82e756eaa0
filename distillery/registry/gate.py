"""The promotion gate as a pure decision: plain dicts in, a decision dict out. No MLflow, no I/O.

``decide(candidate, champion, gate, is_champion=..., rolled_back_at=...)`` returns
``{"checks": [...], "passed": bool}``, each check ``{"name", "passed", "value", "threshold", "detail"}``:

- ``retention``: the candidate's score / the teacher's >= ``gate["min_retention"]``, in the task's first metric
  (``retention_metric``: accuracy; F1 for QA);
- ``above_one_label`` (classification, unless ``gate["above_one_label"]`` is false): ``gate["metric"]`` above that
  of answering the most frequent test label for every row (``candidate["one_label"]``): a model at chance is not
  promoted, champion or none;
- ``min_metric`` (when ``gate["min_metric"]`` is set): ``gate["metric"]`` >= that absolute floor, any task: a
  student that keeps all of a useless teacher's score passes ``retention``, and QA has no one-label floor;
- ``latency``: p95 at batch 1 <= ``gate["max_p95_ms"]``, or, when ``gate["max_p95_ratio_to_teacher"]`` is set,
  <= that ratio x the teacher's PyTorch p95 in the same benchmark cell and run (no figure, no pass);
- ``size``: deployable file <= ``gate["max_size_mb"]``;
- ``inputs``: the candidate's input columns are the champion's (a model that takes ``question`` and ``context``
  cannot answer the requests sent for one that takes ``text``; an unknown set fails the check), and nothing
  narrowed (``champion["input_narrowing"]``: what requests the champion took that the candidate refuses or reads
  otherwise, from ``serving.narrowing``): for an image model the same image size, no fewer channels, resizing
  kept, the same pixel range; for a text model every own column name of the data the champion read;
- ``labels``: the candidate's label names are the champion's (a different set is never served under
  the same name; a champion whose labels are unknown fails the check too);
- ``champion``: ``gate["metric"]`` >= the champion's, less ``gate["tolerance"]`` (an unscoreable champion fails, and
  so does a comparison on fewer test rows than ``gate["min_compare_rows"]`` unless the candidate wins clearly on
  them, better on significantly more rows than worse, by a one-sided sign test at ``CLEAR_WIN``: after a data
  refresh, the rows the champion did not see may be a handful, too few to tell two close models apart);
- ``not_rolled_back``: only when ``rolled_back_at`` is given and the version is not the champion;
- ``not_passed_over``: only when ``passed_over`` is given (``{"version", "at", "reason"}``: the champion was promoted
  by hand after this version was registered, so a person chose it over this one): a re-gated version never undoes
  that choice; a version registered after it may beat the champion as any other.

``retention`` fails whatever its value when the teacher answers one label for every test row
(``candidate["teacher_one_label"]``) or scores no better than doing so (``candidate["one_label"]``), unless
``gate["above_one_label"]`` is false. ``above_baseline`` (unless
``gate["above_baseline"]`` is false): the distilled student's ``gate["metric"]`` in this run's ``evaluate`` is at
least its labels-only baseline's (``candidate["evaluated"]``: ``{"student": {...}, "baseline": {...}}``): a student
that distillation made worse than training on the labels alone is not promoted.

``candidate``: ``retention``, ``p95_ms`` (or None), ``latency_cell``, ``teacher_p95_ms`` (or None), ``size_mb``,
``inputs``, ``labels``, the metric, and ``one_label`` (``{"label", "accuracy", "macro_f1"}``, or None).
``champion``: None (no champion yet), ``{"version", "error", "inputs"?, "labels"?}`` (could not be scored), or
``{"version", "accuracy", "macro_f1", "rescored", "inputs", "labels"}`` where ``inputs`` and ``labels`` are None
when unknown, and
optionally ``rows`` (``{"test_rows", "left_out", "checked"}``, with ``matched``: exact or normalised, and a
``note``), ``candidate`` (the candidate's figures on the same rows, when test rows the champion saw were
left out: the comparison uses them), ``paired`` (``{"better", "worse", "metric"}``: the rows the candidate does
better and worse on, when the comparison rests on fewer rows than the floor) and ``same_weights`` (the candidate is the champion's model under other serving
code or limits: the row floor does not apply).
"""
from __future__ import annotations

from typing import Optional

from distillery.registry.floors import ROUNDING, above_baseline, above_one_label, check, min_metric, retention
from distillery.reports import megabytes

REQUIRED_GATE_KEYS = ("min_retention", "max_p95_ms", "max_size_mb", "metric", "tolerance")
# the last ones may be absent: off (above_one_label: on)
GATE_KEYS = REQUIRED_GATE_KEYS + ("max_p95_ratio_to_teacher", "min_compare_rows", "above_one_label", "min_metric",
                                  "above_baseline")


TAG_ROUNDING = 5e-7  # half the last digit of a figure stored to 6 decimals


def _latency(candidate: dict, gate: dict) -> dict:
    p95, budget, ratio = candidate.get("p95_ms"), gate["max_p95_ms"], gate.get("max_p95_ratio_to_teacher")
    if p95 is None:
        cell = candidate.get("latency_cell") or "b1_s<student.max_length>"
        fix = "add 1 to benchmark.batch_sizes" if candidate.get("batch_sizes") and 1 not in candidate["batch_sizes"] \
            else "run the benchmark stage again" if candidate.get("sequence_inputs") is False \
            else "add student.max_length to benchmark.sequence_lengths"
        return check("latency", False, None, budget, f"no benchmark figure at {cell} or a longer batch-1 cell; {fix}")
    where = f"p95 {p95:.2f} ms at batch 1 ({candidate.get('latency_cell')})"
    if p95 <= budget:
        return check("latency", True, round(p95, 3), budget, f"{where}, needs <= {budget}")
    over = f"{where} is over the absolute budget of {budget} ms"
    if ratio is None:
        return check("latency", False, round(p95, 3), budget, f"{over} (register.gate.max_p95_ratio_to_teacher "
                                                              f"is off)")
    teacher = candidate.get("teacher_p95_ms")
    threshold = {"max_p95_ms": budget, "max_p95_ratio_to_teacher": ratio, "teacher_p95_ms": teacher}
    if teacher is None:
        return check("latency", False, round(p95, 3), threshold,
                     f"{over}, and the same run has no teacher PyTorch figure in that cell for the relative budget")
    relative = ratio * teacher
    threshold["relative_budget_ms"] = round(relative, 3)
    verdict = "within" if p95 <= relative else "also over"
    return check("latency", p95 <= relative, round(p95, 3), threshold,
                 f"{over}; {verdict} the relative budget {ratio} x teacher PyTorch p95 {teacher:.2f} ms = "
                 f"{relative:.2f} ms measured in the same run")


def _size(candidate: dict, gate: dict) -> dict:
    size, budget = candidate["size_mb"], gate["max_size_mb"]
    return check("size", size <= budget, round(size, 3), budget, f"{megabytes(size)} MB, needs <= {budget}")


def _inputs(candidate: dict, champion: Optional[dict], is_champion: bool) -> dict:
    ours = list(candidate.get("inputs") or [])
    if is_champion:
        return check("inputs", True, ours, None, "this version is the champion")
    if champion is None:
        return check("inputs", True, ours, None, "no champion yet")
    theirs = champion.get("inputs")
    if theirs is None or not ours:
        whose = "the candidate's" if not ours else f"champion v{champion['version']}'s"
        return check("inputs", False, ours, theirs, f"{whose} input columns are not known, so a model that answers "
                     f"other requests cannot be ruled out; check them and use `distillery promote <version> --reason ...`")
    theirs = list(theirs)
    if ours == theirs and "input_narrowing" in champion:  # the same columns: what else its requests may be
        narrowed = champion["input_narrowing"]
        if narrowed is None:
            return check("inputs", False, ours, theirs, f"what champion v{champion['version']}'s requests may be "
                         f"beyond their columns (an image model's shape and pixel range, a text model's own column "
                         f"names) could not be read ({champion.get('input_spec_error', 'unknown')}), so a model that "
                         "refuses its requests cannot be ruled out; check them and use `distillery promote <version> "
                         "--reason ...`")
        if narrowed:
            return check("inputs", False, ours, theirs, f"same input columns as champion v{champion['version']}, "
                         f"but {'; '.join(narrowed)}: requests it answers would be refused or read otherwise; a "
                         "model taking other requests goes under another register.model_name")
    if ours == theirs:
        return check("inputs", True, ours, theirs, f"same input columns as champion v{champion['version']}: "
                     f"{', '.join(ours)}" + (" (and every request it takes beyond them)"
                                             if "input_narrowing" in champion else ""))
    return check("inputs", False, ours, theirs,
                 f"input columns {ours} are not champion v{champion['version']}'s {theirs}: the requests sent to "
                 f"this name would not fit; a model with other inputs goes under another register.model_name")


def _labels(candidate: dict, champion: Optional[dict], is_champion: bool) -> dict:
    ours = list(candidate.get("labels") or [])
    if is_champion:
        return check("labels", True, ours, None, "this version is the champion")
    if champion is None:
        return check("labels", True, ours, None, "no champion yet")
    theirs = champion.get("labels")
    if theirs is None:
        return check("labels", False, ours, None,
                     f"the label names of champion v{champion['version']} are not recorded, so a different label "
                     f"set cannot be ruled out; check them and use `distillery promote <version> --reason ...`")
    theirs = list(theirs)
    if not ours:
        return check("labels", False, ours, theirs, "the candidate's label names are not known")
    if set(ours) == set(theirs) and len(ours) == len(theirs):
        return check("labels", True, ours, theirs, f"same {len(ours)} labels as champion v{champion['version']}")
    missing, extra = [x for x in theirs if x not in ours], [x for x in ours if x not in theirs]
    return check("labels", False, ours, theirs,
                 f"label set differs from champion v{champion['version']}'s: missing {missing or 'none'}, "
                 f"new {extra or 'none'}; a different label set is promoted only by hand "
                 f"(`distillery promote <version> --reason ...`) or under another register.model_name")


def _champion(candidate: dict, champion: Optional[dict], gate: dict, is_champion: bool) -> dict:
    if is_champion:
        return check("champion", True, None, None, "this version is the champion")
    if champion is None:
        return check("champion", True, None, None, "no champion yet")
    if "error" in champion:
        return check("champion", False, None, None,
                     f"champion v{champion['version']} could not be scored on the current test split "
                     f"({_first_line(champion['error'])}); choose one with `distillery promote <version> --reason ...`")
    metric, tolerance = gate["metric"], gate["tolerance"]
    same_rows = champion.get("candidate")  # both scored on the test rows the champion did not see
    ours, theirs = (same_rows or candidate)[metric], champion[metric]
    rows = champion.get("rows") or {}
    compared, floor = rows.get("test_rows", 0) - rows.get("left_out", 0), gate.get("min_compare_rows")
    # at 10 rows one row moves accuracy by 10 points: noise, not a verdict between two models (the champion's own
    # weights under newer serving code need only not do worse)
    if rows and floor and compared < floor and not champion.get("same_weights"):
        # so few rows replace a champion only with a clear win: better on significantly more of them than worse
        seen = (f" ({rows['left_out']} of the {rows['test_rows']} current test rows were in its training, validation "
                f"or transfer data)") if rows.get("left_out") else ""
        paired = champion.get("paired")
        p = sign_test(paired["better"], paired["worse"]) if paired else 1.0
        won = paired is not None and ours >= theirs - tolerance - ROUNDING and p < CLEAR_WIN
        evidence = (f"; better on {paired['better']} of them, worse on {paired['worse']} (one-sided sign test on "
                    f"{paired['metric']}: p = {p:.3g}, {'<' if p < CLEAR_WIN else 'not <'} {CLEAR_WIN})") if paired else ""
        return check("champion", won, round(ours, 4), round(theirs, 4),
                     f"{metric} {ours:.4f} vs champion v{champion['version']} {theirs:.4f} on only {compared} test rows"
                     f"{seen}, fewer than register.gate.min_compare_rows ({floor}), so only a clear win replaces it"
                     f"{evidence}" + ("" if won else "; choose with `distillery promote <version> --reason ...`, or "
                                                     "lower the key if so few rows are enough for you"))
    if same_rows:
        where = (f" (both on the {rows['test_rows'] - rows['left_out']} of {rows['test_rows']} current test rows "
                 f"champion v{champion['version']} did not train, validate or distill on"
                 + (f"; {rows['note']}" if rows.get("note") else "") + ")")
    elif champion.get("rescored"):
        where = " (re-scored on the current test split" + (
            "; the champion's training rows are not recorded, so the overlap is unchecked)"
            if rows and not rows.get("checked") else ")")
    else:
        where = ""
    # a champion's figure read back from its tags was stored to 6 decimals by versions before 2026-12-05: a tie
    # (30/45 = 0.6666...67 against 0.666667) must pass
    slack = TAG_ROUNDING if not same_rows and not champion.get("rescored") else ROUNDING
    return check("champion", ours >= theirs - tolerance - slack, round(ours, 4), round(theirs, 4),
                 f"{metric} {ours:.4f} vs champion v{champion['version']} {theirs:.4f}{where}"
                 f", needs >= champion - {tolerance}")


CLEAR_WIN = 0.05  # on fewer than min_compare_rows rows, the sign test's p-value a candidate must beat


def sign_test(better: int, worse: int) -> float:
    """One-sided exact sign test: the chance of ``better`` or more wins out of ``better + worse`` rows where the two
    models differ, were each row a coin toss (1.0 when they never differ)."""
    from math import comb

    n = better + worse
    return sum(comb(n, k) for k in range(better, n + 1)) / 2 ** n if n else 1.0


def decide(candidate: dict, champion: Optional[dict], gate: dict, is_champion: bool = False,
           rolled_back_at: Optional[str] = None, version: Optional[str] = None,
           passed_over: Optional[dict] = None) -> dict:
    """Every check and whether all passed. ``gate`` holds the keys of ``GATE_KEYS``."""
    missing = [key for key in REQUIRED_GATE_KEYS if key not in gate]
    if missing:
        raise KeyError(f"gate settings lack {missing}")
    inputs, labels = _inputs(candidate, champion, is_champion), _labels(candidate, champion, is_champion)
    if inputs["passed"] and labels["passed"]:
        against = _champion(candidate, champion, gate, is_champion)
    else:  # a champion reading other columns or answering other labels scores 0 on this split: no comparison
        failed = "inputs" if not inputs["passed"] else "labels"  # (it read "accuracy 0.8462 vs champion 0.0000")
        against = {**check("champion", True, None, None,
                           f"not compared: the {failed} check fails, so champion v{champion['version']}'s score on "
                           f"this test split would say nothing; the {failed} check decides"), "skipped": True}
    checks = [retention(candidate, gate), _latency(candidate, gate), _size(candidate, gate), inputs, labels, against]
    floors = [c for c in (above_one_label(candidate, gate), min_metric(candidate, gate),
                          above_baseline(candidate, gate)) if c is not None]
    checks[1:1] = floors
    if rolled_back_at and not is_champion:
        checks.append(check("not_rolled_back", False, rolled_back_at, None,
                            f"rolled back by hand at {rolled_back_at}; only "
                            f"`distillery promote {version or '<version>'}` restores it"))
    if passed_over and not is_champion:
        checks.append(check("not_passed_over", False, passed_over["at"], None,
                            f"champion v{passed_over['version']} was promoted by hand at {passed_over['at']} "
                            f"({passed_over.get('reason') or 'no reason recorded'!r}), after this version was "
                            f"registered: the gate does not undo that choice; `distillery promote "
                            f"{version or '<version>'} --reason ...` does"))
    return {"checks": checks, "passed": all(c["passed"] for c in checks)}


def _first_line(message: str) -> str:
    """One line of an error (MLflow's schema errors print the whole DataFrame on the lines after)."""
    lines = [line.strip() for line in str(message).splitlines() if line.strip()]
    return (lines[0] + (" ..." if len(lines) > 1 else "")) if lines else str(message)
