"""A registered version's files and identity: scoring it with this Distillery's serving code (never the code file
the registry holds), and the rollback guard a new version of the same weights inherits."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from distillery.registry.client import ROLLED_BACK, TAG
from distillery.tracking import quiet_mlflow


def champion_figures(name: str, version, test: pd.DataFrame, labels: list[str], test_sha: str, serving,
                     scratch: Path) -> dict:
    """The champion's metrics on the current test split: its recorded ones if the split is the same, else
    re-scored on its served model's files through THIS Distillery's serving code (``serving``: the task type's
    serving part, whose ``score(predict, frame, labels)`` it uses). The registry's own copy of the code is never
    run: whoever can write to the registry or its artifact store would otherwise run code, with this machine's
    credentials, in every later registration."""
    tags = version.tags
    if tags.get(TAG + "test_sha256") == test_sha and TAG + "test_accuracy" in tags:
        return {"version": str(version.version), "accuracy": float(tags[TAG + "test_accuracy"]),
                "macro_f1": float(tags[TAG + "test_macro_f1"]), "rescored": False}
    model = model_on_own_code(name, str(version.version), serving, scratch)
    with quiet_mlflow():
        figures = serving.score(lambda frame: model.predict(None, frame), test, labels)
    return {"version": str(version.version), **figures, "rescored": True}


def model_on_own_code(name: str, version: str, serving, scratch: Path):
    """Version ``version``'s served model: its files (ONNX, tokenizer, settings), fetched into ``scratch``, loaded
    by this Distillery's class for the task type. Its code file must be that class's file by name (a version of
    another task type, or not made by Distillery, is refused); files that are code (QA's ``postprocess``) are
    this Distillery's too."""
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
    return serving.load_code_model({**artifacts, **getattr(serving, "CODE_ARTIFACTS", {})})


def guard_of_same_weights(known: list, weights: list[str]) -> dict:
    """The rollback guard of a version with the same weights (``weights``: their identity, then the hashes older
    Distillery versions recorded for them), for a new version of that model: rolled back by hand, it stays down
    when newer code serves it."""
    for version in known:
        same = version.tags.get(TAG + "weights_sha256") == weights[0] or \
            (TAG + "weights_sha256" not in version.tags and version.tags.get(TAG + "model_sha256") in weights[1:])
        if same and ROLLED_BACK in version.tags:
            return {ROLLED_BACK: version.tags[ROLLED_BACK]}
    return {}
