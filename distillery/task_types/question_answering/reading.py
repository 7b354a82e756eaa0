"""Extractive QA, reading question rows from every source into one frame (for ``prepare``).

One reader for every source:
- a SQuAD-format JSON file (``{"data": [{"title", "paragraphs": [{"context", "qas": [{"id", "question",
  "answers": [{"text", "answer_start"}]}]}]}]}``), gzipped (``.json.gz``) or not;
- JSON lines (``.jsonl``, ``.jsonl.gz``), one question per line in the Hugging Face ``squad`` columns
  (``id``, ``title``, ``context``, ``question``, ``answers: {text: [...], answer_start: [...]}``);
- ``hub:<dataset id>`` (e.g. ``hub:squad``) through ``datasets.load_dataset``, the same columns.

Every row keeps its place in its file (``WHERE``) for the messages of :mod:`.rows`, which checks the rows.
"""
from __future__ import annotations

import gzip
import json
import math
from pathlib import Path
from typing import Union

import numpy as np
import pandas as pd

from distillery.config import Params
from distillery.errors import DataError
from distillery.file_hints import parsed_json
from distillery.sources import files_description
from distillery.task_types.question_answering.columns import (ANSWER_STARTS, ANSWER_TEXTS, CONTEXT, ID, QUESTION,
                                                               SUFFIXES, TITLE)
from distillery.text_files import decode, json_objects, json_problem

COLUMNS = [ID, TITLE, CONTEXT, QUESTION, ANSWER_TEXTS, ANSWER_STARTS]
UNSUPPORTED = ("unsupported file type for question answering; use a SQuAD-format .json or a .jsonl file (either may "
               "be gzipped: .json.gz, .jsonl.gz)")
NOT_A_QA_CORPUS = "is a text-classification corpus; question answering reads SQuAD-format JSON, JSON lines or hub:<id>"
WHERE = "_where"  # a row's place in its file ("line 12", "data[0].paragraphs[1].qas[2] (id q7)"): messages only


def _open_text(path: Path, errors: str) -> str:
    """The file's text, gunzipped for ``.gz``; ``errors``: data.encoding_errors (a byte that is not UTF-8 is an error
    naming its line, or becomes U+FFFD)."""
    try:
        raw = path.read_bytes()
        if path.name.lower().endswith(".gz"):
            raw = gzip.decompress(raw)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read it: {exc}") from None
    return decode(path, errors, raw)


def _start(value, where: str) -> int:
    """An ``answer_start`` as an int: a whole number (28, 28.0 from a float column, "28"); 28.9 was cut to 28 and
    ``false`` read as 0, each row then kept."""
    if isinstance(value, (bool, np.bool_)):
        raise DataError(f"{where}: answer_start {value!r} is not a character offset")
    if isinstance(value, (float, np.floating)):
        if not float(value).is_integer():
            raise DataError(f"{where}: answer_start {value!r} is not a whole number of characters")
        return int(value)
    return int(value)


def _answers(value, where: str) -> tuple[list, list]:
    """``(texts, starts)`` from the HF dict-of-lists form or the SQuAD list-of-dicts form; a null is no answer (its
    row is rejected as "no answer", as one without ``answers`` is)."""
    if absent(value):
        return [], []
    if isinstance(value, dict):
        texts, starts = value.get("text", []), value.get("answer_start", [])
        if isinstance(texts, str) and isinstance(starts, (int, np.integer, float, np.floating)) \
                and not isinstance(starts, bool):
            return [texts], [_start(starts, where)]  # one answer written as plain values
        if isinstance(texts, (list, tuple, np.ndarray)) and isinstance(starts, (list, tuple, np.ndarray)) \
                and len(texts) == len(starts):
            try:
                return list(texts), [_start(s, where) for s in starts]
            except (TypeError, ValueError):
                pass
    if isinstance(value, (list, tuple, np.ndarray)):
        try:
            return [a["text"] for a in value], [_start(a["answer_start"], where) for a in value]
        except (KeyError, TypeError):
            pass
    raise DataError(f"{where}: 'answers' must be {{text: [...], answer_start: [...]}} or a list of "
                    f"{{text, answer_start}}, got {str(value)[:80]!r}")


