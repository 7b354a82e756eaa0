"""The ``prepare`` stage: read the source, check rows through the task type, drop duplicates, split, write Parquet.

Outputs (``data/prepared/``): ``{train,validation,test}.parquet`` in the task type's columns (text classification:
``text`` (, ``text_pair``), ``label`` as an int id); ``transfer.parquet`` (unlabelled inputs, maybe empty);
``labels.json``; ``data_report.json``; ``rejected.csv`` (every dropped row and why).
"""
from __future__ import annotations

from pathlib import Path
from typing import Union

import numpy as np
import pandas as pd

from distillery.config import SPLITS, DataConfig, Params
from distillery.errors import DataError
from distillery.files import atomic_dir, write_json
from distillery.paths import PREPARED_DIR
from distillery.prepared import LABEL, match_keys, stratified_positions
from distillery.rejected_rows import (by_reason, check_rejected_share, drop_unkept_labels, main_reason,
                                     unknown_labels, warn_conflicting_labels)
from distillery.sources import check_training_rows_left, read_source, split_source
from distillery.task_types.parts import task_rows
from distillery.transfer_set import transfer_texts


def _sample(frame: pd.DataFrame, size: int, seed: int, stratify: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split ``frame`` into (``size`` rows, the rest), stratified by label where possible."""
    if size >= len(frame):
        return frame, frame.iloc[:0]
    if size <= 0:
        return frame.iloc[:0], frame
    if not stratify:
        from sklearn.model_selection import train_test_split  # on use: importing the stage stays fast

        return tuple(train_test_split(frame, train_size=size, random_state=seed))
    kept, rest = stratified_positions(frame[LABEL].to_numpy(), size, seed)
    return frame.iloc[kept], frame.iloc[rest]


def split_frames(frames: dict, cfg: DataConfig, seed: int) -> dict:
    """Carve the splits the source lacks out of its training rows, stratified and seeded."""
    pool = frames.get("all", frames.get("train"))
    if pool is None:
        raise DataError(f"data: the source has no train split; it has {sorted(frames)}")
    result = {s: frames[s] for s in SPLITS if s in frames}
    missing = [s for s in ("test", "validation") if s not in result]
    remaining_fraction = sum(cfg.split_fractions.get(s, 0) for s in ["train", *missing])
    for split in missing:
        fraction = cfg.split_fractions.get(split, 0) / remaining_fraction
        remaining_fraction -= cfg.split_fractions.get(split, 0)
        taken, pool = _sample(pool, int(round(fraction * len(pool))), seed)
        result[split] = taken
    result["train"] = pool
    for split in SPLITS:
        if len(result[split]) == 0:
            raise DataError(f"data: split {split!r} is empty after cleaning and splitting; "
                            "add rows or raise data.split_fractions")
    return result


def _drop_near_copies(splits: dict, transfer: pd.DataFrame, columns: list[str], mode: str) -> tuple[dict, dict]:
    """Drop every row that matches a row of a more held-out split, by ``data.leak_check``: from validation
    the copies of test rows, from train those of test or validation rows, from the transfer set those of any
    labelled row. Exact copies are gone already; ``normalised`` also catches texts that differ only in case,
    Unicode form or spacing, which an uncased model reads as the same input. Returns the splits (with
    ``transfer``) and the count dropped from each."""
    if mode == "exact":
        return {**splits, "transfer": transfer}, {}
    out, dropped, held = {}, {}, None  # held: the keys of the rows kept so far, each split's computed once
    for split, frame in (("test", splits["test"]), ("validation", splits["validation"]), ("train", splits["train"]),
                         ("transfer", transfer)):
        keys = match_keys(frame, columns, mode).set_index(list(columns)).index
        copies = np.zeros(len(frame), dtype=bool) if held is None else np.asarray(keys.isin(held), dtype=bool)
        out[split] = frame[~copies]
        if copies.any():
            dropped[split] = int(copies.sum())
        held = keys[~copies] if held is None else held.append(keys[~copies])
    return out, dropped


def _given_splits(read: dict) -> set:
    """The splits the data gave as they are (``data.files``, a source's own splits), which ``data.split_fractions``
    does not size: not one carved from the rows, nor train when another split is carved from it."""
    given = set(read) - {"all"}
    return given if given >= set(SPLITS) else given - {"train"}


def note_unread_source(cfg: DataConfig) -> None:
    """``data.files`` wins over ``data.source``; say so when the source names something else than the default
    or one of the files (it was read without a word, and the named source silently ignored)."""
    default = DataConfig().source
    if cfg.files and cfg.source != default and cfg.source not in cfg.files.values():
        print(f"prepare: note: data.files is set, so data.source = {cfg.source} is not read; the splits come from "
              + ", ".join(f"{split}: {path}" for split, path in cfg.files.items()))


def prepare(params: Params, out_dir: Union[str, Path] = PREPARED_DIR) -> dict:
    """Run the whole stage; return the data report.

    A task type whose rows module has ``prepare_splits(params) -> (splits, rejected, report)`` reads,
    checks and splits its rows itself (extractive QA splits by article; ``splits`` may hold a ``transfer``
    frame); otherwise the rows are read
    (by the rows module's ``read(data config)`` when it has one, e.g. images) and split here, stratified
    by label, through the rows module's checks; its ``describe(splits)``, if any, adds to the report."""
    rows = task_rows(params.task)
    note_unread_source(params.data)
    if hasattr(rows, "prepare_splits"):
        splits, rejected, report = rows.prepare_splits(params)
        transfer = splits.pop("transfer", None)
        if transfer is None:
            transfer = pd.DataFrame({c: pd.Series(dtype=str) for c in rows.key_columns(params.data)})
        _write(out_dir, splits, transfer, report["labels"], report, rejected, params.seed)
        return report
    cfg = params.data
    if hasattr(rows, "read"):  # a task type with its own sources (images), the same splitting and checks
        frames, declared, description = rows.read(cfg)
    else:
        frames, declared, description = read_source(cfg.source, cfg.files, cfg.hub_config, cfg.label_column,
                                                    cfg.encoding_errors)
    if "all" not in frames and not cfg.files:  # a source with its own splits, e.g. a Hub dataset
        missing = [theirs for theirs in cfg.splits.values() if theirs and theirs not in frames]
        if cfg.splits.get("train") in missing:
            raise DataError(f"data.splits.train: {description} has no split {cfg.splits['train']!r}; "
                            f"it has {sorted(frames)}")
        frames = {ours: frames[theirs] for ours, theirs in cfg.splits.items() if theirs in frames}
    where = {split: split_source(description, cfg.files, split) for split in frames}
    for split, frame in frames.items():
        rows.check_columns(frame, cfg, where[split])
    names = rows.label_names(frames, cfg, declared)
    if declared is None and hasattr(rows, "check_number_spellings"):  # a Hub ClassLabel's integers index its names
        rows.check_number_spellings(frames, cfg, where)
    if len(names) < 2:
        if not any(len(frame) for frame in frames.values()):  # it said "found 0 label value(s) []"
            raise DataError(f"{description}: no data rows (an empty file, or a header alone)")
        lists = sum(int(rows.not_scalar(f[cfg.label_column]).sum()) for f in frames.values()) \
            if hasattr(rows, "not_scalar") else 0
        raise DataError(f"{description}: found {len(names)} label value(s) {names} in data.label_column "
                        f"{cfg.label_column!r}; classification needs two or more"
                        + (f" ({lists} rows hold a list or object, not one label: multi-label data is not a task "
                           "Distillery trains; give each row one label)" if lists else ""))
    cleaned, rejected, unlabelled_splits = {}, [], []
    for split, frame in frames.items():
        cleaned[split], bad = rows.clean(frame, cfg, names, declared, where[split])
        if split not in ("train", "all") and len(cleaned[split]) == 0 and bad and \
                all(r["reason"] == "missing label" for r in bad):
            # e.g. GLUE's test splits: published without labels. Carve a test split from train instead.
            del cleaned[split]
            unlabelled_splits.append(split)
            continue
        rejected += bad
    if rejected and cfg.on_bad_rows == "fail":
        first = rejected[0]
        counted = isinstance(first["row"], int)  # else a file of an image folder
        raise DataError(f"{first['source']} {'row ' if counted else ''}{first['row']}: {first['reason']} "
                        f"({len(rejected)} bad row(s) in all"
                        f"{', rows counted from 1 after any header line' if counted else ''}; data.on_bad_rows is fail)")
    check_training_rows_left(cleaned, rejected, where)
    check_rejected_share(rejected, sum(len(f) for f in frames.values()), getattr(cfg, "max_rejected_fraction", 1.0),
                         description)
    # Drop duplicate texts; an evaluation split keeps its copy so no test text is trained on.
    key = rows.key_columns(cfg)
    order = [s for s in ("test", "validation", "train", "all") if s in cleaned]
    stacked = pd.concat([cleaned[s].assign(_split=s) for s in order], ignore_index=True)
    duplicated = stacked.duplicated(key, keep="first")
    warn_conflicting_labels(stacked, key, names, where)
    duplicates_dropped = stacked.loc[duplicated, "_split"].value_counts().to_dict()
    _check_split_not_a_copy(stacked, duplicated, key, order, where)
    deduped = {s: g.drop(columns="_split") for s, g in stacked[~duplicated].groupby("_split", sort=False)}
    deduped, names = drop_unkept_labels(deduped, names, inferred=cfg.labels is None and declared is None)
    splits = split_frames(deduped, cfg, params.seed)
    leftover = splits["train"].iloc[:0]
    capped = {}  # split -> its rows per label before data.max_samples, where the cap took rows away
    for split in SPLITS:
        cap = cfg.max_samples.get(split)
        if cap is not None:
            if cap < len(splits[split]):
                capped[split] = splits[split][LABEL].value_counts().to_dict()
            splits[split], rest = _sample(splits[split], cap, params.seed)
            if split == "train":
                leftover = rest
    transfer, transfer_rows = transfer_texts(params, splits, leftover)
    splits, near_copies = _drop_near_copies(splits, transfer, rows.key_columns(cfg), cfg.leak_check)
    transfer = splits.pop("transfer").reset_index(drop=True)
    rows.check_classes(splits, names, getattr(cfg, "min_rows_per_class", 1), description,
                       class_rows=pd.concat([f[LABEL] for f in deduped.values()]).value_counts().to_dict(),
                       capped=capped, unknown=unknown_labels(rejected), given=_given_splits(deduped))

    report = {
        "source": description,
        "labels": names,
        "rows_read": {s: int(len(f)) for s, f in frames.items()},
        "unlabelled_source_splits_replaced": unlabelled_splits,
        "rows_rejected": len(rejected),
        "rejected_by_reason": by_reason(rejected),
        "duplicates_dropped": {str(k): int(v) for k, v in duplicates_dropped.items()},
        "near_copies_dropped": near_copies,  # data.leak_check
        "rows": {s: int(len(f)) for s, f in splits.items()},
        # rows data.max_samples left out of each split it capped (train's may join the transfer set)
        "rows_over_cap": {s: int(sum(counts.values())) - cfg.max_samples[s] for s, counts in capped.items()},
        "transfer_rows": int(len(transfer)),
        # the transfer source's rows and those left out before the near-copy check (near_copies_dropped)
        "transfer_source_rows": transfer_rows,
        "class_counts": {s: {names[i]: int(n) for i, n in f[LABEL].value_counts().sort_index().items()}
                         for s, f in splits.items()},
    }
    if hasattr(rows, "describe"):  # what the task type adds, e.g. the images' shape and pixel statistics
        report.update(rows.describe(splits, cfg))
    _write(out_dir, splits, transfer, names, report, rejected, params.seed)
    return report


def _check_split_not_a_copy(stacked: pd.DataFrame, duplicated: pd.Series, key: list, order: list,
                            where: dict) -> None:
    """A split whose every row is also in a more held-out split (the test file given as validation too, or as
    train) would vanish into "duplicates dropped", and a validation split be carved from train in its place."""
    for position, split in enumerate(order):
        mine = stacked["_split"] == split
        if not mine.any() or not duplicated[mine].all():
            continue
        keys = stacked.loc[mine, key].apply(tuple, axis=1)
        overlap = {other: int(keys.isin(set(stacked.loc[stacked["_split"] == other, key].apply(tuple, axis=1))).sum())
                   for other in order[:position]}
        other = max(overlap, key=overlap.get)
        raise DataError(f"{where.get(split, split)}: every one of its {int(mine.sum())} rows is also in the {other} "
                        f"split ({where.get(other, other)}), which keeps them: the same file given for two splits? "
                        f"Give the {split} split its own rows")


def _write(out_dir: Union[str, Path], splits: dict, transfer: pd.DataFrame, names: list, report: dict,
           rejected: list[dict], seed: int) -> None:
    with atomic_dir(out_dir) as scratch:
        for split, frame in splits.items():
            frame.drop(columns="_row", errors="ignore").sample(frac=1.0, random_state=seed).reset_index(drop=True) \
                .to_parquet(scratch / f"{split}.parquet", index=False)
        transfer.to_parquet(scratch / "transfer.parquet", index=False)
        write_json(scratch / "labels.json", {"names": names, "id2label": dict(enumerate(names)),
                                             "label2id": {n: i for i, n in enumerate(names)}})
        write_json(scratch / "data_report.json", report)
        pd.DataFrame(rejected, columns=["source", "row", "reason"]).to_csv(scratch / "rejected.csv", index=False)


def summary(report: dict) -> str:
    """One line per split: row count and class balance, for the CLI."""
    articles = report.get("articles", {})  # a task without classes (extractive QA): rows and articles per split
    lines = [] if "class_counts" in report else [
        f"{split:>10}: {n:>6} rows" + (f" ({articles[split]} articles)" if split in articles else "")
        for split, n in report["rows"].items()]
    for split, counts in report.get("class_counts", {}).items():
        total = sum(counts.values()) or 1
        balance = ", ".join(f"{k} {v / total:.0%}" for k, v in counts.items())
        over = (report.get("rows_over_cap") or {}).get(split)  # a file of the user's own cut short: say so
        lines.append(f"{split:>10}: {report['rows'][split]:>6} rows ({balance})" +
                     (f", capped by data.max_samples.{split} ({over:,} more)" if over else ""))
    lines.append(f"{'transfer':>10}: {report['transfer_rows']:>6} unlabelled rows")
    reasons = report.get("rejected_by_reason") or {}
    near = sum((report.get("near_copies_dropped") or {}).values())
    return "\n".join(lines) + f"\nrejected {report['rows_rejected']}" + \
        (f" ({main_reason(reasons)}; every one in rejected.csv)" if reasons and report["rows_rejected"] else "") + \
        f", duplicates dropped {sum(report['duplicates_dropped'].values())}" + \
        (f", near copies dropped {near} (data.leak_check)" if near else "") + \
        (f"; {dropped['count']} misplaced gold answer(s) left out of questions that keep others (first: "
         f"{dropped['first'][0]}; data_report.json lists {len(dropped['first'])})"
         if (dropped := report.get("answers_dropped") or {}).get("count") else "")


def tracked_inputs(params: Params) -> dict:
    """Local data this stage reads, by params key: each must be a dvc.yaml dependency of the stage."""
    cfg, transfer = params.data, params.distill.transfer_set
    inputs = {"data.source": None if cfg.files else cfg.source, "distill.transfer_set.source": transfer.source}
    inputs.update({f"data.files.{split}": path for split, path in cfg.files.items()})
    return inputs
