"""The prepared splits every stage after ``prepare`` reads: their column names and loaders.

Kept apart from the ``prepare`` stage so that a change to the cleaning code re-runs ``prepare``
only (and nothing after it when its outputs come out identical).
"""
from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import Sequence, Union

import numpy as np
import pandas as pd

from distillery.errors import DataError
from distillery.files import read_json, sha256_files
from distillery.paths import PREPARED_DIR

TEXT, PAIR, LABEL = "text", "text_pair", "label"
TRAINED_ON = "prepared_data"  # training.json's record of the labelled splits a model was trained and selected on
TRAINING_SPLITS = ("train", "validation")


def normalised_text(value):
    """A text as held-out copies are matched by default: Unicode NFKC, case folded, runs of whitespace made one
    space, ends stripped (``"Great  film!"`` and ``"great film! "`` are one input). Other values as they are."""
    if not isinstance(value, str):
        return value
    return " ".join(unicodedata.normalize("NFKC", value).casefold().split())


def match_keys(frame: pd.DataFrame, columns: Sequence[str], mode: str = "normalised") -> pd.DataFrame:
    """The values two rows are compared on to call them one input (``data.leak_check``): ``exact`` the columns
    as they are, ``normalised`` their texts through :func:`normalised_text`. Same index as ``frame``."""
    if mode == "exact":
        return frame[list(columns)]
    return pd.DataFrame({column: frame[column].map(normalised_text) for column in columns}, index=frame.index)


def in_keys(frame: pd.DataFrame, other: pd.DataFrame, columns: Sequence[str], mode: str = "normalised") -> pd.Series:
    """A boolean mask over ``frame``: True where its row matches some row of ``other`` (by :func:`match_keys`)."""
    columns = list(columns)
    mine, theirs = match_keys(frame, columns, mode), match_keys(other, columns, mode)
    return pd.Series(mine.set_index(columns).index.isin(theirs.set_index(columns).index), index=frame.index,
                     dtype=bool)


def trained_on(prepared_dir: Union[str, Path] = PREPARED_DIR) -> dict[str, str]:
    """The SHA-256 of each labelled split a model trains and is selected on, for its ``training.json``."""
    return {split: sha256_files([Path(prepared_dir) / f"{split}.parquet"]) for split in TRAINING_SPLITS}


def check_trained_on(training: dict, model_dir: Union[str, Path], prepared_dir: Union[str, Path], stage: str) -> None:
    """Refuse a model trained on other prepared splits than the current ones (the data was refreshed and the
    stage that trains it not run again): it would be scored on, or label, rows it was trained on. A model
    whose ``training.json`` predates the record passes."""
    recorded = training.get(TRAINED_ON)
    if not recorded:
        return
    current = trained_on(prepared_dir)
    changed = [f"{Path(prepared_dir) / split}.parquet" for split in TRAINING_SPLITS
               if recorded.get(split) != current[split]]
    if changed:
        raise DataError(f"{model_dir}: trained on other prepared data ({', '.join(changed)} changed since); run "
                        f"`python -m distillery {stage}` (or `dvc repro`) first")


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
    try:
        return pd.read_parquet(path)
    except PermissionError:
        raise  # not a broken file: running prepare again would not help
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError: a file cut short or overwritten
        raise DataError(f"{path}: unreadable ({str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__}); "
                        "run `python -m distillery prepare` (or `dvc repro prepare`) again") from None


def stratified_positions(labels, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions of ``size`` rows drawn stratified by ``labels`` (seeded), and of the rest. When a class has one
    row, which no draw can stratify, that row goes to the rest and the other classes stay stratified (one such
    class used to turn stratification off for every class); plain random only if even that fails."""
    from sklearn.model_selection import train_test_split

    labels = np.asarray(labels)
    positions = np.arange(len(labels))
    try:
        kept, rest = train_test_split(positions, train_size=size, random_state=seed, stratify=labels)
        return kept, rest
    except ValueError:
        pass
    counts = pd.Series(labels).value_counts()
    single = np.isin(labels, counts.index[counts < 2].to_numpy())
    others = positions[~single]
    if single.any() and 0 < size < len(others):
        try:
            kept, rest = train_test_split(others, train_size=size, random_state=seed, stratify=labels[others])
            return kept, np.concatenate([rest, positions[single]])
        except ValueError:
            pass
    kept, rest = train_test_split(positions, train_size=size, random_state=seed)
    return kept, rest
