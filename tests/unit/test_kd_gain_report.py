"""kd_gain's report: the teacher it quotes is the one whose outputs were distilled, or none."""
import dataclasses
from pathlib import Path

import pandas as pd
import pytest

from distillery.config import load_params
from distillery.files import write_json
from distillery.kd_gain import _report, paired_summary

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
    # the runs train in one process whatever distill.train.processes says: a trial's kd_gain retrained every run for
    # it, to the same figures; the epochs do change them
    train = params.distill.train
    for change, same in (({"processes": 2}, True), ({"epochs": 5}, False)):
        changed = dataclasses.replace(params, distill=dataclasses.replace(
            params.distill, train=dataclasses.replace(train, **change)))
        assert (sweep_module.fingerprint(changed, prepared, logits) == key) is same, change
    monkeypatch.setattr(sweep_module, "code_fingerprint", lambda: "other code")
    assert sweep_module.fingerprint(params, prepared, logits) != key


def _run(path: Path, variant: dict, student: list, baseline: list, metrics=("accuracy", "macro_f1"), **extra):
    from distillery.kd_gain import paired_summary

    primary, secondary = metrics
    summary = paired_summary(student, baseline)
    write_json(path, {"variant": variant, "seeds": [1, 2, 3], "test_rows": 100, "validation_rows": 50,
                      "teacher_weights": "a" * 64, "metrics": list(metrics), primary: summary, secondary: summary,
                      "validation": {f"student_{primary}_mean": sum(student) / 3,
                                     f"baseline_{primary}_mean": sum(baseline) / 3},
                      "train_seconds_mean": {"student": 10.0, "baseline": 5.0}, **extra})


def test_compare_puts_each_recipes_own_baseline_beside_it_and_names_what_makes_runs_incomparable(tmp_path):
    """The table's one baseline row was the first file's (a BiLSTM's 72.27), beside a layers recipe whose gain of
    +2.07 was over its own baseline of 74.00: 76.07 - 72.27 is not 2.07."""
    from distillery.compare import compare

    runs = tmp_path / "reports" / "kd_gain_runs"
    _run(runs / "a_bilstm.json", {"student": "bilstm"}, [0.75, 0.76, 0.757], [0.72, 0.723, 0.725])
    _run(runs / "b_layers.json", {"student": "layers [0]"}, [0.76, 0.765, 0.757], [0.74, 0.741, 0.739])
    result = compare(load_params(ROOT / "params.yaml"), tmp_path / "reports")
    rows = {line.split(" | ")[0].lstrip("| "): line.split(" | ") for line in result["table"].splitlines()
            if line.startswith("| student")}
    assert rows["student layers [0] **(best on validation)**"][4] == "74.00 ± 0.10"  # its own baseline
    assert rows["student layers [0] **(best on validation)**"][5].startswith("+2.07 ")
    assert rows["student bilstm"][4] == "72.27 ± 0.25" and result["not_comparable_in"] == []

    # another test split and another teacher: listed, and the table says so
    _run(runs / "c_other.json", {"student": "boe"}, [0.7, 0.71, 0.72], [0.6, 0.61, 0.6], test_rows=80,
         teacher_weights="b" * 64)
    again = compare(load_params(ROOT / "params.yaml"), tmp_path / "reports")
    assert again["not_comparable_in"] == ["test rows", "teacher"]
    assert "**These runs are not all comparable:** they differ in test rows, teacher." in again["table"]


def test_compare_reads_question_answering_runs_and_refuses_a_mix_of_tasks(tmp_path):
    from distillery.compare import compare
    from distillery.errors import DataError

    runs = tmp_path / "reports" / "kd_gain_runs"
    _run(runs / "qa.json", {"student": "layers [0, 2, 5]"}, [0.54, 0.53, 0.52], [0.33, 0.23, 0.22],
         metrics=("f1", "exact_match"))
    result = compare(load_params(ROOT / "params.yaml"), tmp_path / "reports")
    assert "| test f1 % | test exact_match ×100 |" in result["table"] and result["runs"][0]["test_f1_mean"] == 0.53
    _run(runs / "tweets.json", {"student": "layers [0]"}, [0.76, 0.765, 0.757], [0.74, 0.741, 0.739])
    with pytest.raises(DataError, match=r"the runs score different tasks \(qa.json: f1, exact_match; tweets.json: "
                                        r"accuracy, macro_f1\)"):
        compare(load_params(ROOT / "params.yaml"), tmp_path / "reports")


