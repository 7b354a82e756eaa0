"""Extractive QA, featurising: rows (one question about one context) become windows ("features").

A context longer than ``max_length`` tokens (with its question) is cut into overlapping windows,
``doc_stride`` tokens shared between neighbours (the tokenizer's ``return_overflowing_tokens`` with
``truncation="only_second"``): one row, one or more features. Each feature keeps

- ``example_index``: the row it came from (its position in the frame), to gather its windows back;
- ``offset_mapping``: per token, its character span in the context, or (-1, -1) outside the context;
- ``labels``: ``[start token, end token, feature index]`` of the first gold answer; a window that does
  not hold the whole answer points both at the CLS token, as the standard recipe does; a window of an
  unlabelled (transfer-set) question, one without an answer list, has ``-100`` for both (KD only).

The teacher-output cache holds start and end logits per FEATURE, ``[features, 2, max_length]`` in
feature order, so the student learns from the very windows the teacher saw (same tokenizer, same
``max_length`` and stride: the config checks it, :func:`tokenize` checks the count).
"""
from __future__ import annotations

import unicodedata

from typing import Optional

import numpy as np
import pandas as pd
import torch

from distillery.errors import CacheError, DataError
from distillery.losses import IGNORE_INDEX
from distillery.progress import batches
from distillery.task_types.tokens import TokenArrays, chunks
from distillery.task_types.question_answering.columns import (ANSWER_STARTS, ANSWER_TEXTS, CONTEXT,  # noqa: F401
                                                              ID, QUESTION, TITLE)
from distillery.task_types.question_answering.postprocess import fit_question, question_room

TEACHER_LOGITS = "teacher_logits"
PAD_LOGIT = -1e4  # cached teacher logit at padding positions: no probability after a softmax
NO_OFFSET = (-1, -1)
TOKEN_FIELDS = ("input_ids", "token_type_ids", "attention_mask")


def fit_questions(tokenizer, questions: list[str], max_length: int, stride: int) -> list[str]:
    """Each question, cut to the tokens a window leaves it (:func:`postprocess.fit_question`, as served)."""
    room = question_room(max_length, tokenizer.num_special_tokens_to_add(pair=True), stride)
    if room < 1:
        raise DataError(f"question_answering: windows of {max_length} tokens with doc_stride {stride} leave no room "
                        "for a question; lower question_answering.doc_stride")
    return _cut_questions(tokenizer, questions, room)


def _cut_questions(tokenizer, questions: list[str], room: int) -> list[str]:
    """Each question cut after its ``room``-th token when it has more."""
    lengths = [len(ids) for ids in tokenizer(questions, add_special_tokens=False, padding=False,
                                             truncation=False)["input_ids"]]

    def offsets_of(text: str) -> list:
        return tokenizer(text, add_special_tokens=False, padding=False, truncation=False,
                         return_offsets_mapping=True)["offset_mapping"]

    return [fit_question(q, offsets_of, room) if n > room else q for q, n in zip(questions, lengths)]


