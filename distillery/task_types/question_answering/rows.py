"""Extractive QA, reading and checking rows and splitting them BY ARTICLE (the ``prepare`` stage only).

One reader for every source:
- a SQuAD-format JSON file (``{"data": [{"title", "paragraphs": [{"context", "qas": [{"id", "question",
  "answers": [{"text", "answer_start"}]}]}]}]}``), gzipped (``.json.gz``) or not;
- JSON lines (``.jsonl``, ``.jsonl.gz``), one question per line in the Hugging Face ``squad`` columns
  (``id``, ``title``, ``context``, ``question``, ``answers: {text: [...], answer_start: [...]}``);
- ``hub:<dataset id>`` (e.g. ``hub:squad``) through ``datasets.load_dataset``, the same columns.

A prepared row is one question: ``id``, ``title``, ``context``, ``question``, ``answer_texts`` and
``answer_starts`` (every gold answer; training uses the first, scoring the best over all). Rows are
rejected, with the reason and their place in the file, for an empty question or context, one that is not text
(a JSON number, list or object), no answer (an empty answer text counts as none: SQuAD 2.0's unanswerable
questions), or an answer that is not at its ``answer_start`` in the context. Splits the source
lacks are carved from its training rows by article (``title``), with ``data.split_fractions``, so no
article is in two splits; ``data.max_samples`` then caps the questions of each split (a seeded sample).
With ``distill.transfer_set.source: remainder`` the training questions beyond the cap, without their
answers, are the transfer set.
"""
from __future__ import annotations

import gzip
import json
import math
from pathlib import Path
from typing import Union

import numpy as np
import pandas as pd

from distillery.config import SPLITS, Params
from distillery.errors import DataError
from distillery.sources import files_description, split_source
from distillery.task_types.question_answering.columns import (ANSWER_STARTS, ANSWER_TEXTS, CONTEXT, ID, QUESTION,
                                                               TITLE)
from distillery.text_files import json_objects

COLUMNS = [ID, TITLE, CONTEXT, QUESTION, ANSWER_TEXTS, ANSWER_STARTS]
WHERE = "_where"  # a row's place in its file ("line 12", "data[0].paragraphs[1].qas[2] (id q7)"): messages only
LABELS = ["start", "end"]  # what the model outputs per token; labels.json and the registry's label check


def _open_text(path: Path) -> str:
    try:
        if path.name.lower().endswith(".gz"):
            with gzip.open(path, "rt", encoding="utf-8-sig") as handle:  # -sig: a byte-order mark is dropped
                return handle.read()
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read it: {exc}") from None


def _answers(value, where: str) -> tuple[list, list]:
    """``(texts, starts)`` from the HF dict-of-lists form or the SQuAD list-of-dicts form."""
    if isinstance(value, dict):
        texts, starts = value.get("text", []), value.get("answer_start", [])
        if isinstance(texts, str) and isinstance(starts, (int, np.integer)) and not isinstance(starts, bool):
            return [texts], [int(starts)]  # one answer written as plain values
        if isinstance(texts, (list, tuple, np.ndarray)) and isinstance(starts, (list, tuple, np.ndarray)) \
                and len(texts) == len(starts):
            try:
                return list(texts), [int(s) for s in starts]
            except (TypeError, ValueError):
                pass
    if isinstance(value, (list, tuple, np.ndarray)):
        try:
            return [a["text"] for a in value], [int(a["answer_start"]) for a in value]
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
        for p, paragraph in enumerate(article.get("paragraphs", [])):
            for q, qa in enumerate(paragraph.get("qas", [])):
                place = f"data[{a}].paragraphs[{p}].qas[{q}]"
                texts, starts = _answers(qa.get("answers", []), f"{where} {place}")
                rows.append({ID: str(qa.get("id", f"{where} {place}")),
                             TITLE: str(article.get("title", f"article {a}")),
                             CONTEXT: paragraph.get("context"), QUESTION: qa.get("question"),
                             ANSWER_TEXTS: texts, ANSWER_STARTS: starts,
                             WHERE: place + (f" (id {qa['id']})" if "id" in qa else "")})
    return pd.DataFrame(rows, columns=[*COLUMNS, WHERE])


