"""The promotion gate's pure decision and the helpers behind tracking, without MLflow."""
import dataclasses
import math
import subprocess
import sys

import pytest

from distillery.config import Params, validate
from distillery.errors import ConfigError
from distillery.registry.gate import GATE_KEYS, decide
from distillery.registry.latency import latency, teacher_latency
from distillery.run_records import dvc_tags, numeric_leaves, stage_status

GATE = {"min_retention": 0.98, "max_p95_ms": 2.0, "max_size_mb": 15.0, "metric": "accuracy", "tolerance": 0.0}
LABELS = ["negative", "neutral", "positive"]
CANDIDATE = {"accuracy": 0.80, "macro_f1": 0.70, "retention": 0.98, "p95_ms": 2.0, "latency_cell": "b1_s64",
             "size_mb": 15.0, "inputs": ["text"], "labels": LABELS}
CHAMPION = {"version": "3", "accuracy": 0.79, "macro_f1": 0.69, "rescored": False, "inputs": ["text"],
            "labels": LABELS}


def _failed(decision: dict) -> list[str]:
    return [c["name"] for c in decision["checks"] if not c["passed"]]


def _check(decision: dict, name: str) -> dict:
    return next(c for c in decision["checks"] if c["name"] == name)


def test_a_candidate_at_every_threshold_passes_every_check():
    decision = decide(CANDIDATE, CHAMPION, GATE)
    assert [c["name"] for c in decision["checks"]] == ["retention", "latency", "size", "inputs", "labels", "champion"]
    assert _failed(decision) == [] and decision["passed"] is True


@pytest.mark.parametrize("change, failing", [
    ({"retention": 0.9799}, "retention"),
    ({"p95_ms": 2.01}, "latency"),
    ({"p95_ms": None}, "latency"),  # no figure, no pass
    ({"size_mb": 15.1}, "size"),
    ({"accuracy": 0.789}, "champion"),
    ({"labels": ["negative", "positive"]}, "labels"),
    ({"inputs": ["text", "text_pair"]}, "inputs"),
])
def test_each_check_fails_alone(change, failing):
    decision = decide({**CANDIDATE, **change}, CHAMPION, GATE)
    assert _failed(decision) == [failing] and decision["passed"] is False


def test_retention_fails_whatever_its_value_when_the_teacher_answers_one_label():
    """A trial's stray float TIFF broke the teacher (one label for every test row) and not the student: 'retention
    1.40' passed, and with no champion yet the gate would have promoted it."""
    decision = decide({**CANDIDATE, "retention": 1.4, "teacher_one_label": "circle"}, None, GATE)
    assert _failed(decision) == ["retention"] and decision["passed"] is False
    assert _check(decision, "retention")["detail"] == (
        "1.4000 of the teacher's accuracy, but the teacher answers 'circle' for every test row (its training "
        "collapsed), so keeping its score means nothing")
    assert _failed(decide({**CANDIDATE, "retention": 1.4, "teacher_one_label": None}, None, GATE)) == []


def test_retention_fails_when_the_teacher_is_no_better_than_answering_one_label():
    """A trial's SNLI teacher scored 31.7% where answering 'neutral' for every row scored 34.3%: its student (38.0%)
    passed retention at 1.21 and became the first champion."""
    one_label = {"label": "neutral", "accuracy": 0.343, "macro_f1": 0.17}
    weak = {**CANDIDATE, "accuracy": 0.38, "retention": 0.38 / 0.317, "one_label": one_label}
    decision = decide(weak, None, GATE)
    assert "retention" in _failed(decision) and decision["passed"] is False
    assert _check(decision, "retention")["detail"] == (
        "1.1987 of the teacher's accuracy, but the teacher's 0.3170 is no better than answering 'neutral' for every "
        "test row (0.3430), so keeping its score means nothing")
    # a teacher above that line is held to retention as before; above_one_label: false (tiny test models) lets it by
    able = {**weak, "retention": 0.38 / 0.37}
    assert "retention" not in _failed(decide(able, None, GATE))
    assert "retention" not in _failed(decide(weak, None, {**GATE, "above_one_label": False}))