def squad_rows(document: dict, where: str) -> pd.DataFrame:
    """The questions of a SQuAD-format document, one row each."""
    if not isinstance(document, dict) or not isinstance(document.get("data"), list):
        raise DataError(f"{where}: not SQuAD format: expected {{\"data\": [articles...]}}")
    rows = []
    for a, article in enumerate(document["data"]):
        for p, paragraph in enumerate(_entries(article, "paragraphs", f"{where} data[{a}]", "an article")):
            for q, qa in enumerate(_entries(paragraph, "qas", f"{where} data[{a}].paragraphs[{p}]", "a paragraph")):
                place = f"data[{a}].paragraphs[{p}].qas[{q}]"
                if not isinstance(qa, dict):
                    raise DataError(f"{where} {place}: expected a question {{id, question, answers}}, got "
                                    f"{json.dumps(qa)[:80]}")
                texts, starts = _answers(qa.get("answers", []), f"{where} {place}")
                rows.append({ID: str(qa.get("id", f"{where} {place}")),
                             TITLE: str(article.get("title", f"article {a}")),
                             CONTEXT: paragraph.get("context"), QUESTION: qa.get("question"),
                             ANSWER_TEXTS: texts, ANSWER_STARTS: starts,
                             WHERE: place + (f" (id {qa['id']})" if "id" in qa else "")})
    return pd.DataFrame(rows, columns=[*COLUMNS, WHERE])


def _entries(parent, key: str, where: str, what: str) -> list:
    """``parent[key]``, the list a SQuAD article (``paragraphs``) or paragraph (``qas``) holds; a missing or null one
    is empty. ``parent`` that is not an object, or an entry that is not a list, is a ``DataError`` naming its place."""
    if not isinstance(parent, dict):
        raise DataError(f"{where}: expected {what} (a JSON object with {key!r}), got {json.dumps(parent)[:80]}")
    entries = parent.get(key)
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise DataError(f"{where}.{key}: expected a list, got {json.dumps(entries)[:80]}")
    return entries


def flat_rows(frame: pd.DataFrame, where: str, lines: Union[list[int], None] = None) -> pd.DataFrame:
    """Rows in the Hugging Face ``squad`` columns (JSON lines, a Hub dataset) in prepared columns. ``lines``: each
    row's line in its JSON-lines file (blank lines are skipped, so rows and lines differ); else rows count from 1.
    A row without an ``id`` is given its file and place, so ids of two files never collide."""
    missing = [c for c in (CONTEXT, QUESTION, "answers") if c not in frame.columns]
    if missing:
        raise DataError(f"{where}: column {missing[0]!r} not found; the columns are {list(frame.columns)}. A question "
                        "answering row holds the Hugging Face squad columns: 'question', 'context' and 'answers' "
                        "({\"text\": [...], \"answer_start\": [...]}), with 'id' and 'title' optional; rename "
                        "your columns to these (data.text_column and data.label_column are not read for this task)")
    places = [f"line {n}" for n in lines] if lines is not None else [f"row {i + 1}" for i in range(len(frame))]
    named = [f"{place} (id {given})" if not absent(given) else place  # an error names the row's id too
             for place, given in zip(places, frame[ID] if ID in frame.columns else [None] * len(frame))]
    answers = [_answers(value, f"{where} {place}") for place, value in zip(named, frame["answers"])]
    ids = [f"{where} {place}" for place in places]
    if ID in frame.columns:
        ids = [given if not absent(given) else made for given, made in zip(frame[ID], ids)]
    return pd.DataFrame({ID: [str(i) for i in ids],
                         # rows without a title make one untitled article
                         TITLE: [("" if absent(t) else str(t)) for t in frame[TITLE]] if TITLE in frame.columns
                         else "",
                         CONTEXT: frame[CONTEXT], QUESTION: frame[QUESTION],
                         ANSWER_TEXTS: [a[0] for a in answers], ANSWER_STARTS: [a[1] for a in answers],
                         WHERE: places})


