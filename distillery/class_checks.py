"""Every class in every split: the check ``prepare`` makes of text and image rows before anything is written, and
the hint its error gives (a mistyped or undeclared label, a file spelling labels apart, an id column as the labels,
a cap, a small dataset)."""
from __future__ import annotations

from typing import Optional

from distillery.errors import DataError
from distillery.prepared import LABEL


def check_classes(splits: dict, names: list[str], min_rows: int, description: str,
                  class_rows: Optional[dict] = None, capped: Optional[dict] = None,
                  unknown: Optional[dict] = None, given: Optional[set] = None) -> None:
    """Every class, in every split, has at least ``min_rows`` rows: a one-class refresh cannot train a model
    that then scores 100% on a one-class test split and wins the promotion gate.

    ``class_rows`` (label id -> rows in all the cleaned data) and ``capped`` (split -> label id -> its rows before
    ``data.max_samples`` took some away) make the hint name the cause: a class too rare to fill the splits (a
    mistyped label), or a cap that left short a class the split had enough of, rather than a small dataset.
    ``unknown`` (source -> {label as read: rows}) names labels outside the declared ones that rows were rejected for:
    a file that spells a declared class another way ("Entailment"). ``given``: the splits read as the data gave
    them (``data.files``, a source's own splits), which ``data.split_fractions`` does not size."""
    problems, short_names, cut, short_splits = [], set(), [], []
    order = ("train", "all", "validation", "test")
    for split in sorted(splits, key=lambda s: order.index(s) if s in order else len(order)):
        frame = splits[split]  # every short split is named at once: one fix, not one run per split
        counts = frame[LABEL].value_counts()
        short = [(name, int(counts.get(i, 0))) for i, name in enumerate(names) if counts.get(i, 0) < min_rows]
        if short:
            listed = ", ".join(f"{name!r} {n}" for name, n in short[:5]) + (", ..." if len(short) > 5 else "")
            problems.append(f"split {split!r} has too few rows of {len(short)} of {len(names)} classes ({listed})")
            short_names.update(name for name, _ in short)
            short_splits.append(split)
            before = (capped or {}).get(split)
            if before and any(before.get(names.index(name), 0) >= min_rows for name, _ in short):
                cut.append(split)  # the split had enough of a short class before the cap
    if not problems:
        return
    total = sum(len(frame) for frame in splits.values())
    absent = [name for i, name in enumerate(names)  # class_rows counts every cleaned row: none of it anywhere
              if name in short_names and class_rows is not None and class_rows.get(i, 0) == 0]
    # two classes that no split holds both of, each in some splits: files that spell a label apart ("5" and "five")
    ordered = sorted(splits, key=lambda s: order.index(s) if s in order else len(order))
    present = {name: {s for s in ordered if (splits[s][LABEL] == i).any()} for i, name in enumerate(names)
               if name in short_names}
    partial = {name: held for name, held in present.items() if held and len(held) < len(splits)}
    apart = {name: [s for s in ordered if s not in held] for name, held in partial.items()
             if any(other != name and not (held & theirs) for other, theirs in partial.items())}
    # a class no train row holds, before data.max_samples took its rows too (that is the cap's hint, below)
    untrained = {name: held for name, held in partial.items() if "train" in splits and "train" not in held
                 and not (capped or {}).get("train", {}).get(names.index(name), 0)}
    rare = [(name, int(class_rows.get(i, 0))) for i, name in enumerate(names)  # a class with none: the refresh
            if name in short_names and 0 < class_rows.get(i, 0) < min_rows * len(splits)] if class_rows else []
    if len(names) * 2 > total:  # a label per row or nearly: an id or text column named as the labels
        hint = (f"; the label column holds {len(names):,} distinct labels in {total:,} rows: is data.label_column "
                "the column of labels (not an id or a text)?")
    elif absent and len(absent) < len(names) - 1:  # declared, and in no row at all
        hint = ("; " + ", ".join(repr(name) for name in absent[:5]) + (" is" if len(absent) == 1 else " are")
                + " in data.labels but in no row of the data: drop " + ("it" if len(absent) == 1 else "them")
                + " from data.labels, or check the spelling against the data's labels")
    elif unknown:  # rows rejected for a label outside data.labels: one file's spelling of a declared class?
        hint = ("; rows were rejected for labels outside data.labels ("
                + "; ".join(f"{source}: " + ", ".join(f"{label} {n}" for label, n in list(counts.items())[:3])
                            for source, counts in list(unknown.items())[:3])
                + "): is a declared class spelled another way there?")
    elif apart:
        hint = ("; " + ", ".join(f"{name!r} has rows in some splits but none in {', '.join(map(repr, missing))}"
                                 for name, missing in list(apart.items())[:3])
                + ": do the split files spell their labels alike (declare data.labels to have every other spelling "
                  "rejected and named in rejected.csv)?")
    elif untrained:  # a class of the test (or validation) file only: no model can learn it
        hint = ("; " + ", ".join(f"{name!r} has rows in {', '.join(map(repr, sorted(held, key=ordered.index)))} but "
                                 "none in 'train'" for name, held in list(untrained.items())[:3])
                + ": no model learns a class it never trains on; add training rows of it, or remove its rows")
    elif rare:  # too few rows in all the data to give every split min_rows: a typo, or a class the data hardly has
        hint = ("; " + ", ".join(f"{name!r} has {n} row{'s' if n != 1 else ''} in all the data" for name, n in rare[:5])
                + f", too few for {len(splits)} splits of {min_rows} each: a mistyped label? (declared data.labels "
                "reject a label outside them, each row named in rejected.csv) or lower data.min_rows_per_class")
    elif cut:  # the rows are there, the cap took them
        hint = ("; data.max_samples caps " + ", ".join(f"{s!r} at {len(splits[s]):,} of its "
                                                       f"{sum(capped[s].values()):,} rows" for s in cut)
                + ": raise the cap (or set it to null), or lower data.min_rows_per_class")
    elif given and all(split in given for split in short_splits):  # data.split_fractions does not size them
        hint = (f"; {', '.join(map(repr, short_splits))} {'is' if len(short_splits) == 1 else 'are'} read as the data "
                "gives {} (data.files, or the source's own splits), not carved by data.split_fractions: add rows of "
                "those classes there, or lower data.min_rows_per_class".format(
                    "it" if len(short_splits) == 1 else "them"))
    elif total < 2000:
        over = sum(sum(counts.values()) - len(splits[s]) for s, counts in (capped or {}).items() if s in splits)
        hint = (f"; with {total:,} rows in all" + (f" ({over:,} more before data.max_samples)" if over > 0
                                                   else ", a small dataset") +
                ", give the smaller splits more rows (data.split_fractions) or lower data.min_rows_per_class")
    else:
        hint = ""
    raise DataError(f"{description}: {'; '.join(problems)}; data.min_rows_per_class = {min_rows}; check the "
                    "data refresh, or declare only the classes it has in data.labels" + hint)