def test_a_student_below_its_labels_only_baseline_fails_above_baseline():
    """A trial's QA student was promoted 8.9 F1 points below its labels-only baseline."""
    evaluated = {"student": {"accuracy": 0.70, "macro_f1": 0.6}, "baseline": {"accuracy": 0.7101, "macro_f1": 0.5}}
    decision = decide({**CANDIDATE, "evaluated": evaluated}, CHAMPION, GATE)
    assert _failed(decision) == ["above_baseline"] and decision["passed"] is False
    assert _check(decision, "above_baseline")["detail"].startswith(
        "distilled student accuracy 0.7000 in evaluate, labels-only baseline 0.7101: more than 0.01 below it, "
        "distillation made this student worse than training on the labels alone")
    assert _failed(decide({**CANDIDATE, "evaluated": evaluated}, CHAMPION, {**GATE, "metric": "macro_f1"})) == []
    assert _failed(decide({**CANDIDATE, "evaluated": evaluated}, CHAMPION, {**GATE, "above_baseline": False})) == []
    # within a point (one run's noise; evaluate's warning starts there too), and a tie, pass
    for baseline in (0.7, 0.71):
        close = {"student": {"accuracy": 0.7}, "baseline": {"accuracy": baseline}}
        assert _check(decide({**CANDIDATE, "evaluated": close}, CHAMPION, GATE), "above_baseline")["passed"] is True


def test_figures_and_thresholds_are_recorded_in_each_check():
    decision = decide({**CANDIDATE, "p95_ms": 2.5, "size_mb": 20.0}, CHAMPION, GATE)
    assert (_check(decision, "latency")["value"], _check(decision, "latency")["threshold"]) == (2.5, 2.0)
    assert (_check(decision, "size")["value"], _check(decision, "size")["threshold"]) == (20.0, 15.0)
    assert "p95 2.50 ms at batch 1 (b1_s64)" in _check(decision, "latency")["detail"]
    assert _check(decide({**CANDIDATE, "p95_ms": None}, None, GATE), "latency")["detail"] == \
        "no benchmark figure at b1_s64 or a longer batch-1 cell; add student.max_length to benchmark.sequence_lengths"
    # a benchmark without batch 1 was told to add a sequence length it already had
    assert _check(decide({**CANDIDATE, "p95_ms": None, "batch_sizes": [4, 8]}, None, GATE), "latency")["detail"] == \
        "no benchmark figure at b1_s64 or a longer batch-1 cell; add 1 to benchmark.batch_sizes"


def test_latency_may_be_judged_against_the_teacher_measured_in_the_same_run():
    loaded = {**CANDIDATE, "p95_ms": 8.3, "teacher_p95_ms": 20.0}  # a loaded machine: everything is slow
    off = _check(decide(loaded, CHAMPION, GATE), "latency")  # ratio off (absent or null): the absolute budget rules
    assert not off["passed"] and "over the absolute budget of 2.0 ms" in off["detail"] and "is off" in off["detail"]
    assert not _check(decide(loaded, CHAMPION, {**GATE, "max_p95_ratio_to_teacher": None}), "latency")["passed"]

    within = decide(loaded, CHAMPION, {**GATE, "max_p95_ratio_to_teacher": 0.5})
    assert _failed(within) == [] and within["passed"]
    check = _check(within, "latency")
    assert check["value"] == 8.3 and check["threshold"] == {"max_p95_ms": 2.0, "max_p95_ratio_to_teacher": 0.5,
                                                          "teacher_p95_ms": 20.0, "relative_budget_ms": 10.0}
    # the evidence says the absolute budget failed, with both figures, and why it passed anyway
    assert "p95 8.30 ms at batch 1 (b1_s64) is over the absolute budget of 2.0 ms" in check["detail"]
    assert "within the relative budget 0.5 x teacher PyTorch p95 20.00 ms = 10.00 ms" in check["detail"]

    over = _check(decide(loaded, CHAMPION, {**GATE, "max_p95_ratio_to_teacher": 0.4}), "latency")  # 8.3 > 8.0
    assert not over["passed"] and "also over the relative budget 0.4 x teacher PyTorch p95 20.00 ms = 8.00 ms" \
        in over["detail"]
    no_teacher = _check(decide({**loaded, "teacher_p95_ms": None}, CHAMPION, {**GATE, "max_p95_ratio_to_teacher": 9}),
                        "latency")
    assert not no_teacher["passed"] and "no teacher PyTorch figure" in no_teacher["detail"]
    # within the absolute budget, the ratio is not needed
    assert _check(decide({**CANDIDATE, "teacher_p95_ms": 1.0}, CHAMPION, {**GATE, "max_p95_ratio_to_teacher": 0.5}),
                  "latency")["passed"]


