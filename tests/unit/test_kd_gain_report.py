"""kd_gain's report: the teacher it quotes is the one whose outputs were distilled, or none."""
from pathlib import Path

import pandas as pd
import pytest

from distillery.config import load_params
from distillery.files import write_json
from distillery.kd_gain import _report

ROOT = Path(__file__).resolve().parents[2]


def _per_seed():
    return [{"seed": seed, "student": {"accuracy": s, "macro_f1": s, "validation_accuracy": s,
                                       "validation_macro_f1": s, "train_seconds": 1.0, "train_examples": 10},
             "baseline": {"accuracy": b, "macro_f1": b, "validation_accuracy": b, "validation_macro_f1": b,
                          "train_seconds": 1.0, "train_examples": 10}}
            for seed, s, b in ((1, 0.80, 0.70), (2, 0.84, 0.72))]


@pytest.mark.parametrize("scored_weights, cached_weights, test_rows, quoted", [
    ("a" * 64, "a" * 64, 4, True),
    ("a" * 64, "b" * 64, 4, False),   # the teacher was retrained (or another task's) since evaluate scored it
    ("a" * 64, "a" * 64, 9, False),   # scored on another test split
    (None, "a" * 64, 4, False),       # an eval.json from before evaluate recorded the teacher's weights
])
def test_the_teacher_is_quoted_only_when_it_is_the_distilled_one(tmp_path, scored_weights, cached_weights, test_rows,
                                                                 quoted):
    params = load_params(ROOT / "params.yaml")
    scored = {"test_rows": test_rows, "teacher": {"accuracy": 0.9, "macro_f1": 0.88}}
    if scored_weights:
        scored["teacher_weights"] = scored_weights
    write_json(tmp_path / "reports/metrics/eval.json", scored)
    write_json(tmp_path / "logits/manifest.json", {"teacher_weights": cached_weights})
    test, validation = pd.DataFrame({"x": range(4)}), pd.DataFrame({"x": range(2)})
    result = _report(params, _per_seed(), ("accuracy", "macro_f1"), test, validation, tmp_path / "reports",
                     tmp_path / "logits")
    assert result["accuracy"]["student_mean"] == pytest.approx(0.82)
    if quoted:
        assert result["teacher"] == {"accuracy": 0.9, "macro_f1": 0.88}
        assert result["student_accuracy_retention_mean"] == pytest.approx(0.82 / 0.9)
    else:
        assert "teacher" not in result and "student_accuracy_retention_mean" not in result


@pytest.mark.parametrize("distill, expected", [
    ({}, "remainder (max 20000)"),
    ({"labelled_rows": 800}, "remainder (max 20000) + the train rows beyond labelled_rows 800"),
    # max_rows 0 empties prepare's transfer split, but the train rows past labelled_rows still join the KD term
    ({"labelled_rows": 800, "transfer_set": {"max_rows": 0}}, "none + the train rows beyond labelled_rows 800"),
    ({"labelled_rows": 800, "transfer_set": {"source": "none"}}, "none"),
])
def test_the_variant_names_every_unlabelled_row_the_student_sees(tmp_path, distill, expected):
    import yaml

    from distillery.kd_gain import variant

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["distill"].update({k: v for k, v in distill.items() if k != "transfer_set"})
    raw["distill"]["transfer_set"].update(distill.get("transfer_set", {}))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    assert variant(load_params(tmp_path / "params.yaml"))["transfer_set"] == expected


def test_a_kept_run_is_not_reused_by_other_code(tmp_path, monkeypatch):
    """kd_gain and the sweep reuse a kept run only under the same fingerprint, and the fingerprint covers the
    package's code: a fixed loss must not be answered with runs trained before the fix."""
    import shutil

    import distillery
    import distillery.sweep as sweep_module
    from distillery.config import Params

    package = tmp_path / "distillery"
    shutil.copytree(Path(distillery.__file__).parent, package, ignore=shutil.ignore_patterns("__pycache__"))
    before = sweep_module.code_fingerprint(package)
    assert sweep_module.code_fingerprint(package) == before
    losses = package / "losses.py"
    losses.write_text(losses.read_text() + "\n# a fix\n")
    fixed = sweep_module.code_fingerprint(package)
    assert fixed != before
    (package / "stages" / "renamed.py").write_text((package / "stages" / "prepare.py").read_text())
    (package / "stages" / "prepare.py").unlink()  # same contents under another path: other code
    assert sweep_module.code_fingerprint(package) not in (before, fixed)

    params, prepared, logits = Params(), tmp_path / "prepared", tmp_path / "logits"
    key = sweep_module.fingerprint(params, prepared, logits)
    assert sweep_module.fingerprint(params, prepared, logits) == key
    monkeypatch.setattr(sweep_module, "code_fingerprint", lambda: "other code")
    assert sweep_module.fingerprint(params, prepared, logits) != key