def test_two_recipes_that_differ_only_in_training_are_two_runs(tmp_path):
    from distillery.kd_gain import variant, variant_name

    params = load_params(ROOT / "params.yaml")
    longer = dataclasses.replace(params, distill=dataclasses.replace(
        params.distill, train=dataclasses.replace(params.distill.train, epochs=8, learning_rate=1e-4)))
    assert variant_name(variant(params)) != variant_name(variant(longer))
    assert variant(longer)["train"] == f"8 epochs, lr 0.0001, batch {params.distill.train.batch_size}"


def test_a_long_recipe_gets_a_file_name_a_file_system_takes_and_two_long_recipes_stay_apart(tmp_path):
    """A bilstm student with a transfer-set file made a 277-character name: kd_gain crashed at its very end."""
    from distillery.kd_gain import variant_name

    long = {"student": "bilstm " + "x" * 150, "transfer_set": "data/raw/" + "y" * 80 + ".csv (max 20000)"}
    other = dict(long, transfer_set=long["transfer_set"].replace("y", "z", 1))
    name, second = variant_name(long), variant_name(other)
    assert len(name) <= 150 and len(second) <= 150 and name != second
    assert name.startswith("student-bilstm_xxx")
    assert variant_name({"alpha": 0.5}) == "alpha-0.5"  # a short one is as before
    (tmp_path / f"{name}.json").write_text("{}")  # the file system takes it


@pytest.mark.parametrize("student, baseline, words", [
    ([0.70, 0.72, 0.69], [0.80, 0.81, 0.79], "the distilled student is BELOW its labels-only baseline"),
    ([0.80, 0.70, 0.76], [0.74, 0.75, 0.73], "the interval includes 0: these seeds show no accuracy gain from "
                                             "distillation"),
    # a trial: "paired gain -20.37 (CI -64.22 to +23.47)", said as no gain alone: a loss on average is said
    ([0.60, 0.99, 0.79], [0.99, 1.00, 0.99], "the interval includes 0: these seeds show no accuracy gain from "
                                             "distillation (the distilled student is below its baseline on average"),
    ([0.80, 0.81, 0.79], [0.74, 0.75, 0.73], "the distilled student beats its labels-only baseline"),
    # two seeds with equal gains: a "95% CI -7.41 to -7.41" of no width, read as certainty
    ([0.60, 0.70], [0.674, 0.774], "2 seeds are too few for the interval to mean much"),
])
def test_the_gain_over_seeds_is_said_in_words(student, baseline, words):
    """kd_gain printed "paired gain -11.11 points (95% CI -29.51 to +7.29)" and the sweep a zero-width interval from
    two seeds, with nothing saying the student lost or that the interval says nothing."""
    from distillery.kd_gain import paired_summary, verdict

    assert verdict(paired_summary(student, baseline), len(student)).startswith(words)


def test_compare_leaves_out_runs_of_another_task_or_test_split_and_says_when_a_gain_is_not_shown(tmp_path):
    """An image recipe and a sentence-pair one shared one table (both score accuracy), the pair one marked best and
    the pair task's teacher quoted as if for both."""
    from distillery.compare import compare

    prepared = tmp_path / "prepared"
    prepared.mkdir()
    (prepared / "test.parquet").write_bytes(b"this test split")
    from distillery.files import sha256_files

    current = sha256_files([prepared / "test.parquet"])
    runs = tmp_path / "reports" / "kd_gain_runs"
    _run(runs / "pairs.json", {"student": "layers [0]"}, [0.76, 0.765, 0.757], [0.74, 0.741, 0.739],
         task="text_classification", test_sha256=current)
    _run(runs / "older_split.json", {"student": "boe"}, [0.9, 0.9, 0.9], [0.5, 0.5, 0.5],
         task="text_classification", test_sha256="0" * 64)
    _run(runs / "images.json", {"student": "mlp: hidden [16]"}, [0.95, 0.96, 0.97], [0.9, 0.91, 0.9],
         task="image_classification", test_sha256=current)
    _run(runs / "no_gain.json", {"student": "bilstm"}, [0.74, 0.70, 0.76], [0.73, 0.74, 0.72])  # recorded neither
    result = compare(load_params(ROOT / "params.yaml"), tmp_path / "reports", prepared)
    assert result["left_out"] == ["images.json", "older_split.json"]
    assert [r["file"] for r in result["runs"]] == ["no_gain.json", "pairs.json"]
    assert "Left out, as runs of another task or test split: images.json, older_split.json." in result["table"]
    assert "student bilstm: the interval includes 0: these seeds show no accuracy gain" in result["table"]
    assert "student layers [0]:" not in result["table"]  # a clear gain needs no words

    only_other = tmp_path / "other"
    _run(only_other / "kd_gain_runs" / "images.json", {"student": "mlp"}, [0.9] * 3, [0.8] * 3,
         task="image_classification")
    from distillery.errors import DataError

    with pytest.raises(DataError, match=r"every kd_gain run there is of another task or test split than "
                                        r"text_classification .*\(images.json\)"):
        compare(load_params(ROOT / "params.yaml"), only_other, prepared)


