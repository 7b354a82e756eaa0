"""Which rows a registered model saw: the gate compares a champion with a candidate only on the current test
rows the champion did not train, validate or distill on, and scores both models on those rows.

A data refresh re-draws the splits (``prepare`` splits stratified and seeded over all the rows it has), so
rows of the champion's training split can land in the current test split; scored on them, the champion
looks better than it is. Each new model version therefore logs a key per train, validation and transfer row
(``data/seen_rows.npy`` in the MLflow run that registered it, named by the version's
``distillery.seen_rows_run_id`` tag: 8-byte BLAKE2b digests of the row's input columns, as the task type's
serving part names them), and the gate leaves the current test rows in the champion's set out of the
comparison. A champion registered before this was recorded has no set: the gate says the overlap was not
checked. A set that cannot be read now (an unreachable artifact store) fails the champion check.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd

SEEN_ARTIFACT_DIR, SEEN_FILE = "data", "seen_rows.npy"
SEEN_TAG = "distillery.seen_rows_run_id"  # on a model version: the run that logged the rows its model saw


def row_keys(frame: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """One uint64 per row from the values of ``columns`` (text as UTF-8, bytes as they are), each value
    length-prefixed, so ("ab", "c") and ("a", "bc") differ."""
    keys = np.empty(len(frame), dtype=np.uint64)
    for index, values in enumerate(zip(*(frame[column].tolist() for column in columns))):
        digest = hashlib.blake2b(digest_size=8)
        for value in values:
            data = bytes(value) if isinstance(value, (bytes, bytearray, memoryview)) else str(value).encode("utf-8")
            digest.update(len(data).to_bytes(8, "little"))
            digest.update(data)
        keys[index] = int.from_bytes(digest.digest(), "little")
    return keys


def write_seen(frames: Sequence[pd.DataFrame], columns_of, directory: Path) -> Path:
    """The sorted, unique keys of every row of ``frames`` in ``directory/seen_rows.npy``."""
    keys = [row_keys(frame, columns_of(frame)) for frame in frames]
    path = Path(directory) / SEEN_FILE
    np.save(path, np.unique(np.concatenate(keys)) if keys else np.empty(0, np.uint64))
    return path


def fresh_rows(test: pd.DataFrame, columns: Sequence[str], seen: np.ndarray) -> np.ndarray:
    """A boolean mask over ``test``: True where the row is not in ``seen``."""
    return ~np.isin(row_keys(test, columns), seen)


def load_seen(run_id: Optional[str], directory: Path) -> Optional[np.ndarray]:
    """The keys ``run_id`` logged; None when there is no run id or the run logged none (a version registered
    before they were logged). Any other failure (the store cannot be read now) raises: an unknown overlap
    must not pass for "not recorded"."""
    if not run_id:
        return None
    import mlflow
    from mlflow import MlflowClient

    logged = [Path(info.path).name for info in MlflowClient().list_artifacts(run_id, SEEN_ARTIFACT_DIR)]
    if SEEN_FILE not in logged:
        return None
    path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=f"{SEEN_ARTIFACT_DIR}/{SEEN_FILE}",
                                               dst_path=str(directory))
    return np.load(path, allow_pickle=False)
