"""Tang-style data augmentation (Tang et al. 2019, "Distilling Task-Specific Knowledge from BERT into
Simple Neural Networks", section 3.3): new unlabelled texts for the transfer set.

For each source text, ``copies`` augmented texts are drawn (a sentence pair's two texts are both
perturbed; extractive QA perturbs the question and keeps its context, which the teacher then reads anew). Word by word (whitespace words), with
probability ``p_mask`` the word becomes the tokenizer's mask token, else with probability
``p_replace`` it becomes a random whole word from the teacher's vocabulary (the paper's POS-guided
replacement, without the POS tagger). Then, with probability ``p_ngram``, the text is cut to a
random n-gram of it, n drawn uniformly from 1..``ngram_max``. Copies identical to their source or
to another text are dropped, case, Unicode form and spacing aside (as ``prepare``'s ``data.leak_check``
matches them). The teacher labels the augmented texts in ``teacher_logits``; only the distilled student
learns from them.

Everything is drawn from one ``numpy`` generator seeded with ``distill.augment.seed`` (or the
top-level seed), so the same inputs, settings and seed give the same texts.
"""
from __future__ import annotations

import re
from typing import Optional

import numpy as np
import pandas as pd

from distillery.config import AugmentConfig
from distillery.errors import ConfigError
from distillery.prepared import PAIR, TEXT, in_keys, match_keys
_WORD = re.compile(r"^[A-Za-z][a-z]+$")
_PREFIXES = ("\u0120", "\u2581")  # GPT-2 / RoBERTa BPE "Ġ" and SentencePiece "▁" word starts


def replacement_vocabulary(tokenizer) -> list[str]:
    """Whole words of Latin letters in the tokenizer's vocabulary, sorted (so the draw does not depend on dict
    order). A vocabulary that marks word starts (byte-level BPE's ``Ġ``, SentencePiece's ``▁``) gives only its
    marked tokens, the rest being pieces of words (``errible``); WordPiece gives its tokens without ``##``."""
    special = set(getattr(tokenizer, "all_special_tokens", []) or [])
    vocabulary = [t for t in tokenizer.get_vocab() if t not in special and not t.startswith(("[", "<"))]
    marks_starts = _marks_word_starts(tokenizer, vocabulary)
    words = set()
    for token in vocabulary:
        if token.startswith("##") or (marks_starts and not token.startswith(_PREFIXES)):
            continue
        if token.startswith(_PREFIXES):
            token = token[1:]
        if _WORD.match(token):
            words.add(token)
    return sorted(words)


def _marks_word_starts(tokenizer, vocabulary: list[str]) -> bool:
    """Does the vocabulary mark the tokens that start a word? A fast tokenizer's model says: a BPE or Unigram model
    with marked tokens does (a small byte-level BPE may mark under a quarter of its tokens, and its unmarked ones,
    ``rummer``, ``ption``, are pieces of words); WordPiece does not (a stray ``Ġ`` token is a word). Else: more than
    a quarter of the tokens marked (RoBERTa's: about 60%)."""
    marked = sum(t.startswith(_PREFIXES) for t in vocabulary)
    kind = type(getattr(getattr(tokenizer, "backend_tokenizer", None), "model", None)).__name__
    if kind == "WordPiece":
        return False
    if kind in ("BPE", "Unigram") and marked:
        return True
    return 4 * marked > len(vocabulary)


def _augment_text(text: str, rng: np.random.Generator, cfg: AugmentConfig, mask_token: str,
                  vocabulary: list[str]) -> str:
    words = text.split()
    if not words:
        return text
    draws = rng.random((len(words), 2))
    picks = rng.integers(0, max(1, len(vocabulary)), size=len(words))
    out = []
    for word, (u_mask, u_replace), pick in zip(words, draws, picks):
        if u_mask < cfg.p_mask:
            out.append(mask_token)
        elif u_replace < cfg.p_replace and vocabulary:
            out.append(vocabulary[pick])
        else:
            out.append(word)
    if rng.random() < cfg.p_ngram and len(out) > 1:
        n = int(rng.integers(1, min(cfg.ngram_max, len(out)) + 1))
        start = int(rng.integers(0, len(out) - n + 1))
        out = out[start:start + n]
    return " ".join(out)


def augment(frame: pd.DataFrame, tokenizer, cfg: AugmentConfig, seed: int,
            exclude: Optional[pd.DataFrame] = None, columns: Optional[list[str]] = None,
            perturbed: Optional[list[str]] = None) -> pd.DataFrame:
    """``copies`` augmented versions of each row, deduplicated, at most ``max_rows``.

    ``columns`` identify a row's input (default: the text, and the text pair if any); of them, ``perturbed`` are
    rewritten (default: all) and the others carried over as they are: extractive QA perturbs the question and keeps
    its context. ``exclude`` holds inputs that must not come back as "new" ones (the labelled splits, the transfer
    set).
    """
    columns = columns or [c for c in (TEXT, PAIR) if c in frame.columns]
    perturbed = columns if perturbed is None else perturbed
    empty = pd.DataFrame({c: pd.Series(dtype=str) for c in columns})
    if cfg.copies == 0 or cfg.max_rows == 0 or len(frame) == 0:
        return empty
    mask_token = getattr(tokenizer, "mask_token", None)
    if cfg.p_mask > 0 and not mask_token:
        raise ConfigError(f"distill.augment.p_mask: {cfg.p_mask} needs a mask token, and the teacher's tokenizer "
                          f"({type(tokenizer).__name__}) has none; set distill.augment.p_mask: 0")
    vocabulary = replacement_vocabulary(tokenizer) if cfg.p_replace > 0 else []
    if cfg.p_replace > 0 and not vocabulary:
        raise ConfigError("distill.augment.p_replace: the teacher's tokenizer has no whole-word entries to draw "
                          "replacements from; set distill.augment.p_replace: 0")
    rng = np.random.default_rng(seed)
    sources = frame[columns].astype(str).to_dict("records")
    rows = []
    for _ in range(cfg.copies):
        for source in sources:
            rows.append({c: _augment_text(source[c], rng, cfg, mask_token, vocabulary) if c in perturbed
                         else source[c] for c in columns})
    out = pd.DataFrame(rows, columns=columns)
    out = out[out[perturbed].apply(lambda column: column.str.strip().ne("")).all(axis=1)]
    seen = pd.concat([frame[columns].astype(str)] + ([exclude[columns].astype(str)] if exclude is not None else []))
    out = out[~match_keys(out, columns).duplicated()]  # case, Unicode form and spacing aside
    out = out[~in_keys(out, seen, columns)]
    if len(out) > cfg.max_rows:
        out = out.sample(n=cfg.max_rows, random_state=seed).sort_index()
    return out.reset_index(drop=True)
