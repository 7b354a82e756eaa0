"""The ``register`` stage and the registry commands: track the pipeline execution in MLflow, register the
deployable student as a pyfunc, and move the ``champion`` alias only when the promotion gate passes.

Order of work, so that nothing a failure leaves behind can disturb the champion:
1. one parent run with params, metrics, reports, tags, and a nested run per trained model;
2. the student logged as a pyfunc and registered (or the identical version found again);
3. the candidate scored through the registered pyfunc, and the champion on the same test split;
4. the gate's checks, written to the version's tags and the run;
5. last, and only on a pass, the alias move. A failed candidate gets ``challenger``.
All of it runs under a lock per model name, so two registrations never interleave.
"""
from __future__ import annotations

import getpass
import os
import tempfile
import time
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from distillery.config import Params
from distillery.prepared import LABEL, PAIR, TEXT, load_labels, load_split
from distillery.errors import RegistryError
from distillery.files import read_json, sha256_files, write_json, write_text
from distillery.locking import registry_lock
from distillery.paths import ONNX_DIR, PREPARED_DIR, REPORTS_DIR, STUDENT_DIR
from distillery.tracking import (MODELS, PREFECT_FLOW_RUN_ENV, connect, dvc_lock, dvc_tags, experiment_id,
                                 git_tags, log_curves, model_card, numeric_leaves, quiet_mlflow, stage_status,
                                 unavailable_as_transient)

MODEL_CODE = Path(__file__).parent / "serving" / "text_classifier.py"
REGISTER_JSON = REPORTS_DIR / "metrics" / "register.json"
MODEL_CARD = REPORTS_DIR / "model_card.md"
TAG = "distillery."  # prefix of every tag Distillery sets on runs and model versions
PIPELINE_KIND = "pipeline"


# --- the pyfunc -----------------------------------------------------------------------------------