def test_teacher_latency_is_read_from_the_same_cell():
    bench = {"models": {"teacher_pytorch_fp32": {"cells": {"b1_s64": {"p95_ms": 20.0}, "b1_s16": {"p95_ms": 5.0}}}}}
    assert teacher_latency(bench, "b1_s64") == 20.0 and teacher_latency(bench, "b1_s16") == 5.0
    assert teacher_latency(bench, "b1_s128") is None and teacher_latency(bench, None) is None
    assert teacher_latency({"models": {}}, "b1_s64") is None


def test_champion_comparison_uses_the_configured_metric_and_tolerance():
    better = {**CHAMPION, "accuracy": 0.81, "macro_f1": 0.69}
    assert _failed(decide(CANDIDATE, better, GATE)) == ["champion"]
    assert _failed(decide(CANDIDATE, better, {**GATE, "tolerance": 0.005})) == ["champion"]  # 0.80 < 0.805
    assert _failed(decide(CANDIDATE, better, {**GATE, "tolerance": 0.02})) == []
    assert _failed(decide(CANDIDATE, better, {**GATE, "metric": "macro_f1"})) == []  # 0.70 >= 0.69
    equal = _check(decide(CANDIDATE, {**CHAMPION, "accuracy": 0.80}, GATE), "champion")
    assert equal["passed"] and (equal["value"], equal["threshold"]) == (0.8, 0.8)
    rescored = _check(decide(CANDIDATE, {**CHAMPION, "rescored": True}, GATE), "champion")
    assert "re-scored on the current test split" in rescored["detail"] and "vs champion v3 0.7900" in rescored["detail"]


def test_with_rows_left_out_both_sides_are_compared_on_the_same_remaining_rows():
    """The champion scored 0.79 on the current test rows it never saw; on those same rows the candidate scored
    0.75 (its 0.80 is over the whole split, rows the champion trained on included): the candidate must lose."""
    rows = {"test_rows": 40, "left_out": 30, "checked": True}
    champion = {**CHAMPION, "rescored": True, "rows": rows, "candidate": {"accuracy": 0.75, "macro_f1": 0.7}}
    check = _check(decide(CANDIDATE, champion, GATE), "champion")
    assert not check["passed"] and (check["value"], check["threshold"]) == (0.75, 0.79)
    assert "both on the 10 of 40 current test rows champion v3 did not train, validate or distill on" in check["detail"]
    unchecked = _check(decide(CANDIDATE, {**CHAMPION, "rescored": True, "rows": {**rows, "left_out": 0,
                                                                                 "checked": False}}, GATE), "champion")
    assert unchecked["passed"] and unchecked["value"] == 0.8 and "overlap is unchecked" in unchecked["detail"]


def test_a_comparison_on_fewer_rows_than_min_compare_rows_needs_a_clear_win():
    """After a refresh, 3 of 45 test rows were new to the champion: the candidate's 3/3 against the champion's 1/3
    is no evidence (better on 2 rows, worse on none: p = 1/4), so the champion check fails, naming the count and the
    key. A clear win on few rows passes: 28 rows, better on 12 and worse on 1 (p = 14/8192). With the floor met,
    the plain comparison decides."""
    from distillery.registry.gate import sign_test

    gate = {**GATE, "min_compare_rows": 100}
    rows = {"test_rows": 45, "left_out": 42, "checked": True}
    champion = {**CHAMPION, "accuracy": 1 / 3, "rescored": True, "rows": rows,
                "candidate": {"accuracy": 1.0, "macro_f1": 1.0}, "paired": {"better": 2, "worse": 0,
                                                                           "metric": "accuracy"}}
    few = _check(decide(CANDIDATE, champion, gate), "champion")
    assert not few["passed"] and (few["value"], few["threshold"]) == (1.0, 0.3333)
    assert "on only 3 test rows (42 of the 45 current test rows were in its" in few["detail"]
    assert "fewer than register.gate.min_compare_rows (100), so only a clear win replaces it; better on 2 of them, " \
           "worse on 0 (one-sided sign test on accuracy: p = 0.25, not < 0.05)" in few["detail"]
    assert "distillery promote" in few["detail"]
    clear = {**champion, "rows": {"test_rows": 130, "left_out": 102, "checked": True}, "accuracy": 0.4643,
             "candidate": {"accuracy": 0.8571, "macro_f1": 0.8}, "paired": {"better": 12, "worse": 1,
                                                                          "metric": "accuracy"}}
    won = _check(decide(CANDIDATE, clear, gate), "champion")
    assert won["passed"] and "p = 0.00171, < 0.05" in won["detail"], won["detail"]
    assert sign_test(12, 1) == 14 / 8192 and sign_test(5, 0) == 1 / 32 and sign_test(0, 0) == 1.0
    assert sign_test(1, 1) == 3 / 4
    # no per-row evidence (an older caller): the floor alone, which fails
    bare = {k: v for k, v in champion.items() if k != "paired"}
    assert not _check(decide(CANDIDATE, bare, gate), "champion")["passed"]
    # the whole split counts when the champion saw none of it; 99 rows is one short, 100 is enough
    whole = {**CHAMPION, "rescored": True, "rows": {"test_rows": 99, "left_out": 0, "checked": True}}
    assert not _check(decide(CANDIDATE, whole, gate), "champion")["passed"]
    enough = {**whole, "rows": {"test_rows": 100, "left_out": 0, "checked": True}}
    assert _check(decide(CANDIDATE, enough, gate), "champion")["passed"]
    assert _check(decide(CANDIDATE, champion, {**gate, "min_compare_rows": 3}), "champion")["passed"]
    # the champion's own weights under newer code: no floor
    assert _check(decide(CANDIDATE, {**bare, "same_weights": True}, gate), "champion")["passed"]
    # no champion, or this version is the champion: nothing is replaced, the floor does not apply
    assert _check(decide(CANDIDATE, None, gate), "champion")["passed"]
    assert _check(decide(CANDIDATE, champion, gate, is_champion=True), "champion")["passed"]
    assert Params().register.gate.min_compare_rows == 100


