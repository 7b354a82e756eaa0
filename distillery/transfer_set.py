"""The transfer set's inputs, which the teacher labels and only the distilled student sees: read from a file or a
Hub dataset (``distill.transfer_set.source``), or the corpus rows ``data.max_samples`` left out (``remainder``);
blank ones refused past ``data.max_rejected_fraction``, repeats and labelled inputs dropped, capped at ``max_rows``."""
from __future__ import annotations

from typing import Union

import pandas as pd

from distillery.config import Params
from distillery.errors import DataError
from distillery.sources import read_file, read_hub
from distillery.task_types.parts import task_rows


def transfer_texts(params: Params, splits: dict, leftover: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """Unlabelled texts for the KD term, minus any text that is in a labelled split; and how many rows read were
    left out, by reason (for the data report)."""
    transfer, cfg = params.distill.transfer_set, params.data
    rows = task_rows(params.task)
    columns = rows.key_columns(cfg)
    if transfer.source == "none" or transfer.max_rows == 0:
        return pd.DataFrame({c: pd.Series(dtype=str) for c in columns}), {}
    if transfer.source == "remainder":
        read = len(leftover)
        frame = rows.unlabelled_inputs(leftover, cfg, "remainder", columns[0], columns[-1])
    else:
        column = transfer.text_column or cfg.text_column
        raw = read_texts(transfer.source, column, transfer.split, transfer.hub_config, cfg.encoding_errors)
        read = max(len(raw), raw.attrs.get("records", 0))  # pandas skips lines of white space: blank texts too
        frame = rows.unlabelled_inputs(raw, cfg, transfer.source, column, transfer.text_pair_column)
        check_transfer_share(transfer.source, read, len(frame), cfg.max_rejected_fraction)
    dropped = {"empty or not text": read - len(frame)}
    labelled = pd.concat([s[columns] for s in splits.values()])
    before = len(frame)
    frame = frame.drop_duplicates(columns)
    dropped["repeated"], before = before - len(frame), len(frame)
    frame = frame[~frame.set_index(columns).index.isin(labelled.set_index(columns).index)]
    dropped["also in a labelled split"], before = before - len(frame), len(frame)
    if len(frame) > transfer.max_rows:
        frame = frame.sample(n=transfer.max_rows, random_state=params.seed)
    dropped["over distill.transfer_set.max_rows"] = before - len(frame)
    return frame.reset_index(drop=True), {"read": read, "dropped": dropped}


def read_texts(source: str, text_column: str, split: str, hub_config: Union[str, None],
               encoding_errors: str) -> pd.DataFrame:
    """Texts of an unlabelled transfer-set source (a local file or ``hub:<id>``)."""
    if source.startswith("hub:"):
        frames, _ = read_hub(source.split(":", 1)[1], hub_config, "", key="distill.transfer_set.source")
        if split not in frames:
            raise DataError(f"distill.transfer_set.split: {source} has no split {split!r}; it has {sorted(frames)}")
        frame = frames[split]
    else:
        frame = read_file(source, encoding_errors)
    if text_column not in frame.columns:
        raise DataError(f"{source}: transfer-set text column {text_column!r} not found; columns: "
                        f"{[c for c in frame.columns if c != '_row']}")
    if not len(frame) and not frame.attrs.get("records"):  # a broken export (lines of white space: prepare's check)
        raise DataError(f"{source}: the transfer set (distill.transfer_set.source) has no rows (an empty file, or "
                        "a header alone); give it rows, or set the source to none")
    return frame


def check_transfer_share(source: str, read: int, kept: int, limit: float) -> None:
    """A transfer file whose rows are mostly blank (a text column emptied, a pair key missing from each JSON line) is
    refused as the labelled data is: it gave an empty transfer set, and a student distilled on labels alone, unsaid."""
    if read and not kept:
        raise DataError(f"{source}: each of its {read} transfer-set rows has an empty or missing text (or text pair); "
                        "fix the file or its columns in distill.transfer_set, or set its source to none")
    if read and (read - kept) / read > limit:
        raise DataError(f"{source}: {read - kept} of {read} transfer-set rows ({(read - kept) / read:.1%}) have an "
                        f"empty or missing text (or text pair), more than data.max_rejected_fraction = {limit}; fix "
                        "the file or its columns in distill.transfer_set")
