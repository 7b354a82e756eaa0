"""Text classification, reading and checking rows: columns, labels and bad rows (the ``prepare`` stage).

Only ``prepare`` imports this module, so editing the cleaning rules re-runs ``prepare`` and, when
the prepared splits come out identical, nothing after it.
"""
from __future__ import annotations

import re
import sys
import unicodedata
from decimal import Decimal
from typing import Union

import numpy as np
import pandas as pd

from distillery.config import DataConfig
from distillery.errors import DataError
from distillery.prepared import LABEL, PAIR, TEXT
from distillery.class_checks import check_classes  # noqa: F401 (prepare calls rows.check_classes)
from distillery.rejected_rows import UNKNOWN_LABEL


def is_blank(series: pd.Series) -> pd.Series:
    """Null, or no visible character: white space, control and format characters only (a zero-width space,
    NUL bytes), which a model cannot tell apart from an empty text."""
    # pandas' string dtype keeps a null as NaN through astype(str)
    return series.isna() | ~series.astype(str).map(lambda v: isinstance(v, str) and visible(v)).astype(bool)


# what spreadsheets, R and pandas write for "no value": a missing label when the labels are inferred (declared
# data.labels decide for themselves: a declared "None" is a label)
MISSING_MARKERS = frozenset({"na", "n/a", "nan", "null", "none", "#n/a", "<na>"})


def no_label(series: pd.Series, inferred: bool) -> pd.Series:
    """Blank, or, when the labels are inferred, a missing-value marker (``NA``, ``NaN``, ``n/a``, ``null``...)."""
    blank = is_blank(series)
    if not inferred:
        return blank
    return blank | series.map(lambda v: isinstance(v, str) and v.strip().lower() in MISSING_MARKERS).astype(bool)


def visible(text: str) -> bool:
    """Whether ``text`` has a character other than white space, control (Cc) and format (Cf) characters."""
    return any(not (ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf")) for ch in text)


def _kind(value) -> str:
    """How a message names a JSON value's type: "a list", "an object", "a number", "a boolean"."""
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float, np.number)):
        return "a number"
    return f"a {type(value).__name__}"


def not_text(series: pd.Series) -> pd.Series:
    """True where a value is present but not a string (JSON and Parquet keep numbers, lists and objects). Built
    as a plain bool array: ``Series.map`` on pandas' string dtype keeps that dtype ("True"/"False")."""
    return pd.Series([not isinstance(v, str) and not _missing(v) for v in series], index=series.index, dtype=bool)


def not_scalar(series: pd.Series) -> pd.Series:
    """True where a label is a list, an object or an array: never one class."""
    return pd.Series([isinstance(v, (list, tuple, dict, set, np.ndarray)) for v in series], index=series.index,
                     dtype=bool)


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and value != value)


_INTEGER = re.compile(r"[+-]?[0-9]+")
def _strip_invisible(text: str) -> str:
    """``text`` without white space or invisible format characters (a zero-width space, a byte-order mark) at
    either end: "pos" and "pos\u200b" are one label (inside a label, a zero-width joiner of an emoji stays)."""
    start, end = 0, len(text)
    while start < end and (text[start].isspace() or unicodedata.category(text[start]) == "Cf"):
        start += 1
    while end > start and (text[end - 1].isspace() or unicodedata.category(text[end - 1]) == "Cf"):
        end -= 1
    return text[start:end]


def _value(text: str):
    """The number a label spells, or None."""
    return Decimal(text) if _DECIMAL.fullmatch(text) and len(text) <= _MAX_DIGITS else None


def label_keys(column: pd.Series) -> pd.Series:
    """:func:`label_key` of each value; a float32 (or float16) column's values as numpy scalars (``map`` hands
    them over as Python floats, whose spelling is float64's: 0.10000000149011612)."""
    if column.dtype.kind == "f" and column.dtype.itemsize < 8:
        return pd.Series([label_key(v) for v in column.to_numpy()], index=column.index, dtype=object)
    return column.map(label_key)


_MAX_DIGITS = 4000  # longer digit strings stay text (Python refuses int() of over 4,300 digits)
_DECIMAL = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")


def label_key(value) -> str:
    """Labels compare as strings, so 1, 1.0, "1.0" and numpy 1 from different file types agree (and 0.5, "0.50":
    a number is compared by its value, exactly, so 9007199254740993 and 9007199254740992 stay two labels), a
    boolean and the words true/false in any case agree as "true"/"false", and text compares in Unicode NFC, so
    "Café" typed with a combining accent is the label "Café" (they look alike in every message)."""
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    # a numpy float as numpy writes it: the shortest spelling at its own precision (float32 0.1 is "0.1", where
    # Python's float of it is 0.10000000149011612)
    text = _strip_invisible(unicodedata.normalize("NFC", str(value) if isinstance(value, np.floating) else
                                                  str(value.item() if hasattr(value, "item") else value)))
    if text.lower() in ("true", "false"):
        return text.lower()
    if _INTEGER.fullmatch(text):
        return str(int(text)) if len(text) <= _MAX_DIGITS else text
    # a label typed with an exponent ("3E7", a lot or part code) is kept as typed; a number read as one (a float
    # column) is compared by value
    if _DECIMAL.fullmatch(text) and not (isinstance(value, str) and "e" in text.lower()) and len(text) <= _MAX_DIGITS:
        number = Decimal(text)
        return str(int(number)) if number == number.to_integral_value() else format(number.normalize(), "f")
    return text


