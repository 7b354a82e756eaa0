"""Behavioural checks (CheckList-style: invariance and directional expectations) on a trained default
student. They need the model the default pipeline writes, so they are marked ``model`` and left out of the
default test run (pyproject.toml: ``-m "not model"``). After `dvc repro` (at least up to `distill`):

    python -m pytest -m model

``DISTILLERY_MODEL_DIR`` points them at another model directory (HF format with its tokenizer); a relative
path is taken from the repository root. The cases were written before looking at the model's outputs; a
sensible case the model gets wrong stays in, marked xfail with the reason.
"""
import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.model

ROOT = Path(__file__).resolve().parents[2]
MAX_LENGTH = 64  # student.max_length of the default params.yaml
# Invariance: a perturbation that should not matter may move the probabilities a little (the tokens do
# change for a URL or a name) but must not change the label nor move any class probability by more than this.
INVARIANCE_ATOL = 0.1


def _model_dir() -> Path:
    path = Path(os.environ.get("DISTILLERY_MODEL_DIR", "models/student")).expanduser()
    return path if path.is_absolute() else ROOT / path


@pytest.fixture(scope="module")
def classify():
    """A function from a list of texts to a list of {label: probability} dicts."""
    directory = _model_dir()
    if not (directory / "config.json").is_file():
        pytest.skip(f"{directory}: no trained student there; run the default pipeline first "
                    "(`dvc repro distill`) or set DISTILLERY_MODEL_DIR to a model directory")
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    model = AutoModelForSequenceClassification.from_pretrained(str(directory)).eval()
    id2label = {int(i): name for i, name in model.config.id2label.items()}
    assert sorted(id2label.values()) == ["negative", "neutral", "positive"], id2label

    def run(texts):
        batch = tokenizer(texts, padding=True, truncation=True, max_length=MAX_LENGTH, return_tensors="pt")
        with torch.inference_mode():
            probabilities = model(**batch).logits.softmax(-1).tolist()
        return [{id2label[i]: p for i, p in enumerate(row)} for row in probabilities]
    return run


def _label(probabilities: dict) -> str:
    return max(probabilities, key=probabilities.get)


def _assert_invariant(classify, original: str, perturbed: str):
    before, after = classify([original, perturbed])
    assert _label(before) == _label(after), (original, before, perturbed, after)
    for name in before:
        assert after[name] == pytest.approx(before[name], abs=INVARIANCE_ATOL), (name, original, before, after)


BASES = [
    "I love this new phone, the camera is amazing {x}",
    "Worst customer service ever, still waiting for my refund {x}",
    "The meeting has been moved to Thursday at 3pm {x}",
]
# Found on the default student (2026-11-30, AMD EPYC run, identical weights to the README's run): on the
# neutral sentence it already leans negative (0.75), and swapping the URL or the @mention moves that by
# more than 0.1 (e.g. 0.75 -> 0.53 for @john -> @sarah_k), though the label stays. A real weakness, kept
# visible: strict xfail, so a student that fixes it turns these into failures to be un-marked.
UNSTABLE = pytest.mark.xfail(strict=True, reason="the default student's probabilities on a neutral sentence move "
                                                 "by > 0.1 when the URL or @mention changes (0.75 -> 0.53)")


def _cases(texts: list[str]) -> list:
    return [pytest.param(t, marks=UNSTABLE) if "meeting" in t else t for t in texts]


@pytest.mark.parametrize("text", [b.format(x="").strip() for b in BASES])
def test_a_closing_full_stop_does_not_matter(classify, text):
    # (trailing white space was the check here: the tokenizer drops it, so it held for any model)
    _assert_invariant(classify, text, text + ".")


@pytest.mark.parametrize("base", _cases(BASES))
def test_a_different_url_does_not_matter(classify, base):
    _assert_invariant(classify, base.format(x="http://t.co/abc"), base.format(x="http://example.com/xyz"))


@pytest.mark.parametrize("text", _cases(["@john " + b.format(x="").strip() for b in BASES]))
def test_a_different_mention_does_not_matter(classify, text):
    _assert_invariant(classify, text, text.replace("@john", "@sarah_k", 1))


POSITIVE = [
    "I love this, it is absolutely wonderful!",
    "Had a great day with my friends, so happy :)",
    "Thank you so much, this is the best gift ever",
]
NEGATIVE = [
    "I hate this, it is terrible and broken",
    "Worst day ever, I am so sad and angry",
    "This is awful, I want my money back",
]


@pytest.mark.parametrize("text", POSITIVE)
def test_clearly_positive_texts_are_positive(classify, text):
    assert _label(classify([text])[0]) == "positive", classify([text])[0]


@pytest.mark.parametrize("text", NEGATIVE)
def test_clearly_negative_texts_are_negative(classify, text):
    assert _label(classify([text])[0]) == "negative", classify([text])[0]


NEGATIONS = [
    ("I love this movie", "I do not love this movie"),
    ("This is good", "This is not good"),
    ("The food was great", "The food was not great at all"),
    ("The hotel room was nice", "The hotel room was nice but the staff were rude and it smelled awful"),
]


@pytest.mark.parametrize("original, negated", NEGATIONS)
def test_negation_lowers_the_positive_probability(classify, original, negated):
    before, after = classify([original, negated])
    assert after["positive"] < before["positive"], (original, before, negated, after)
