"""Batched PyTorch inference over a prepared split (length-sorted, so little padding is computed)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from distillery.data import PAIR, TEXT


@torch.inference_mode()
def predict_logits(model, tokenizer, frame: pd.DataFrame, max_length: int, batch_size: int) -> np.ndarray:
    """Logits ``[len(frame), num_labels]`` in the frame's row order."""
    model.eval()
    texts = frame[TEXT].tolist()
    pairs = frame[PAIR].tolist() if PAIR in frame.columns else None
    encoded = tokenizer(texts, pairs, truncation=True, max_length=max_length)
    order = np.argsort([len(ids) for ids in encoded["input_ids"]], kind="stable")
    logits = np.zeros((len(frame), model.config.num_labels), dtype=np.float32)
    keys = list(encoded.keys())
    for start in range(0, len(order), batch_size):
        index = order[start:start + batch_size]
        batch = tokenizer.pad([{k: encoded[k][i] for k in keys} for i in index], padding=True, return_tensors="pt")
        logits[index] = model(**batch).logits.float().numpy()
    return logits
