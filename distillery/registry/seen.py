"""Which rows a registered model saw: the gate compares a champion with a candidate only on the current test
rows the champion did not train, validate or distill on, and scores both models on those rows.

A data refresh re-draws the splits (``prepare`` splits stratified and seeded over all the rows it has), so
rows of the champion's training split can land in the current test split; scored on them, the champion
looks better than it is. Each new model version therefore logs a key per train, validation and transfer row
(``data/seen_rows.npy`` in the MLflow run that registered it, named by the version's
``distillery.seen_rows_run_id`` tag: 8-byte BLAKE2b digests of the row's input columns, as the task type's
serving part names them), and the gate leaves the current test rows in the champion's set out of the
comparison. Two sets are logged: ``seen_rows.npy`` on the values as they are, and ``seen_rows_normalised.npy``
on texts as ``data.leak_check: normalised`` matches them (``distillery.prepared.normalised_text``: Unicode NFKC,
case folded, whitespace collapsed), so that a refreshed test row differing from a champion's training row
only in case or spacing is left out too. The gate matches as ``data.leak_check`` says; a champion logged before
the normalised set existed is matched exactly, and the gate says so. A champion registered before any set was
recorded has none: the gate says the overlap was not checked. A set that cannot be read now (an unreachable artifact store) fails the champion check.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd

SEEN_ARTIFACT_DIR, SEEN_FILE = "data", "seen_rows.npy"
SEEN_FILES = {"exact": SEEN_FILE, "normalised": "seen_rows_normalised.npy"}  # data.leak_check mode -> file
SEEN_TAG = "distillery.seen_rows_run_id"  # on a model version: the run that logged the rows its model saw


def row_keys(frame: pd.DataFrame, columns: Sequence[str], mode: str = "exact") -> np.ndarray:
    """One uint64 per row from the values of ``columns`` (text as UTF-8, bytes as they are), each value
    length-prefixed, so ("ab", "c") and ("a", "bc") differ. ``mode="normalised"``: texts through
    ``normalised_text`` first (bytes, numbers and other values as they are)."""
    from distillery.prepared import match_keys

    keys = np.empty(len(frame), dtype=np.uint64)
    frame = match_keys(frame, columns, mode)
    for index, values in enumerate(zip(*(frame[column].tolist() for column in columns))):
        digest = hashlib.blake2b(digest_size=8)
        for value in values:
            data = bytes(value) if isinstance(value, (bytes, bytearray, memoryview)) else str(value).encode("utf-8")
            digest.update(len(data).to_bytes(8, "little"))
            digest.update(data)
        keys[index] = int.from_bytes(digest.digest(), "little")
    return keys


def write_seen(frames: Sequence[pd.DataFrame], columns_of, directory: Path) -> list[Path]:
    """The sorted, unique keys of every row of ``frames``, one file per matching mode (``SEEN_FILES``)."""
    paths = []
    for mode, name in SEEN_FILES.items():
        keys = [row_keys(frame, columns_of(frame), mode) for frame in frames]
        paths.append(Path(directory) / name)
        np.save(paths[-1], np.unique(np.concatenate(keys)) if keys else np.empty(0, np.uint64))
    return paths


def fresh_rows(test: pd.DataFrame, columns: Sequence[str], seen: np.ndarray, mode: str = "exact") -> np.ndarray:
    """A boolean mask over ``test``: True where the row is not in ``seen`` (keys made in ``mode``)."""
    return ~np.isin(row_keys(test, columns, mode), seen)


def load_seen(run_id: Optional[str], directory: Path, mode: str = "exact") -> tuple[Optional[np.ndarray], str]:
    """The keys ``run_id`` logged for ``mode`` and the mode they were made in: a run from before the normalised
    set was logged gives its exact set (``"exact"``); ``(None, mode)`` when there is no run id or the run logged
    no set (a version registered before they were logged). Any other failure (the store cannot be read now)
    raises: an unknown overlap must not pass for "not recorded"."""
    if not run_id:
        return None, mode
    import mlflow
    from mlflow import MlflowClient

    logged = [Path(info.path).name for info in MlflowClient().list_artifacts(run_id, SEEN_ARTIFACT_DIR)]
    used = mode if SEEN_FILES[mode] in logged else "exact"
    if SEEN_FILES[used] not in logged:
        return None, mode
    path = mlflow.artifacts.download_artifacts(run_id=run_id, dst_path=str(directory),
                                               artifact_path=f"{SEEN_ARTIFACT_DIR}/{SEEN_FILES[used]}")
    return np.load(path, allow_pickle=False), used