def test_a_kd_gain_over_other_seeds_says_which_record_it_replaces(tmp_path, capsys):
    """A kd_gain over seeds [1, 2] replaced the 3-seed record of the same recipe without a word."""
    params = load_params(ROOT / "params.yaml")
    test, validation = pd.DataFrame({"x": range(4)}), pd.DataFrame({"x": range(2)})
    three = dataclasses.replace(params, evaluate=dataclasses.replace(params.evaluate, seeds=[1, 2, 3]))
    per_seed = _per_seed() + [{**_per_seed()[0], "seed": 3}]
    _report(three, per_seed, ("accuracy", "macro_f1"), test, validation, tmp_path / "reports", tmp_path / "logits")
    assert "replacing" not in capsys.readouterr().out
    two = dataclasses.replace(params, evaluate=dataclasses.replace(params.evaluate, seeds=[1, 2]))
    _report(two, _per_seed(), ("accuracy", "macro_f1"), test, validation, tmp_path / "reports", tmp_path / "logits")
    assert "(seeds [1, 2, 3]) with this run's seeds [1, 2]" in capsys.readouterr().out


def test_a_collapsed_baseline_is_named_and_an_interval_stays_within_possible_gains(tmp_path):
    """A trial's kd_gain: "distilled 70.00 ± 9.43%, baseline 33.33 ± 0.00%, paired gain +36.67 points (95% CI -48.04
    to +121.37)", the baseline answering one label for every test row in both seeds, and not a word of it."""
    import numpy as np

    from distillery.kd_gain import only_label, paired_summary, summary

    gain = paired_summary([0.6, 0.8], [1 / 3, 1 / 3])
    # t(0.975, 1) 12.706 x std 0.1414 / sqrt(2) = 1.2706 about a mean of 0.3667: the upper end bounded to +1
    assert gain["diff_ci95"] == pytest.approx([0.36667 - 1.27062, 1.0], abs=1e-4) and gain["diff_ci95_bounded"]
    assert paired_summary([0.80, 0.81, 0.79], [0.74, 0.75, 0.73])["diff_ci95_bounded"] is False

    labels = ["negative", "neutral", "positive"]
    one = np.array([[0.1, 0.2, 0.9], [0.3, 0.1, 0.5], [0.0, 0.0, 1.0]])
    assert only_label(one, labels) == "positive"
    assert only_label(np.array([[0.1, 0.2, 0.9], [0.9, 0.1, 0.5]]), labels) is None
    assert only_label(["an answer", "an answer"], labels) is None  # QA answers: not class scores

    params = load_params(ROOT / "params.yaml")
    per_seed = [{"seed": seed, "student": {"accuracy": s, "macro_f1": s, "validation_accuracy": s,
                                           "validation_macro_f1": s, "train_seconds": 1.0, "train_examples": 10,
                                           "one_label": None},
                 "baseline": {"accuracy": 1 / 3, "macro_f1": 1 / 6, "validation_accuracy": 1 / 3,
                              "validation_macro_f1": 1 / 6, "train_seconds": 1.0, "train_examples": 10,
                              "one_label": "positive"}}
                for seed, s in ((1, 0.6), (2, 0.8))]
    result = _report(params, per_seed, ("accuracy", "macro_f1"), pd.DataFrame({"x": range(4)}),
                     pd.DataFrame({"x": range(2)}), tmp_path / "reports", tmp_path / "logits")
    assert result["collapsed"] == [{"seed": s, "model": "baseline", "alpha": None, "temperature": None,
                                    "label": "positive"} for s in (1, 2)]
    line = summary({**result, "seeds": [1, 2]})
    assert "paired gain +36.67 points (95% CI -90.40 to +100.00, bounded to possible values)" in line, line
    assert line.endswith("use 3 or more in evaluate.seeds.\nWarning: the baseline answered 'positive' for every test "
                         "row in 2 runs (seeds 1, 2): its "
                         "training collapsed to one label (distill.train.learning_rate, .epochs), so a gain measured "
                         "against it says little about distillation."), line