_WHOLE = re.compile(r"^([+-]?[0-9]+)\.0+$")  # "2.0": how pandas writes an integer column that holds a NaN


def check_number_spellings(frames: dict, cfg: DataConfig, where: dict) -> None:
    """Two spellings of one number among the data's text labels ("1.1" and "1.10", "01" and "1") stop ``prepare``:
    compared by value they would silently be one class, and such labels are more often two codes than one number.
    A number and its text ("1" in a CSV, 1.0 in JSON lines) still agree, and so do a whole number and the same
    number with a zero fraction ("2" and "2.0": pandas writes an integer column that holds a NaN as floats)."""
    seen: dict = {}  # label key -> (spelling, split)
    for split, frame in frames.items():
        column = frame[cfg.label_column]
        for value in pd.unique(column[~not_scalar(column) & ~is_blank(column)]):
            if not isinstance(value, str):
                continue
            spelling = unicodedata.normalize("NFC", value).strip()
            if not _DECIMAL.fullmatch(spelling) or "e" in spelling.lower() or len(spelling) > _MAX_DIGITS:
                continue  # not a number, or kept as typed (an exponent: "1E5"; 4,000 digits): compared as text
            first, first_split = seen.setdefault(label_key(spelling), (spelling, split))
            if _WHOLE.sub(r"\1", spelling) != _WHOLE.sub(r"\1", first):
                places = where[first_split] if first_split == split else f"{where[first_split]} and {where[split]}"
                raise DataError(
                    f"{places}: the labels {first!r} and {spelling!r} in {cfg.label_column!r} are one number, so they "
                    f"would be one class (labels that look like numbers are compared by value); if they are two "
                    f"classes, name them so they are not numbers, e.g. 'c{first}' and 'c{spelling}'")


def key_columns(cfg: DataConfig) -> list[str]:
    """The prepared columns that identify a row's input (duplicates are judged on them)."""
    return [TEXT, PAIR] if cfg.text_pair_column else [TEXT]


def label_names(frames: dict, cfg: DataConfig, declared: Union[list, None]) -> list[str]:
    """The label set: ``data.labels`` if declared, else the source's ``ClassLabel`` names, else the values seen."""
    if cfg.labels is not None:
        names = [label_key(v) for v in cfg.labels]
        if len(set(names)) != len(names):
            twice = next(name for name in names if names.count(name) > 1)
            spellings = [v for v, name in zip(cfg.labels, names) if name == twice]
            raise DataError(f"data.labels: {cfg.labels} names the same label twice: {spellings[0]!r} and "
                            f"{spellings[1]!r} are both the label {twice!r} (labels compare as text, numbers by "
                            f"value, true/false in any case)")
        return names
    if declared is not None:
        return [label_key(name) for name in declared]
    values = set()
    for frame in frames.values():
        column = frame[cfg.label_column]
        values.update(label_keys(column[~not_scalar(column) & ~no_label(column, inferred=True)]))
    numeric = all(_DECIMAL.fullmatch(v) for v in values)
    names = sorted(values, key=Decimal if numeric else None)  # 2 before 10
    twins: dict = {}
    for name in names:  # "Billing issue" and "billing issue": two classes, as documented, but likely one meant
        twins.setdefault(" ".join(name.casefold().split()), []).append(name)
    alike = [spellings for spellings in twins.values() if len(spellings) > 1]
    if alike:
        print(f"prepare: warning: labels that differ only in case or spacing are separate classes: "
              f"{'; '.join(' and '.join(map(repr, s)) for s in alike[:3])}{' ...' if len(alike) > 3 else ''}; if they "
              "are one class, write them alike in the data (or declare data.labels, which rejects the other "
              "spellings, each row named in rejected.csv)", file=sys.stderr, flush=True)
    numbers = [name for name in names if _DECIMAL.fullmatch(name)]
    words = [name for name in names if not _DECIMAL.fullmatch(name)]
    if numbers and words:  # two sources joined: one codes its labels 0/1, the other writes no/yes
        print(f"prepare: warning: the labels mix numbers and words: {', '.join(map(repr, numbers[:3]))} and "
              f"{', '.join(map(repr, words[:3]))}{' ...' if len(numbers) > 3 or len(words) > 3 else ''} are "
              f"{len(names)} separate classes; if a number and a word name one class, write them alike in the data "
              "(or declare data.labels, which rejects the other spellings, each row named in rejected.csv)",
              file=sys.stderr, flush=True)
    return names


