"""Rows ``prepare`` rejects: the data report's count per reason, the check that a refresh did not lose most
of its rows, and the warning for an input given two labels (only its first copy is kept). Every task type's rows go through these (text and images in ``distillery/stages/prepare.py``,
extractive QA in its own ``prepare_splits``)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from distillery.errors import DataError
from distillery.sources import main_reason
from distillery.prepared import LABEL

REASONS_KEPT = 20  # the data report names this many reasons; an unknown label is a reason of its own per label
OTHER_REASONS = "other reasons (see rejected.csv)"


def by_reason(rejected: list[dict]) -> dict:
    """Rejected rows per reason, the most frequent first; past ``REASONS_KEPT`` reasons, one count for the rest (a
    million rows of free-text labels made a 17.7 MB report; rejected.csv keeps every row and its reason)."""
    counts = pd.Series([r["reason"] for r in rejected], dtype=str).value_counts()
    kept = {str(reason): int(n) for reason, n in counts.iloc[:REASONS_KEPT].items()}
    if len(counts) > REASONS_KEPT:
        kept[OTHER_REASONS] = int(counts.iloc[REASONS_KEPT:].sum())  # one key whatever the count: metrics diff
    return kept


OTHER_SIZE = "image is "  # the reason's start for an image of another size than the set's (image folders)
UNKNOWN_LABEL = "unknown label "  # the reason's start for a label outside data.labels (the label's repr follows)


def unknown_labels(rejected: list[dict]) -> dict:
    """Per source, the labels outside ``data.labels`` that rows were rejected for, and their rows, most first."""
    found: dict = {}
    for row in rejected:
        if row["reason"].startswith(UNKNOWN_LABEL):
            counts = found.setdefault(str(row["source"]), {})
            label = row["reason"][len(UNKNOWN_LABEL):]
            counts[label] = counts.get(label, 0) + 1
    return {source: dict(sorted(counts.items(), key=lambda kv: -kv[1])) for source, counts in found.items()}


def check_rejected_share(rejected: list[dict], rows_read: int, limit: float, description: str,
                         hint: str = "fix the data or the declared data.labels") -> None:
    """A refresh that loses most of its rows (labels re-spelled, a column emptied) is a broken refresh."""
    if not rows_read or len(rejected) / rows_read <= limit:
        return
    reasons = pd.Series([r["reason"] for r in rejected], dtype=str).value_counts()
    if str(reasons.index[0]).startswith(OTHER_SIZE):  # images of several sizes: the labels are not the cause
        hint = "every image must have one size: set data.image_size: [height, width] to resize each as it is read"
    first = [r for r in rejected if r["reason"] == reasons.index[0]][:3]  # rejected.csv is not written: name some
    named = ", ".join(f"{r['source']} {'row ' if isinstance(r['row'], int) else ''}{r['row']}" for r in first)
    raise DataError(f"{description}: {len(rejected)} of {rows_read} rows ({len(rejected) / rows_read:.1%}) were "
                    f"rejected, more than data.max_rejected_fraction = {limit} ({main_reason(reasons.to_dict())} "
                    f"rows, the first {named}); {hint}")


def warn_conflicting_labels(stacked: pd.DataFrame, key: list[str], names: list[str], where: dict) -> None:
    """Say so when one input appears with different labels: only its first copy is kept, label and all."""
    copies = stacked[stacked.duplicated(key, keep=False)]
    if copies.empty:
        return
    groups = copies.groupby(key, sort=False)
    labels = groups[LABEL].nunique()  # one per group, in the order of groups.ngroup() (sort=False: first seen)
    conflicting = labels[labels > 1]
    if conflicting.empty:
        return
    # the first conflicting input's rows, by group number: looking the key up (.loc) loses an image's trailing
    # zero bytes (numpy's bytes type strips them), and the lookup failed with a KeyError
    first = copies[groups.ngroup().to_numpy() == int(np.flatnonzero((labels > 1).to_numpy())[0])]
    shown = 5  # a text copied on thousands of rows made a warning line as long as the file
    example = ", ".join(f"{where.get(s, s)} {'' if isinstance(r, str) else 'row '}{r} as {names[int(l)]!r}"
                        for s, r, l in zip(first["_split"][:shown], first["_row"][:shown], first[LABEL][:shown]))
    if len(first) > shown:
        example += f" and {len(first) - shown:,} more copies"
    print(f"prepare: warning: {len(conflicting)} input(s) appear with different labels; each keeps the label of its "
          f"first copy (an evaluation split's first). First: {example}", flush=True)


def drop_unkept_labels(splits: dict, names: list[str], inferred: bool) -> tuple[dict, list[str]]:
    """Labels inferred from the data that no kept row holds (only on rejected rows, an empty text's, or on a later
    copy of a text kept with another label) are not classes: the kept rows' label ids, renumbered, and the names
    left. Before, such a label became a class of no rows, and prepare failed blaming data.labels, never set."""
    held = sorted({int(i) for frame in splits.values() for i in frame[LABEL].dropna().unique()})
    if not inferred or len(held) == len(names):
        return splits, names
    gone = [names[i] for i in range(len(names)) if i not in held]
    print(f"prepare: warning: the label(s) {', '.join(map(repr, gone[:5]))}{', ...' if len(gone) > 5 else ''} are "
          "only on rejected or duplicate rows, so not classes (rejected.csv names the rejected rows)", flush=True)
    renumber = {old: new for new, old in enumerate(held)}
    return ({split: frame.assign(**{LABEL: frame[LABEL].map(renumber)}) for split, frame in splits.items()},
            [names[i] for i in held])
