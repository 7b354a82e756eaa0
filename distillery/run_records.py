"""What a pipeline run records in MLflow besides params and metrics: git and DVC provenance, which
stages ran or were cached, numeric leaves of the reports, Trainer curves, and the model card."""
from __future__ import annotations

import hashlib
import math
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Optional

import pandas as pd
import yaml

from distillery.errors import DataError
from distillery.files import sha256_files
from distillery.paths import CURVES_DIR, ONNX_DIR, PREPARED_DIR, REPORTS_DIR
from distillery.reports import megabytes, parameters
from distillery.tracking import redact_uri

def _git(root: Path, *args: str) -> Optional[str]:
    try:
        proc = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def git_tags(root: Path) -> dict[str, str]:
    commit = _git(root, "rev-parse", "HEAD")
    if commit is None:
        return {"git.commit": "none"}
    # Code and params only: the pipeline itself rewrites dvc.lock and reports/ before this runs.
    status = _git(root, "status", "--porcelain", "--untracked-files=no", "--", ".", ":!dvc.lock", ":!reports")
    return {"git.commit": commit, "git.dirty": str(bool(status)).lower(), "mlflow.source.git.commit": commit}


def load_yaml12(text: str):
    """YAML as DVC reads it (YAML 1.2, ruamel): ``5e-05`` is a number. PyYAML (YAML 1.1) reads it as the
    string '5e-05', while it reads params.yaml's ``5.0e-5`` as a number, so values DVC recorded in dvc.lock
    would not compare equal to the same values in params.yaml."""
    from ruamel.yaml import YAML

    return YAML(typ="safe", pure=True).load(text)


def dvc_lock(root: Path) -> dict:
    path = root / "dvc.lock"
    if not path.is_file():
        return {}
    return (load_yaml12(path.read_text(encoding="utf-8")) or {}).get("stages", {})


def dvc_tags(lock: dict) -> dict[str, str]:
    """The DVC hash of every data and model output, and one digest per stage of all its outputs."""
    tags = {}
    for stage, entry in lock.items():
        outs = entry.get("outs", [])
        if not outs:  # check_params writes nothing: no outputs to compare, "cached" would say nothing
            continue
        for out in outs:
            if str(out.get("path", "")).startswith(("data/", "models/")) and out.get("md5"):
                tags[f"dvc.{out['path']}"] = out["md5"]
        digest = hashlib.sha256("".join(f"{o.get('path')}={o.get('md5')};" for o in outs).encode()).hexdigest()
        tags[f"dvc.stage.{stage}"] = digest[:16]
    return tags


def dvc_remote(root: Path) -> dict[str, str]:
    """The DVC remote this clone pushes to and pulls from by default (``core.remote``): its name and its URL
    without credentials; ``dvc.remote`` is ``none`` when no default remote is configured."""
    if not (root / ".dvc").is_dir():
        return {"dvc.remote": "none"}
    try:
        from dvc.config import Config

        config = Config(dvc_dir=str((root / ".dvc").resolve()))  # repo, local, global and system levels merged
        name = config["core"].get("remote")
        url = str(config["remote"].get(name, {}).get("url", "")) if name else ""
    except Exception as exc:  # an unreadable DVC config must not stop a registration; say so in the tag
        return {"dvc.remote": f"unknown ({type(exc).__name__})"}
    return {"dvc.remote": name, "dvc.remote_url": redact_uri(url)} if name else {"dvc.remote": "none"}


def provenance(tags: dict[str, str]) -> dict[str, str]:
    """What a model version records of where it came from, out of a pipeline run's ``tags``: the git commit,
    the DVC remote, and the DVC hash of every data and model output (``dvc pull`` at that commit fetches them)."""
    return {key: value for key, value in tags.items()
            if key in ("git.commit", "git.dirty") or (key.startswith("dvc.") and not key.startswith("dvc.stage."))}


def stage_status(current: dict[str, str], seen: Callable[[str, str], bool]) -> dict[str, str]:
    """``ran`` or ``cached`` for each stage: cached when ``seen(tag, digest)``, which says whether this execution
    did not run the stage and an earlier tracked one had its outputs: not only the last one, which after DVC
    experiments is often a sibling's (an experiment that goes back to alpha 0.3 gets the distilled student DVC
    restores from its run cache)."""
    return {key[len("dvc.stage."):]: "cached" if seen(key, digest) else "ran"
            for key, digest in current.items() if key.startswith("dvc.stage.")}