def test_no_champion_or_this_version_is_the_champion_pass_the_champion_and_labels_checks():
    for decision, detail in ((decide(CANDIDATE, None, GATE), "no champion yet"),
                             (decide(CANDIDATE, None, GATE, is_champion=True), "this version is the champion")):
        assert _failed(decision) == []
        assert _check(decision, "champion")["detail"] == _check(decision, "labels")["detail"] == \
            _check(decision, "inputs")["detail"] == detail


def test_an_unscoreable_champion_fails_and_names_the_manual_promotion():
    decision = decide(CANDIDATE, {"version": "3", "error": "ValueError: bad schema", "inputs": ["text"],
                                  "labels": LABELS}, GATE)
    assert _failed(decision) == ["champion"]
    assert "ValueError: bad schema" in _check(decision, "champion")["detail"]
    assert "distillery promote" in _check(decision, "champion")["detail"]
    # MLflow's schema error prints the request's DataFrame on the lines after its first: the detail keeps one line
    error = "MlflowException: Failed to enforce schema of data '  question  context\n0 What was it?  The ...'\n1 x"
    detail = _check(decide(CANDIDATE, {"version": "3", "error": error, "inputs": ["text"], "labels": LABELS}, GATE), "champion")["detail"]
    assert "\n" not in detail and "(MlflowException: Failed to enforce schema of data '  question  context ...);" in detail


def test_a_retention_or_champion_figure_equal_to_its_threshold_passes_whatever_the_rounding():
    """0.72 / 0.8 is 0.8999999999999999 in floating point: a student at exactly 90% failed min_retention 0.9."""
    assert 0.72 / 0.8 < 0.9
    decision = decide({**CANDIDATE, "retention": 0.72 / 0.8, "accuracy": 0.7}, {**CHAMPION, "accuracy": 0.8},
                      {**GATE, "min_retention": 0.9, "tolerance": 0.1})
    assert 0.7 < 0.8 - 0.1 and _failed(decision) == [], decision["checks"]  # 0.8 - 0.1 is 0.7000000000000001


def test_labels_check_refuses_a_different_label_set_and_says_which():
    same_set_other_order = decide({**CANDIDATE, "labels": ["positive", "negative", "neutral"]}, CHAMPION, GATE)
    assert _failed(same_set_other_order) == []

    renamed = decide({**CANDIDATE, "labels": ["neg", "neutral", "positive"]}, CHAMPION, GATE)
    check = _check(renamed, "labels")
    assert not check["passed"] and check["value"] == ["neg", "neutral", "positive"] and check["threshold"] == LABELS
    assert "missing ['negative']" in check["detail"] and "new ['neg']" in check["detail"]

    more = _check(decide({**CANDIDATE, "labels": LABELS + ["mixed"]}, CHAMPION, GATE), "labels")
    assert not more["passed"] and "missing none" in more["detail"] and "new ['mixed']" in more["detail"]

    duplicated = decide({**CANDIDATE, "labels": ["negative", "neutral", "positive", "positive"]}, CHAMPION, GATE)
    assert _failed(duplicated) == ["labels"]

    # A champion that could not be scored is still compared on its labels (and its score is not asked for).
    unscoreable = decide({**CANDIDATE, "labels": ["a", "b"]}, {"version": "3", "error": "x", "inputs": ["text"],
                                                                     "labels": LABELS}, GATE)
    assert _failed(unscoreable) == ["labels"]
    # A champion answering other labels scores ~0 on the candidate's test split: the champion check said "passed,
    # accuracy 0.8462 vs champion v2 0.0000". It is now skipped, saying why.
    skipped = _check(decide({**CANDIDATE, "labels": ["neg", "neutral", "positive"]}, {**CHAMPION, "accuracy": 0.0},
                            GATE), "champion")
    assert skipped["skipped"] and skipped["value"] is None and skipped["detail"] == (
        "not compared: the labels check fails, so champion v3's score on this test split would say nothing; the "
        "labels check decides")


