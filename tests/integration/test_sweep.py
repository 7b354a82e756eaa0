"""The α × T sweep over seeds: selection on validation, baselines once per seed, resumable runs."""
import csv
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import tiny_params, write_params
from distillery import sweep as sweep_module
from distillery.cli import main
from distillery.config import load_params
from distillery.errors import ConfigError
from distillery.sweep import summarise
from tiny import make_csv


def _record(seed, model, alpha, temperature, test, validation):
    return {"seed": seed, "model": model, "alpha": alpha, "temperature": temperature, "accuracy": test,
            "macro_f1": test, "validation_accuracy": validation, "validation_macro_f1": validation}


def test_the_selection_uses_validation_when_test_disagrees():
    cells = [(0.0, 1.0), (0.5, 1.0)]
    records = [_record(s, "baseline", None, None, 0.60, 0.60) for s in (1, 2)]
    # cell (0, 1): best on test (0.90, 0.80), worse on validation (0.70, 0.72); cell (0.5, 1): the reverse
    records += [_record(1, "student", 0.0, 1.0, 0.90, 0.70), _record(2, "student", 0.0, 1.0, 0.80, 0.72),
                _record(1, "student", 0.5, 1.0, 0.65, 0.80), _record(2, "student", 0.5, 1.0, 0.67, 0.78)]
    result = summarise(records, [1, 2], cells, "accuracy")
    assert (result["selected"]["alpha"], result["selected"]["temperature"]) == (0.5, 1.0)
    assert [bool(c.get("selected")) for c in result["cells"]] == [False, True]
    chosen = result["selected"]["accuracy"]
    assert chosen["student_mean"] == pytest.approx(0.66) and chosen["diff_mean"] == pytest.approx(0.06)
    # paired differences 0.05, 0.07: std 0.0141421, half width t(0.975, 1) · 0.0141421 / sqrt(2) = 12.706205 · 0.01
    assert chosen["diff_ci95"] == pytest.approx([0.06 - 0.12706205, 0.06 + 0.12706205], abs=1e-6)
    assert result["selected"]["validation"]["student_accuracy_mean"] == pytest.approx(0.79)
    assert result["baseline"]["accuracy"] == {"mean": pytest.approx(0.60), "std": pytest.approx(0.0)}


def test_a_question_answering_sweep_selects_on_validation_f1_and_reports_f1_and_exact_match(tmp_path):
    """Extractive QA scores f1 and exact_match, not accuracy: the sweep's table, JSON and plot use them."""
    from distillery.sweep import write_reports

    def qa(seed, model, alpha, test_f1, validation_f1):
        return {"seed": seed, "model": model, "alpha": alpha, "temperature": 2.0, "f1": test_f1,
                "exact_match": test_f1 - 0.1, "validation_f1": validation_f1,
                "validation_exact_match": validation_f1 - 0.1}

    records = [qa(s, "baseline", None, 0.50, 0.50) for s in (1, 2)]
    records += [qa(1, "student", 0.0, 0.70, 0.60), qa(2, "student", 0.0, 0.72, 0.62),
                qa(1, "student", 0.5, 0.60, 0.66), qa(2, "student", 0.5, 0.64, 0.70)]
    result = summarise(records, [1, 2], [(0.0, 2.0), (0.5, 2.0)], "f1", ("f1", "exact_match"))
    assert result["selected"]["alpha"] == 0.5 and result["metrics"] == ["f1", "exact_match"]
    assert result["selected"]["f1"]["diff_mean"] == pytest.approx(0.12)  # (0.10 + 0.14) / 2
    assert result["baseline"]["exact_match"]["mean"] == pytest.approx(0.40)
    write_reports(result, tmp_path)
    table = (tmp_path / "sweep.md").read_text()
    assert "test f1 % | test exact_match ×100" in table and "accuracy" not in table
    assert "| 0.5 | 2 **selected** | 68.00 ± 2.83 | 62.00 ± 2.83 | 52.00 ± 2.83 | +12.00" in table, table
    assert (tmp_path / "plots" / "sweep_heatmap.png").stat().st_size > 0