def read_file(path: Union[str, Path], errors: str = "strict") -> pd.DataFrame:
    """A local SQuAD-format ``.json`` or JSON-lines ``.jsonl`` file, either gzipped or not; ``errors`` as
    data.encoding_errors."""
    path = Path(path)
    name = path.name.lower().removesuffix(".gz")
    text = _open_text(path, errors)
    if name.endswith(".jsonl"):
        if text.lstrip().startswith(("[", "{")) and _one_document(text):  # lines of arrays are named by line
            raise DataError(f"{path}: one JSON document (a SQuAD-format {{\"data\": [...]}} or an array), not JSON "
                            "lines (one object per line): give it the suffix .json")
        return _json_lines(text, path)
    if name.endswith(".json"):
        try:
            return squad_rows(json.loads(text), str(path))
        except json.JSONDecodeError as exc:
            if exc.msg == "Extra data":  # JSON lines saved as .json: read as such (text classification does too)
                lines = text.split("\n")
                first = next((line for line in lines if line.strip()), "")
                try:
                    return _flat(list(json_objects(lines, str(path))), path)
                except DataError:
                    if isinstance(parsed_json(first), dict):  # JSON lines, one of them broken: that line is named
                        raise
            raise DataError(f"{path}: not valid JSON (line {exc.lineno}: {json_problem(exc)})") from None
    raise DataError(f"{path}: {UNSUPPORTED}")


def _json_lines(text: str, path: Path) -> pd.DataFrame:
    # split at newlines only: splitlines() also splits at U+2028 and U+0085, which JSON allows raw in a string
    return _flat(list(json_objects(text.split("\n"), str(path))), path)


def _flat(numbered: list, path: Path) -> pd.DataFrame:
    return flat_rows(pd.DataFrame([record for _, record in numbered]), str(path), [n for n, _ in numbered])


def _one_document(text: str) -> bool:
    """Whether ``text`` is one JSON array, or one object with a ``data`` list (a SQuAD-format file), whatever its
    lines: a .json file's content under a .jsonl name."""
    document = parsed_json(text)
    return isinstance(document, list) or (isinstance(document, dict) and isinstance(document.get("data"), list))


def read_hub(dataset_id: str, config: Union[str, None]) -> dict[str, pd.DataFrame]:
    """Every split of a Hub dataset in the ``squad`` columns (or a local dataset directory datasets can read)."""
    import datasets

    try:
        dataset_dict = datasets.load_dataset(dataset_id, config)
    except Exception as exc:
        raise DataError(f"data.source: cannot load Hub dataset {dataset_id!r} (config {config!r}): "
                        f"{str(exc).splitlines()[0]}") from None
    return {split: flat_rows(dataset.to_pandas(), f"hub:{dataset_id} [{split}]") for split, dataset in
            dataset_dict.items()}


def read_frames(params: Params) -> tuple[dict[str, pd.DataFrame], str]:
    """``({split: rows}, description)``; a single file comes back as ``{"all": rows}``."""
    cfg = params.data
    if cfg.files:
        frames = {split: read_file(path, cfg.encoding_errors) for split, path in cfg.files.items()}
        return frames, files_description(cfg.files)
    if cfg.source.startswith("hub:"):
        frames = read_hub(cfg.source.split(":", 1)[1], cfg.hub_config)
        ours = {mine: frames[theirs] for mine, theirs in cfg.splits.items() if theirs and theirs in frames}
        if "train" not in ours:
            raise DataError(f"data.splits.train: {cfg.source} has no split {cfg.splits.get('train')!r}; it has "
                            f"{sorted(frames)}")
        return ours, cfg.source
    if cfg.source.startswith("bundled:"):
        raise DataError(f"data.source: {cfg.source} {NOT_A_QA_CORPUS}")
    return {"all": read_file(cfg.source, cfg.encoding_errors)}, cfg.source


def absent(value) -> bool:
    """A missing or null field: None (SQuAD JSON, Hub), or the NaN pandas puts there (JSON lines)."""
    return value is None or (isinstance(value, float) and math.isnan(value))