def flat_rows(frame: pd.DataFrame, where: str, lines: Union[list[int], None] = None) -> pd.DataFrame:
    """Rows in the Hugging Face ``squad`` columns (JSON lines, a Hub dataset) in prepared columns. ``lines``: each
    row's line in its JSON-lines file (blank lines are skipped, so rows and lines differ); else rows count from 1.
    A row without an ``id`` is given its file and place, so ids of two files never collide."""
    missing = [c for c in (CONTEXT, QUESTION, "answers") if c not in frame.columns]
    if missing:
        raise DataError(f"{where}: column {missing[0]!r} not found; the columns are {list(frame.columns)}")
    places = [f"line {n}" for n in lines] if lines is not None else [f"row {i + 1}" for i in range(len(frame))]
    answers = [_answers(value, f"{where} {place}") for place, value in zip(places, frame["answers"])]
    ids = [f"{where} {place}" for place in places]
    if ID in frame.columns:
        ids = [given if not _absent(given) else made for given, made in zip(frame[ID], ids)]
    return pd.DataFrame({ID: [str(i) for i in ids],
                         TITLE: frame[TITLE].astype(str) if TITLE in frame.columns else "",
                         CONTEXT: frame[CONTEXT], QUESTION: frame[QUESTION],
                         ANSWER_TEXTS: [a[0] for a in answers], ANSWER_STARTS: [a[1] for a in answers],
                         WHERE: places})


def read_file(path: Union[str, Path]) -> pd.DataFrame:
    """A local SQuAD-format ``.json`` or JSON-lines ``.jsonl`` file, either gzipped or not."""
    path = Path(path)
    name = path.name.lower().removesuffix(".gz")
    text = _open_text(path)
    if name.endswith(".jsonl"):
        # split at newlines only: splitlines() also splits at U+2028 and U+0085, which JSON allows raw in a string
        numbered = list(json_objects(text.split("\n"), str(path)))
        return flat_rows(pd.DataFrame([record for _, record in numbered]), str(path), [n for n, _ in numbered])
    if name.endswith(".json"):
        try:
            return squad_rows(json.loads(text), str(path))
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: not valid JSON (line {exc.lineno}): {exc.msg}") from None
    raise DataError(f"{path}: unsupported file type for question answering; use a SQuAD-format .json or a "
                    ".jsonl file (either may be gzipped: .json.gz, .jsonl.gz)")


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
        return {split: read_file(path) for split, path in cfg.files.items()}, files_description(cfg.files)
    if cfg.source.startswith("hub:"):
        frames = read_hub(cfg.source.split(":", 1)[1], cfg.hub_config)
        ours = {mine: frames[theirs] for mine, theirs in cfg.splits.items() if theirs and theirs in frames}
        if "train" not in ours:
            raise DataError(f"data.splits.train: {cfg.source} has no split {cfg.splits.get('train')!r}; it has "
                            f"{sorted(frames)}")
        return ours, cfg.source
    if cfg.source.startswith("bundled:"):
        raise DataError(f"data.source: {cfg.source} is a text-classification corpus; question answering reads "
                        "SQuAD-format JSON, JSON lines or hub:<id>")
    return {"all": read_file(cfg.source)}, cfg.source


