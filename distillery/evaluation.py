"""The ``evaluate`` stage: teacher, distilled student and baseline on the test split."""
from __future__ import annotations

from pathlib import Path
from typing import Union

import numpy as np
import pandas as pd
from sklearn.metrics import precision_recall_fscore_support

from distillery.config import Params
from distillery.data import LABEL, load_labels, load_split
from distillery.errors import ModelError
from distillery.files import read_json, write_json, write_text
from distillery.inference import predict_logits
from distillery.metrics import classification_metrics, confusion_matrix
from distillery.modeling import load_classifier, load_tokenizer
from distillery.paths import PREPARED_DIR, REPORTS_DIR
from distillery.reports import MODELS, results_table


def evaluate_models(params: Params, models_dir: Union[str, Path] = "models",
                    prepared_dir: Union[str, Path] = PREPARED_DIR, reports_dir: Union[str, Path] = REPORTS_DIR) -> dict:
    labels = load_labels(prepared_dir)
    test = load_split("test", prepared_dir)
    references = test[LABEL].to_numpy()
    reports_dir = Path(reports_dir)
    results: dict = {"test_rows": int(len(test)), "labels": labels}
    per_class, confusion_rows = {}, {}
    for name in MODELS:
        model_dir = Path(models_dir) / name
        if not (model_dir / "training.json").is_file():
            raise ModelError(f"{model_dir}: trained model not found; run the stage that makes it first")
        training = read_json(model_dir / "training.json")
        model = load_classifier(str(model_dir), str(model_dir))
        tokenizer = load_tokenizer(str(model_dir), str(model_dir))
        logits = predict_logits(model, tokenizer, test, training["max_length"], params.evaluate.batch_size)
        predictions = logits.argmax(-1)
        results[name] = {**classification_metrics(logits, references, len(labels)),
                         "parameters": training["parameters"], "train_seconds": training["train_seconds"],
                         "confusion_matrix": confusion_matrix(predictions, references, len(labels))}
        precision, recall, f1, support = precision_recall_fscore_support(
            references, predictions, labels=list(range(len(labels))), zero_division=0)
        per_class[name] = {label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
                           for label, p, r, f, s in zip(labels, precision, recall, f1, support)}
        confusion_rows[name] = pd.DataFrame({"actual": np.asarray(labels)[references],
                                             "predicted": np.asarray(labels)[predictions]})
    teacher, student, baseline = (results[m] for m in MODELS)
    results["student_accuracy_retention"] = student["accuracy"] / teacher["accuracy"] if teacher["accuracy"] else 0.0
    results["student_minus_baseline_accuracy"] = student["accuracy"] - baseline["accuracy"]
    results["student_minus_baseline_macro_f1"] = student["macro_f1"] - baseline["macro_f1"]
    for name, frame in confusion_rows.items():  # written only once every model has been scored
        write_text(reports_dir / "plots" / "confusion" / f"{name}.csv", frame.to_csv(index=False))
    write_json(reports_dir / "metrics" / "eval.json", results)
    write_json(reports_dir / "per_class.json", per_class)
    write_text(reports_dir / "summary.md", results_table(results))
    return results