def check_columns(frame: pd.DataFrame, cfg: DataConfig, where: str) -> None:
    from distillery.file_hints import column_hint
    from distillery.sources import shown_columns

    columns = [c for c in frame.columns if c != "_row"]
    for key, column in cfg.named_columns().items():
        if column not in frame.columns:
            hint = column_hint(column, columns)
            raise DataError(f"{where}: {key} {column!r} not found; the columns are {shown_columns(columns)}"
                            + (f" ({hint})" if hint else ""))
        if f"{column}.1" in frame.columns:  # pandas reads a repeated header name as "text", "text.1", ...
            raise DataError(f"{where}: two columns are named {column!r} (pandas read the second as '{column}.1'); "
                            f"rename one, so that {key} names a single column")


def clean(frame: pd.DataFrame, cfg: DataConfig, names: list[str], source_names: Union[list, None],
          where: str) -> tuple[pd.DataFrame, list[dict]]:
    """Keep valid rows as (text, text_pair, label id, _row); return the rejected rows with reasons.

    ``source_names``: a Hub ``ClassLabel``'s names; its integers index them and -1 means "no label".
    """
    check_columns(frame, cfg, where)
    label_ids = {name: i for i, name in enumerate(names)}
    raw_labels = frame[cfg.label_column]
    if source_names is not None:
        keys = raw_labels.map(lambda v: label_key(source_names[int(v)])
                              if pd.notna(v) and 0 <= int(v) < len(source_names) else None)
    else:
        keys = label_keys(raw_labels).where(~no_label(raw_labels, inferred=cfg.labels is None), None)
    if cfg.labels is not None:  # data.labels: [1e5, 2e5] is read as numbers, the data's "1E5" kept as typed
        by_value = {_value(name): name for name in names if _value(name) is not None}
        keys = keys.map(lambda k: k if not isinstance(k, str) or k in label_ids or "e" not in k.lower()
                        else by_value.get(_value(k), k))
    reasons = pd.Series("", index=frame.index)
    for column, name in ((cfg.text_column, "text"), (cfg.text_pair_column, "text pair")):
        if not column:
            continue
        values = frame[column]
        odd = (reasons == "") & not_text(values)  # a number or list is not a text, and the served model refuses it
        reasons[odd] = values[odd].map(lambda v: f"{name} is not a string ({_kind(v)})")
        reasons[(reasons == "") & is_blank(values)] = f"empty {name}"
    odd = (reasons == "") & not_scalar(raw_labels)
    reasons[odd] = raw_labels[odd].map(lambda v: f"label is not a single value ({_kind(v)})")
    reasons[(reasons == "") & keys.isna()] = "missing label"
    unknown = (reasons == "") & keys.notna() & ~keys.isin(list(label_ids))
    reasons[unknown] = UNKNOWN_LABEL + keys[unknown].astype(str).map(repr)  # as compared: 5 and 5.0 are one
    bad = reasons != ""
    rejected = [{"source": where, "row": int(row), "reason": reason}
                for row, reason in zip(frame.loc[bad, "_row"], reasons[bad])]
    good = frame.loc[~bad]
    out = pd.DataFrame({TEXT: good[cfg.text_column].astype(str).values})
    if cfg.text_pair_column:
        out[PAIR] = good[cfg.text_pair_column].astype(str).values
    out[LABEL] = keys[~bad].map(label_ids).astype("int64").values
    out["_row"] = good["_row"].values
    return out, rejected


def unlabelled_inputs(raw: pd.DataFrame, cfg: DataConfig, source: str, text_column: str,
                      pair_column: Union[str, None] = None) -> pd.DataFrame:
    """Transfer-set rows (no labels) in prepared columns, blanks dropped. ``raw`` holds the source's
    columns (``text_column``, and ``pair_column`` or else ``data.text_pair_column`` for pair tasks)."""
    frame = pd.DataFrame({TEXT: raw[text_column]})
    if cfg.text_pair_column:
        pair_column = pair_column or cfg.text_pair_column
        if pair_column not in raw.columns:
            raise DataError(f"{source}: text pair column {pair_column!r} not found (name the file's own in "
                            f"distill.transfer_set.text_pair_column); columns: "
                            f"{[c for c in raw.columns if c != '_row']}")
        frame[PAIR] = raw[pair_column]
    blank = is_blank(frame[TEXT]) | not_text(frame[TEXT])
    if PAIR in frame.columns:
        blank |= is_blank(frame[PAIR]) | not_text(frame[PAIR])
    return frame[~blank].astype(str)