def encode(tokenizer, frame: pd.DataFrame, max_length: int, stride: int, padding=False):
    """Tokenise (question, context) pairs into windows with offsets; questions lose leading spaces, and a
    question too long to leave the context more than ``stride`` tokens of a window keeps its first tokens."""
    questions = fit_questions(tokenizer, [q.lstrip() for q in frame[QUESTION].astype(str)], max_length, stride)
    try:
        return tokenizer(questions, frame[CONTEXT].astype(str).tolist(), truncation="only_second",
                         max_length=max_length, stride=stride, return_overflowing_tokens=True,
                         return_offsets_mapping=True, padding=padding)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - tokenizers' Rust panics (PanicException) are BaseExceptions
        raise DataError(f"question_answering: cannot cut the contexts into windows of {max_length} tokens with "
                        f"doc_stride {stride}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                        ) from None


def context_offsets(encoded, index: int) -> list[tuple[int, int]]:
    """Feature ``index``'s offsets, with (-1, -1) for every token outside the context."""
    sequence_ids = encoded.sequence_ids(index)
    return [tuple(o) if sequence_ids[k] == 1 else NO_OFFSET for k, o in enumerate(encoded["offset_mapping"][index])]


def answer_positions(offsets: list[tuple[int, int]], cls_index: int, start_char: int, end_char: int) -> tuple[int, int]:
    """Token start and end of the answer at characters ``[start_char, end_char)``, or ``(cls, cls)`` when the
    window does not hold all of it (the Hugging Face ``run_qa.py`` rule)."""
    context = [k for k, o in enumerate(offsets) if o != NO_OFFSET]
    if not context:
        return cls_index, cls_index
    first, last = context[0], context[-1]
    if not (offsets[first][0] <= start_char and offsets[last][1] >= end_char):
        return cls_index, cls_index
    start = first
    while start <= last and offsets[start][0] <= start_char:
        start += 1
    end = last
    while end >= first and offsets[end][1] >= end_char:
        end -= 1
    return start - 1, end + 1


def before_marks(context: str, start: int, end: int) -> int:
    """``end`` moved back over the combining marks the answer ends with: a tokenizer that strips accents leaves a
    decomposed accent (Unicode NFD) out of every token's offsets, and the label's end then fell on the next word
    ("café noir" for "café"). The served answer takes the marks back (``postprocess.through_marks``)."""
    while end > start + 1 and unicodedata.combining(context[end - 1]):
        end -= 1
    return end


def is_labelled(answers) -> bool:
    """A row with an answer list (even an empty one) is labelled; a transfer-set row joined to labelled rows
    has none (a missing value)."""
    return isinstance(answers, (list, tuple, np.ndarray))


def features_of(tokenizer, frame: pd.DataFrame, max_length: int, stride: int) -> dict:
    """Columns of the features of ``frame``: token fields, ``example_index``, ``offset_mapping``, ``labels``."""
    encoded = encode(tokenizer, frame, max_length, stride)
    mapping = encoded["overflow_to_sample_mapping"]
    has_answers = ANSWER_TEXTS in frame.columns
    columns: dict = {key: encoded[key] for key in TOKEN_FIELDS if key in encoded}
    columns["example_index"] = [int(i) for i in mapping]
    columns["offset_mapping"], columns["labels"] = [], []
    for feature, example in enumerate(mapping):
        offsets = context_offsets(encoded, feature)
        columns["offset_mapping"].append([list(o) for o in offsets])
        ids = encoded["input_ids"][feature]
        cls_index = ids.index(tokenizer.cls_token_id) if tokenizer.cls_token_id in ids else 0
        start, end = cls_index, cls_index
        if has_answers:
            texts, starts = frame[ANSWER_TEXTS].iloc[example], frame[ANSWER_STARTS].iloc[example]
            if not is_labelled(texts):  # a transfer-set question: the teacher's logits are its only target
                start, end = IGNORE_INDEX, IGNORE_INDEX
            elif len(texts):
                first = int(starts[0])
                start, end = answer_positions(offsets, cls_index, first,
                                              before_marks(frame[CONTEXT].iloc[example], first, first + len(texts[0])))
        columns["labels"].append([start, end, feature])
    columns["length"] = [len(ids) for ids in encoded["input_ids"]]
    return columns


def _chunked_features(tokenizer, frame: pd.DataFrame, max_length: int, stride: int):
    """(rows, their features' columns) a chunk of rows at a time (:mod:`distillery.task_types.tokens`), the
    example and feature indices counted over the whole frame (its positions)."""
    done = 0
    characters = frame[CONTEXT].astype(str).str.len() + frame[QUESTION].astype(str).str.len() if len(frame) else None
    for start, rows in chunks(frame, characters):
        if not len(rows):
            continue
        columns = features_of(tokenizer, rows.reset_index(drop=True), max_length, stride)
        columns["example_index"] = [start + i for i in columns["example_index"]]
        columns["labels"] = [[first, last, done + feature] for first, last, feature in columns["labels"]]
        done += len(columns["labels"])
        yield rows, columns


def tokenize(frame: pd.DataFrame, tokenizer, max_length: int, stride: int,
             teacher_logits: Optional[np.ndarray] = None):
    """A ``datasets.Dataset`` of features (see the module docstring), with the cached teacher logits when
    given, and each feature's context and gold answers for scoring during training. Built a chunk of rows at
    a time into Arrow tables: only one chunk's Python lists are alive at once."""
    import datasets

    frame = frame.reset_index(drop=True)
    logits = None if teacher_logits is None else np.asarray(teacher_logits, dtype=np.float32)
    pieces, count = [], 0
    for rows, columns in _chunked_features(tokenizer, frame, max_length, stride):
        windows = len(columns["labels"])
        if logits is not None and count + windows <= len(logits):
            columns[TEACHER_LOGITS] = logits[count:count + windows].tolist()
        count += windows
        if logits is not None and count > len(logits):  # counting on, for the message
            continue
        examples = columns["example_index"]
        columns[CONTEXT] = [str(frame[CONTEXT].iloc[i]) for i in examples]
        golds = frame[ANSWER_TEXTS] if ANSWER_TEXTS in frame.columns else None
        columns["gold_answers"] = [[str(t) for t in golds.iloc[i]] if golds is not None and is_labelled(golds.iloc[i])
                                   else [] for i in examples]
        pieces.append(datasets.Dataset.from_dict(columns))
    if logits is not None and len(logits) != count:
        raise CacheError(f"the teacher-output cache holds {len(logits)} windows but these rows make "
                         f"{count}: the student must use the teacher's tokenizer, max_length "
                         "and question_answering.doc_stride; run `dvc repro teacher_logits`")
    if not pieces:
        return datasets.Dataset.from_dict(features_of(tokenizer, frame, max_length, stride))
    return pieces[0] if len(pieces) == 1 else datasets.concatenate_datasets(pieces)


class Collator:
    """Dynamic padding of the token fields; labels stacked; teacher logits cut to the batch's length."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def __call__(self, features: list[dict]) -> dict:
        tokens = [{k: f[k] for k in TOKEN_FIELDS if k in f} for f in features]
        batch = dict(self.tokenizer.pad(tokens, padding=True, return_tensors="pt"))
        batch["labels"] = torch.tensor([f["labels"] for f in features], dtype=torch.long)
        if TEACHER_LOGITS in features[0]:
            length = batch["input_ids"].shape[1]
            batch[TEACHER_LOGITS] = torch.tensor([f[TEACHER_LOGITS] for f in features],
                                                 dtype=torch.float32)[:, :, :length]
        return batch


@torch.inference_mode()
def predict_features(model, tokenizer, frame: pd.DataFrame, max_length: int, stride: int,
                     batch_size: int, columns_too: bool = True) -> tuple[np.ndarray, dict]:
    """Start and end logits ``[features, 2, max_length]`` in feature order (``PAD_LOGIT`` past each
    feature's tokens), and the feature columns (example index, offsets, labels, length; empty unless
    ``columns_too``). Length-sorted
    batches; the windows' token ids are held in compact arrays (:mod:`distillery.task_types.tokens`)."""
    model.eval()
    frame = frame.reset_index(drop=True)
    tokens, columns, count = TokenArrays(), {"example_index": [], "offset_mapping": [], "labels": []}, 0
    for _, found in _chunked_features(tokenizer, frame, max_length, stride):
        tokens.add({k: found[k] for k in TOKEN_FIELDS if k in found})
        count += len(found["labels"])
        if columns_too:  # the teacher's pass needs the logits alone: no offsets of every window kept
            for key in columns:
                columns[key].extend(found[key])
    columns["length"] = tokens.lengths.tolist() if columns_too else []
    logits = np.full((count, 2, max_length), PAD_LOGIT, dtype=np.float32)
    order = np.argsort(tokens.lengths, kind="stable")
    for start in batches(count, batch_size):
        index = order[start:start + batch_size]
        batch = tokenizer.pad(tokens.rows(index), padding=True, return_tensors="pt")
        output = model(**batch)
        both = torch.stack([output.start_logits, output.end_logits], dim=1).float().numpy()
        mask = batch["attention_mask"].numpy().astype(bool)
        for row, feature in enumerate(index):
            real = int(mask[row].sum())
            logits[feature, :, :real] = both[row, :, :real]
    return logits, columns


def padded_batch(tokenizer, frame: pd.DataFrame, batch: int, length: int) -> dict:
    """``batch`` real questions (cycled) with their contexts, the first window padded to exactly ``length``. At a
    length shorter than a question (a benchmark cell of 16 tokens), the question keeps its first half of the
    window, so that the context still has a share of it (the tokenizer refuses the cut otherwise)."""
    rows = frame.iloc[[i % len(frame) for i in range(batch)]]
    tokens = length - tokenizer.num_special_tokens_to_add(pair=True)  # for the question and the context
    if tokens < 2:
        raise DataError(f"benchmark: a window of {length} tokens holds no question and context; "
                        "raise benchmark.sequence_lengths")
    questions = _cut_questions(tokenizer, [q.lstrip() for q in rows[QUESTION].astype(str)], tokens // 2)
    encoded = tokenizer(questions, rows[CONTEXT].astype(str).tolist(),
                        truncation="only_second", max_length=length, padding="max_length", return_tensors="np")
    return {k: encoded[k] for k in TOKEN_FIELDS if k in encoded}
