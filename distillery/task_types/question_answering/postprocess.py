"""Extractive QA post-processing: start/end logits of every window of a context to one answer span.

The standard recipe (Hugging Face ``run_qa.py`` / ``postprocess_qa_predictions``, SQuAD v1.1): in each
window take the ``n_best_size`` highest start and end logits; pair them; drop pairs outside the
context's tokens, with end before start, or longer than ``max_answer_length`` tokens; score a pair by
``start_logit + end_logit``; the example's answer is the best pair over all its windows. SQuAD v1.1
always has an answer, so the empty (CLS) answer is never chosen.

Imports numpy only and never Distillery: the served model (``distillery/serving/question_answerer.py``)
loads this very file from its artifacts, so training, evaluation and serving pick answers alike, and cut an
over-long question alike (:func:`fit_question`).
"""
from __future__ import annotations

import unicodedata
from typing import Callable, Optional, Sequence

import numpy as np

NO_OFFSET = -1  # offsets of tokens outside the context (question, special tokens, padding)


def question_room(max_length: int, special_tokens: int, doc_stride: int) -> int:
    """The most question tokens a window can hold: the context's share of a window must stay longer than
    ``doc_stride`` (a tokenizer refuses to cut a context into windows otherwise, and a Rust panic is no answer)."""
    return max_length - special_tokens - doc_stride - 1


def fit_question(question: str, offsets_of: Callable[[str], Sequence], room: int) -> str:
    """``question`` cut after its ``room``-th token when it has more (``offsets_of(text)``: the character span of
    each of the text's tokens, without special tokens). A question that long is rare; its first ``room`` tokens
    are kept, as a context is cut to the window."""
    text, keep = question, room
    for _ in range(4):  # a cut prefix may tokenise into a piece more than the whole did: cut once more
        offsets = offsets_of(text)
        if len(offsets) <= room or keep < 1:
            return text
        text, keep = text[:int(offsets[keep - 1][1])], keep - 1
    return text


def best_span(start_logits: np.ndarray, end_logits: np.ndarray, offsets: Sequence, n_best_size: int,
              max_answer_length: int) -> Optional[tuple[float, int, int, int, int]]:
    """The best ``(score, start_token, end_token, start_char, end_char)`` in one window, or None.

    ``offsets[i]`` is the character span ``(start, end)`` of token ``i`` in the context, or
    ``(-1, -1)`` (or None) for a token outside it; logits beyond ``len(offsets)`` are ignored."""
    length = len(offsets)
    start_logits = np.asarray(start_logits, dtype=np.float64)[:length]
    end_logits = np.asarray(end_logits, dtype=np.float64)[:length]
    in_context = np.array([o is not None and o[0] != NO_OFFSET for o in offsets], dtype=bool)
    starts = [i for i in np.argsort(-start_logits, kind="stable")[:n_best_size] if in_context[i]]
    ends = [i for i in np.argsort(-end_logits, kind="stable")[:n_best_size] if in_context[i]]
    best = None
    for s in starts:
        for e in ends:
            if e < s or e - s + 1 > max_answer_length:
                continue
            score = float(start_logits[s] + end_logits[e])
            if best is None or score > best[0]:
                best = (score, int(s), int(e), int(offsets[s][0]), int(offsets[e][1]))
    return best


def _log_softmax(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    top = values.max()
    return values - top - np.log(np.exp(values - top).sum())


def example_answer(windows: Sequence[tuple[np.ndarray, np.ndarray, Sequence]], context: str, n_best_size: int,
                   max_answer_length: int) -> dict:
    """The answer to one example from all its windows ``(start_logits, end_logits, offsets)``.

    Returns ``text``, ``start``/``end`` (character span in ``context``, end exclusive) and ``score``: the
    probability of the chosen start times that of the chosen end, each a softmax over its window's
    real tokens. No valid span anywhere: an empty answer at (0, 0) with score 0."""
    best, best_window = None, None
    for start_logits, end_logits, offsets in windows:
        span = best_span(start_logits, end_logits, offsets, n_best_size, max_answer_length)
        if span is not None and (best is None or span[0] > best[0]):
            best, best_window = span, (start_logits, end_logits, offsets)
    if best is None:
        return {"text": "", "start": 0, "end": 0, "score": 0.0}
    _, s, e, start_char, end_char = best
    start_logits, end_logits, offsets = best_window
    length = len(offsets)
    score = float(np.exp(_log_softmax(np.asarray(start_logits)[:length])[s] +
                         _log_softmax(np.asarray(end_logits)[:length])[e]))
    end_char = through_marks(context, end_char)
    return {"text": context[start_char:end_char], "start": start_char, "end": end_char, "score": score}


def through_marks(context: str, end: int) -> int:
    """``end`` moved past the combining marks that follow it: a tokenizer that strips accents leaves a decomposed
    accent (Unicode NFD: "cafe" + U+0301) out of every token's offsets, and an answer cut before it ("cafe") never
    matches its gold text ("café")."""
    while end < len(context) and unicodedata.combining(context[end]):
        end += 1
    return end


def answers(start_logits: Sequence[np.ndarray], end_logits: Sequence[np.ndarray], offsets: Sequence[Sequence],
            example_index: Sequence[int], contexts: Sequence[str], n_best_size: int,
            max_answer_length: int) -> list[dict]:
    """One answer per example: window ``i`` belongs to example ``example_index[i]`` (an index into ``contexts``)."""
    grouped: list[list] = [[] for _ in contexts]
    for i, example in enumerate(example_index):
        grouped[int(example)].append((start_logits[i], end_logits[i], offsets[i]))
    return [example_answer(windows, context, n_best_size, max_answer_length)
            for windows, context in zip(grouped, contexts)]