def test_labels_check_never_passes_silently_when_a_label_set_is_unknown():
    unknown = decide(CANDIDATE, {**CHAMPION, "labels": None}, GATE)
    assert _failed(unknown) == ["labels"]
    assert "not recorded" in _check(unknown, "labels")["detail"]
    assert _failed(decide(CANDIDATE, {k: v for k, v in CHAMPION.items() if k != "labels"}, GATE)) == ["labels"]
    assert _failed(decide({**CANDIDATE, "labels": []}, CHAMPION, GATE)) == ["labels"]


def test_inputs_check_refuses_a_model_that_takes_other_columns_and_never_passes_unknown_ones():
    """A QA model (question, context) over a pairs champion (text, text_pair) with the same labels would answer
    none of the requests sent to the served name."""
    qa = decide({**CANDIDATE, "inputs": ["question", "context"]}, {**CHAMPION, "inputs": ["text", "text_pair"]}, GATE)
    check = _check(qa, "inputs")
    assert _failed(qa) == ["inputs"] and check["value"] == ["question", "context"]
    assert check["threshold"] == ["text", "text_pair"] and "another register.model_name" in check["detail"]
    assert _failed(decide({**CANDIDATE, "inputs": ["text", "text_pair"]}, CHAMPION, GATE)) == ["inputs"]
    unknown = decide(CANDIDATE, {**CHAMPION, "inputs": None}, GATE)
    assert _failed(unknown) == ["inputs"] and "champion v3's input columns are not known" in \
        _check(unknown, "inputs")["detail"]
    assert _failed(decide({**CANDIDATE, "inputs": []}, CHAMPION, GATE)) == ["inputs"]
    assert _failed(decide(CANDIDATE, {**CHAMPION, "inputs": ["text"]}, GATE)) == []


RGB_RESIZING = {"channels": 3, "height": 24, "width": 32, "pixel_min": 0.0, "pixel_max": 255.0, "resize": True}


@pytest.mark.parametrize("candidate, said", [
    # a trial's v2: grey and unresized, promoted over an RGB champion that resized any PNG
    ({**RGB_RESIZING, "channels": 1, "resize": False},
     ["it takes 1 channel, the champion 3: 3-channel pixel arrays are refused",
      "the champion resized an encoded image of any size, it does not"]),
    # a trial's 4-channel v2 passed as "the same shape" over an RGB champion, refused every RGB array once promoted
    ({**RGB_RESIZING, "channels": 4}, ["it takes 4 channels, the champion 3: 3-channel pixel arrays are refused"]),
    ({**RGB_RESIZING, "channels": 2}, ["it takes 2 channels, the champion 3: 3-channel pixel arrays are refused",
                                       "it takes no encoded images (PNG, JPEG), the champion did: 2 channels are "
                                       "pixel lists only"]),
    ({**RGB_RESIZING, "height": 28, "width": 28}, ["it takes images of 28 x 28 pixels (width x height), the champion "
                                                   "32 x 24"]),
    ({**RGB_RESIZING, "pixel_max": 1.0}, ["it reads pixel arrays on 0-1, the champion on 0-255"]),
    ({**RGB_RESIZING, "pixel_min": None}, []),  # a bound not recorded is no difference
    ({**RGB_RESIZING, "pixel_max": 240.0}, []),  # float pixels' observed range moves a little with the data
    (RGB_RESIZING, []),
])
def test_an_image_candidate_that_would_refuse_the_champion_s_requests_fails_inputs(candidate, said):
    from distillery.task_types.image_classification.serving import narrowing

    assert narrowing(candidate, RGB_RESIZING) == said
    decision = decide({**CANDIDATE, "inputs": ["image"]}, {**CHAMPION, "inputs": ["image"], "input_narrowing": said},
                      GATE)
    assert _failed(decision) == (["inputs"] if said else []), decision
    assert all(phrase in _check(decision, "inputs")["detail"] for phrase in said)


