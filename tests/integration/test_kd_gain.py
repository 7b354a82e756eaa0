"""Multi-seed evidence: the paired statistics by hand, and the command on the tiny model."""
import json
from pathlib import Path

import pytest

from conftest import tiny_params, write_params
import distillery.kd_gain as kd_gain_module
import distillery.sweep as sweep_module
from distillery.cli import main
from distillery.config import load_params
from distillery.kd_gain import paired_summary
from tiny import make_csv


def test_paired_summary_by_hand():
    summary = paired_summary([0.80, 0.82, 0.81], [0.78, 0.79, 0.79])
    # differences 0.02, 0.03, 0.02: mean 0.02333, sample std 0.005774, t(0.975, 2) = 4.302653
    assert summary["diff_mean"] == pytest.approx(0.0233333, abs=1e-6)
    assert summary["diff_std"] == pytest.approx(0.0057735, abs=1e-6)
    half = 4.302653 * 0.0057735 / 3 ** 0.5
    assert summary["diff_ci95"] == pytest.approx([0.0233333 - half, 0.0233333 + half], abs=1e-5)
    assert summary["student_mean"] == pytest.approx(0.81) and summary["baseline_std"] == pytest.approx(0.0057735,
                                                                                                       abs=1e-6)


def test_paired_summary_two_seeds_by_hand():
    summary = paired_summary([0.70, 0.74], [0.69, 0.70])
    # differences 0.01, 0.04: mean 0.025, sample std 0.03 / sqrt(2) = 0.0212132, t(0.975, 1) = 12.706205,
    # half width 12.706205 · 0.0212132 / sqrt(2) = 12.706205 · 0.015 = 0.1905931
    assert summary["diff_std"] == pytest.approx(0.0212132, abs=1e-6)
    assert summary["diff_ci95"] == pytest.approx([0.025 - 0.1905931, 0.025 + 0.1905931], abs=1e-6)


