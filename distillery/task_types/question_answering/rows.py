"""Extractive QA, checking rows and splitting them BY ARTICLE (the ``prepare`` stage only; the files are read by
:mod:`distillery.task_types.question_answering.reading`).

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

import math

import numpy as np
import pandas as pd

from distillery.config import SPLITS, Params
from distillery.errors import DataError
from distillery.rejected_rows import by_reason, check_rejected_share
from distillery.sources import check_training_rows_left, split_source
from distillery.task_types.question_answering.columns import (ANSWER_STARTS, ANSWER_TEXTS, CONTEXT, ID, MAX_CHARACTERS,
                                                              QUESTION, TITLE)
from distillery.task_types.question_answering.reading import WHERE, absent, read_frames

LABELS = ["start", "end"]  # what the model outputs per token; labels.json and the registry's label check


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


def _at_their_starts(context, texts, starts) -> list[int]:
    """The indices of the gold answers found at their ``answer_start`` in the context (all of them when the row is
    malformed otherwise: its own check rejects it). A negative start would slice from the end (context[-30:-15])
    and could match there."""
    if not isinstance(context, str) or len(texts) != len(starts) or not all(isinstance(t, str) for t in texts):
        return list(range(len(texts)))
    return [i for i, (t, s) in enumerate(zip(texts, starts))
            if isinstance(s, (int, np.integer)) and s >= 0 and context[s:s + len(t)] == t]


def clean(frame: pd.DataFrame, where: str, dropped: list | None = None) -> tuple[pd.DataFrame, list[dict]]:
    """Keep the rows a model can learn from and be scored on; return the others with the reason and their place
    in the file (``row``: "line 12" in JSON lines, "data[0].paragraphs[1].qas[2] (id q7)" in SQuAD JSON).

    A question with several gold answers keeps the ones at their ``answer_start``: one misplaced reference (a
    converter's offset slip) drops that answer, listed in ``dropped`` with its place, not the question; a question
    none of whose answers is where it says is rejected."""
    frame = frame.copy()
    places = frame[WHERE] if WHERE in frame.columns else pd.Series([f"row {i + 1}" for i in range(len(frame))],
                                                                    index=frame.index)
    if len(frame):
        answers = [_without_empty_answers(t, s) for t, s in zip(frame[ANSWER_TEXTS], frame[ANSWER_STARTS])]
        texts, starts = [a[0] for a in answers], [a[1] for a in answers]
        for i, (context, place) in enumerate(zip(frame[CONTEXT], places)):
            found = _at_their_starts(context, texts[i], starts[i])
            if found and len(found) < len(texts[i]):
                if dropped is not None:
                    dropped += [{"source": where, "row": f"{place} (answer {j + 1} of {len(texts[i])})",
                                 "reason": "answer not at its answer_start in the context"}
                                for j in range(len(texts[i])) if j not in found]
                texts[i], starts[i] = [texts[i][j] for j in found], [starts[i][j] for j in found]
        frame[ANSWER_TEXTS], frame[ANSWER_STARTS] = texts, starts
    reasons = []
    for question, context, texts, starts in zip(frame[QUESTION], frame[CONTEXT], frame[ANSWER_TEXTS],
                                                frame[ANSWER_STARTS]):
        if absent(question) or (isinstance(question, str) and not question.strip()):
            reasons.append("empty question")
        elif not isinstance(question, str):
            reasons.append(f"the question is {_json_kind(question)}, not text")
        elif absent(context) or (isinstance(context, str) and not context.strip()):
            reasons.append("empty context")
        elif not isinstance(context, str):
            reasons.append(f"the context is {_json_kind(context)}, not text")
        elif len(question) + len(context) > MAX_CHARACTERS:  # the served model would refuse it, the gate too
            reasons.append(f"question and context longer than {MAX_CHARACTERS:,} characters, more than the served "
                           "model takes in a request")
        elif len(texts) == 0 or len(texts) != len(starts):
            reasons.append("no answer")
        elif not all(isinstance(t, str) for t in texts):
            reasons.append("an answer text is not text")
        elif len(_at_their_starts(context, texts, starts)) < len(texts):  # left after clean: none where it says
            reasons.append("answer not at its answer_start in the context")
        else:
            reasons.append("")
    reasons = pd.Series(reasons, index=frame.index)
    bad = reasons != ""
    rejected = [{"source": where, "row": place, "reason": r} for place, r in zip(places[bad], reasons[bad])]
    return frame.loc[~bad].drop(columns=[WHERE], errors="ignore").reset_index(drop=True), rejected


def articles(pool: pd.DataFrame) -> pd.Series:
    """Each row's article: its ``title``, with every title that shares a context with it. Rows titled one per row
    (a CSV export's row id) would otherwise put one passage's questions in train and in test: 35 of 73 test
    contexts were training contexts, and the report said no article was shared. An article is named by its first
    title in sorted order, so data whose titles own their contexts (SQuAD) is carved exactly as by title."""
    parent: dict = {}

    def find(node):
        while parent.setdefault(node, node) != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for title, context in zip(pool[TITLE].astype(str), pool[CONTEXT].astype(str)):
        a, b = find(("t", title)), find(("c", context))
        if a != b:
            parent[max(a, b)] = min(a, b)  # ("c", ...) < ("t", ...): a context's root is found through its titles
    roots = {title: find(("t", title)) for title in pool[TITLE].astype(str).unique()}
    names: dict = {}
    for title in sorted(roots):
        names.setdefault(roots[title], title)
    return pool[TITLE].astype(str).map(lambda title: names[roots[title]])


def split_by_article(pool: pd.DataFrame, fraction: float, seed: int, split: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(taken, rest)``: about ``fraction`` of the pool's articles (at least one, never all), seeded. An article is
    a title with every title that shares a context with it (``articles``), so no passage is in two splits."""
    article = articles(pool)
    titles = sorted(article.unique())
    if len(titles) < 2:
        raise DataError(f"data: split {split!r} is carved by article (the rows' title field, with the titles that "
                        f"share a passage), and the training rows have {len(titles)} article(s); give the rows "
                        f"titles that tell their passages apart, more articles, or a {split} file in data.files")
    count = min(len(titles) - 1, max(1, int(math.floor(fraction * len(titles) + 0.5))))
    chosen = set(np.random.default_rng(seed).permutation(titles)[:count])
    mask = article.isin(chosen)
    return pool[mask], pool[~mask]


def prepare_splits(params: Params) -> tuple[dict[str, pd.DataFrame], list[dict], dict]:
    """Read, clean, de-duplicate and split by article: ``(splits, rejected rows, report)``."""
    cfg = params.data
    frames, description = read_frames(params)
    cleaned, rejected, slipped = {}, [], []
    for split, frame in frames.items():
        cleaned[split], bad = clean(frame, split_source(description, cfg.files, split), slipped)
        rejected += bad
    if (rejected or slipped) and cfg.on_bad_rows == "fail":
        first = (rejected or slipped)[0]
        raise DataError(f"{first['source']} {first['row']}: {first['reason']} "
                        f"({len(rejected)} bad row(s) and {len(slipped)} misplaced answer(s) of kept questions in "
                        "all; data.on_bad_rows is fail)")
    check_training_rows_left(cleaned, rejected, {s: split_source(description, cfg.files, s) for s in cleaned})
    check_rejected_share(rejected, sum(len(f) for f in frames.values()), cfg.max_rejected_fraction, description,
                         "SQuAD 2.0's unanswerable questions are 'no answer'")
    unanswered = sum(row["reason"] == "no answer" for row in rejected)
    if unanswered:  # a SQuAD 2.0 file loses its unanswerable third under a reason that does not say why
        import sys

        print(f"prepare: note: {unanswered:,} question(s) have no answer (SQuAD 2.0's unanswerable questions, "
              "is_impossible, are such): extractive QA here always answers with a span of the context, so they are "
              "rejected (rejected.csv), and the served model answers every question it is sent",
              file=sys.stderr, flush=True)
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
        "rejected_by_reason": by_reason(rejected),
        # gold answers left out of a question that keeps others: where they are, the first few
        "answers_dropped": {"count": len(slipped), "first": [f"{d['source']} {d['row']}" for d in slipped[:5]]},
        "duplicates_dropped": {str(k): int(v) for k, v in dropped.items()},
        "repeated_ids_renumbered": renumbered,
        "rows": {s: int(len(splits[s])) for s in SPLITS},
        "articles": {s: int(splits[s][TITLE].nunique()) for s in SPLITS},
        "articles_in_train_and_another_split": sorted(shared),
        # passages asked about in train and in an evaluation split (files given apart may share some)
        "contexts_in_train_and_another_split": len(set(splits["train"][CONTEXT]) & (
            set(splits["validation"][CONTEXT]) | set(splits["test"][CONTEXT]))),
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
