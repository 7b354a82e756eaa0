"""The promotion gate's checks and the helpers behind tracking, without MLflow."""
import importlib.util
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from distillery.config import Params, validate
from distillery.errors import ConfigError
from distillery.registry import MODEL_CODE, gate_checks, latency
from distillery.tracking import dvc_tags, numeric_leaves, stage_status


def _params(**gate) -> Params:
    from dataclasses import replace

    params = Params()
    return validate(replace(params, register=replace(params.register, gate=replace(params.register.gate, **gate))))


CANDIDATE = {"accuracy": 0.80, "macro_f1": 0.70, "retention": 0.98, "p95_ms": 2.0, "latency_cell": "b1_s64",
             "size_mb": 15.0}


def _failed(checks):
    return [c["name"] for c in checks if not c["passed"]]


def test_gate_thresholds_are_inclusive_and_each_check_fails_alone():
    params = _params(min_retention=0.98, max_p95_ms=2.0, max_size_mb=15.0)
    assert _failed(gate_checks(params, CANDIDATE, None)) == []
    assert _failed(gate_checks(params, {**CANDIDATE, "retention": 0.9799}, None)) == ["retention"]
    assert _failed(gate_checks(params, {**CANDIDATE, "p95_ms": 2.01}, None)) == ["latency"]
    assert _failed(gate_checks(params, {**CANDIDATE, "p95_ms": None}, None)) == ["latency"]  # no figure, no pass
    assert _failed(gate_checks(params, {**CANDIDATE, "size_mb": 15.1}, None)) == ["size"]


def test_champion_comparison_uses_the_configured_metric_and_tolerance():
    champion = {"version": "3", "accuracy": 0.81, "macro_f1": 0.69}
    assert _failed(gate_checks(_params(), CANDIDATE, champion)) == ["champion"]
    assert _failed(gate_checks(_params(tolerance=0.02), CANDIDATE, champion)) == []
    assert _failed(gate_checks(_params(metric="macro_f1"), CANDIDATE, champion)) == []
    unscoreable = gate_checks(_params(), CANDIDATE, {"version": "3", "error": "ValueError: bad schema"})
    assert _failed(unscoreable) == ["champion"] and "distillery promote" in unscoreable[-1]["detail"]
    assert _failed(gate_checks(_params(), CANDIDATE, None, is_champion=True)) == []


@pytest.mark.parametrize("key, value", [("min_retention", -0.1), ("max_p95_ms", 0), ("max_size_mb", -1),
                                        ("metric", "f1"), ("tolerance", 1.0)])
def test_bad_gate_params_name_the_key(key, value):
    with pytest.raises(ConfigError, match=f"register.gate.{key}"):
        _params(**{key: value})


def test_latency_uses_the_max_length_cell_else_the_worst_batch1_cell():
    cells = {"b1_s16": {"p95_ms": 1.0}, "b1_s64": {"p95_ms": 2.0}, "b1_s128": {"p95_ms": 4.0}, "b8_s64": {"p95_ms": 9}}
    bench = {"models": {"student_onnx_int8": {"cells": cells}, "student_onnx_fp32": {"cells": {}}}}
    assert latency(bench, "student.int8.onnx", 64) == (2.0, "b1_s64")
    assert latency(bench, "student.int8.onnx", 100) == (4.0, "b1_s128")
    assert latency(bench, "student.onnx", 64) == (None, None)


def test_stage_status_and_dvc_tags():
    lock = {"prepare": {"outs": [{"path": "data/prepared", "md5": "a.dir"}]},
            "distill": {"outs": [{"path": "models/student", "md5": "b.dir"}, {"path": "reports/x.json", "md5": "c"}]}}
    tags = dvc_tags(lock)
    assert tags["dvc.data/prepared"] == "a.dir" and tags["dvc.models/student"] == "b.dir"
    assert "dvc.reports/x.json" not in tags
    assert stage_status(tags, None) == {"prepare": "ran", "distill": "ran"}
    lock["distill"]["outs"][0]["md5"] = "changed.dir"
    assert stage_status(dvc_tags(lock), tags) == {"prepare": "cached", "distill": "ran"}


def test_numeric_leaves_keep_finite_numbers_only():
    flat = numeric_leaves({"a": {"b": 1, "c": [1, 2], "d": "x", "e": True, "f": math.nan, "g/h": 2.5}}, "eval.")
    assert flat == {"eval.a.b": 1.0, "eval.a.e": 1.0, "eval.a.g_h": 2.5}


def test_served_model_input_forms():
    spec = importlib.util.spec_from_file_location("served", Path(MODEL_CODE))
    served = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(served)
    parse = served._texts_and_pairs
    assert parse(["a", None, np.nan]) == (["a", "", ""], None)
    assert parse([["q", "a"], ("q2", "a2")]) == (["q", "q2"], ["a", "a2"])
    assert parse(pd.DataFrame({"text": ["x"], "text_pair": ["y"]})) == (["x"], ["y"])
    assert parse(pd.DataFrame({0: ["only column"]})) == (["only column"], None)
    assert parse([{"text": "x", "text_pair": "y"}]) == (["x"], ["y"])
    with pytest.raises(ValueError, match="name the text column 'text'"):
        parse(pd.DataFrame({"a": ["x"], "b": ["y"]}))
