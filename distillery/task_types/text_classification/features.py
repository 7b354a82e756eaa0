"""Text classification, featurising: tokenised datasets for the Trainer, the collator that carries
cached teacher logits, and batched length-sorted inference over a prepared split."""
from __future__ import annotations

import weakref
from typing import Optional

import numpy as np
import pandas as pd
import torch

from distillery.losses import IGNORE_INDEX
from distillery.prepared import LABEL, PAIR, TEXT
from distillery.progress import batches
from distillery.task_types.tokens import TokenArrays, chunks

TEACHER_LOGITS = "teacher_logits"


def texts_and_pairs(frame: pd.DataFrame) -> tuple[list, Optional[list]]:
    return frame[TEXT].tolist(), (frame[PAIR].tolist() if PAIR in frame.columns else None)


def _characters(frame: pd.DataFrame) -> pd.Series:
    """Each row's characters, text and pair: what a chunk of rows costs the tokenizer."""
    size = frame[TEXT].astype(str).str.len() if TEXT in frame.columns else pd.Series(0, index=frame.index)
    return size + frame[PAIR].astype(str).str.len() if PAIR in frame.columns else size


def encode_texts(tokenizer, texts: list, pairs: Optional[list], max_length: int) -> dict:
    """``tokenizer(texts, pairs, truncation=True, max_length=max_length)``'s token fields, one list of ids per row.

    Sentence pairs go through the tokenizer's backend side by side: encoding a pair, a fast tokenizer builds every
    window of one text beyond ``max_length`` crossed with every window of the other (a pair of 1,200-word texts
    took 1.3 s, two of 20,000 words 15 GB). Each side is cut alone to ``max_length + 1`` tokens (of two sides cut
    to that length, the shorter in full to ``max_length``: ``longest_first`` reads only how their lengths compare
    and keeps at most ``max_length`` of each), then paired, truncated and given its special tokens: the same ids
    as the tokenizer's own pair encoding, in linear time (the served model does the same)."""
    if not texts:  # a fast tokenizer fails on no texts
        return {name: [] for name in tokenizer.model_input_names}
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if pairs is None or backend is None:
        encoded = tokenizer(texts, pairs, truncation=True, max_length=max_length)
        return {key: encoded[key] for key in encoded.keys()}
    direction = getattr(tokenizer, "truncation_side", "right")
    pairing, sides = _pair_tokenizers(tokenizer, backend, max_length, direction)
    encodings = []
    for first, second in zip(sides.encode_batch(texts, add_special_tokens=False),
                             sides.encode_batch(pairs, add_special_tokens=False)):
        if len(first.ids) == len(second.ids) == max_length + 1:
            whole_first, whole_second = _whole_length(first), _whole_length(second)
            if whole_first < whole_second:
                first.truncate(max_length, direction=direction)
            elif whole_second < whole_first:
                second.truncate(max_length, direction=direction)
        encodings.append(pairing.post_process(first, second, add_special_tokens=True))
    fields = {"input_ids": lambda e: e.ids, "token_type_ids": lambda e: e.type_ids,
              "attention_mask": lambda e: e.attention_mask}
    names = [name for name in fields if name in tokenizer.model_input_names]
    return {name: [fields[name](e) for e in encodings] for name in names}


_PAIR_TOKENIZERS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _pair_tokenizers(tokenizer, backend, max_length: int, direction: str) -> tuple:
    """(the backend truncating a pair at ``max_length``, the backend cutting one side at ``max_length + 1``), both
    without padding: copies made once per tokenizer and setting (a copy of a 250k-word vocabulary takes a while)."""
    from tokenizers import Tokenizer

    cached = _PAIR_TOKENIZERS.setdefault(tokenizer, {})
    key = (max_length, direction, id(backend), len(tokenizer))  # a token added since makes a new copy
    if key not in cached:
        pairing, sides = Tokenizer.from_str(backend.to_str()), Tokenizer.from_str(backend.to_str())
        for copy in (pairing, sides):
            copy.no_padding()
        pairing.enable_truncation(max_length, strategy="longest_first", direction=direction)
        sides.enable_truncation(max_length + 1, direction=direction)
        cached[key] = (pairing, sides)
    return cached[key]


