"""The project's own evaluate metric, loaded by path (offline), against scikit-learn."""
import numpy as np
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from distillery.metrics import classification_metrics, confusion_matrix, load_metric


def test_loads_offline_by_path():
    assert load_metric().name == "classification"


def test_three_classes_against_sklearn():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(40, 3))
    references = rng.integers(0, 3, size=40)
    metrics = classification_metrics(logits, references)
    predictions = logits.argmax(-1)
    assert metrics["accuracy"] == pytest.approx((predictions == references).mean())
    assert metrics["macro_f1"] == pytest.approx(f1_score(references, predictions, average="macro"))
    probabilities = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    assert metrics["roc_auc"] == pytest.approx(roc_auc_score(references, probabilities, multi_class="ovr"))


def test_binary_auc_and_perfect_predictions():
    logits = np.array([[2.0, -1.0], [0.0, 3.0], [1.0, 0.5], [-2.0, 2.0]])
    metrics = classification_metrics(logits, np.array([0, 1, 0, 1]))
    assert metrics["accuracy"] == 1.0 and metrics["macro_f1"] == 1.0 and metrics["roc_auc"] == 1.0


def test_auc_undefined_when_a_class_is_absent():
    metrics = classification_metrics(np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), np.array([0, 1]))
    assert metrics["roc_auc"] is None and metrics["accuracy"] == 1.0
    # macro-F1 over the classes that occur: class 2, in neither the split nor the answers, has no F1 (it was
    # counted as 0, so perfect answers scored 0.667)
    assert metrics["macro_f1"] == 1.0
    # a class predicted but absent from the split counts, at 0: class 1 has P 1, R 1/2, so F1 2/3
    wrong = classification_metrics(np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]]), np.array([0, 1, 1]))
    assert wrong["macro_f1"] == pytest.approx((1 + 2 / 3 + 0) / 3)


def test_confusion_matrix_rows_are_gold_labels():
    assert confusion_matrix(np.array([0, 2, 2]), np.array([0, 1, 2]), 3) == [[1, 0, 0], [0, 0, 1], [0, 0, 1]]


def test_the_gates_served_score_averages_macro_f1_over_the_same_classes_as_evaluate():
    """On a split without a class, evaluate gave perfect answers 1.0 and the registry's score 0.667."""
    import pandas as pd

    from distillery.task_types.text_classification import serving as texts

    labels = ["negative", "neutral", "positive"]
    frame = pd.DataFrame({"text": ["a", "b", "c", "d"], "label": [0, 2, 0, 2]})

    def perfect(inputs):
        return pd.DataFrame({"label": [labels[i] for i in frame["label"].iloc[:len(inputs)]]})

    assert texts.score(perfect, frame, labels) == {"accuracy": 1.0, "macro_f1": 1.0,
                                                   "per_row": {"accuracy": [1.0, 1.0, 1.0, 1.0]}}
    logits = np.eye(3)[frame["label"].to_numpy()]
    assert classification_metrics(logits, frame["label"].to_numpy())["macro_f1"] == 1.0

    def answers_neutral_once(inputs):  # a wrong answer of a class the split lacks still counts, at F1 0
        return pd.DataFrame({"label": ["neutral", "positive", "negative", "positive"][:len(inputs)]})

    # negative: P 1, R 1/2, F1 2/3; positive: 1; neutral: 0
    assert texts.score(answers_neutral_once, frame, labels)["macro_f1"] == pytest.approx((2 / 3 + 1 + 0) / 3)
