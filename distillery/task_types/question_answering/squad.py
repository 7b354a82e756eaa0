"""EM and F1 exactly as the official SQuAD v1.1 evaluation script (``evaluate-v1.1.py``, Rajpurkar et
al. 2016) computes them, kept here so scoring runs offline.

An answer is normalised by lower-casing, removing punctuation (``string.punctuation``), removing the
articles a/an/the as whole words, and collapsing whitespace. EM is 1 when the normalised prediction
equals a normalised gold answer; F1 is the harmonic mean of token precision and recall (tokens
counted with multiplicity) against a gold answer. Each question takes its best score over all gold
answers, and the split's figure is the mean. The official script prints percentages; these are
fractions in [0, 1], like every other Distillery metric (x100 for the script's figures).
"""
from __future__ import annotations

import re
import string
from collections import Counter
from typing import Sequence

_PUNCTUATION = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(text: str) -> str:
    """Lower case, no punctuation, no articles, single spaces (the official script's order)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def f1(prediction: str, gold: str) -> float:
    predicted, truth = normalize_answer(prediction).split(), normalize_answer(gold).split()
    same = sum((Counter(predicted) & Counter(truth)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(predicted), same / len(truth)
    return 2 * precision * recall / (precision + recall)


def best_over_gold(metric, prediction: str, golds: Sequence[str]) -> float:
    return max(metric(prediction, gold) for gold in golds)


def squad_scores(predictions: Sequence[str], golds: Sequence[Sequence[str]]) -> dict:
    """Per-question EM and F1 (best over its gold answers), as lists."""
    if len(predictions) != len(golds):
        raise ValueError(f"{len(predictions)} predictions for {len(golds)} questions")
    return {"exact_match": [best_over_gold(exact_match, p, list(g)) for p, g in zip(predictions, golds)],
            "f1": [best_over_gold(f1, p, list(g)) for p, g in zip(predictions, golds)]}


def squad_metrics(predictions: Sequence[str], golds: Sequence[Sequence[str]]) -> dict:
    """``exact_match`` and ``f1``: the means over questions, in [0, 1]."""
    scores = squad_scores(predictions, golds)
    count = max(1, len(predictions))
    return {"exact_match": sum(scores["exact_match"]) / count, "f1": sum(scores["f1"]) / count}