def test_kd_gain_on_tiny_model(tmp_path, monkeypatch, tiny_bert, capsys):
    monkeypatch.chdir(tmp_path)
    make_csv(tmp_path / "tweets.csv", n=120)
    write_params(tmp_path / "params.yaml", tiny_params(tiny_bert, Path("tweets.csv"), **{"evaluate.seeds": [0, 1]}))
    for stage in ("prepare", "train_teacher", "teacher_logits", "distill", "evaluate"):
        assert main([stage]) == 0
    assert main(["kd_gain"]) == 0
    result = json.loads((tmp_path / "reports/metrics/kd_gain.json").read_text())
    assert [row["seed"] for row in result["per_seed"]] == [0, 1]
    for metric in ("accuracy", "macro_f1"):
        summary = result[metric]
        d1, d2 = [r["student"][metric] - r["baseline"][metric] for r in result["per_seed"]]
        assert summary["diff_mean"] == pytest.approx((d1 + d2) / 2)
        # two seeds: sample std |d1 - d2| / sqrt(2), so the 95% t-interval's half width is
        # t(0.975, 1) · std / sqrt(2) = 12.706205 · |d1 - d2| / 2
        half = 12.706205 * abs(d1 - d2) / 2
        assert summary["diff_ci95"] == pytest.approx([(d1 + d2) / 2 - half, (d1 + d2) / 2 + half], abs=1e-6)
    assert "teacher" in result and (tmp_path / "reports/plots/kd_gain.png").stat().st_size > 0
    out = capsys.readouterr().out
    assert "paired gain" in out
    # each training says what it trains, as it starts
    assert [line for line in out.splitlines() if line.startswith("kd_gain: training")] == [
        "kd_gain: training the baseline, seed 0 (run 1 of 4)",
        "kd_gain: training the distilled student (alpha 0.5, T 2), seed 0 (run 2 of 4)",
        "kd_gain: training the baseline, seed 1 (run 3 of 4)",
        "kd_gain: training the distilled student (alpha 0.5, T 2), seed 1 (run 4 of 4)"]
    per_seed = result["per_seed"][0]
    assert {"validation_accuracy", "validation_macro_f1"} <= set(per_seed["student"])

    # each run is kept as it ends: a kd_gain stopped during seed 1's student keeps the three runs before it,
    # and the next kd_gain trains that one run only, to the same figures (training is deterministic per seed)
    runs_dir = tmp_path / "reports/sweep_runs"
    assert sorted(p.name for p in runs_dir.glob("*.json")) == [
        "seed-0_alpha-0.5_T-2.json", "seed-0_baseline.json", "seed-1_alpha-0.5_T-2.json", "seed-1_baseline.json"]
    for path in runs_dir.glob("*.json"):
        path.unlink()
    real, trained = sweep_module.train_and_score, []

    def stopped_at_seed_1_student(*args, **kwargs):
        if args[5] == 1 and args[4] is not None:  # seed 1, distilled (options given)
            raise KeyboardInterrupt
        trained.append((args[5], args[4] is not None))
        return real(*args, **kwargs)
    monkeypatch.setattr(sweep_module, "train_and_score", stopped_at_seed_1_student)
    with pytest.raises(KeyboardInterrupt):
        kd_gain_module.kd_gain(load_params(tmp_path / "params.yaml"))
    capsys.readouterr()
    assert sorted(p.name for p in runs_dir.glob("*.json")) == [
        "seed-0_alpha-0.5_T-2.json", "seed-0_baseline.json", "seed-1_baseline.json"]
    kept = {p.name: p.stat().st_mtime_ns for p in runs_dir.glob("*.json")}

    def counted(*args, **kwargs):
        trained.append((args[5], args[4] is not None))
        return real(*args, **kwargs)
    monkeypatch.setattr(sweep_module, "train_and_score", counted)
    trained.clear()
    assert main(["kd_gain"]) == 0
    assert trained == [(1, True)]
    assert {p.name: p.stat().st_mtime_ns for p in runs_dir.glob("*.json") if p.name in kept} == kept
    out = capsys.readouterr().out
    assert "seed-0_baseline kept from an earlier run" in out
    assert [line for line in out.splitlines() if line.startswith("kd_gain: training")] == [
        "kd_gain: training the distilled student (alpha 0.5, T 2), seed 1 (run 4 of 4)"]
    resumed = json.loads((tmp_path / "reports/metrics/kd_gain.json").read_text())
    for again, before in zip(resumed["per_seed"], result["per_seed"]):
        for who in ("student", "baseline"):
            assert again[who]["accuracy"] == pytest.approx(before[who]["accuracy"], abs=1e-9), (again["seed"], who)
            assert again[who]["macro_f1"] == pytest.approx(before[who]["macro_f1"], abs=1e-9), (again["seed"], who)
    monkeypatch.setattr(sweep_module, "train_and_score", real)

    # a second recipe (augmented transfer set), then both side by side; the pick uses validation only
    params = tiny_params(tiny_bert, Path("tweets.csv"), **{"evaluate.seeds": [0, 1], "distill.augment.copies": 1})
    write_params(tmp_path / "params.yaml", params)
    assert main(["teacher_logits"]) == 0 and main(["kd_gain"]) == 0
    runs = sorted((tmp_path / "reports/kd_gain_runs").glob("*.json"))
    assert len(runs) == 2 and any("augment_copies-1" in p.name for p in runs)
    assert main(["compare"]) == 0
    compared = json.loads((tmp_path / "reports/metrics/compare.json").read_text())
    by_validation = max((json.loads(p.read_text()) for p in runs),
                        key=lambda r: r["validation"]["student_accuracy_mean"])
    assert compared["best_on_validation"] == by_validation["variant"]
    table = (tmp_path / "reports/compare.md").read_text()
    assert table.count("best on validation") == 1 and "its baseline, test accuracy %" in table and "| teacher |" in table
    assert "not all comparable" not in table and compared["not_comparable_in"] == []
