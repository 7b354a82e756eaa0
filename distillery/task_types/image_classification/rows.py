"""Image classification, reading and checking rows (the ``prepare`` stage only).

``read`` turns any image source (:mod:`.images`) into frames of ``pixels`` (bytes) and raw labels; the
rest of ``prepare`` (duplicates, stratified splits, caps, the transfer remainder, the class check) is
the same as for text, through the functions below. ``describe`` adds the images' shape and the
training split's pixel statistics to the data report: the models record them as their normalisation.
"""
from __future__ import annotations

import re
import unicodedata
from typing import Optional, Union

import numpy as np
import pandas as pd

from distillery.config import DataConfig
from distillery.errors import DataError
from distillery.prepared import LABEL
from distillery.rejected_rows import UNKNOWN_LABEL
from distillery.task_types.image_classification.images import read_images
from distillery.task_types.image_classification.pixels import PIXELS, RAW_LABEL, REASON, SHAPE, pixel_dtype, pixel_scale
from distillery.class_checks import check_classes  # noqa: F401 (prepare calls rows.check_classes)
from distillery.task_types.text_classification.rows import label_key


INTEGER = re.compile(r"-?[0-9]+")  # ASCII digits: "²" is a digit to str.isdigit, not to int()


def read(cfg: DataConfig) -> tuple[dict, Union[list, None], str]:
    """``(frames per split, declared label names or None, description)``, as ``sources.read_source`` gives."""
    images = read_images(cfg.source, cfg.files, cfg.hub_config, cfg.label_column, cfg.image_size)
    frames, _ = images.frames()
    return frames, images.declared, images.description


def key_columns(cfg: DataConfig) -> list[str]:
    """Duplicates are judged on the pixels."""
    return [PIXELS]


def label_names(frames: dict, cfg: DataConfig, declared: Union[list, None]) -> list[str]:
    """``data.labels`` if declared, else the source's names, else the values seen (numbers in numeric order)."""
    if cfg.labels is not None:
        return [image_label(v) for v in cfg.labels]
    if declared is not None:
        return [image_label(v) for v in declared]
    raw = {v for frame in frames.values() for v in frame[RAW_LABEL] if isinstance(v, str)}
    spellings: dict = {}
    for value in sorted(raw):
        spellings.setdefault(image_label(value), []).append(value)
    twice = next((names for names in spellings.values() if len(names) > 1), None)
    if twice:  # two folders whose names differ only in their Unicode form would be one class
        raise DataError(f"{cfg.source}: the class names {twice[0]!r} and {twice[1]!r} are one name in Unicode NFC; "
                        "rename one")
    values = {image_label(v) for frame in frames.values() for v in frame[RAW_LABEL] if v is not None}
    numeric = all(INTEGER.fullmatch(v) for v in values)
    return sorted(values, key=(lambda v: (int(v), v)) if numeric else None)


def image_label(value) -> str:
    """A label as the model names it: a name (a class folder's, an array of strings) as it is, "007" and "7"
    two classes, but in Unicode NFC (a folder made on macOS is named in NFD, a label typed in params.yaml in NFC);
    a number (an array of integer labels) as its text, 7.0 as "7"."""
    return unicodedata.normalize("NFC", value) if isinstance(value, str) else label_key(value)


def check_columns(frame: pd.DataFrame, cfg: DataConfig, where: str) -> None:
    """The reader builds the columns; nothing to check."""


def clean(frame: pd.DataFrame, cfg: DataConfig, names: list[str], declared: Union[list, None],
          where: str) -> tuple[pd.DataFrame, list[dict]]:
    """Keep readable rows with a known label as (pixels, label id, _row); return the others with reasons.

    ``declared``: the source's class names (bundled sets); its integer labels index them."""
    label_ids = {name: i for i, name in enumerate(names)}

    def key(value):
        if value is None or (isinstance(value, float) and np.isnan(value)):
            return None
        if declared is not None:  # the source's class names, indexed by its integer labels (Fashion-MNIST)
            index = int(value) if INTEGER.fullmatch(str(value)) else -1
            return image_label(declared[index]) if 0 <= index < len(declared) else f"{image_label(value)} (no class)"
        return image_label(value)

    keys = frame[RAW_LABEL].map(key)
    reasons = frame[REASON].copy()
    reasons[(reasons == "") & keys.isna()] = "missing label"
    unknown = (reasons == "") & keys.notna() & ~keys.isin(list(label_ids))
    reasons[unknown] = UNKNOWN_LABEL + frame.loc[unknown, RAW_LABEL].astype(str).map(repr)
    bad = reasons != ""
    # a row is its position in the source, or, from an image folder, the file (relative to its split's folder)
    rejected = [{"source": where, "row": row if isinstance(row, str) else int(row), "reason": reason}
                for row, reason in zip(frame.loc[bad, "_row"], reasons[bad])]
    good = frame.loc[~bad]
    return pd.DataFrame({PIXELS: good[PIXELS].values, **{c: good[c].astype("int64").values for c in SHAPE},
                         LABEL: keys[~bad].map(label_ids).astype("int64").values,
                         "_row": good["_row"].values}), rejected


def unlabelled_inputs(raw: pd.DataFrame, cfg: DataConfig, source: str, column: str,
                      pair_column: Union[str, None] = None) -> pd.DataFrame:
    """Transfer-set rows: the pixels of the remainder (images have no other transfer source)."""
    if PIXELS not in raw.columns:
        raise DataError(f"distill.transfer_set.source: {source}: image tasks take only none or remainder")
    return raw[[PIXELS, *SHAPE]].reset_index(drop=True)


def describe(splits: dict, cfg: Optional[DataConfig] = None) -> dict:
    """The images' shape and dtype, and the training split's pixel mean and standard deviation (the
    normalisation every model of the task records); ``resized_to``, when ``data.image_size`` resized them (the
    served model then resizes an encoded image it is sent)."""
    train = splits["train"]
    channels, height, width = (int(train[c].iloc[0]) for c in SHAPE)
    dtype = pixel_dtype(len(train[PIXELS].iloc[0]), channels, height, width)
    pixels = np.frombuffer(b"".join(train[PIXELS]), dtype=dtype).astype(np.float64)
    std = float(pixels.std())
    return {"image": {"channels": channels, "height": height, "width": width, "dtype": dtype.name,
                      "pixel_min": float(pixels.min()), "pixel_max": pixel_scale(dtype, pixels.max()),
                      "pixel_max_seen": float(pixels.max()),
                      "pixel_mean": float(pixels.mean()), "pixel_std": std if std > 0 else 1.0,
                      **({"resized_to": list(cfg.image_size)} if cfg is not None and cfg.image_size else {})}}
