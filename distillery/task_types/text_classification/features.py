"""Text classification, featurising: tokenised datasets for the Trainer, the collator that carries
cached teacher logits, and batched length-sorted inference over a prepared split."""
from __future__ import annotations

from typing import Optional

import numpy as np
import pandas as pd
import torch

from distillery.losses import IGNORE_INDEX
from distillery.prepared import LABEL, PAIR, TEXT
from distillery.progress import batches

TEACHER_LOGITS = "teacher_logits"


def texts_and_pairs(frame: pd.DataFrame) -> tuple[list, Optional[list]]:
    return frame[TEXT].tolist(), (frame[PAIR].tolist() if PAIR in frame.columns else None)


def tokenize(frame: pd.DataFrame, tokenizer, max_length: int, teacher_logits: Optional[np.ndarray] = None):
    """A ``datasets.Dataset`` of token ids (unpadded), labels, lengths and optional teacher logits."""
    import datasets

    texts, pairs = texts_and_pairs(frame)
    encoded = tokenizer(texts, pairs, truncation=True, max_length=max_length)
    columns = {key: encoded[key] for key in encoded.keys()}
    columns["labels"] = frame[LABEL].astype("int64").tolist() if LABEL in frame.columns \
        else [IGNORE_INDEX] * len(frame)
    columns["length"] = [len(ids) for ids in encoded["input_ids"]]
    if teacher_logits is not None:
        columns[TEACHER_LOGITS] = np.asarray(teacher_logits, dtype=np.float32).tolist()
    return datasets.Dataset.from_dict(columns)


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
    texts, pairs = texts_and_pairs(frame)
    encoded = tokenizer(texts, pairs, truncation=True, max_length=max_length)
    order = np.argsort([len(ids) for ids in encoded["input_ids"]], kind="stable")
    logits = np.zeros((len(frame), model.config.num_labels), dtype=np.float32)
    keys = list(encoded.keys())
    for start in batches(len(order), batch_size):
        index = order[start:start + batch_size]
        batch = tokenizer.pad([{k: encoded[k][i] for k in keys} for i in index], padding=True, return_tensors="pt")
        logits[index] = model(**batch).logits.float().numpy()
    return logits


def padded_batch(tokenizer, frame: pd.DataFrame, batch: int, length: int) -> dict:
    """``batch`` real rows (cycled) padded to exactly ``length`` tokens, as numpy arrays."""
    rows = [i % len(frame) for i in range(batch)]
    texts = frame[TEXT].iloc[rows].tolist()
    pairs = frame[PAIR].iloc[rows].tolist() if PAIR in frame.columns else None
    return dict(tokenizer(texts, pairs, padding="max_length", truncation=True, max_length=length, return_tensors="np"))
