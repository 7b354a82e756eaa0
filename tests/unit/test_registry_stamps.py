"""The rollback guard and manual promotions are ordered as instants: teammates in other time zones (their stamps
carry offsets) and stamps written in local time by an older Distillery."""
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from distillery.registry.versions import stamp, stamp_seconds, weights_rolled_back

WEIGHTS = ["w" * 64]


def _version(number: str, **tags) -> SimpleNamespace:
    return SimpleNamespace(version=number, tags={"distillery.weights_sha256": WEIGHTS[0], **tags})


def _guard(rolled: str, promoted: str):
    known = [_version("1", **{"distillery.rolled_back_at": rolled}),
             _version("2", **{"distillery.promoted": "manual", "distillery.promoted_at": promoted})]
    return weights_rolled_back(known, WEIGHTS)


def test_a_promotion_earlier_in_utc_does_not_lift_a_guard_though_its_clock_read_later():
    # Tokyo's 18:30 is 09:30 UTC: half an hour before the rollback in London
    assert _guard("2026-12-05T10:00:00+00:00", "2026-12-05T18:30:00+09:00") == "2026-12-05T10:00:00+00:00"


def test_a_promotion_later_in_utc_lifts_the_guard_though_its_clock_read_earlier():
    # New York's 06:00 is 11:00 UTC: an hour after the rollback
    assert _guard("2026-12-05T10:00:00+00:00", "2026-12-05T06:00:00-05:00") is None


def test_the_same_instant_counts_as_the_rollback_last():
    assert _guard("2026-12-05T10:00:00+00:00", "2026-12-05T11:00:00+01:00") == "2026-12-05T10:00:00+00:00"


@pytest.fixture
def tokyo(monkeypatch):
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_a_stamp_without_an_offset_is_read_as_local_time(tokyo):
    # an older Distillery's promotion on this machine, at 18:30 Tokyo time = 09:30 UTC: before the rollback
    assert _guard("2026-12-05T10:00:00+00:00", "2026-12-05T18:30:00") == "2026-12-05T10:00:00+00:00"
    assert _guard("2026-12-05T10:00:00+00:00", "2026-12-05T19:30:01") is None
    assert stamp_seconds("2026-12-05T09:00:00") == stamp_seconds("2026-12-05T00:00:00+00:00")


def test_the_latest_rollback_is_found_across_offsets():
    known = [_version("1", **{"distillery.rolled_back_at": "2026-12-05T20:00:00+09:00"}),  # 11:00 UTC
             _version("3", **{"distillery.rolled_back_at": "2026-12-05T09:00:00-05:00"}),  # 14:00 UTC
             _version("2", **{"distillery.promoted": "manual", "distillery.promoted_at": "2026-12-05T12:00:00+00:00"})]
    assert weights_rolled_back(known, WEIGHTS) == "2026-12-05T09:00:00-05:00"


def test_a_new_stamp_is_utc_now_to_the_microsecond(tokyo):
    """In Tokyo (UTC+9): a local-time stamp would end +09:00 and read nine hours off."""
    before = time.time()
    value = stamp()
    assert value.endswith("+00:00") and len(value) == len("2026-12-05T11:58:03.123456+00:00")
    assert before - 1e-3 <= stamp_seconds(value) <= time.time() + 1e-3


def test_no_stamp_or_an_unreadable_one_comes_first():
    assert stamp_seconds("") == stamp_seconds("yesterday") == float("-inf")


def test_a_qa_champion_on_the_same_test_split_is_read_from_its_tags_not_re_scored(tmp_path):
    """A QA champion was re-scored on every registration ("re-scored on the current test split", though the split
    had not changed): only a test_accuracy tag counted as recorded figures, and QA versions carry test_f1."""
    from types import SimpleNamespace

    import pandas as pd

    from distillery.registry.client import TAG
    from distillery.registry.versions import champion_figures
    from distillery.task_types.question_answering import serving

    version = SimpleNamespace(version="2", tags={TAG + "test_sha256": "abc", TAG + "test_f1": "0.1181",
                                                 TAG + "test_exact_match": "0.05"})
    # re-scoring would download the version from a registry; there is none here, so it would raise
    figures = champion_figures("qa-student", version, pd.DataFrame(), [], "abc", serving, tmp_path)
    assert figures == {"version": "2", "f1": 0.1181, "exact_match": 0.05, "rescored": False}


def test_the_datas_own_column_names_are_not_part_of_the_weights_identity(tmp_path):
    """``source_columns`` is a request setting: the same weights served under it are the same model, and a version
    registered before it was written (every artifact hashed as it was) is recognised."""
    import json

    from distillery.files import sha256_files
    from distillery.registry.pyfunc import model_hashes

    (tmp_path / "model.onnx").write_bytes(b"weights")
    config = {"labels": ["a", "b"], "max_length": 8, "max_rows": 1000}
    artifacts = {}
    for name, written in (("old", config), ("new", config | {"source_columns": {"text": "review"}})):
        (tmp_path / name).mkdir()
        (tmp_path / name / "classifier.json").write_text(json.dumps(written, indent=2) + "\n", encoding="utf-8")
        artifacts[name] = {"onnx": str(tmp_path / "model.onnx"), "config": str(tmp_path / name / "classifier.json")}
    old, new = artifacts["old"], artifacts["new"]
    assert model_hashes(new, (), tmp_path)[0] == model_hashes(old, (), tmp_path)[0]
    assert sha256_files(list(old.values())) in model_hashes(new, (), tmp_path)
    assert sha256_files(list(new.values())) != sha256_files(list(old.values()))