def test_widening_an_image_model_s_inputs_passes_and_an_unreadable_champion_fails():
    from distillery.task_types.image_classification.serving import narrowing

    grey = {**RGB_RESIZING, "channels": 1, "resize": False}
    assert narrowing({**grey, "channels": 3, "resize": True}, grey) == []  # colour takes grey; resizing takes any
    assert narrowing({**grey, "channels": 4}, grey) == []  # so does RGBA, with an opaque alpha
    unknown = decide({**CANDIDATE, "inputs": ["image"]}, {**CHAMPION, "inputs": ["image"], "input_narrowing": None,
                                                          "input_spec_error": "KeyError: 'height'"}, GATE)
    assert _failed(unknown) == ["inputs"] and "could not be read (KeyError: 'height')" in \
        _check(unknown, "inputs")["detail"]


@pytest.mark.parametrize("candidate, said", [
    ({}, ["the champion read text from a request's 'review' column, it reads 'text' only: a request holding it "
          "would be answered from another column"]),
    ({"text": "body"}, ["the champion read text from a request's 'review' column, it reads 'body': a request holding "
                        "it would be answered from another column"]),
    ({"text": "review"}, []),
    ({"text": "review", "text_pair": "summary"}, []),  # reading one name more refuses nothing
])
def test_a_text_candidate_that_no_longer_reads_the_champion_s_own_column_names_fails_inputs(tmp_path, candidate,
                                                                                          said):
    """A champion trained on ``review`` answered requests sent in that name (trial L: a file's records, with an
    unrelated ``text`` column beside it); a refresh trained under another name would refuse them or answer from
    ``text``, with the same ``text`` input column: the gate compares the names each reads, from classifier.json."""
    from distillery.task_types.text_classification.serving import input_spec, narrowing

    (tmp_path / "classifier.json").write_text('{"labels": ["a", "b"], "source_columns": {"text": "review"}}')
    (tmp_path / "old.json").write_text('{"labels": ["a", "b"]}')  # registered before it was recorded: none
    champion = input_spec({"config": str(tmp_path / "classifier.json")})
    assert champion == {"source_columns": {"text": "review"}}
    assert input_spec({"config": str(tmp_path / "old.json")}) == {"source_columns": {}}
    assert narrowing({"source_columns": candidate}, champion) == said
    assert narrowing(champion, {"source_columns": {}}) == []  # reading the data's names widens
    decision = decide(CANDIDATE, {**CHAMPION, "input_narrowing": said}, GATE)
    assert _failed(decision) == (["inputs"] if said else []), decision
    assert all(phrase in _check(decision, "inputs")["detail"] for phrase in said)


def test_a_rolled_back_version_fails_unless_it_is_the_champion():
    down = decide(CANDIDATE, CHAMPION, GATE, rolled_back_at="2026-11-30T10:00:00", version="4")
    assert _failed(down) == ["not_rolled_back"]
    assert _check(down, "not_rolled_back")["detail"].startswith("rolled back by hand at 2026-11-30T10:00:00")
    assert "`distillery promote 4`" in _check(down, "not_rolled_back")["detail"]
    kept = decide(CANDIDATE, None, GATE, is_champion=True, rolled_back_at="2026-11-30T10:00:00")
    assert [c["name"] for c in kept["checks"]] == ["retention", "latency", "size", "inputs", "labels", "champion"]
    assert kept["passed"]


def test_gate_settings_are_checked_and_match_the_params():
    with pytest.raises(KeyError, match="tolerance"):
        decide(CANDIDATE, None, {k: v for k, v in GATE.items() if k != "tolerance"})
    assert set(dataclasses.asdict(Params().register.gate)) == set(GATE_KEYS)
    assert Params().register.gate.max_p95_ratio_to_teacher is None  # off by default
    assert _params(max_p95_ratio_to_teacher=0.5).register.gate.max_p95_ratio_to_teacher == 0.5


def test_the_gate_module_does_not_import_mlflow():
    code = "import sys, distillery.registry.gate; print(sorted(m for m in sys.modules if m.split('.')[0] == 'mlflow'))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def _params(**gate) -> Params:
    params = Params()
    return validate(dataclasses.replace(params, register=dataclasses.replace(
        params.register, gate=dataclasses.replace(params.register.gate, **gate))))


