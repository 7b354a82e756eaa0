"""Plain comparisons over prepared split frames, used by the data checks (tests/data/test_prepared_data.py).

Each helper returns what is wrong (an empty result means the check passes), so a test can both assert
that the real data is clean and that a deliberately corrupted frame is caught. Nothing here re-runs or
re-implements the ``prepare`` stage: the helpers only compare the frames they are given.
"""
from __future__ import annotations

import itertools
import unicodedata

import pandas as pd


def text_key(frame: pd.DataFrame) -> list[str]:
    """The columns that identify a text: ``text`` and, for sentence-pair tasks, ``text_pair``."""
    return [c for c in ("text", "text_pair") if c in frame.columns]


def _folded(text: str) -> str:
    """Case, Unicode compatibility forms and runs of whitespace set aside."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def shared_texts(frames: dict[str, pd.DataFrame], fold: bool = False) -> dict[tuple[str, str], list[tuple]]:
    """Every pair of frames that has a text (or text + text_pair) in common, with the shared texts; with
    ``fold``, texts that differ only in case, Unicode form or spacing count as one."""
    found = {}
    for (a, left), (b, right) in itertools.combinations(frames.items(), 2):
        key = [c for c in text_key(left) if c in right.columns]
        rows = [{tuple(_folded(v) if fold else v for v in row) for row in frame[key].itertuples(index=False, name=None)}
                for frame in (left, right)]
        common = rows[0] & rows[1]
        if common:
            found[(a, b)] = sorted(common)[:5]
    return found


def missing_classes(frames: dict[str, pd.DataFrame], n_classes: int) -> dict[str, list[int]]:
    """Label ids in ``range(n_classes)`` that a split does not contain."""
    missing = {}
    for name, frame in frames.items():
        absent = sorted(set(range(n_classes)) - set(frame["label"].unique().tolist()))
        if absent:
            missing[name] = absent
    return missing


def class_shares(frames: dict[str, pd.DataFrame], n_classes: int) -> pd.DataFrame:
    """Rows: splits; columns: label ids; values: the share of the split's rows with that label."""
    return pd.DataFrame({name: [float((frame["label"] == i).mean()) for i in range(n_classes)]
                         for name, frame in frames.items()}).T


def share_gaps(frames: dict[str, pd.DataFrame], n_classes: int, tolerance: float) -> dict[int, float]:
    """Classes whose share differs by more than ``tolerance`` between two splits: class -> largest gap."""
    shares = class_shares(frames, n_classes)
    gaps = shares.max(axis=0) - shares.min(axis=0)
    return {int(i): float(g) for i, g in gaps.items() if g > tolerance}
