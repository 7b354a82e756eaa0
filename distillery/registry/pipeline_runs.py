"""The register stage's MLflow runs: a nested run per trained model, ``reports/`` as artifacts, and whether an
earlier pipeline run recorded a stage's DVC hash (``distillery/stages/register.py`` uses them)."""
from __future__ import annotations

from pathlib import Path

from distillery.config import Params, train_settings
from distillery.paths import REPORTS_DIR
from distillery.registry.client import TAG, run_tags
from distillery.run_records import log_curves, log_metrics, log_params, numeric_leaves
from distillery.tracking import MODELS

REGISTER_JSON = REPORTS_DIR / "metrics" / "register.json"
MODEL_CARD = REPORTS_DIR / "model_card.md"


def seen_before(client, exp_id: str, key: str, digest: str, kind: str) -> bool:
    """Whether an earlier pipeline run of the experiment recorded ``key`` (``dvc.stage.<stage>``) = ``digest``."""
    runs = client.search_runs([exp_id], filter_string=f"tags.`{TAG}kind` = '{kind}' and "
                                                      f"tags.`{key}` = '{digest}'", max_results=1)
    return bool(runs)


def log_reports(root: Path, *own_outputs: Path) -> None:
    """``reports/`` as artifacts, without the register stage's own outputs (``own_outputs``) from an earlier
    execution."""
    import mlflow

    own = {(root / path).resolve() for path in own_outputs}
    for path in sorted((root / REPORTS_DIR).rglob("*")):
        if path.is_file() and path.resolve() not in own:
            mlflow.log_artifact(str(path), str(Path("reports") / path.parent.relative_to(root / REPORTS_DIR)))


def nested_runs(client, exp_id: str, parent_id: str, params: Params, evaluation: dict, status: dict,
                 root: Path) -> dict[str, str]:
    """One nested run per trained model, with its Trainer curves and test metrics."""
    import mlflow

    students = train_settings(params, "distill")  # the distilled student and its baseline train alike
    train_cfg = {"teacher": train_settings(params, "teacher"), "student": students, "baseline": students}
    children = {}
    for model, stage in MODELS.items():
        state = status.get(stage, "ran")
        tags = {**run_tags(params.register.model_name), TAG + "kind": "model", TAG + "model": model,
                TAG + "stage": stage, TAG + "cached": str(state == "cached").lower(), "mlflow.parentRunId": parent_id}
        with mlflow.start_run(experiment_id=exp_id, run_name=model, nested=True, tags=tags) as child:
            log_params(client, child.info.run_id, {f"train.{k}": v for k, v in vars(train_cfg[model]).items()})
            log_curves(client, child.info.run_id, model, root)
            log_metrics(client, child.info.run_id, best_epoch(model, root))
            if model in evaluation:
                log_metrics(client, child.info.run_id, numeric_leaves(evaluation[model], "test."))
            children[model] = child.info.run_id
    return children


def best_epoch(model: str, root: Path) -> dict[str, float]:
    """The validation figures of the epoch whose weights were kept (``best_eval_<metric>`` and ``best_epoch``), from
    the model's curves and its ``training.json``: the ``eval_*`` series end at the last epoch, which is not the saved
    model when an earlier epoch scored better. Empty when either file is missing."""
    import json
    import math

    import pandas as pd

    from distillery.paths import BASELINE_DIR, CURVES_DIR, STUDENT_DIR, TEACHER_DIR

    summary = root / {"teacher": TEACHER_DIR, "student": STUDENT_DIR, "baseline": BASELINE_DIR}[model] / "training.json"
    curves = root / CURVES_DIR / f"{model}_eval.csv"
    if not summary.is_file() or not curves.is_file():
        return {}
    best = json.loads(summary.read_text(encoding="utf-8")).get("best_validation") or {}
    rows = pd.read_csv(curves)
    for metric, value in best.items():
        if value is None or metric not in rows.columns:
            continue
        match = rows[(rows[metric] - float(value)).abs() <= 1e-9 * max(1.0, abs(float(value)))]
        if len(match):
            row = match.iloc[0]
            return {"best_epoch": float(row["epoch"]), **{f"best_eval_{key}": float(row[key]) for key in rows.columns
                                                          if key not in ("epoch", "step") and
                                                          math.isfinite(float(row[key]))}}
    return {}