def test_a_grid_whose_every_setting_loses_to_the_baseline_says_so(tmp_path):
    """A 2 x 2 grid below the baseline in every cell: sweep.md selected the least bad one, reported "paired gain -7.41
    points (95% CI -7.41 to -7.41)" from two seeds, and gave the baseline's validation score nowhere."""
    from distillery.sweep import summary, write_reports

    seeds = [1, 2, 3]
    records = [_record(s, "baseline", None, None, 0.80 + 0.01 * s, 0.75) for s in seeds]
    records += [_record(s, "student", alpha, 2.0, 0.70 + 0.01 * s - alpha / 10, 0.70 - alpha / 10 + 0.001 * s)
                for s in seeds for alpha in (0.0, 0.5)]
    result = summarise(records, seeds, [(0.0, 2.0), (0.5, 2.0)], "accuracy")
    write_reports(result, tmp_path)
    table = (tmp_path / "sweep.md").read_text()
    assert "Selected: α = 0, T = 2 (validation accuracy 70.20%, the baseline's 75.00%); test accuracy" in table
    assert "the distilled student is BELOW its labels-only baseline over these seeds: distillation did not help. " \
           "No setting of this grid beat the labels-only baseline on test accuracy" in table, table
    assert ": the distilled student is BELOW its labels-only baseline" in summary(result)
    # the gain panel is centred on 0: both gains here are below it, so both are drawn on its red side
    from distillery.plots import colour_scale

    scale = colour_scale(np.array([[-10.0, -5.0]]), gain=True)
    assert scale == {"cmap": "RdBu", "vmin": -10.0, "vmax": 10.0}
    two = summarise([r for r in records if r["seed"] < 3], [1, 2], [(0.0, 2.0), (0.5, 2.0)], "accuracy")
    # the sweep's seeds are sweep.seeds (it told a trial to add seeds to evaluate.seeds, which held 3 already)
    assert "2 seeds are too few for the interval to mean much (two seeds with equal gains give it no width); use 3 " \
           "or more in sweep.seeds" in summary(two)
    # a collapsed run is named in the line and in sweep.md
    from distillery.kd_gain import collapsed

    two["collapsed"] = collapsed([{**records[0], "one_label": "positive"}])
    assert summary(two).endswith("Warning: the baseline answered 'positive' for every test row in 1 run (seed 1): its "
                                 "training collapsed to one label (distill.train.learning_rate, .epochs), so a gain "
                                 "measured against it says little about distillation.")
    write_reports(two, tmp_path)
    assert "Warning: the baseline answered 'positive'" in (tmp_path / "sweep.md").read_text()