def numeric_leaves(tree: Any, prefix: str = "") -> dict[str, float]:
    """Flatten a JSON report to MLflow metrics: finite numbers (and booleans) only, dotted keys."""
    out: dict[str, float] = {}
    if isinstance(tree, dict):
        for key, value in tree.items():
            out.update(numeric_leaves(value, f"{prefix}{key}."))
    elif isinstance(tree, bool):
        out[prefix[:-1]] = float(tree)
    elif isinstance(tree, (int, float)) and math.isfinite(tree):
        out[prefix[:-1]] = float(tree)
    return {key.replace("/", "_"): value for key, value in out.items() if key}


def log_curves(client, run_id: str, name: str, root: Path) -> int:
    """Log a model's Trainer curves (loss per logging step, eval metrics per epoch); return points logged."""
    from mlflow.entities import Metric

    stamp = int(time.time() * 1000)
    metrics = []
    loss = root / CURVES_DIR / f"{name}_loss.csv"
    if loss.is_file():
        for row in pd.read_csv(loss).to_dict("records"):
            metrics.append(Metric("train_loss", float(row["loss"]), stamp, int(row["step"])))
    evaluation = root / CURVES_DIR / f"{name}_eval.csv"
    if evaluation.is_file():
        for row in pd.read_csv(evaluation).to_dict("records"):
            for key, value in row.items():
                if key not in ("epoch", "step") and isinstance(value, (int, float)) and math.isfinite(value):
                    metrics.append(Metric(f"eval_{key}", float(value), stamp, int(row["step"])))
            metrics.append(Metric("epoch", float(row["epoch"]), stamp, int(row["step"])))
    for start in range(0, len(metrics), 900):
        client.log_batch(run_id, metrics=metrics[start:start + 900])
    return len(metrics)


def _served_line(gate: Optional[dict]) -> list[str]:
    served = (gate or {}).get("served_process") or {}
    if "peak_memory_mb" in served:
        return ["", f"Served process (the registered model's code and artifacts in a fresh Python process, one "
                    f"call of {served['batch']} rows): peak memory {served['peak_memory_mb']:.0f} MB."]
    return ["", f"Served process memory: not measured ({served['error']})."] if "error" in served else []


def _loss_description(params, trained: Optional[dict] = None) -> str:
    """The distilled student's recipe: its loss, and the augmented copies and hidden-state loss when they were on
    (``trained``: the student's training.json, for the rows actually augmented)."""
    distill = params.distill
    if distill.loss == "mse":  # on logits: no temperature
        recipe = f"mse loss on logits, alpha {distill.alpha}"
    else:
        recipe = f"{distill.loss} loss, alpha {distill.alpha}, temperature {distill.temperature}"
    augmented = (trained or {}).get("augmented_rows")
    if distill.augment.copies:
        recipe += (f", on {distill.augment.copies} augmented cop{'y' if distill.augment.copies == 1 else 'ies'} per "
                   "training text" + (" and transfer text" if distill.augment.include_transfer else "")
                   + (f" ({augmented:,} rows labelled by the teacher)" if isinstance(augmented, int) else ""))
    if distill.hidden_loss.weight:
        recipe += f", with a hidden-state MSE of weight {distill.hidden_loss.weight:g} against the teacher's layers"
    return recipe


def _own_names(params) -> str:
    """How the served columns relate to the data's own names of them (text classification: read first)."""
    if params.task != "text_classification":
        return "(whatever the data's own column names were)"
    from distillery.task_types.text_classification.serving import source_columns

    own = list(source_columns(params.data).values())
    if not own:
        return "(the data's own names)"
    return (f"or the data's own name{'s' if len(own) > 1 else ''} {', '.join(f'`{c}`' for c in own)}, read first "
            f"when a request holds {'them all' if len(own) > 1 else 'it'}")