def _whole_length(encoding) -> int:
    """The tokens of a text before truncation cut it: its encoding's and its overflowing windows' (no stride)."""
    return len(encoding.ids) + sum(len(window.ids) for window in encoding.overflowing)


def tokenize(frame: pd.DataFrame, tokenizer, max_length: int, teacher_logits: Optional[np.ndarray] = None):
    """A ``datasets.Dataset`` of token ids (unpadded), labels, lengths and optional teacher logits.

    Built a chunk of rows at a time (:mod:`distillery.task_types.tokens`) into Arrow tables: only one chunk's
    Python lists are alive at once."""
    import datasets

    pieces = []
    logits = None if teacher_logits is None else np.asarray(teacher_logits, dtype=np.float32)
    for start, chunk in chunks(frame, _characters(frame)):
        texts, pairs = texts_and_pairs(chunk)
        encoded = encode_texts(tokenizer, texts, pairs, max_length)
        columns = {key: encoded[key] for key in encoded.keys()}
        columns["labels"] = chunk[LABEL].astype("int64").tolist() if LABEL in chunk.columns \
            else [IGNORE_INDEX] * len(chunk)
        columns["length"] = [len(ids) for ids in encoded["input_ids"]]
        if logits is not None:
            columns[TEACHER_LOGITS] = logits[start:start + len(chunk)].tolist()
        pieces.append(datasets.Dataset.from_dict(columns))
    return pieces[0] if len(pieces) == 1 else datasets.concatenate_datasets(pieces)


def encode_rows(tokenizer, frame: pd.DataFrame, max_length: int) -> TokenArrays:
    """The token fields of every row of ``frame``, tokenised a chunk at a time into compact arrays."""
    tokens = TokenArrays()
    for _, chunk in chunks(frame, _characters(frame)):
        texts, pairs = texts_and_pairs(chunk)
        if texts:
            tokens.add(encode_texts(tokenizer, texts, pairs, max_length))
    return tokens


class Collator:
    """Dynamic padding for the token fields; labels and teacher logits are stacked as they are."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def __call__(self, features: list[dict]) -> dict:
        extras = {}
        for key, dtype in (("labels", torch.long), (TEACHER_LOGITS, torch.float32)):
            if key in features[0]:
                extras[key] = torch.tensor([f[key] for f in features], dtype=dtype)
        tokens = [{k: v for k, v in f.items() if k not in ("labels", TEACHER_LOGITS, "length")} for f in features]
        batch = dict(self.tokenizer.pad(tokens, padding=True, return_tensors="pt"))
        batch.update(extras)
        return batch


@torch.inference_mode()
def predict_logits(model, tokenizer, frame: pd.DataFrame, max_length: int, batch_size: int) -> np.ndarray:
    """Logits ``[len(frame), num_labels]`` in the frame's row order (length-sorted batches: little padding)."""
    model.eval()
    encoded = encode_rows(tokenizer, frame, max_length)
    order = np.argsort(encoded.lengths, kind="stable")
    logits = np.zeros((len(frame), model.config.num_labels), dtype=np.float32)
    for start in batches(len(order), batch_size):
        index = order[start:start + batch_size]
        batch = tokenizer.pad(encoded.rows(index), padding=True, return_tensors="pt")
        logits[index] = model(**batch).logits.float().numpy()
    return logits


def padded_batch(tokenizer, frame: pd.DataFrame, batch: int, length: int) -> dict:
    """``batch`` real rows (cycled) padded to exactly ``length`` tokens, as numpy arrays."""
    rows = [i % len(frame) for i in range(batch)]
    texts = frame[TEXT].iloc[rows].tolist()
    pairs = frame[PAIR].iloc[rows].tolist() if PAIR in frame.columns else None
    return dict(tokenizer(texts, pairs, padding="max_length", truncation=True, max_length=length, return_tensors="np"))