@pytest.mark.parametrize("key, value", [("min_retention", -0.1), ("max_p95_ms", 0), ("max_size_mb", -1),
                                        ("metric", "f1"), ("tolerance", 1.0), ("max_p95_ratio_to_teacher", 0),
                                        ("max_p95_ratio_to_teacher", -1.0), ("min_compare_rows", 0)])
def test_bad_gate_params_name_the_key(key, value):
    with pytest.raises(ConfigError, match=f"register.gate.{key}"):
        _params(**{key: value})


def test_latency_uses_the_max_length_cell_else_the_next_longer_batch1_cell_never_a_shorter_one():
    cells = {"b1_s16": {"p95_ms": 1.0}, "b1_s64": {"p95_ms": 2.0}, "b1_s128": {"p95_ms": 4.0},
             "b1_s256": {"p95_ms": 7.0}, "b8_s64": {"p95_ms": 9}}
    bench = {"models": {"student_onnx_int8": {"cells": cells}, "student_onnx_fp32": {"cells": {}}}}
    assert latency(bench, "student.int8.onnx", 64) == (2.0, "b1_s64")
    assert latency(bench, "student.int8.onnx", 100) == (4.0, "b1_s128")
    # a model served at 48 tokens was judged on the 32-token cell (the worst of the shorter ones), understated
    assert latency(bench, "student.int8.onnx", 300) == (None, "b1_s300")
    assert latency(bench, "student.onnx", 64) == (None, "b1_s64")
    missing = _check(decide({**CANDIDATE, "p95_ms": None, "latency_cell": "b1_s300"}, CHAMPION, GATE), "latency")
    assert not missing["passed"] and missing["detail"] == (
        "no benchmark figure at b1_s300 or a longer batch-1 cell; add student.max_length to benchmark.sequence_lengths")


def test_stage_status_and_dvc_tags():
    lock = {"check_params": {"deps": [{"path": "distillery/config", "md5": "d.dir"}]},  # no outputs: no status
            "prepare": {"outs": [{"path": "data/prepared", "md5": "a.dir"}]},
            "distill": {"outs": [{"path": "models/student", "md5": "b.dir"}, {"path": "reports/x.json", "md5": "c"}]}}
    tags = dvc_tags(lock)
    assert tags["dvc.data/prepared"] == "a.dir" and tags["dvc.models/student"] == "b.dir"
    assert "dvc.reports/x.json" not in tags
    history: list[dict] = []  # the tags of earlier tracked executions

    def seen(key, digest):
        return any(earlier.get(key) == digest for earlier in history)

    assert stage_status(tags, seen) == {"prepare": "ran", "distill": "ran"}
    history.append(tags)
    lock["distill"]["outs"][0]["md5"] = "changed.dir"
    assert stage_status(dvc_tags(lock), seen) == {"prepare": "cached", "distill": "ran"}
    history.append(dvc_tags(lock))
    # back to the first student (an experiment at the first alpha, restored from DVC's run cache): cached, though
    # the last execution had another
    lock["distill"]["outs"][0]["md5"] = "b.dir"
    assert stage_status(dvc_tags(lock), seen) == {"prepare": "cached", "distill": "cached"}


def test_numeric_leaves_keep_finite_numbers_only():
    flat = numeric_leaves({"a": {"b": 1, "c": [1, 2], "d": "x", "e": True, "f": math.nan, "g/h": 2.5}}, "eval.")
    assert flat == {"eval.a.b": 1.0, "eval.a.e": 1.0, "eval.a.g_h": 2.5}


def test_a_tie_with_a_champion_figure_stored_to_6_decimals_passes():
    """30/45 against the champion's tag 0.666667 (its own 30/45, rounded) was "below the champion"; 15/45 against
    0.333333 passed: whether a tie passed depended on which way the fraction rounded."""
    for right in (30, 15):
        tie = decide({**CANDIDATE, "accuracy": right / 45}, {**CHAMPION, "accuracy": round(right / 45, 6)}, GATE)
        assert _check(tie, "champion")["passed"], tie
        # one row fewer is still below the champion
        worse = decide({**CANDIDATE, "accuracy": (right - 1) / 45}, {**CHAMPION, "accuracy": round(right / 45, 6)},
                       GATE)
        assert not _check(worse, "champion")["passed"]
    # a champion re-scored on the current rows has its figure in full: no slack beyond float rounding
    rescored = decide({**CANDIDATE, "accuracy": 0.6666665}, {**CHAMPION, "accuracy": 30 / 45, "rescored": True}, GATE)
    assert not _check(rescored, "champion")["passed"]