def _transfer_line(params, data_report: dict, trained: Optional[dict] = None) -> str:
    """What the distilled student learnt from beyond the labelled rows: the transfer set's rows as prepared (the
    cap is only an upper bound), and the training rows whose labels it did not see (``trained``: the student's
    training.json, with the labelled rows it really had: a cap above the split's rows caps nothing)."""
    source, rows = params.distill.transfer_set.source, data_report.get("transfer_rows")
    line = "Transfer set: none." if source == "none" else \
        f"Transfer set: `{source}`, " + (f"{rows:,} rows." if isinstance(rows, int) else
                                           f"up to {params.distill.transfer_set.max_rows:,} rows.")
    cap = params.distill.labelled_rows
    labelled = (trained or {}).get("labelled_rows")
    train_rows = (data_report.get("rows") or {}).get("train")
    if cap and isinstance(labelled, int) and isinstance(train_rows, int) and labelled >= train_rows:
        line += (f" The students learnt labels from all {labelled:,} training rows (distill.labelled_rows {cap:,} is "
                 "no fewer).")
    elif cap:  # the rest join the distillation term with a remainder transfer set only
        taught = (trained or {}).get("transfer_rows")  # the transfer set and the training rows beyond the cap
        line += (f" The students learnt labels from {labelled if isinstance(labelled, int) else cap:,} training "
                 "rows; " + ("the distilled student also learnt the teacher's outputs on the rest" +
                             (f" ({taught:,} unlabelled rows in all, with the transfer set's)"
                              if isinstance(taught, int) else "") + "."
                             if source == "remainder" else "the rest were not used by the students."))
    return line


def _length_limit(params) -> list[str]:
    """The card's line on long inputs: texts are cut at the student's max_length; a QA context is read in
    overlapping windows; an image has one size (the served model says which)."""
    if params.task == "image_classification":
        return []
    if params.task == "question_answering":
        length, stride = params.student.max_length, params.question_answering.doc_stride
        return [f"- Contexts longer than {length} tokens (with the question) are read in windows overlapping by "
                f"{stride} tokens; a question keeps at most its first {length - stride - 4} tokens."]
    return [f"- Inputs longer than {params.student.max_length} tokens are truncated."]


def model_card(params, evaluation: dict, parity: dict, benchmark: dict, data_report: dict,
               deployable: str, gate: Optional[dict] = None, inputs: Optional[list] = None,
               trained: Optional[dict] = None) -> str:
    """A short markdown model card: task, data, teacher, student, how to call it (``inputs``: the served model's
    input columns), metrics, latency, limits. ``trained``: the student's training.json, for the recipe as it ran."""
    from distillery.students.load import student_family
    from distillery.task_types import TASK_TYPES, VALIDATION_METRICS

    labels = evaluation.get("labels", [])
    student = trained or {}
    primary, secondary = VALIDATION_METRICS.get(params.task, ("accuracy", "macro_f1"))
    classification = (primary, secondary) == ("accuracy", "macro_f1")
    if classification:
        rows = [f"| {name} | {100 * evaluation[name]['accuracy']:.2f}% | {evaluation[name]['macro_f1']:.4f} | "
                f"{parameters(evaluation[name].get('parameters', 0))} |"
                for name in ("teacher", "student", "baseline") if name in evaluation]
        kind = "image" if params.task == "image_classification" else \
            "text-pair" if getattr(params.data, "text_pair_column", None) else "text"
        task_line, header = f"{kind} classification into {len(labels)} classes: {', '.join(map(str, labels))}", \
            "| model | accuracy | macro-F1 | parameters |"
    else:
        rows = [f"| {name} | {100 * evaluation[name][primary]:.2f} | {100 * evaluation[name][secondary]:.2f} | "
                f"{parameters(evaluation[name].get('parameters', 0))} |"
                for name in ("teacher", "student", "baseline") if name in evaluation]
        task_line, header = f"{params.task}: {TASK_TYPES.get(params.task, '')}", \
            f"| model | {primary} (x100) | {secondary} (x100) | parameters |"
    cell = benchmark.get("headline", {}).get("cell", "")
    latency = []
    for name, entry in benchmark.get("models", {}).items():
        stats = entry.get("cells", {}).get(cell)
        if stats:
            latency.append(f"| {name} | {stats['p50_ms']:.2f} | {stats['p95_ms']:.2f} | {megabytes(entry['size_mb'])} |")
    int8 = parity.get("student", {}).get("int8", {})
    splits = data_report.get("splits", data_report.get("rows", {}))
    lines = [
        "# Model card: Distillery student", "",
        f"**Task:** {task_line}.", "",
        f"**Data:** `{data_report.get('source') or params.data.source}`; rows per split: {splits}. "
        f"{_transfer_line(params, data_report, student)}", "",
        f"**Teacher:** `{params.teacher.model}`, "
        f"{'trained from scratch' if params.teacher.model.startswith('scratch:') else 'fine-tuned'} for "
        f"{params.teacher.train.epochs:g} epoch{'' if params.teacher.train.epochs == 1 else 's'}.", "",
        f"**Student:** {student_family(params.student.source).describe(params)}, distilled with {_loss_description(params, student)}. "
        f"Served as `{deployable}` (ONNX)" + (f", from a frame with the column{'s' if len(inputs) > 1 else ''} "
                                                f"{', '.join(f'`{c}`' for c in inputs)} {_own_names(params)}."
                                                if inputs else "."), "",
        "## Test-split metrics", "", header, "|---|---:|---:|---:|", *rows, "",
        f"## Latency ({cell}, ms) and size (MB)", "", "| model | p50 | p95 | MB |", "|---|---:|---:|---:|",
        *latency, *_served_line(gate), "",
        "## Limits", "",
        *_length_limit(params),
        f"- int8 changes {100 * (1 - int8.get('label_agreement_vs_fp32', 1.0)):.2f}% of the fp32 student's "
        f"{'labels' if classification else 'answers'} "
        f"on the test split ({primary} change {int8.get(f'{primary}_change_points', 0):+.2f} points).",
        "- Measured on one test split drawn from the training distribution; expect lower accuracy on other domains.",
        "- Latency was measured on the benchmark machine; see benchmark.json for its fingerprint.",
    ]
    if gate and gate.get("model_name"):
        champion = gate.get("champion_after")
        # the registry as this run left it: a later run (or `dvc exp apply` of an earlier one) may have moved it since
        lines[1:1] = ["", f"**This model:** `{gate['model_name']}` version {gate['version']}, {gate['decision']} "
                          f"(alias `{gate['alias']}`) when registered; "
                      + ("it was then the champion." if str(champion) == str(gate["version"]) else
                         f"the champion was then version {champion}." if champion else "there was no champion yet.")
                      + " `python -m distillery models` gives the registry as it is now."]
    if gate:
        lines += ["", "## Promotion gate", "", f"Decision: **{gate['decision']}**", ""]
        lines += [f"- {c['name']}: {'skipped' if c.get('skipped') else 'pass' if c['passed'] else 'FAIL'} "
                  f"({c['detail']})" for c in gate["checks"]]
    return redact_uri("\n".join(lines) + "\n")  # a source or model given as a URI keeps no credentials


