"""The ``register`` stage: track the pipeline execution in MLflow, register the deployable student as a
pyfunc, and move the ``champion`` alias only when the promotion gate passes.

Order of work, so that nothing a failure leaves behind can disturb the champion:
1. one parent run with params, metrics, reports, tags, and a nested run per trained model;
2. the student logged as a pyfunc and registered (or the identical version found again), tagged with where it
   came from: the git commit, the default DVC remote and the DVC hash of every data and model output;
3. the candidate scored through the registered pyfunc, and the champion on the same test split;
4. the gate's checks (``distillery.registry.gate.decide``), written to the version's tags and the run;
5. last, and only on a pass, the alias move. A failed candidate gets ``challenger``.
All of it runs under a lock per model name, so two registrations never interleave.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Optional

import pandas as pd

from distillery.config import Params
from distillery.prepared import check_trained_on, load_labels, load_split
from distillery.files import private_temp, read_json, scratch_dir, sha256_files, write_json, write_text
from distillery.paths import ONNX_DIR, PREPARED_DIR, REPORTS_DIR, STUDENT_DIR
from distillery.registry.client import (INPUT_SPEC_TAG, INPUTS_TAG, LABELS_TAG, NOT_PROMOTED, TAG, apply_decision,
                                        champion, connected, end_stale_runs, recorder, recover, run_tags, set_tags,
                                        version_inputs, version_labels, versions)
from distillery.registry.versions import (champion_figures, one_label_figures, passed_over, same_weights, served_files,
                                          stamp, version_input_spec, weights_rolled_back, with_paired_rows)
from distillery.registry.gate import decide
from distillery.reports import one_answer
from distillery.registry.latency import latency, teacher_latency
from distillery.registry.pyfunc import log_pyfunc, model_hashes, served_process_memory
from distillery.registry.pipeline_runs import MODEL_CARD, REGISTER_JSON, log_reports, nested_runs, seen_before
from distillery.registry.seen import SEEN_ARTIFACT_DIR, SEEN_TAG, fresh_rows, load_seen, write_seen
from distillery.task_types.parts import task_part
from distillery.model_card import model_card
from distillery.run_records import (check_reports_current, dvc_lock, dvc_remote, dvc_tags, git_tags,
                                    log_metrics, log_params, numeric_leaves, provenance, stage_status)
from distillery.tracking import (ORCHESTRATOR_ENV, ORCHESTRATOR_RUN_ENV, STAGES_RAN_ENV, experiment_id,
                                 quiet_mlflow, redact_uri, sqlite_path, tracking_uri)

PIPELINE_KIND = "pipeline"
SERVED_BATCH = 32  # rows in the served-process memory measurement's one call (the throughput batch)


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
    # the rows this registration records as the model's own must be the ones it was trained on
    student_training = root / STUDENT_DIR / "training.json"
    trained = read_json(student_training) if student_training.is_file() else None
    if trained is not None:
        check_trained_on(trained, root / STUDENT_DIR, root / PREPARED_DIR, "distill")
    test = load_split("test", root / PREPARED_DIR)
    test_sha = sha256_files([root / PREPARED_DIR / "test.parquet"])
    check_reports_current(evaluation, benchmark, deployment, test_sha, root)
    reg = params.register
    name = reg.model_name
    serving = task_part(params.task, "serving")

    store = sqlite_path(tracking_uri(root))
    if store is not None and not store.is_file():  # a mistyped MLFLOW_TRACKING_URI starts an empty registry too
        print(f"register: no MLflow store at {store}: creating one, with no champion to compare against (if yours is "
              "elsewhere, check MLFLOW_TRACKING_URI)", flush=True)
    # scratch_dir, not TemporaryDirectory: one a SIGKILL leaves behind is swept by the next run
    with connected(root, name, reg.lock_timeout_s, reg.lock) as client, \
            scratch_dir(private_temp() / "distillery-register") as tmp:
        uri = tracking_uri(root)
        exp_id = experiment_id(reg.experiment, root, uri)
        end_stale_runs(client, exp_id, name)  # parent and nested runs of a killed registration
        recover(client, name, recorder(reg.experiment, root, uri, name))  # a killed registration's or command's half-done alias move, or pending gate
        tags = {**git_tags(root), **dvc_tags(dvc_lock(root)), **dvc_remote(root), TAG + "kind": PIPELINE_KIND,
                **run_tags(name)}
        tags.pop("dvc.stage.register", None)  # dvc.lock's entry for this stage is its last execution, not this one
        # cached: this execution did not run the stage (the orchestrator, when it says which it ran) and an earlier
        # tracked execution had its outputs; ran: run now, or outputs never tracked before (a stage run by hand)
        told = os.environ.get(STAGES_RAN_ENV) if os.environ.get(ORCHESTRATOR_RUN_ENV) else None
        ran_now = set(told.split(",")) if told is not None else set()
        status = {**stage_status(tags, lambda key, digest: key[len("dvc.stage."):] not in ran_now and
                                 seen_before(client, exp_id, key, digest, PIPELINE_KIND)), "register": "ran"}
        tags.update({f"{TAG}stage.{stage}": state for stage, state in status.items()})
        if os.environ.get(ORCHESTRATOR_RUN_ENV):  # set by whatever orchestrates the run (tasks/ for Prefect)
            tags[TAG + "orchestrator"] = os.environ.get(ORCHESTRATOR_ENV) or "unknown"
            tags[TAG + "orchestrator_run_id"] = os.environ[ORCHESTRATOR_RUN_ENV]
        settings = serving.served_settings(params) if hasattr(serving, "served_settings") else {}
        artifacts = serving.served_artifacts(root, Path(tmp), labels, params.student.max_length, test, **settings)
        # the served model, exactly (its files and its code): the same is never registered twice. Its weights'
        # identity (its ONNX file, tokenizer and settings, not its request limits or code), then the hashes older
        # Distillery versions registered the same weights under: a rolled-back model served by newer code is
        # still the rolled-back model
        served_sha = sha256_files([*artifacts.values(), serving.MODEL_CODE])
        weights = model_hashes(artifacts, tuple(getattr(serving, "CODE_ARTIFACTS", {})), Path(tmp))

        with mlflow.start_run(experiment_id=exp_id, run_name=f"pipeline {time.strftime('%Y-%m-%d %H:%M:%S')}",
                              tags=tags) as run:  # tagged at creation: a kill never leaves an untagged run
            run_id = run.info.run_id
            log_params(client, run_id, params.flat())
            log_metrics(client, run_id, {**numeric_leaves(evaluation, "eval."), **numeric_leaves(parity, "parity."),
                                          **numeric_leaves(benchmark, "benchmark.")})
            children = nested_runs(client, exp_id, run_id, params, evaluation, status, root)
            log_reports(root, REGISTER_JSON, MODEL_CARD)
            mlflow.log_artifact(str(data_report_path), "data")
            # the rows this model trained, validated or distilled on: a later gate leaves them out of its comparison
            seen_frames = [load_split(split, root / PREPARED_DIR) for split in ("train", "validation", "transfer")
                           if (root / PREPARED_DIR / f"{split}.parquet").is_file()]
            for path in write_seen(seen_frames, serving.row_key_columns, Path(tmp)):
                mlflow.log_artifact(str(path), SEEN_ARTIFACT_DIR)

            known = versions(client, name)
            existing = [v for v in known if v.tags.get(TAG + "model_sha256") == served_sha]
            origin = provenance(tags)  # git commit, DVC remote and output hashes: where the version came from
            # an exploratory run (register.promote: false) of weights already registered leaves their record as it
            # was, gate and provenance: its gate, with other benchmark cells say, once marked the champion failing
            record = params.register.promote or not existing
            if existing:
                version = str(existing[-1].version)
                # the rows it saw are recorded once, by the run that registered it (or, for a version from before
                # they were recorded, by this one: check_trained_on above says they are the model's own)
                seen = {} if existing[-1].tags.get(SEEN_TAG) else {SEEN_TAG: run_id}
                set_tags(client, name, version, {k: v for k, v in {**origin, **seen}.items()
                                                 if existing[-1].tags.get(k) != v and record})
            else:
                info = log_pyfunc(serving, artifacts, serving.signature_example(test))
                version = str(mlflow.register_model(info.model_uri, name, tags={
                    TAG + "model_sha256": served_sha, TAG + "weights_sha256": weights[0], TAG + "gate": "pending",
                    TAG + "run_id": run_id, SEEN_TAG: run_id, LABELS_TAG: json.dumps(labels),
                    INPUTS_TAG: json.dumps(list(serving.signature_example(test).columns)), **origin}).version)
            decision = gate(client, serving, params, name, version, test, labels, test_sha, evaluation, benchmark,
                            deployment, artifacts, run_id, Path(tmp), weights, record=record)
            decision["served_process"] = served_process_memory(
                serving.MODEL_CODE, serving.MODEL_CLASS, artifacts, serving.model_input(test.head(SERVED_BATCH)))
            if "peak_memory_mb" in decision["served_process"]:
                log_metrics(client, run_id, {"served.peak_memory_mb": decision["served_process"]["peak_memory_mb"]})
            decision.update({"mlflow_run_id": run_id, "nested_runs": children,
                             "tracking_uri": redact_uri(uri),  # register.json is tracked by git: no credentials
                             "experiment_id": exp_id, "stages": status})
            mlflow.set_tags({TAG + "gate": decision["decision"], TAG + "model_version": version})
            log_metrics(client, run_id, {f"gate.{c['name']}.passed": float(c["passed"]) for c in decision["checks"]
                                         if not c.get("skipped")})
            card = model_card(params, evaluation, parity, benchmark, data_report, deployment["deployable"], decision,
                              list(serving.signature_example(test).columns), trained)
            mlflow.log_text(card, "model_card.md")
            mlflow.log_dict(decision, "gate_decision.json")
            # Last: everything above succeeded, so moving the alias cannot leave a half-recorded decision.
            apply_decision(client, decision)
    write_text(root / MODEL_CARD, card)  # atomic writes; the registry already holds the decision
    write_json(root / REGISTER_JSON, decision)
    return decision


def summary(result: dict) -> str:
    """What the CLI prints after ``register``."""
    failed = [c["detail"] for c in result["checks"] if not c["passed"]]
    champion = f"champion is v{result['champion_after']}" if result.get("champion_after") else "no champion yet"
    return (f"{result['model_name']} v{result['version']}: {result['decision']} (alias {result['alias']}); "
            f"{champion}" + (f"; failed: {'; '.join(failed)}" if failed else "")
            + f"\nMLflow run {result['mlflow_run_id']} at {redact_uri(result['tracking_uri'])}")


def gate(client, serving, params: Params, name: str, version: str, test: pd.DataFrame, labels: list[str], test_sha: str,
         evaluation: dict, benchmark: dict, deployment: dict, artifacts: dict, run_id: str, scratch: Path,
         weights: list[str], record: bool = True) -> dict:
    """Score the candidate on its registered files, run the checks and tag the version (unless not ``record``:
    the decision is then the run's alone). The champion is compared on the test rows it did not see
    (``distillery/registry/seen.py``), the candidate too.

    Moves no alias: ``apply_decision`` does that, last."""
    # the registered version's files, read by this Distillery's serving code (never the code file the registry
    # holds: a version registered before may be scored again, and the store may have been written to since)
    files = served_files(name, version, serving, scratch / "candidate")
    served = serving.load_code_model(files)
    with quiet_mlflow():
        figures = serving.score(lambda frame: served.predict(None, frame), test, labels)
    per_row = figures.pop("per_row", {})
    primary, secondary = serving.METRICS  # accuracy, macro_f1 for text classification; f1, exact_match for QA
    teacher_accuracy = evaluation["teacher"][primary]
    grid = benchmark.get("grid", {})  # inputs without a sequence length (images): the benchmark's one cell length
    length = params.student.max_length if grid.get("sequence_inputs", True) else grid["sequence_lengths"][0]
    p95, cell = latency(benchmark, deployment["deployable"], length)
    candidate = {**figures, "version": version, "retention_metric": primary,
                 "retention": figures[primary] / teacher_accuracy if teacher_accuracy else 0.0, "p95_ms": p95,
                 "latency_cell": cell, "batch_sizes": list(grid.get("batch_sizes") or []),
                 "sequence_inputs": grid.get("sequence_inputs", True), "labels": list(labels),
                 "inputs": list(serving.signature_example(test).columns),
                 "teacher_p95_ms": teacher_latency(benchmark, cell),
                 "size_mb": Path(artifacts["onnx"]).stat().st_size / 1e6, "deployable": deployment["deployable"],
                 "one_label": one_label_figures(serving, test, labels),
                 "teacher_one_label": one_answer(evaluation, "teacher"),  # a collapsed teacher: retention fails
                 "evaluated": {who: {m: evaluation.get(who, {}).get(m) for m in serving.METRICS}
                               for who in ("student", "baseline")},  # this run's, for the gate's above_baseline
                 "input_spec": serving.input_spec(files) if hasattr(serving, "input_spec") else None}
    current = champion(client, name)
    already = current is not None and str(current.version) == version
    figures_before = None
    if current is not None and not already:
        rows = {"test_rows": int(len(test)), "checked": False, "left_out": 0}
        try:
            seen, matched = load_seen(current.tags.get(SEEN_TAG), scratch / "champion-seen", params.data.leak_check)
            fresh = None if seen is None else fresh_rows(test, serving.row_key_columns(test), seen, matched)
            if fresh is not None:
                rows.update(checked=True, left_out=int((~fresh).sum()), matched=matched)
                if matched != params.data.leak_check:  # registered before the normalised keys were logged
                    rows["note"] = "its rows were recorded before near-copies were matched: exact copies only"
            if fresh is not None and len(test) and not fresh.any():
                raise ValueError(f"all {len(test)} current test rows were in its training, validation or "
                                 "transfer data")
            if fresh is not None and len(test) and not fresh.all():  # both on the rows the champion did not see
                same = test[fresh].reset_index(drop=True)
                figures_before = champion_figures(name, current, same, labels, "", serving, scratch)
                with quiet_mlflow():
                    figures_before["candidate"] = serving.score(lambda frame: served.predict(None, frame), same, labels)
            else:
                figures_before = champion_figures(name, current, test, labels, test_sha, serving, scratch)
            figures_before.update(rows=rows, same_weights=same_weights(current, weights))  # the champion's own model?
            figures_before = with_paired_rows(figures_before, per_row, params.register.gate, lambda: champion_figures(
                name, current, test, labels, "", serving, scratch))  # a failure: an unscoreable champion, below
        except Exception as exc:  # an unscoreable champion (or unreadable rows) fails the check; it never lets a
            # candidate past
            figures_before = {"version": str(current.version), "error": f"{type(exc).__name__}: {str(exc)[:200]}"}
        figures_before.update(labels=version_labels(client, name, current), inputs=version_inputs(name, current),
                              rows=rows)
        if candidate["input_spec"] is not None:  # the same columns, but what else may the requests be?
            try:
                spec = version_input_spec(current, name, serving, scratch / "champion-spec")
                figures_before["input_narrowing"] = serving.narrowing(candidate["input_spec"], spec)
            except Exception as exc:  # unknown: the check fails, never passes a model the requests may not fit
                figures_before.update(input_narrowing=None, input_spec_error=f"{type(exc).__name__}: {str(exc)[:200]}")
    known = versions(client, name)
    # the guard of these weights, whichever version of them carries it (this one too)
    rolled_back = weights_rolled_back(known, weights, version)
    verdict = decide(candidate, figures_before, dataclasses.asdict(params.register.gate), is_champion=already,
                     rolled_back_at=rolled_back, version=version,
                     passed_over=passed_over(current, known, version, weights))
    checks, passed = verdict["checks"], verdict["passed"]
    if record:
        record_gate(client, name, version, test_sha, figures, teacher_accuracy, candidate, deployment, run_id, checks,
                    passed, serving.METRICS)
    if already:
        outcome, alias = ("already champion" if passed else "already champion (fails the gate now; kept)"), "champion"
    elif passed and params.register.promote:
        outcome, alias = "promoted", "champion"
    elif passed:
        outcome, alias = NOT_PROMOTED, "challenger"
    else:
        outcome, alias = "rejected", "challenger"
    before = None if current is None else str(current.version)
    # what a rollback returns to: for the champion's own weights under newer code, the model before it (a rollback
    # to the same weights would change nothing the user can see)
    rollback_to = current.tags.get(TAG + "previous_champion") or None \
        if already or (figures_before is not None and figures_before.get("same_weights")) else before
    return {"model_name": name, "version": version, "decision": outcome, "passed": passed, "alias": alias,
            "checks": checks, "candidate": candidate, "champion_before": before, "rollback_to": rollback_to,
            "champion_rows": None if figures_before is None else figures_before.get("rows"),
            "champion_after": version if outcome == "promoted" else before, "decided_at": stamp(),
            "as_of": "this registration; `python -m distillery models` gives the registry as it is now"}


def record_gate(client, name: str, version: str, test_sha: str, figures: dict, teacher_accuracy: float, candidate: dict,
                deployment: dict, run_id: str, checks: list, passed: bool, metrics: tuple) -> None:
    """Tag the version with this gate's figures and verdict. "pending" first and the verdict last: a kill in between
    leaves a version marked as half-gated (``recover`` marks it "interrupted"), never a mix of two gate runs' tags
    that looks complete."""
    primary, secondary = metrics
    p95 = candidate["p95_ms"]
    client.set_model_version_tag(name, version, TAG + "gate", "pending")
    set_tags(client, name, version, {
        # full precision: a later gate compares a candidate with these, and a tie must pass
        TAG + "test_sha256": test_sha, TAG + f"test_{primary}": repr(float(figures[primary])),
        TAG + f"test_{secondary}": repr(float(figures[secondary])), TAG + f"teacher_{primary}": round(teacher_accuracy, 6),
        TAG + "retention": round(candidate["retention"], 6), TAG + "p95_ms": p95, TAG + "size_mb":
        round(candidate["size_mb"], 3), TAG + "deployable": deployment["deployable"], TAG + "run_id": run_id,
        LABELS_TAG: json.dumps(candidate["labels"]), INPUTS_TAG: json.dumps(candidate["inputs"]),
        **({INPUT_SPEC_TAG: json.dumps(candidate["input_spec"])} if candidate["input_spec"] is not None else {}),
        **{f"{TAG}gate.{c['name']}": f"{'skipped' if c.get('skipped') else 'pass' if c['passed'] else 'fail'}: "
           f"{c['detail']}" for c in checks}})
    ran = {f"{TAG}gate.{c['name']}" for c in checks} | {f"{TAG}gate.failed.{c['name']}" for c in checks
                                                          if not c["passed"]}
    for item in checks:
        key = f"{TAG}gate.failed.{item['name']}"
        if not item["passed"]:
            client.set_model_version_tag(name, version, key, f"value {item['value']} threshold {item['threshold']}")
    for key in client.get_model_version(name, version).tags:  # a passed check's failure, or one switched off since
        if key.startswith(f"{TAG}gate.") and key not in ran:  # (above_one_label): this gate's verdict alone
            client.delete_model_version_tag(name, version, key)
    client.set_model_version_tag(name, version, TAG + "gate", "passed" if passed else "failed")
