"""A registered version's files and identity: scoring it with this Distillery's serving code (never the code file
the registry holds), and the rollback guard a new version of the same weights inherits."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from distillery.prepared import LABEL
from distillery.registry.client import INPUT_SPEC_TAG, ROLLED_BACK, TAG
from distillery.tracking import quiet_mlflow


def stamp() -> str:
    """Now, for the rollback and promotion tags: UTC to the microsecond, with its offset
    (``2026-12-05T11:58:03.123456+00:00``), so that teammates in other time zones order their actions alike."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def stamp_seconds(value: str) -> float:
    """A tag's stamp as seconds since the epoch, to order stamps by: one with an offset as written; one without
    (written in local time by Distillery before 2026-12-05) as this machine's local time, the best reading there
    is; no stamp or an unreadable one, before any other."""
    try:
        when = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return float("-inf")
    return (when if when.tzinfo else when.astimezone()).timestamp()


def champion_figures(name: str, version, test: pd.DataFrame, labels: list[str], test_sha: str, serving,
                     scratch: Path) -> dict:
    """The champion's metrics on the current test split: its recorded ones if the split is the same, else
    re-scored on its served model's files through THIS Distillery's serving code (``serving``: the task type's
    serving part, whose ``score(predict, frame, labels)`` it uses). The registry's own copy of the code is never
    run: whoever can write to the registry or its artifact store would otherwise run code, with this machine's
    credentials, in every later registration."""
    tags, metrics = version.tags, serving.METRICS  # the task's figures: accuracy and macro-F1, or QA's F1 and EM
    if tags.get(TAG + "test_sha256") == test_sha and all(TAG + f"test_{m}" in tags for m in metrics):
        return {"version": str(version.version), **{m: float(tags[TAG + f"test_{m}"]) for m in metrics},
                "rescored": False}
    model = model_on_own_code(name, str(version.version), serving, scratch)
    with quiet_mlflow():
        figures = serving.score(lambda frame: model.predict(None, frame), test, labels)
    return {"version": str(version.version), **figures, "rescored": True}


def model_on_own_code(name: str, version: str, serving, scratch: Path):
    """Version ``version``'s served model: its files (:func:`served_files`), loaded by this Distillery's class for
    the task type."""
    return serving.load_code_model(served_files(name, version, serving, scratch))


def served_files(name: str, version: str, serving, scratch: Path) -> dict[str, str]:
    """Version ``version``'s served files (ONNX, tokenizer, settings), fetched into ``scratch``, by artifact name.
    Its code file must be the task type's class's file by name (a version of another task type, or not made by
    Distillery, is refused); files that are code (QA's ``postprocess``) are this Distillery's."""
    import mlflow
    import yaml

    target = Path(scratch) / f"version-{version}"
    target.mkdir(parents=True, exist_ok=True)
    with quiet_mlflow():
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}", dst_path=str(target)))
    flavor = (yaml.safe_load((local / "MLmodel").read_text(encoding="utf-8")) or {}).get("flavors", {}).get(
        "python_function") or {}
    code = Path(str(flavor.get("model_code_path") or "")).name
    if code != serving.MODEL_CODE.name:
        raise ValueError(f"its served code is {code or 'not a code file'}, not Distillery's {serving.MODEL_CODE.name}"
                         " for this task")
    artifacts = {key: str(local / item["path"]) for key, item in (flavor.get("artifacts") or {}).items()}
    missing = [key for key, path in artifacts.items() if not Path(path).is_file()]
    if missing:
        raise FileNotFoundError(f"its {missing[0]} file is missing")
    return {**artifacts, **getattr(serving, "CODE_ARTIFACTS", {})}


def version_input_spec(version, name: str, serving, scratch: Path) -> Optional[dict]:
    """What a version's served model takes beyond its input columns (an image model's shape, pixel range and
    resizing: ``serving.input_spec``): its ``distillery.input_spec`` tag, else read from its files; None for a
    task whose requests are their columns alone."""
    if not hasattr(serving, "input_spec"):
        return None
    recorded = version.tags.get(INPUT_SPEC_TAG)
    if recorded:
        return json.loads(recorded)
    return serving.input_spec(served_files(name, str(version.version), serving, scratch))


def same_weights(version, weights: list[str]) -> bool:
    """Whether ``version`` holds the weights whose identity, then older hashes, ``weights`` lists: by its weights
    tag, or, registered before that tag, by the hash an older Distillery recorded for its files."""
    tags = version.tags
    if TAG + "weights_sha256" in tags:
        return tags[TAG + "weights_sha256"] == weights[0]
    return tags.get(TAG + "model_sha256") in weights


