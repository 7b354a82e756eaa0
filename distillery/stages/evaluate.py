"""The ``evaluate`` stage: teacher, distilled student and baseline on the test split, scored by the
task type (for text classification: accuracy, macro P/R/F1, ROC AUC, per-class figures and
confusion matrices)."""
from __future__ import annotations

from pathlib import Path
from typing import Union

from distillery.config import Params
from distillery.errors import ModelError
from distillery.files import read_json, sha256_files, write_json, write_text
from distillery.logit_cache import teacher_weights_hash
from distillery.paths import PREPARED_DIR, REPORTS_DIR
from distillery.prepared import check_trained_on, load_labels, load_split
from distillery.progress import reporting
from distillery.reports import MODELS, results_table
from distillery.task_types.load import task_type


def evaluate(params: Params, models_dir: Union[str, Path] = "models", prepared_dir: Union[str, Path] = PREPARED_DIR,
             reports_dir: Union[str, Path] = REPORTS_DIR) -> dict:
    task = task_type(params.task, params)
    labels = load_labels(prepared_dir)
    test = load_split("test", prepared_dir)
    reports_dir = Path(reports_dir)
    results: dict = {"test_rows": int(len(test)), "labels": labels}
    per_class, plots = {}, {}
    trainings = {}
    for name in MODELS:  # every model checked before any is scored
        model_dir = Path(models_dir) / name
        if not (model_dir / "training.json").is_file():
            raise ModelError(f"{model_dir}: trained model not found; run the stage that makes it first")
        trainings[name] = read_json(model_dir / "training.json")
        check_trained_on(trainings[name], model_dir, prepared_dir, "train_teacher" if name == "teacher" else "distill")
    for name in MODELS:
        model_dir, training = Path(models_dir) / name, trainings[name]
        model = task.load_model(str(model_dir), str(model_dir))
        tokenizer = task.load_featuriser(str(model_dir), str(model_dir))
        with reporting(f"{name} on {len(test):,} test rows"):
            outputs = task.answers(model, tokenizer, test, training["max_length"], params.evaluate.batch_size)
        report = task.evaluation_report(outputs, test, labels)
        results[name] = {**report["metrics"], "parameters": training["parameters"],
                         "train_seconds": training["train_seconds"]}
        per_class[name] = report["per_class"]
        plots[name] = report["plots"]
    primary, secondary = task.primary_metric, task.secondary_metric
    teacher, student, baseline = (results[m] for m in MODELS)
    results[f"student_{primary}_retention"] = student[primary] / teacher[primary] if teacher[primary] else 0.0
    results[f"student_minus_baseline_{primary}"] = student[primary] - baseline[primary]
    results[f"student_minus_baseline_{secondary}"] = student[secondary] - baseline[secondary]
    for name, model_plots in plots.items():  # written only once every model has been scored
        for plot, frame in model_plots.items():
            write_text(reports_dir / "plots" / plot / f"{name}.csv", frame.to_csv(index=False))
    # which teacher was scored: kd_gain quotes this teacher only while its weights are the ones cached
    results["teacher_weights"] = teacher_weights_hash(Path(models_dir) / "teacher")
    # which test split: register refuses figures of another one (a `prepare` run by hand since)
    results["test_sha256"] = sha256_files([Path(prepared_dir) / "test.parquet"])
    write_json(reports_dir / "metrics" / "eval.json", results)
    write_json(reports_dir / "per_class.json", per_class)
    write_text(reports_dir / "summary.md", results_table(results, primary, secondary))
    return results


def summary(result: dict) -> str:
    primary = next(key[len("student_"):-len("_retention")] for key in result
                   if key.startswith("student_") and key.endswith("_retention"))
    secondary = next(key[len("student_minus_baseline_"):] for key in result
                     if key.startswith("student_minus_baseline_") and key != f"student_minus_baseline_{primary}")
    return results_table(result, primary, secondary)