ONE_LABEL = {"label": "negative", "accuracy": 0.80, "macro_f1": 0.30}


def test_a_model_no_better_than_answering_one_label_fails_even_with_no_champion():
    at_chance = decide({**CANDIDATE, "one_label": ONE_LABEL}, None, GATE)  # 0.80 = answering 'negative' always
    assert _failed(at_chance) == ["above_one_label"]
    check = _check(at_chance, "above_one_label")
    assert (check["value"], check["threshold"]) == (0.8, 0.8)
    assert check["detail"].startswith("accuracy 0.8000 is no better than answering 'negative' for every test row "
                                      "(0.8000)")
    above = decide({**CANDIDATE, "one_label": {**ONE_LABEL, "accuracy": 0.7999}}, None, GATE)
    assert _failed(above) == [] and [c["name"] for c in above["checks"]][:2] == ["retention", "above_one_label"]
    # on the gate's metric: macro-F1 0.70 against the one label's 0.30
    assert _failed(decide({**CANDIDATE, "one_label": ONE_LABEL}, None, {**GATE, "metric": "macro_f1"})) == []
    # off by the key, and absent where the task has no such floor (QA)
    assert _failed(decide({**CANDIDATE, "one_label": ONE_LABEL}, None, {**GATE, "above_one_label": False})) == []
    assert "above_one_label" not in [c["name"] for c in decide({**CANDIDATE, "one_label": None}, None,
                                                               GATE)["checks"]]


def test_a_floor_on_the_metric_fails_a_student_that_kept_a_weak_teachers_score_on_any_task():
    """A QA trial on a tiny teacher (F1 0.109) promoted a student at F1 0.078 as the first champion: ``retention``
    passed and QA has no one-label floor. ``min_metric`` is an absolute floor on the gate's metric."""
    qa = {**CANDIDATE, "f1": 0.078, "exact_match": 0.03, "retention": 1.0, "one_label": None}
    qa_gate = {**GATE, "metric": "f1"}
    assert _failed(decide(qa, None, qa_gate)) == []  # off by default: the trial's promotion
    floored = decide(qa, None, {**qa_gate, "min_metric": 0.5})
    assert _failed(floored) == ["min_metric"]
    check = _check(floored, "min_metric")
    assert (check["value"], check["threshold"]) == (0.078, 0.5)
    assert check["detail"] == "f1 0.0780 on the test split is below register.gate.min_metric, needs >= 0.5"
    # at the floor passes; it reads the gate's metric, so exact_match 0.03 fails the same floor
    assert _failed(decide({**qa, "f1": 0.5}, None, {**qa_gate, "min_metric": 0.5})) == []
    assert _failed(decide(qa, None, {**qa_gate, "metric": "exact_match", "min_metric": 0.05})) == ["min_metric"]
    # a classifier: beside the one-label floor, after retention; no figure for the metric, no pass
    both = decide({**CANDIDATE, "one_label": ONE_LABEL}, None, {**GATE, "min_metric": 0.9})
    assert [c["name"] for c in both["checks"]][:3] == ["retention", "above_one_label", "min_metric"]
    assert _failed(both) == ["above_one_label", "min_metric"]
    missing = decide({k: v for k, v in CANDIDATE.items() if k != "accuracy"}, None, {**GATE, "min_metric": 0.5})
    assert _check(missing, "min_metric")["passed"] is False
    # the params key: in [0, 1] or null, and in the gate's keys
    assert "min_metric" in GATE_KEYS
    with pytest.raises(ConfigError, match="register.gate.min_metric"):
        _params(min_metric=70)  # a percentage for a score in [0, 1]
    assert (Params().register.gate.min_metric, _params(min_metric=0.7).register.gate.min_metric) == (None, 0.7)


def test_one_label_figures_are_scored_as_the_candidate_is():
    import pandas as pd

    from distillery.registry.versions import one_label_figures
    from distillery.task_types.text_classification import serving

    test = pd.DataFrame({"text": ["a", "b", "c", "d"], "label": [2, 0, 0, 1]})
    figures = one_label_figures(serving, test, LABELS)
    # 'negative' always: right on 2 of 4; its F1 2 x 0.5 x 1 / 1.5 = 2/3, the other two classes 0, over 3 classes
    assert figures == {"label": "negative", "accuracy": 0.5, "macro_f1": pytest.approx(2 / 9)}
    from distillery.task_types.question_answering import serving as qa_serving

    assert one_label_figures(qa_serving, test, LABELS) is None
