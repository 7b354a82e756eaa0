"""The model card ``register`` writes (reports/model_card.md) and logs with every registered version: task, data,
teacher, student, how to call the served model, metrics, latency, limits and the gate's decision."""
from __future__ import annotations

from typing import Optional

from distillery.reports import megabytes, parameters
from distillery.tracking import redact_uri


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
        f"**Student:** {student.get('description') or student_family(params.student.source).describe(params)}, "
        f"distilled with {_loss_description(params, student)}. "
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