def _absent(value) -> bool:
    """A missing or null field: None (SQuAD JSON, Hub), or the NaN pandas puts there (JSON lines)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def _json_kind(value) -> str:
    """What a non-text value was in the JSON: "a number", "a list", "an object", "a boolean"."""
    if isinstance(value, (bool, np.bool_)):
        return "a boolean"
    if isinstance(value, (int, float, np.number)):
        return "a number"
    return "an object" if isinstance(value, dict) else "a list" if isinstance(value, (list, tuple, np.ndarray)) \
        else f"a {type(value).__name__}"


def _without_empty_answers(texts, starts) -> tuple[list, list]:
    """A gold answer with no text (SQuAD 2.0 converters write ``{"text": "", "answer_start": -1}`` for an
    unanswerable question) is no answer: no prediction could ever match it."""
    if len(texts) != len(starts):  # rejected as it is
        return texts, starts
    kept = [(t, s) for t, s in zip(texts, starts) if not (isinstance(t, str) and not t.strip())]
    if len(kept) == len(texts):
        return texts, starts
    return [t for t, _ in kept], [s for _, s in kept]


def clean(frame: pd.DataFrame, where: str) -> tuple[pd.DataFrame, list[dict]]:
    """Keep the rows a model can learn from and be scored on; return the others with the reason and their place
    in the file (``row``: "line 12" in JSON lines, "data[0].paragraphs[1].qas[2] (id q7)" in SQuAD JSON)."""
    frame = frame.copy()
    if len(frame):
        answers = [_without_empty_answers(t, s) for t, s in zip(frame[ANSWER_TEXTS], frame[ANSWER_STARTS])]
        frame[ANSWER_TEXTS], frame[ANSWER_STARTS] = [a[0] for a in answers], [a[1] for a in answers]
    places = frame[WHERE] if WHERE in frame.columns else pd.Series([f"row {i + 1}" for i in range(len(frame))],
                                                                    index=frame.index)
    reasons = []
    for question, context, texts, starts in zip(frame[QUESTION], frame[CONTEXT], frame[ANSWER_TEXTS],
                                                frame[ANSWER_STARTS]):
        if _absent(question) or (isinstance(question, str) and not question.strip()):
            reasons.append("empty question")
        elif not isinstance(question, str):
            reasons.append(f"the question is {_json_kind(question)}, not text")
        elif _absent(context) or (isinstance(context, str) and not context.strip()):
            reasons.append("empty context")
        elif not isinstance(context, str):
            reasons.append(f"the context is {_json_kind(context)}, not text")
        elif len(texts) == 0 or len(texts) != len(starts):
            reasons.append("no answer")
        elif not all(isinstance(t, str) for t in texts):
            reasons.append("an answer text is not text")
        elif any(context[s:s + len(t)] != t for s, t in zip(starts, texts)):
            reasons.append("answer not at its answer_start in the context")
        else:
            reasons.append("")
    reasons = pd.Series(reasons, index=frame.index)
    bad = reasons != ""
    rejected = [{"source": where, "row": place, "reason": r} for place, r in zip(places[bad], reasons[bad])]
    return frame.loc[~bad].drop(columns=[WHERE], errors="ignore").reset_index(drop=True), rejected


def split_by_article(pool: pd.DataFrame, fraction: float, seed: int, split: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(taken, rest)``: about ``fraction`` of the pool's articles (at least one, never all), seeded."""
    titles = sorted(pool[TITLE].unique())
    if len(titles) < 2:
        raise DataError(f"data: split {split!r} is carved by article, and the training rows have "
                        f"{len(titles)} article(s); give more articles or a {split} file in data.files")
    count = min(len(titles) - 1, max(1, int(math.floor(fraction * len(titles) + 0.5))))
    chosen = set(np.random.default_rng(seed).permutation(titles)[:count])
    mask = pool[TITLE].isin(chosen)
    return pool[mask], pool[~mask]