def check_reports_current(evaluation: dict, benchmark: dict, deployment: dict, test_sha: str, root: Path) -> None:
    """Refuse reports of other inputs than the ones registered: after a stage run by hand (``prepare``, then
    ``register``), the gate would judge the teacher's figure of another test split, or the latency of another
    model file. (Reports written before these hashes were recorded are taken as they are.)"""
    if evaluation.get("test_sha256") not in (None, test_sha):
        raise DataError(f"{REPORTS_DIR / 'metrics' / 'eval.json'} scored another test split than "
                        f"{PREPARED_DIR / 'test.parquet'} holds now; run `dvc repro` (or `python -m distillery evaluate`"
                        " and the stages after it) before registering")
    deployable = root / ONNX_DIR / deployment["deployable"]
    if benchmark.get("deployable_sha256") is not None and deployable.is_file() and \
            benchmark["deployable_sha256"] != sha256_files([deployable]):
        raise DataError(f"{REPORTS_DIR / 'metrics' / 'benchmark.json'} timed another {ONNX_DIR / deployment['deployable']}"
                        " than the one there now; run `dvc repro` (or `python -m distillery benchmark`) before "
                        "registering")


def log_params(client, run_id: str, flat: dict) -> None:
    """Every params key on the run (MLflow takes 100 a call; values cut to 500 characters)."""
    from mlflow.entities import Param

    items = [Param(key, str(value)[:500]) for key, value in flat.items()]
    for start in range(0, len(items), 100):
        client.log_batch(run_id, params=items[start:start + 100])


def log_metrics(client, run_id: str, metrics: dict[str, float]) -> None:
    """The figures on the run, 900 a call."""
    from mlflow.entities import Metric

    stamp = int(time.time() * 1000)
    items = [Metric(key, value, stamp, 0) for key, value in metrics.items()]
    for start in range(0, len(items), 900):
        client.log_batch(run_id, metrics=items[start:start + 900])