def pyfunc_files(root: Path, scratch: Path, labels: list[str], max_length: int, text_pair: bool) -> dict[str, str]:
    """The pyfunc's artifacts: the deployable ONNX model, ``tokenizer.json`` and ``classifier.json``."""
    import onnxruntime as ort
    from transformers import AutoTokenizer

    deployment = read_json(root / ONNX_DIR / "deployment.json", "export")
    onnx_path = root / ONNX_DIR / deployment["deployable"]
    tokenizer_dir = root / deployment.get("tokenizer", str(STUDENT_DIR))
    tokenizer_json = tokenizer_dir / "tokenizer.json"
    if not onnx_path.is_file() or not tokenizer_json.is_file():
        raise RegistryError(f"{onnx_path if not onnx_path.is_file() else tokenizer_json}: not found; run "
                            f"`dvc repro export` first (the served model needs a fast tokenizer's tokenizer.json)")
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    inputs = [i.name for i in ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"]).get_inputs()]
    config = {"labels": labels, "max_length": max_length, "input_names": inputs, "text_pair": text_pair,
              "pad_id": tokenizer.pad_token_id, "pad_token": tokenizer.pad_token,
              "pad_type_id": getattr(tokenizer, "pad_token_type_id", 0) or 0, "batch_size": 32, "threads": 0}
    write_json(scratch / "classifier.json", config)
    return {"onnx": str(onnx_path), "tokenizer": str(tokenizer_json), "config": str(scratch / "classifier.json")}


def pip_requirements() -> list[str]:
    import mlflow
    import onnxruntime
    import tokenizers

    return [f"mlflow=={mlflow.__version__}", f"onnxruntime=={onnxruntime.__version__}",
            f"tokenizers=={tokenizers.__version__}", f"numpy=={np.__version__}", f"pandas=={pd.__version__}"]


def log_pyfunc(artifacts: dict[str, str], example):
    """Log the student as a models-from-code pyfunc in the active run; return its ModelInfo."""
    import mlflow
    from mlflow.models import infer_signature

    with quiet_mlflow():
        output = _load_code_model(artifacts).predict(None, example)
        signature = infer_signature(example, output)
        return mlflow.pyfunc.log_model(name="student", python_model=str(MODEL_CODE), artifacts=artifacts,
                                       signature=signature, input_example=example,
                                       pip_requirements=pip_requirements())


def _load_code_model(artifacts: dict[str, str]):
    """The pyfunc class from its code file, loaded against local artifacts (to infer the signature)."""
    import importlib.util
    from types import SimpleNamespace

    spec = importlib.util.spec_from_file_location("_distillery_served_model", MODEL_CODE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = module.OnnxTextClassifier()
    model.load_context(SimpleNamespace(artifacts=artifacts))
    return model


def model_input(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[[TEXT, PAIR]] if PAIR in frame.columns else frame[[TEXT]]


def signature_example(frame: pd.DataFrame):
    """Input example: a list of texts (one unnamed string column), or ``text``/``text_pair`` columns for pairs."""
    head = frame.head(3)
    return head[[TEXT, PAIR]].reset_index(drop=True) if PAIR in head.columns else head[TEXT].astype(str).tolist()


def score(predict, frame: pd.DataFrame, labels: list[str]) -> dict[str, float]:
    """Accuracy and macro-F1 of a served model on ``frame``, comparing label *names*."""
    from sklearn.metrics import f1_score

    predicted = predict(model_input(frame))["label"].astype(str).to_numpy()
    truth = np.asarray([labels[i] for i in frame[LABEL].to_numpy()])
    return {"accuracy": float((predicted == truth).mean()),
            "macro_f1": float(f1_score(truth, predicted, labels=labels, average="macro", zero_division=0))}


# --- the gate -------------------------------------------------------------------------------------

def _check(name: str, passed: bool, value, threshold, detail: str) -> dict:
    return {"name": name, "passed": bool(passed), "value": value, "threshold": threshold, "detail": detail}


def gate_checks(params: Params, candidate: dict, champion: Optional[dict], is_champion: bool = False) -> list[dict]:
    """The promotion gate: retention vs the teacher, latency and size budgets, and the current champion."""
    gate = params.register.gate
    checks = []
    retention = candidate["retention"]
    checks.append(_check("retention", retention >= gate.min_retention, round(retention, 4), gate.min_retention,
                         f"{retention:.4f} of the teacher's accuracy, needs >= {gate.min_retention}"))
    p95 = candidate.get("p95_ms")
    checks.append(_check("latency", p95 is not None and p95 <= gate.max_p95_ms,
                         None if p95 is None else round(p95, 3), gate.max_p95_ms,
                         "no batch-1 benchmark figure" if p95 is None else
                         f"p95 {p95:.2f} ms at batch 1 ({candidate.get('latency_cell')}), needs <= {gate.max_p95_ms}"))
    size = candidate["size_mb"]
    checks.append(_check("size", size <= gate.max_size_mb, round(size, 3), gate.max_size_mb,
                         f"{size:.1f} MB, needs <= {gate.max_size_mb}"))
    metric = gate.metric
    if is_champion:
        checks.append(_check("champion", True, None, None, "this version is the champion"))
    elif champion is None:
        checks.append(_check("champion", True, None, None, "no champion yet"))
    elif "error" in champion:
        checks.append(_check("champion", False, None, None,
                             f"champion v{champion['version']} could not be scored on the current test split "
                             f"({champion['error']}); choose one with `distillery promote <version> --reason ...`"))
    else:
        ours, theirs = candidate[metric], champion[metric]
        checks.append(_check("champion", ours >= theirs - gate.tolerance, round(ours, 4), round(theirs, 4),
                             f"{metric} {ours:.4f} vs champion v{champion['version']} {theirs:.4f}"
                             f"{' (re-scored on the current test split)' if champion.get('rescored') else ''}"
                             f", needs >= champion - {gate.tolerance}"))
    return checks


def latency(benchmark: dict, deployable: str, max_length: int) -> tuple[Optional[float], Optional[str]]:
    """p95 at batch 1 for the deployable model: the cell at ``max_length``, else the worst batch-1 cell."""
    key = "student_onnx_int8" if deployable.endswith(".int8.onnx") else "student_onnx_fp32"
    cells = benchmark.get("models", {}).get(key, {}).get("cells", {})
    if f"b1_s{max_length}" in cells:
        return cells[f"b1_s{max_length}"]["p95_ms"], f"b1_s{max_length}"
    batch1 = {name: stats for name, stats in cells.items() if name.startswith("b1_")}
    if not batch1:
        return None, None
    name = max(batch1, key=lambda n: batch1[n]["p95_ms"])
    return batch1[name]["p95_ms"], name


# --- registry access ------------------------------------------------------------------------------

def _client():
    from mlflow import MlflowClient

    return MlflowClient()


def versions(client, name: str) -> list:
    from mlflow.exceptions import MlflowException

    try:
        found = client.search_model_versions(f"name='{name}'")
    except MlflowException as exc:
        if _not_found(exc):
            return []
        raise
    return sorted(found, key=lambda v: int(v.version))


def _not_found(exc) -> bool:
    """Only a missing model means "nothing there"; any other error must stop the registration."""
    return getattr(exc, "error_code", "") == "RESOURCE_DOES_NOT_EXIST"


def aliases(client, name: str) -> dict[str, str]:
    from mlflow.exceptions import MlflowException

    try:
        return {alias: str(version) for alias, version in client.get_registered_model(name).aliases.items()}
    except MlflowException as exc:
        if _not_found(exc):
            return {}
        raise


def _champion(client, name: str):
    version = aliases(client, name).get("champion")
    return client.get_model_version(name, version) if version else None


def champion_figures(client, name: str, version, test: pd.DataFrame, labels: list[str], test_sha: str) -> dict:
    """The champion's metrics on the current test split: its recorded ones if the split is the same, else re-scored."""
    tags = version.tags
    if tags.get(TAG + "test_sha256") == test_sha and TAG + "test_accuracy" in tags:
        return {"version": str(version.version), "accuracy": float(tags[TAG + "test_accuracy"]),
                "macro_f1": float(tags[TAG + "test_macro_f1"]), "rescored": False}
    import mlflow

    with quiet_mlflow():
        model = mlflow.pyfunc.load_model(f"models:/{name}/{version.version}")
        figures = score(model.predict, test, labels)
    return {"version": str(version.version), **figures, "rescored": True}


def _set_tags(client, name: str, version: str, tags: dict) -> None:
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, str(value))


def _record_action(experiment: str, root: Path, uri: str, action: str, tags: dict) -> str:
    """A small MLflow run per manual registry action, so promotions and rollbacks have a history."""
    import mlflow

    exp = experiment_id(experiment, root, uri)
    with mlflow.start_run(experiment_id=exp, run_name=f"{action} v{tags.get('version')}") as run:
        mlflow.set_tags({TAG + "kind": "registry-action", TAG + "action": action, TAG + "user": getpass.getuser(),
                         **{TAG + k: str(v) for k, v in tags.items()}})
    return run.info.run_id


# --- the register stage ---------------------------------------------------------------------------

def _previous_pipeline_tags(client, exp_id: str) -> Optional[dict]:
    runs = client.search_runs([exp_id], filter_string=f"tags.`{TAG}kind` = '{PIPELINE_KIND}'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0].data.tags if runs else None


def _log_params(client, run_id: str, flat: dict) -> None:
    from mlflow.entities import Param

    items = [Param(key, str(value)[:500]) for key, value in flat.items()]
    for start in range(0, len(items), 100):
        client.log_batch(run_id, params=items[start:start + 100])


def _log_metrics(client, run_id: str, metrics: dict[str, float]) -> None:
    from mlflow.entities import Metric

    stamp = int(time.time() * 1000)
    items = [Metric(key, value, stamp, 0) for key, value in metrics.items()]
    for start in range(0, len(items), 900):
        client.log_batch(run_id, metrics=items[start:start + 900])


def register(params: Params, root: Optional[Path] = None) -> dict:
    """Track this pipeline execution, register the student and apply the promotion gate."""
    import mlflow

    root = (root or Path.cwd()).resolve()
    evaluation = read_json(root / REPORTS_DIR / "metrics" / "eval.json", "evaluate")
    parity = read_json(root / REPORTS_DIR / "metrics" / "parity.json", "export")
    benchmark = read_json(root / REPORTS_DIR / "metrics" / "benchmark.json", "benchmark")
    deployment = read_json(root / ONNX_DIR / "deployment.json", "export")
    data_report_path = root / PREPARED_DIR / "data_report.json"
    data_report = read_json(data_report_path, "prepare")
    labels = load_labels(root / PREPARED_DIR)
    test = load_split("test", root / PREPARED_DIR)
    test_sha = sha256_files([root / PREPARED_DIR / "test.parquet"])
    reg = params.register
    name = reg.model_name

    uri = connect(root)
    client = _client()
    with unavailable_as_transient(uri), registry_lock(uri, name, reg.lock_timeout_s), \
            tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        exp_id = experiment_id(reg.experiment, root, uri)
        lock = dvc_lock(root)
        tags = {**git_tags(root), **dvc_tags(lock), TAG + "kind": PIPELINE_KIND}
        status = stage_status(tags, _previous_pipeline_tags(client, exp_id))
        tags.update({f"{TAG}stage.{stage}": state for stage, state in status.items()})
        if os.environ.get(PREFECT_FLOW_RUN_ENV):
            tags["prefect.flow_run_id"] = os.environ[PREFECT_FLOW_RUN_ENV]
        artifacts = pyfunc_files(root, scratch, labels, params.student.max_length, PAIR in test.columns)
        model_sha = sha256_files([artifacts["onnx"], artifacts["tokenizer"], artifacts["config"]])

        with mlflow.start_run(experiment_id=exp_id, run_name=f"pipeline {time.strftime('%Y-%m-%d %H:%M:%S')}") as run:
            run_id = run.info.run_id
            mlflow.set_tags(tags)
            _log_params(client, run_id, params.flat())
            _log_metrics(client, run_id, {**numeric_leaves(evaluation, "eval."), **numeric_leaves(parity, "parity."),
                                          **numeric_leaves(benchmark, "benchmark.")})
            children = _nested_runs(client, exp_id, run_id, params, evaluation, status, root)
            _log_reports(root)
            mlflow.log_artifact(str(data_report_path), "data")

            existing = [v for v in versions(client, name) if v.tags.get(TAG + "model_sha256") == model_sha]
            if existing:
                version = str(existing[-1].version)
            else:
                info = log_pyfunc(artifacts, signature_example(test))
                version = mlflow.register_model(info.model_uri, name, tags={TAG + "model_sha256": model_sha,
                                                                             TAG + "gate": "pending",
                                                                             TAG + "run_id": run_id}).version
                version = str(version)
            decision = gate(client, params, name, version, test, labels, test_sha, evaluation, benchmark,
                            deployment, artifacts, run_id)
            decision.update({"mlflow_run_id": run_id, "nested_runs": children, "tracking_uri": uri,
                             "experiment_id": exp_id, "stages": status})
            mlflow.set_tags({TAG + "gate": decision["decision"], TAG + "model_version": version})
            _log_metrics(client, run_id, {f"gate.{c['name']}.passed": float(c["passed"]) for c in decision["checks"]})
            card = model_card(params, evaluation, parity, benchmark, data_report, deployment["deployable"], decision)
            mlflow.log_text(card, "model_card.md")
            mlflow.log_dict(decision, "gate_decision.json")
            # Last: everything above succeeded, so moving the alias cannot leave a half-recorded decision.
            apply_decision(client, decision)
    write_text(root / MODEL_CARD, card)  # atomic writes; the registry already holds the decision
    write_json(root / REGISTER_JSON, decision)
    return decision


def _log_reports(root: Path) -> None:
    """``reports/`` as artifacts, without this stage's own outputs from an earlier execution."""
    import mlflow

    own = {(root / REGISTER_JSON).resolve(), (root / MODEL_CARD).resolve()}
    for path in sorted((root / REPORTS_DIR).rglob("*")):
        if path.is_file() and path.resolve() not in own:
            mlflow.log_artifact(str(path), str(Path("reports") / path.parent.relative_to(root / REPORTS_DIR)))


def _nested_runs(client, exp_id: str, parent_id: str, params: Params, evaluation: dict, status: dict,
                 root: Path) -> dict[str, str]:
    """One nested run per trained model, with its Trainer curves and test metrics."""
    import mlflow

    train_cfg = {"teacher": params.teacher.train, "student": params.distill.train, "baseline": params.distill.train}
    children = {}
    for model, stage in MODELS.items():
        with mlflow.start_run(experiment_id=exp_id, run_name=model, nested=True) as child:
            state = status.get(stage, "ran")
            mlflow.set_tags({TAG + "kind": "model", TAG + "model": model, TAG + "stage": stage,
                             TAG + "cached": str(state == "cached").lower(), "mlflow.parentRunId": parent_id})
            _log_params(client, child.info.run_id, {f"train.{k}": v for k, v in vars(train_cfg[model]).items()})
            log_curves(client, child.info.run_id, model, root)
            if model in evaluation:
                _log_metrics(client, child.info.run_id, numeric_leaves(evaluation[model], "test."))
            children[model] = child.info.run_id
    return children


def gate(client, params: Params, name: str, version: str, test: pd.DataFrame, labels: list[str], test_sha: str,
         evaluation: dict, benchmark: dict, deployment: dict, artifacts: dict, run_id: str) -> dict:
    """Score the candidate through its registered pyfunc, run the checks and tag the version.

    Moves no alias: ``apply_decision`` does that, last."""
    import mlflow

    with quiet_mlflow():
        served = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
        figures = score(served.predict, test, labels)
    teacher_accuracy = evaluation["teacher"]["accuracy"]
    p95, cell = latency(benchmark, deployment["deployable"], params.student.max_length)
    candidate = {**figures, "version": version, "retention": figures["accuracy"] / teacher_accuracy if
                 teacher_accuracy else 0.0, "p95_ms": p95, "latency_cell": cell,
                 "size_mb": Path(artifacts["onnx"]).stat().st_size / 1e6, "deployable": deployment["deployable"]}
    current = _champion(client, name)
    already = current is not None and str(current.version) == version
    champion = None
    if current is not None and not already:
        try:
            champion = champion_figures(client, name, current, test, labels, test_sha)
        except Exception as exc:  # an unscoreable champion fails the check; it never lets a candidate past
            champion = {"version": str(current.version), "error": f"{type(exc).__name__}: {str(exc)[:200]}"}
    checks = gate_checks(params, candidate, champion, is_champion=already)
    rolled_back = client.get_model_version(name, version).tags.get(TAG + "rolled_back_at")
    if rolled_back and not already:
        checks.append(_check("not_rolled_back", False, rolled_back, None,
                             f"rolled back by hand at {rolled_back}; only `distillery promote {version}` restores it"))
    passed = all(c["passed"] for c in checks)
    _set_tags(client, name, version, {
        TAG + "test_sha256": test_sha, TAG + "test_accuracy": round(figures["accuracy"], 6),
        TAG + "test_macro_f1": round(figures["macro_f1"], 6), TAG + "teacher_accuracy": round(teacher_accuracy, 6),
        TAG + "retention": round(candidate["retention"], 6), TAG + "p95_ms": p95, TAG + "size_mb":
        round(candidate["size_mb"], 3), TAG + "deployable": deployment["deployable"], TAG + "run_id": run_id,
        TAG + "gate": "passed" if passed else "failed",
        **{f"{TAG}gate.{c['name']}": f"{'pass' if c['passed'] else 'fail'}: {c['detail']}" for c in checks}})
    for check in checks:
        key = f"{TAG}gate.failed.{check['name']}"
        if not check["passed"]:
            client.set_model_version_tag(name, version, key, f"value {check['value']} threshold {check['threshold']}")
        elif key in client.get_model_version(name, version).tags:
            client.delete_model_version_tag(name, version, key)
    if already:
        outcome, alias = ("already champion" if passed else "already champion (fails the gate now; kept)"), "champion"
    elif passed:
        outcome, alias = "promoted", "champion"
    else:
        outcome, alias = "rejected", "challenger"
    before = None if current is None else str(current.version)
    return {"model_name": name, "version": version, "decision": outcome, "passed": passed, "alias": alias,
            "checks": checks, "candidate": candidate, "champion_before": before,
            "champion_after": version if outcome == "promoted" else before,
            "decided_at": time.strftime("%Y-%m-%dT%H:%M:%S")}


def apply_decision(client, decision: dict) -> None:
    """The only place a pipeline moves an alias; the last registry call of a registration."""
    name, version = decision["model_name"], decision["version"]
    if decision["decision"] == "promoted":
        if decision["champion_before"] is not None:
            client.set_model_version_tag(name, version, TAG + "previous_champion", decision["champion_before"])
        client.set_registered_model_alias(name, "champion", version)
    elif decision["decision"] == "rejected":
        client.set_registered_model_alias(name, "challenger", version)
    if decision["alias"] == "champion" and aliases(client, name).get("challenger") == version:
        client.delete_registered_model_alias(name, "challenger")


# --- commands -------------------------------------------------------------------------------------

def list_models(params: Params, root: Optional[Path] = None) -> dict:
    """Every registered version with its key metrics, gate result and aliases."""
    root = (root or Path.cwd()).resolve()
    uri = connect(root)
    client = _client()
    name = params.register.model_name
    by_version: dict[str, list[str]] = {}
    with unavailable_as_transient(uri):
        found = versions(client, name)
        for alias, version in aliases(client, name).items():
            by_version.setdefault(version, []).append(alias)
    rows = []
    for v in found:
        t = v.tags
        rows.append({"version": str(v.version), "aliases": sorted(by_version.get(str(v.version), [])),
                     "created": time.strftime("%Y-%m-%d %H:%M", time.localtime(v.creation_timestamp / 1000)),
                     "accuracy": t.get(TAG + "test_accuracy"), "macro_f1": t.get(TAG + "test_macro_f1"),
                     "retention": t.get(TAG + "retention"), "p95_ms": t.get(TAG + "p95_ms"),
                     "size_mb": t.get(TAG + "size_mb"),
                     "gate": f"{t.get(TAG + 'gate')}, rolled back {t[TAG + 'rolled_back_at']}"
                     if TAG + "rolled_back_at" in t else t.get(TAG + "gate"),
                     "previous_champion": t.get(TAG + "previous_champion"), "run_id": v.run_id})
    return {"model_name": name, "versions": rows}


def models_table(listing: dict) -> str:
    def cell(value, fmt: str) -> str:
        try:
            return format(float(value), fmt)
        except (TypeError, ValueError):
            return "-"

    lines = [f"registered model {listing['model_name']}", "",
             "| version | aliases | created | accuracy | macro-F1 | retention | p95 ms | MB | gate |",
             "|---|---|---|---:|---:|---:|---:|---:|---|"]
    for row in listing["versions"]:
        lines.append(f"| {row['version']} | {', '.join(row['aliases']) or '-'} | {row['created']} | "
                     f"{cell(row['accuracy'], '.4f')} | {cell(row['macro_f1'], '.4f')} | "
                     f"{cell(row['retention'], '.4f')} | {cell(row['p95_ms'], '.2f')} | {cell(row['size_mb'], '.1f')} "
                     f"| {row['gate'] or '-'} |")
    if not listing["versions"]:
        lines.append("| (no versions yet: run the pipeline) | | | | | | | | |")
    return "\n".join(lines)


def promote(params: Params, version: str, reason: str, root: Optional[Path] = None) -> dict:
    """Manual override: make ``version`` the champion, recording who, when and why."""
    root = (root or Path.cwd()).resolve()
    if not reason or not reason.strip():
        raise RegistryError("promote needs --reason: a manual override is recorded with its reason")
    uri = connect(root)
    client = _client()
    name = params.register.model_name
    with unavailable_as_transient(uri), registry_lock(uri, name, params.register.lock_timeout_s):
        known = {str(v.version): v for v in versions(client, name)}
        if str(version) not in known:
            raise RegistryError(f"model {name!r} has no version {version!r} (versions: "
                                f"{', '.join(known) or 'none'}); see `distillery models`")
        current = aliases(client, name).get("champion")
        if current == str(version):
            return {"model_name": name, "champion": current, "changed": False}
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        tags = {TAG + "promoted": "manual", TAG + "promotion_reason": reason, TAG + "promoted_at": stamp,
                TAG + "promoted_by": getpass.getuser()}
        if current:
            tags[TAG + "previous_champion"] = current
        _set_tags(client, name, str(version), tags)
        if TAG + "rolled_back_at" in known[str(version)].tags:  # a manual promotion restores a rolled-back version
            client.delete_model_version_tag(name, str(version), TAG + "rolled_back_at")
        client.set_registered_model_alias(name, "champion", str(version))
        if aliases(client, name).get("challenger") == str(version):
            client.delete_registered_model_alias(name, "challenger")
        run_id = _record_action(params.register.experiment, root, uri, "promote",
                                {"version": version, "from": current or "none", "reason": reason})
    return {"model_name": name, "champion": str(version), "previous": current, "changed": True, "run_id": run_id}


def rollback(params: Params, reason: str = "", root: Optional[Path] = None) -> dict:
    """Move ``champion`` back to the version it replaced."""
    root = (root or Path.cwd()).resolve()
    uri = connect(root)
    client = _client()
    name = params.register.model_name
    with unavailable_as_transient(uri), registry_lock(uri, name, params.register.lock_timeout_s):
        current = _champion(client, name)
        if current is None:
            raise RegistryError(f"model {name!r} has no champion to roll back")
        current_version = str(current.version)
        previous = current.tags.get(TAG + "previous_champion")
        if not previous:
            raise RegistryError(f"champion v{current_version} of {name!r} replaced no earlier champion; "
                                f"use `distillery promote <version> --reason ...` to choose one")
        known = {str(v.version) for v in versions(client, name)}
        if previous not in known:
            raise RegistryError(f"previous champion v{previous} of {name!r} no longer exists; "
                                f"use `distillery promote <version> --reason ...`")
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        _set_tags(client, name, current_version, {TAG + "rolled_back_at": stamp,
                                                  TAG + "rollback_reason": reason or "not given"})
        client.set_registered_model_alias(name, "champion", previous)
        run_id = _record_action(params.register.experiment, root, uri, "rollback",
                                {"version": previous, "from": current_version, "reason": reason or "not given"})
    return {"model_name": name, "champion": previous, "previous": current_version, "run_id": run_id}