def version_weights(version) -> list[str]:
    """The weights identity of a registered version as its tags tell it (``weights`` for :func:`same_weights`):
    its weights tag, or, registered before that tag, its served files' hash."""
    tags = version.tags
    return [tags.get(TAG + "weights_sha256", ""), *([] if TAG + "weights_sha256" in tags else
                                                     [tags.get(TAG + "model_sha256", "")])]


def weights_rolled_back(known: list, weights: list[str], version: Optional[str] = None) -> Optional[str]:
    """When these weights were last rolled back by hand, unless a manual promotion of any version of them came after
    (None then, or if never): the guard belongs to the model, not to the version that carried it, so a version of
    the same weights served by newer code, registered before or after the rollback, stays down as well (and
    ``version``, which holds them, whatever its tags)."""
    family = [v for v in known if same_weights(v, weights) or str(v.version) == str(version)]
    rolled = max((v.tags[ROLLED_BACK] for v in family if ROLLED_BACK in v.tags), default=None, key=stamp_seconds)
    promoted = max((v.tags.get(TAG + "promoted_at", "") for v in family if v.tags.get(TAG + "promoted") == "manual"),
                   default="", key=stamp_seconds)
    # ordered as instants, not as text (teammates' stamps carry their offsets); a rollback and a promotion stamped
    # alike count as the rollback last (the champion stays; a promotion by hand again settles it)
    return rolled if rolled is not None and stamp_seconds(rolled) >= stamp_seconds(promoted) else None


def with_paired_rows(before: Optional[dict], candidate_rows: dict, gate, rescore) -> Optional[dict]:
    """The champion's figures (``before``) without per-row lists, and with ``paired`` when the comparison rests on
    fewer than ``gate.min_compare_rows`` test rows: on how many of those rows the candidate does better and worse
    than the champion (``candidate_rows``: the candidate's per-row figures on the whole split; ``rescore()``: the
    champion's on it, when its figures were read from its tags). With so few rows the gate asks for a clear win."""
    if before is None or "error" in before:
        return before
    theirs = before.pop("per_row", None)
    same_rows = before.get("candidate")
    ours = same_rows.pop("per_row", None) if same_rows else candidate_rows
    rows = before.get("rows") or {}
    compared = rows.get("test_rows", 0) - rows.get("left_out", 0)
    if rows and compared < (gate.min_compare_rows or 0) and not before.get("same_weights") and ours:
        if theirs is None:  # read from its tags: scored now, on the rows compared, and its means with it
            fresh = rescore()
            theirs = fresh.pop("per_row", None)
            before.update(fresh)
        key = gate.metric if gate.metric in ours and gate.metric in (theirs or {}) else next(iter(ours))
        if theirs and len(theirs[key]) == len(ours[key]):
            a, b = np.asarray(ours[key], dtype=float), np.asarray(theirs[key], dtype=float)
            before["paired"] = {"better": int((a > b).sum()), "worse": int((a < b).sum()), "metric": key}
    return before


def one_label_figures(serving, test: pd.DataFrame, labels: list) -> Optional[dict]:
    """The figures of answering the test split's most frequent label for every row, scored as the candidate is
    (``serving.score``): the floor of the gate's ``above_one_label`` check. None for a task that is not
    classification (QA)."""
    if tuple(serving.METRICS) != ("accuracy", "macro_f1") or LABEL not in test.columns or not len(test):
        return None
    most = labels[int(test[LABEL].value_counts().idxmax())]
    figures = serving.score(lambda frame: pd.DataFrame({"label": [most] * len(frame)}), test, labels)
    figures.pop("per_row", None)
    return {"label": most, **figures}


def passed_over(current, known: list, version: str, weights: list[str]) -> Optional[dict]:
    """``{"version", "at", "reason"}`` when the champion ``current`` was promoted by hand after ``version`` (one of
    ``known``, of ``weights``) was registered: a person chose the champion over it, and re-gating it (a
    ``register`` re-run with only a gate setting changed, or after a refresh of the same model) must not undo
    that. Else None, and for the champion's own weights (under other serving code: they were the person's choice)."""
    if current is None or str(current.version) == str(version) or current.tags.get(TAG + "promoted") != "manual" \
            or same_weights(current, weights):
        return None
    mine = next((v for v in known if str(v.version) == str(version)), None)
    at = current.tags.get(TAG + "promoted_at", "")
    if mine is None or stamp_seconds(at) <= mine.creation_timestamp / 1000:
        return None
    return {"version": str(current.version), "at": at, "reason": current.tags.get(TAG + "promotion_reason")}
