"""Rows ``prepare`` rejects: the data report's count per reason, and the check that a refresh did not lose most
of its rows. Every task type's rows go through these (text and images in ``distillery/stages/prepare.py``,
extractive QA in its own ``prepare_splits``)."""
from __future__ import annotations

import pandas as pd

from distillery.errors import DataError

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


def check_rejected_share(rejected: list[dict], rows_read: int, limit: float, description: str,
                         hint: str = "fix the data or the declared data.labels") -> None:
    """A refresh that loses most of its rows (labels re-spelled, a column emptied) is a broken refresh."""
    if not rows_read or len(rejected) / rows_read <= limit:
        return
    reasons = pd.Series([r["reason"] for r in rejected], dtype=str).value_counts()
    raise DataError(f"{description}: {len(rejected)} of {rows_read} rows ({len(rejected) / rows_read:.1%}) were "
                    f"rejected, more than data.max_rejected_fraction = {limit} (mostly {reasons.index[0]}: "
                    f"{int(reasons.iloc[0])} rows); {hint}")
