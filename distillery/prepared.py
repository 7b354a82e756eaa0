"""The prepared splits every stage after ``prepare`` reads: their column names and loaders.

Kept apart from the ``prepare`` stage so that a change to the cleaning code re-runs ``prepare``
only (and nothing after it when its outputs come out identical).
"""
from __future__ import annotations

from pathlib import Path
from typing import Union

import pandas as pd

from distillery.errors import DataError
from distillery.files import read_json
from distillery.paths import PREPARED_DIR

TEXT, PAIR, LABEL = "text", "text_pair", "label"


def load_labels(prepared_dir: Union[str, Path] = PREPARED_DIR) -> list[str]:
    """Label names in id order, from ``labels.json``."""
    path = Path(prepared_dir) / "labels.json"
    if not path.is_file():
        raise DataError(f"{path}: not found; run `python -m distillery prepare` (or `dvc repro prepare`) first")
    return list(read_json(path)["names"])


def load_split(split: str, prepared_dir: Union[str, Path] = PREPARED_DIR) -> pd.DataFrame:
    path = Path(prepared_dir) / f"{split}.parquet"
    if not path.is_file():
        raise DataError(f"{path}: prepared split not found; run `python -m distillery prepare` first")
    return pd.read_parquet(path)