def prepare_splits(params: Params) -> tuple[dict[str, pd.DataFrame], list[dict], dict]:
    """Read, clean, de-duplicate and split by article: ``(splits, rejected rows, report)``."""
    cfg = params.data
    frames, description = read_frames(params)
    cleaned, rejected = {}, []
    for split, frame in frames.items():
        cleaned[split], bad = clean(frame, split_source(description, cfg.files, split))
        rejected += bad
    if rejected and cfg.on_bad_rows == "fail":
        first = rejected[0]
        raise DataError(f"{first['source']} {first['row']}: {first['reason']} "
                        f"({len(rejected)} bad row(s) in all; data.on_bad_rows is fail)")
    read = sum(len(f) for f in frames.values())
    if read and len(rejected) / read > cfg.max_rejected_fraction:
        reasons = pd.Series([r["reason"] for r in rejected], dtype=str).value_counts()
        raise DataError(f"{description}: {len(rejected)} of {read} rows were rejected, more than "
                        f"data.max_rejected_fraction = {cfg.max_rejected_fraction} (mostly {reasons.index[0]}: "
                        f"{int(reasons.iloc[0])} rows; SQuAD 2.0's unanswerable questions are 'no answer')")
    # A repeated row (the same id, question and context) is dropped; so is a (question, context) pair already in an
    # evaluation split, so no test question is trained on. The same question asked twice within one split stays
    # (SQuAD has a few). An id repeated on another question is not a duplicate: it is numbered apart (~2, ~3).
    order = [s for s in ("test", "validation", "train", "all") if s in cleaned]
    stacked = pd.concat([cleaned[s].assign(_split=s) for s in order], ignore_index=True)
    first_split = stacked.groupby([QUESTION, CONTEXT], sort=False)["_split"].transform("first")
    duplicated = stacked.duplicated([ID, QUESTION, CONTEXT], keep="first") | (first_split != stacked["_split"])
    dropped = stacked.loc[duplicated, "_split"].value_counts().to_dict()
    stacked = stacked[~duplicated].copy()
    occurrence = stacked.groupby(ID, sort=False).cumcount()
    renumbered = int((occurrence > 0).sum())
    stacked.loc[occurrence > 0, ID] = stacked[ID] + "~" + (occurrence + 1).astype(str)
    kept = {s: g.drop(columns="_split") for s, g in stacked.groupby("_split", sort=False)}
    emptied = [s for s in ("validation", "train") if len(cleaned.get(s, ())) and s not in kept]
    if emptied:  # carving it from train instead would hide that the file given is a copy
        split = emptied[0]
        held_out = ", ".join(order[:order.index(split)])
        raise DataError(f"{split_source(description, cfg.files, split)}: every question of split {split!r} is also "
                        f"in a more held-out split ({held_out}), so none is left; give it questions of its own")
    pool = kept.get("all", kept.get("train"))
    if pool is None:
        raise DataError(f"data: the source has no train split; it has {sorted(frames)}")
    splits = {s: kept[s] for s in ("validation", "test") if s in kept}
    missing = [s for s in ("test", "validation") if s not in splits]
    remaining = sum(cfg.split_fractions.get(s, 0) for s in ["train", *missing])
    for split in missing:
        fraction = cfg.split_fractions.get(split, 0) / remaining
        remaining -= cfg.split_fractions.get(split, 0)
        splits[split], pool = split_by_article(pool, fraction, params.seed, split)
    splits["train"] = pool
    left_over = pool.iloc[:0]
    for split in SPLITS:
        cap = cfg.max_samples.get(split)
        if cap is not None and cap < len(splits[split]):
            taken = splits[split].sample(n=cap, random_state=params.seed)
            if split == "train":
                left_over = splits[split].drop(index=taken.index)
            splits[split] = taken
        if len(splits[split]) == 0:
            raise DataError(f"data: split {split!r} is empty after cleaning and splitting; add rows")
    shared = set(splits["train"][TITLE]) & (set(splits["validation"][TITLE]) | set(splits["test"][TITLE]))
    report = {
        "source": description, "labels": LABELS, "rows_read": {s: int(len(f)) for s, f in frames.items()},
        "rows_rejected": len(rejected),
        "rejected_by_reason": pd.Series([r["reason"] for r in rejected], dtype=str).value_counts().to_dict(),
        "duplicates_dropped": {str(k): int(v) for k, v in dropped.items()},
        "repeated_ids_renumbered": renumbered,
        "rows": {s: int(len(splits[s])) for s in SPLITS},
        "articles": {s: int(splits[s][TITLE].nunique()) for s in SPLITS},
        "articles_in_train_and_another_split": sorted(shared),
        "answers_per_question": {s: round(float(splits[s][ANSWER_TEXTS].map(len).mean()), 3) for s in SPLITS},
    }
    transfer = transfer_rows(params, left_over)
    report["transfer_rows"] = int(len(transfer))
    return {**{s: splits[s].reset_index(drop=True) for s in SPLITS}, "transfer": transfer}, rejected, report


def transfer_rows(params: Params, left_over: pd.DataFrame) -> pd.DataFrame:
    """The transfer set: with ``distill.transfer_set.source: remainder``, the training articles' questions
    beyond ``data.max_samples.train`` (at most ``max_rows``, a seeded sample), WITHOUT their answers: the
    distilled student learns them from the teacher's logits alone, the baseline never sees them."""
    cfg = params.distill.transfer_set
    if cfg.source != "remainder" or cfg.max_rows == 0:
        left_over = left_over.iloc[:0]
    elif len(left_over) > cfg.max_rows:
        left_over = left_over.sample(n=cfg.max_rows, random_state=params.seed)
    return left_over[[ID, TITLE, CONTEXT, QUESTION]].reset_index(drop=True)


def key_columns(cfg) -> list[str]:
    """The prepared columns that identify a row's input."""
    return [QUESTION, CONTEXT]