def test_a_qa_summary_names_f1_and_gives_it_no_percent_sign():
    """SQuAD's F1 is a mean of per-question overlaps, reported on 0-100: not a percentage of questions (a black-box
    trial)."""
    from distillery.kd_gain import summary

    gain = paired_summary([0.41, 0.44, 0.43], [0.30, 0.33, 0.31])
    line = summary({"metrics": ["f1", "exact_match"], "f1": gain, "seeds": [1, 2, 3]})
    assert line.startswith("over seeds [1, 2, 3]: distilled F1 42.67 ± 1.53, baseline F1 31.33 ± 1.53, paired gain "
                           "+11.33 points"), line
    accuracy = summary({"metrics": ["accuracy"], "accuracy": gain, "seeds": [1, 2, 3]})
    assert accuracy.startswith("over seeds [1, 2, 3]: distilled 42.67 ± 1.53%, baseline 31.33 ± 1.53%"), accuracy


def test_a_collapsed_teacher_is_named_beside_its_retention_in_kd_gain_and_compare(tmp_path):
    """A teacher that answers one label for every test row: the students "kept 100% of it", and not a word said."""
    from distillery.compare import compare
    from distillery.kd_gain import summary

    params = load_params(ROOT / "params.yaml")
    labels = ["negative", "neutral", "positive"]
    one_column = [[0, 0, 2], [0, 0, 1], [0, 0, 1]]
    for matrix, collapsed in (([[2, 0, 0], [0, 0, 1], [0, 0, 1]], None), (one_column, "positive")):
        write_json(tmp_path / "reports/metrics/eval.json",
                   {"test_rows": 4, "teacher_weights": "a" * 64, "labels": labels,
                    "teacher": {"accuracy": 0.25, "macro_f1": 0.13, "confusion_matrix": matrix}})
        write_json(tmp_path / "logits/manifest.json", {"teacher_weights": "a" * 64})
        result = _report(params, _per_seed(), ("accuracy", "macro_f1"), pd.DataFrame({"x": range(4)}),
                         pd.DataFrame({"x": range(2)}), tmp_path / "reports", tmp_path / "logits")
        assert result["teacher_one_label"] == collapsed
        warning = ("\nWarning: the teacher answers 'positive' for every test row (evaluate): its training collapsed, "
                   "so the students' retention of its score means nothing.")
        assert summary({**result, "seeds": [1, 2]}).endswith(warning) is (collapsed is not None)
    compare(params, tmp_path / "reports", tmp_path / "prepared")
    assert "**The teacher answers 'positive' for every test row:** its training collapsed" in \
        (tmp_path / "reports/compare.md").read_text()


def test_the_recipe_name_tells_apart_the_training_settings_that_change_a_run():
    """Two kd_gain runs that differed only in attention dropout or frozen embeddings shared one record file, and the
    second replaced the first; the default's name is the one it always had."""
    from distillery.kd_gain import variant

    params = load_params(ROOT / "params.yaml")
    assert variant(params)["train"] == "4 epochs, lr 0.0001, batch 32"
    train = dataclasses.replace(params.distill.train, attention_dropout=0.0, freeze_embeddings=True)
    changed = dataclasses.replace(params, distill=dataclasses.replace(params.distill, train=train))
    assert variant(changed)["train"] == "4 epochs, lr 0.0001, batch 32, attention dropout 0, embeddings frozen"


def test_compare_repeats_a_collapse_and_says_when_the_best_on_validation_is_a_tie(tmp_path):
    """A trial: both recipes' runs collapsed to one label (25.00 ± 0.00 everywhere); kd_gain warned, compare said
    nothing and marked one of the two tied recipes the best."""
    from distillery.compare import compare

    params = load_params(ROOT / "params.yaml")
    one_label = {"accuracy": 0.25, "macro_f1": 0.1, "validation_accuracy": 0.25, "validation_macro_f1": 0.1,
                 "train_seconds": 1.0, "train_examples": 10, "one_label": "positive"}
    per_seed = [{"seed": s, "student": one_label, "baseline": one_label} for s in (1, 2)]
    for frozen in (False, True):
        train = dataclasses.replace(params.distill.train, freeze_embeddings=frozen)
        recipe = dataclasses.replace(params, distill=dataclasses.replace(params.distill, train=train))
        _report(recipe, per_seed, ("accuracy", "macro_f1"), pd.DataFrame({"x": range(4)}),
                pd.DataFrame({"x": range(2)}), tmp_path / "reports", tmp_path / "logits")
    compare(params, tmp_path / "reports", tmp_path / "prepared")
    table = (tmp_path / "reports/compare.md").read_text()
    assert table.count("**(best on validation, tied with 1 more: the first listed)**") == 1
    assert table.count("the baseline answered 'positive' for every test row in 2 runs (seeds 1, 2); the distilled "
                       "student answered 'positive' for every test row in 2 runs (seeds 1, 2): their trainings "
                       "collapsed") == 2