def test_sweep_on_tiny_model(tmp_path, monkeypatch, tiny_bert, capsys):
    monkeypatch.chdir(tmp_path)
    make_csv(tmp_path / "tweets.csv", n=120)
    params = tiny_params(tiny_bert, Path("tweets.csv"), **{
        "sweep": {"alpha": [0.0, 0.5], "temperature": [1.0, 4.0], "seeds": [0, 1], "metric": "accuracy"},
        "teacher.train.epochs": 1, "distill.train.epochs": 1})
    write_params(tmp_path / "params.yaml", params)
    for stage in ("prepare", "train_teacher", "teacher_logits"):
        assert main([stage]) == 0
    assert main(["sweep"]) == 0
    assert "selected on validation" in capsys.readouterr().out
    runs = [json.loads(p.read_text()) for p in sorted((tmp_path / "reports/sweep_runs").glob("*.json"))]
    assert sorted((r["seed"], r["model"]) for r in runs if r["model"] == "baseline") == [(0, "baseline"),
                                                                                         (1, "baseline")]
    assert len(runs) == 2 + 2 * 4  # one baseline per seed, not one per cell
    result = json.loads((tmp_path / "reports/metrics/sweep.json").read_text())

    # the selected cell is the argmax of the validation means, computed here from the per-run records
    def validation_mean(alpha, temperature):
        return np.mean([r["validation_accuracy"] for r in runs if r["model"] == "student" and r["alpha"] == alpha
                        and r["temperature"] == temperature])
    cells = [(a, t) for a in (0.0, 0.5) for t in (1.0, 4.0)]
    means = [validation_mean(*cell) for cell in cells]
    best = cells[int(np.argmax(means))]
    assert (result["selected"]["alpha"], result["selected"]["temperature"]) == best
    for cell, row in zip(cells, result["cells"]):
        diffs = [next(r["accuracy"] for r in runs if r["model"] == "student" and (r["alpha"], r["temperature"]) == cell
                      and r["seed"] == s) - next(r["accuracy"] for r in runs if r["model"] == "baseline"
                                                 and r["seed"] == s) for s in (0, 1)]
        assert row["accuracy"]["diff_mean"] == pytest.approx(np.mean(diffs))
        half = 12.706205 * abs(diffs[0] - diffs[1]) / 2  # two seeds: t(0.975, 1) · std / sqrt(2)
        # bounded to what a difference of two accuracies can be
        assert row["accuracy"]["diff_ci95"] == pytest.approx([max(-1.0, np.mean(diffs) - half),
                                                              min(1.0, np.mean(diffs) + half)], abs=1e-6)
        assert row["accuracy"]["diff_ci95_bounded"] == (abs(np.mean(diffs)) + half > 1.0)
    table = (tmp_path / "reports/sweep.md").read_text()
    assert table.count("**selected**") == 1 and "baseline (labels only, trained once per seed)" in table
    with open(tmp_path / "reports/sweep.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [(float(r["alpha"]), float(r["temperature"])) for r in rows] == cells
    assert (tmp_path / "reports/plots/sweep_heatmap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # the Prefect flow maps the same runs over the grid: it retrains the two deleted runs (training is
    # deterministic for a seed, so to the same figures) and reuses the eight kept ones
    from prefect.testing.utilities import prefect_test_harness

    from flows.sweep import sweep_flow

    runs_dir = tmp_path / "reports/sweep_runs"
    deleted = {}
    for name in ("seed-1_baseline", "seed-0_alpha-0.5_T-4"):
        deleted[name] = json.loads((runs_dir / f"{name}.json").read_text())
        (runs_dir / f"{name}.json").unlink()
    kept = {p.name: p.stat().st_mtime_ns for p in runs_dir.glob("*.json")}
    monkeypatch.setenv("DISTILLERY_PROJECT_DIR", str(tmp_path))
    with prefect_test_harness(server_startup_timeout=120):
        flowed = sweep_flow(project_dir=str(tmp_path))
    assert {p.name: p.stat().st_mtime_ns for p in runs_dir.glob("*.json") if p.name in kept} == kept
    assert len(list(runs_dir.glob("*.json"))) == 10
    for name, before in deleted.items():
        again = json.loads((runs_dir / f"{name}.json").read_text())
        assert {k: again[k] for k in ("accuracy", "macro_f1", "validation_accuracy", "validation_macro_f1")} == \
            pytest.approx({k: before[k] for k in ("accuracy", "macro_f1", "validation_accuracy", "validation_macro_f1")})
    assert flowed["selected"] == json.loads(json.dumps(result["selected"]))

    # the command again, on kept runs edited so that validation and test disagree: it trains nothing, and
    # selects the cell best on validation (α 0.5, T 4), never the one best on test (α 0, T 1)
    monkeypatch.setattr(sweep_module, "train_and_score", lambda *a, **k: pytest.fail("a kept run was retrained"))
    for name, test_accuracy, validation_accuracy in (("alpha-0_T-1", 0.99, 0.20), ("alpha-0.5_T-4", 0.10, 0.95)):
        for seed in (0, 1):
            path = runs_dir / f"seed-{seed}_{name}.json"
            record = json.loads(path.read_text())
            path.write_text(json.dumps(record | {"accuracy": test_accuracy, "validation_accuracy": validation_accuracy}))
    assert main(["sweep"]) == 0
    chosen = json.loads((tmp_path / "reports/metrics/sweep.json").read_text())["selected"]
    assert (chosen["alpha"], chosen["temperature"]) == (0.5, 4.0)
    assert chosen["accuracy"]["student_mean"] == pytest.approx(0.10)  # its test figure is reported, not used


def test_mse_has_no_temperature_to_sweep(tmp_path, tiny_bert):
    params = tiny_params(tiny_bert, Path("tweets.csv"), **{"distill.loss": "mse"})
    with pytest.raises(ConfigError, match=r"sweep.temperature: distill.loss is mse, which has no temperature"):
        sweep_module.sweep(load_params(write_params(tmp_path / "params.yaml", params)), tmp_path, tmp_path, tmp_path,
                           tmp_path)
