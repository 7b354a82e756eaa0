"""The whole pipeline on a tiny random BERT and a tiny CSV, through `dvc repro` in a temporary git repo."""
import json
import re

from conftest import dvc

STAGES = ["prepare", "train_teacher", "teacher_logits", "distill", "evaluate", "export", "benchmark"]


def _ran(output: str) -> list[str]:
    return re.findall(r"Running stage '([a-z_]+)'", output)


def test_dvc_repro_then_nothing_then_only_distill_onwards(tiny_project):
    first = dvc(tiny_project, "repro")
    assert first.returncode == 0, first.stderr + first.stdout
    assert _ran(first.stdout) == STAGES

    results = json.loads((tiny_project / "reports/metrics/eval.json").read_text())
    for model in ("teacher", "student", "baseline"):
        for metric in ("accuracy", "macro_f1", "macro_precision", "macro_recall", "roc_auc"):
            assert 0.0 <= results[model][metric] <= 1.0
    assert results["student"]["parameters"] < results["teacher"]["parameters"]
    for path in ("data/prepared/train.parquet", "data/prepared/labels.json", "data/prepared/data_report.json",
                 "data/teacher_logits/manifest.json", "models/teacher/config.json", "models/student/config.json",
                 "models/baseline/config.json", "reports/summary.md", "reports/metrics/distill.json",
                 "reports/plots/confusion/student.csv", "reports/curves/student_loss.csv",
                 "models/onnx/student.int8.onnx", "models/onnx/deployment.json", "reports/metrics/parity.json",
                 "reports/metrics/benchmark.json", "reports/plots/benchmark_pareto.png", "reports/benchmark.md"):
        assert (tiny_project / path).is_file(), path
    distill = json.loads((tiny_project / "reports/metrics/distill.json").read_text())
    assert distill["student"]["transfer_rows"] > 0 and distill["baseline"]["transfer_rows"] == 0
    assert "| student |" in (tiny_project / "reports/summary.md").read_text()

    second = dvc(tiny_project, "repro")
    assert second.returncode == 0 and _ran(second.stdout) == [], second.stdout

    experiment = dvc(tiny_project, "exp", "run", "-S", "distill.alpha=0.3")
    assert experiment.returncode == 0, experiment.stderr + experiment.stdout
    assert _ran(experiment.stdout) == ["distill", "evaluate", "export", "benchmark"]

    # Raw data under data/raw is a dependency: editing it makes prepare (and what follows) stale.
    with open(tiny_project / "data/raw/tweets.csv", "a") as handle:
        handle.write("a brand new tweet that was not there,positive\n")
    status = dvc(tiny_project, "status")
    assert status.returncode == 0 and "prepare:" in status.stdout, status.stdout


def test_bad_params_fail_before_any_output(tiny_project):
    params = (tiny_project / "params.yaml").read_text().replace("alpha: 0.5", "alpha: 1.5")
    (tiny_project / "params.yaml").write_text(params)
    result = dvc(tiny_project, "repro")
    assert result.returncode != 0
    assert "distillery prepare: error: params.yaml: distill.alpha = 1.5 is not allowed" in result.stderr
    assert not (tiny_project / "data" / "prepared").exists()