def test_a_server_lost_while_a_versions_files_are_checked_is_transient_not_a_broken_version(monkeypatch):
    """A trial killed the tracking server during `promote 4`: "v4 ... cannot be loaded; making it champion would
    break ...: choose another version", exit 2, of a version that was fine."""
    import mlflow
    import requests

    from distillery.errors import RegistryError, TrackingUnavailable
    from distillery.registry.commands import _require_loadable

    def lost(**kwargs):
        raise requests.ConnectionError("HTTPConnectionPool(host='127.0.0.1', port=55000): Max retries exceeded with url: "
                                       "/api/2.0/mlflow-artifacts/artifacts (Caused by NewConnectionError(': Failed to "
                                       "establish a new connection: [Errno 111] Connection refused'))")

    monkeypatch.setattr(mlflow.artifacts, "download_artifacts", lost)
    with pytest.raises(TrackingUnavailable, match=r"^the tracking server stopped answering while v4's files were "
                                                  r"fetched \(\[Errno 111\] Connection refused\); the champion was not "
                                                  r"moved") as error:
        _require_loadable("m", "4")
    assert error.value.exit_code == 3

    def gone(**kwargs):
        raise OSError("No such file or directory: 'artifacts/student/MLmodel'")

    monkeypatch.setattr(mlflow.artifacts, "download_artifacts", gone)
    with pytest.raises(RegistryError, match=r"^v4 of 'm' cannot be loaded \(No such file"):
        _require_loadable("m", "4")


def test_a_version_whose_model_file_is_cut_short_or_not_json_is_refused_not_made_champion(tmp_path, monkeypatch):
    """Trial S: a truncated student.int8.onnx passed the check (the file was there), `promote` moved the champion to
    it, and `mlflow models serve` then died: "INVALID_PROTOBUF ... Protobuf parsing failed"."""
    import mlflow
    import onnx
    from onnx import TensorProto, helper

    from distillery.errors import RegistryError
    from distillery.registry.commands import _require_loadable

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    whole = onnx.helper.make_model(graph).SerializeToString()

    def version(onnx_bytes: bytes, config: str):
        def download(artifact_uri, dst_path):
            root = Path(dst_path) / "student"
            (root / "artifacts").mkdir(parents=True, exist_ok=True)
            (root / "artifacts/student.int8.onnx").write_bytes(onnx_bytes)
            (root / "artifacts/classifier.json").write_text(config)
            (root / "text_classifier.py").write_text("")
            (root / "MLmodel").write_text(
                "flavors:\n  python_function:\n    model_code_path: /x/text_classifier.py\n    artifacts:\n"
                "      onnx: {path: artifacts/student.int8.onnx}\n      config: {path: artifacts/classifier.json}\n")
            return str(root)
        monkeypatch.setattr(mlflow.artifacts, "download_artifacts", download)

    version(whole, '{"labels": ["a"]}')
    _require_loadable("m", "4")  # whole: passes
    version(whole[:len(whole) // 2], '{"labels": ["a"]}')
    with pytest.raises(RegistryError, match=r"^v4 of 'm' cannot be loaded \(artifacts/student.int8.onnx is damaged: "
                                            r"it does not read as ONNX \(DecodeError"):
        _require_loadable("m", "4")
    version(whole, '{"labels": ["a"')
    with pytest.raises(RegistryError, match=r"artifacts/classifier.json is damaged: it does not read as JSON"):
        _require_loadable("m", "4")


def test_a_move_to_a_version_of_other_labels_says_what_the_clients_lose_and_gain():
    """A trial promoted a 3-label version over a 4-label champion: the only line named the champion at its
    registration (v2), not the one it replaced (v4), and not that `food` and `prob_food` were gone."""
    import json

    from distillery.registry.notes import labels_changed, labels_note

    four = _version("4", **{"distillery.labels": json.dumps(["sports", "politics", "tech", "food"])})
    three = _version("3", **{"distillery.labels": json.dumps(["sports", "politics", "tech"])})
    changed = labels_changed(None, "m", three, four)
    assert changed == {"labels_changed": {"from": ["sports", "politics", "tech", "food"],
                                          "to": ["sports", "politics", "tech"]}}
    note = labels_note({"model_name": "m", "champion": "3", "previous": "4", **changed})
    assert note == ("\nnote: v3 answers the labels ['sports', 'politics', 'tech'], v4 answered ['sports', 'politics', "
                    "'tech', 'food'] (no longer ['food']): the clients of models:/m@champion read other prob_<label> "
                    "columns")
    assert labels_changed(None, "m", four, four) == {} and labels_changed(None, "m", three, None) == {}
    assert labels_note({"model_name": "m", "champion": "4", "previous": "3"}) == ""
