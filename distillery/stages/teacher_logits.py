"""The ``teacher_logits`` stage: run the teacher once over the training, transfer and validation
rows, and cache its outputs (for text classification, its logits) with a manifest of what they were
computed from (:mod:`distillery.logit_cache`).

``teacher.logits_runtime`` says what runs the pass: PyTorch (under ``teacher.logits_precision``'s autocast),
or ONNX Runtime, the teacher exported to ONNX fp32 in a temporary directory and checked against PyTorch on
the first batch of training rows within ``TEACHER_PASS_ATOL`` (1e-4; else the pass runs in PyTorch, and the
manifest says why). ``auto`` takes ONNX Runtime where the pass is fp32: on a 2-core AMD EPYC its fp32 matrix products
run at 2.2-2.4 times torch's, and the QA teacher's pass took 5.1 s against 9.4 s on 437 windows.
``teacher.logits_precision: int8`` (and ``auto`` on a CPU without native bf16) runs a copy of that ONNX teacher with
int8 weights (per channel), once its top answers on the validation rows are the fp32 teacher's on
``TEACHER_INT8_MIN_AGREEMENT`` of them; else the fp32 one.

With ``distill.augment.copies > 0`` the stage first draws Tang-style augmented texts from the
training texts (:mod:`distillery.augment`, with the teacher's tokenizer), stores them as
``augmented.parquet`` and caches the teacher's outputs for them too: they join the transfer set.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Union

import numpy as np
import pandas as pd

from distillery import precision
from distillery.augment import augment
from distillery.config import Params
from distillery.errors import DistilleryError, ModelError
from distillery.files import atomic_dir, read_json, sha256_files, write_json
from distillery.logit_cache import AUGMENTED, PARTS, augment_seed, augment_settings, fingerprint
from distillery.paths import LOGITS_DIR, PREPARED_DIR, TEACHER_DIR
from distillery.prepared import check_trained_on, load_split
from distillery.progress import reporting
from distillery.task_types.load import task_type


def _augmented_texts(params: Params, tokenizer, frames: dict, test: pd.DataFrame) -> pd.DataFrame:
    """Augmented copies of the training (and, if asked, transfer) inputs, none equal to a prepared one."""
    columns, perturbed = task_type(params.task, params).augment_columns(frames["train"])
    sources = [frames["train"]] + ([frames["transfer"]] if params.distill.augment.include_transfer else [])
    known = pd.concat([frame[columns] for frame in [*frames.values(), test]])
    return augment(pd.concat([f[columns] for f in sources], ignore_index=True), tokenizer, params.distill.augment,
                   augment_seed(params), known, columns, perturbed)


def pass_precision(params: Params) -> str:
    """``fp32``, ``bf16`` or ``int8``: the precision asked of the teacher's pass on this machine
    (:func:`distillery.precision.teacher_pass`)."""
    return precision.teacher_pass(params.teacher.logits_precision, params.teacher.logits_runtime)


def runtime(params: Params) -> str:
    """``pytorch`` or ``onnxruntime``: what ``teacher.logits_runtime`` means here (``auto``: ONNX Runtime
    where the pass is fp32 or int8, PyTorch where it is bf16). A runtime that cannot run the precision is refused
    when params.yaml is read."""
    if params.teacher.logits_runtime == "auto":
        return "onnxruntime" if pass_precision(params) in ("fp32", "int8") else "pytorch"
    return params.teacher.logits_runtime


# how far the ONNX teacher's outputs may be from PyTorch's for the pass to run in ONNX Runtime: a constant, not
# export.fp32_atol (raising that to pass the student's export re-ran this stage and retrained the student)
TEACHER_PASS_ATOL = 1e-4
# the int8 teacher's pass is used only when its top answer (a class; a QA window's start and end) is the fp32
# teacher's on at least this share of the validation rows. MiniLM-L6 on the default tweets: 98.2% with per-channel
# weight scales, 94.7% with one scale per tensor (which the student's export may choose; not here)
TEACHER_INT8_MIN_AGREEMENT = 0.97


def _onnx_teacher(params: Params, task, model, tokenizer, sample: pd.DataFrame, validation: pd.DataFrame,
                  directory: Path):
    """(the model the pass runs, what ran it, the fp32 session or None, outputs already computed by part): the
    teacher as an ONNX Runtime session that answers as the PyTorch model does, once its outputs on ``sample`` match
    PyTorch's within ``TEACHER_PASS_ATOL``; else the PyTorch model, with the reason. With
    ``teacher.logits_precision: int8``, its int8 copy when that passes ``_int8_teacher``'s check on ``validation``."""
    import torch

    from distillery.onnx_runtime import SessionModel, session

    path = directory / "teacher.onnx"
    try:
        task.export_onnx(model, tokenizer, path, params.export.opset)
        served = SessionModel(session(path, threads=torch.get_num_threads()), model.config)
    except ModelError as exc:
        return model, _to_pytorch(str(exc)), None, {}
    max_length, batch = params.teacher.max_length, params.evaluate.batch_size
    with torch.inference_mode():
        reference = task.predict(model, tokenizer, sample, max_length, batch)
    try:
        found = task.predict(served, tokenizer, sample, max_length, batch)
    except DistilleryError:
        raise
    except Exception as exc:  # a graph that runs for the export's sample and not for these rows
        return model, _to_pytorch(_failure(exc)), None, {}
    difference = float(np.abs(reference - found).max()) if len(sample) else 0.0
    check = {"rows": int(len(sample)), "max_abs_diff_vs_pytorch": difference, "atol": TEACHER_PASS_ATOL}
    if not difference <= TEACHER_PASS_ATOL:
        return model, _to_pytorch("parity", check, f"the ONNX teacher's outputs are {difference:.2e} off PyTorch's "
                                                   f"on {len(sample)} training rows (> {TEACHER_PASS_ATOL})"), None, {}
    if pass_precision(params) == "int8":
        rows = validation if len(validation) else sample
        runner, ran, outputs = _int8_teacher(params, task, model.config, tokenizer, served, rows, path, check,
                                             "validation" if rows is validation else "training")
        return runner, ran, served, {"validation": outputs} if rows is validation and outputs is not None else {}
    return served, {"runtime": "onnxruntime", "check": check}, None, {}


def _int8_teacher(params: Params, task, config, tokenizer, served, rows: pd.DataFrame, path: Path, check: dict,
                  split: str = "validation"):
    """(the model the pass runs, what ran it, its outputs on ``rows`` or None): the ONNX teacher at ``path`` with its
    weights quantized to int8 (dynamic, per channel), when its answers on ``rows`` (of ``split``: the training rows'
    first batch when there is no validation split) are those of the fp32 ONNX teacher ``served`` (within 1e-4 of
    PyTorch) on at least ``TEACHER_INT8_MIN_AGREEMENT`` of them; else ``served``, with the reason."""
    import torch

    from distillery.onnx_runtime import SessionModel, quantize_int8, session

    max_length, batch = params.teacher.max_length, params.evaluate.batch_size
    try:
        target = path.with_name("teacher.int8.onnx")
        quantize_int8(path, target, per_channel=True)
        int8 = SessionModel(session(target, threads=torch.get_num_threads()), config)
        reference = task.predict(served, tokenizer, rows, max_length, batch)
        found = task.predict(int8, tokenizer, rows, max_length, batch)
    except DistilleryError:
        raise
    except Exception as exc:
        return served, _to_fp32(check, _failure(exc)), None
    same = task.same_answers(tokenizer, rows, max_length, reference, found)  # a row's class; a question's answer
    agreement = float(same.mean()) if len(same) else 0.0
    what = task.answer_unit
    int8_check = {what: int(len(same)), "split": split, "agreement_with_fp32": round(agreement, 4),
                  "min_agreement": TEACHER_INT8_MIN_AGREEMENT, "weights": "int8, per channel (dynamic)"}
    if not agreement >= TEACHER_INT8_MIN_AGREEMENT:
        return served, _to_fp32(check, "agreement", int8_check,
                                f"the int8 teacher gives the fp32 teacher's answer on {agreement:.1%} of {len(same)} "
                                f"{split} {what} (< {TEACHER_INT8_MIN_AGREEMENT:.0%})"), reference
    return int8, {"runtime": "onnxruntime", "check": check, "int8_check": int8_check, "precision": "int8"}, found


def _to_fp32(check: dict, reason: str, int8_check: dict | None = None, said: str | None = None) -> dict:
    """Say why the teacher's pass runs in fp32 (ONNX Runtime) although int8 was asked for; the manifest's record."""
    print(f"teacher_logits: {said or reason}; the teacher's pass runs in fp32", flush=True)
    return {"runtime": "onnxruntime", "check": check, "int8_refused": reason,
            **({"int8_check": int8_check} if int8_check else {})}


def _failure(exc: Exception) -> str:
    return f"ONNX Runtime failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"[:300]


def _to_pytorch(reason: str, check: dict | None = None, said: str | None = None) -> dict:
    """Say why the teacher's pass falls back to PyTorch; the manifest's record of it."""
    print(f"teacher_logits: {said or reason}; the teacher's pass runs in PyTorch", flush=True)
    return {"runtime": "pytorch", "onnxruntime_refused": reason, **({"check": check} if check else {})}


def _autocast(params: Params, ran: str) -> str:
    """The autocast setting the pass runs under: none in ONNX Runtime (its graph is fp32 or int8), nor for a
    PyTorch pass that int8 fell back to."""
    wanted = pass_precision(params)
    return wanted if ran == "pytorch" and wanted != "int8" else "fp32"


def teacher_logits(params: Params, teacher_dir: Union[str, Path] = TEACHER_DIR,
                   prepared_dir: Union[str, Path] = PREPARED_DIR, out_dir: Union[str, Path] = LOGITS_DIR) -> dict:
    teacher_dir, prepared_dir = Path(teacher_dir), Path(prepared_dir)
    task, wanted = task_type(params.task, params), runtime(params)
    if (teacher_dir / "training.json").is_file():
        check_trained_on(read_json(teacher_dir / "training.json"), teacher_dir, prepared_dir, "train_teacher")
    model = task.load_model(str(teacher_dir), "models/teacher")
    tokenizer = task.load_featuriser(str(teacher_dir), "models/teacher")
    max_length = params.teacher.max_length
    rows, outputs = {}, {}
    frames = {part: load_split(part, prepared_dir) for part in PARTS}
    frames[AUGMENTED] = _augmented_texts(params, tokenizer, frames, load_split("test", prepared_dir))
    runner, ran, fp32, known = model, {"runtime": "pytorch"}, None, {}
    with atomic_dir(out_dir) as scratch, tempfile.TemporaryDirectory(prefix="distillery-teacher-onnx-") as onnx_dir:
        if wanted == "onnxruntime":
            sample = next((f for f in frames.values() if len(f)), frames["train"]).head(params.evaluate.batch_size)
            runner, ran, fp32, known = _onnx_teacher(params, task, model, tokenizer, sample, frames["validation"],
                                                     Path(onnx_dir))
        cached = None
        while cached is None:
            try:
                cached = _pass(params, task, runner, tokenizer, frames, ran["runtime"], known)
            except DistilleryError:  # the data's or the configuration's fault: PyTorch would fail on it too
                raise
            except Exception as exc:  # ONNX Runtime failing part-way: the whole pass again, int8 -> fp32 -> PyTorch
                if ran["runtime"] != "onnxruntime":
                    raise
                known = {}
                if ran.get("precision") == "int8":
                    runner, ran = fp32, _to_fp32(ran["check"], _failure(exc), ran["int8_check"])
                else:  # an int8 refusal before this one stays on record
                    kept = {key: ran[key] for key in ("int8_refused", "int8_check") if key in ran}
                    runner, ran = model, {**_to_pytorch(_failure(exc), ran.get("check")), **kept}
        for part, logits in cached.items():
            np.save(scratch / f"{part}.npy", logits)
            rows[part], outputs[part] = int(len(frames[part])), int(len(logits))
        frames[AUGMENTED].to_parquet(scratch / f"{AUGMENTED}.parquet", index=False)
        # a task whose model sees several features per row (extractive QA: windows) also records their count
        counts = {"outputs": outputs} if outputs != rows else {}
        manifest = {**fingerprint(teacher_dir, prepared_dir, max_length, task.settings()), "rows": rows, **counts,
                    "num_labels": int(model.config.num_labels), "max_length": max_length,
                    "asked": {"logits_precision": params.teacher.logits_precision,  # auto: what it chose is below
                              "logits_runtime": params.teacher.logits_runtime},
                    **ran, "precision": ran.get("precision") or precision.resolve(_autocast(params, ran["runtime"])),
                    "augment": {"settings": augment_settings(params),
                                "texts": sha256_files([scratch / f"{AUGMENTED}.parquet"])},
                    "files": {part: sha256_files([scratch / f"{part}.npy"]) for part in cached}}
        write_json(scratch / "manifest.json", manifest)
    return manifest


def _pass(params: Params, task, runner, tokenizer, frames: dict, ran: str, known: dict) -> dict:
    """The teacher's outputs for every part, run by ``runner`` (the model, or its ONNX Runtime session); ``known``:
    the parts whose outputs by that runner are already computed (the int8 check's validation rows)."""
    cached = {}
    for part, frame in frames.items():
        if part in known:
            cached[part] = known[part]
            continue
        with reporting(f"teacher on {len(frame):,} {part} rows" + (" (ONNX Runtime)" if ran == "onnxruntime" else "")):
            with precision.autocast(_autocast(params, ran)):
                cached[part] = task.predict(runner, tokenizer, frame, params.teacher.max_length,
                                            params.evaluate.batch_size) \
                    if len(frame) else task.empty_outputs(runner.config.num_labels)
    return cached


def _agreement(check: dict) -> str:
    """"99.7% of 300 validation rows": the int8 check's agreement with fp32, and what it was measured on."""
    unit, count = next(((k, v) for k, v in check.items() if type(v) is int), ("rows", 0))  # {task's unit: count}
    return f"{check.get('agreement_with_fp32', 0):.1%} of {count:,} {check.get('split', 'validation')} {unit}"


def summary(result: dict) -> str:
    """The stage's last line: what it cached, what ran the pass and in what precision. An int8 pass says how
    closely it matched fp32; one refused says why, so "fp32" does not read as what auto chose."""
    windows = f" (outputs: {result['outputs']})" if "outputs" in result else ""
    ran = " through ONNX Runtime" if result.get("runtime") == "onnxruntime" else ""
    chose = " chosen by auto" if result.get("asked", {}).get("logits_precision") == "auto" else ""
    check, refused = result.get("int8_check"), result.get("int8_refused")
    if result.get("onnxruntime_refused"):  # the export or its check against PyTorch failed: no int8, no fp32 session
        reason = result["onnxruntime_refused"]
        how = f"{result['precision']} in PyTorch; ONNX Runtime was refused: " + \
            ("its outputs were off PyTorch's" if reason == "parity" else reason)
    elif refused:  # int8 asked for (or chosen by auto) and refused by its check or by ONNX Runtime
        why = f"it gave fp32's answers on {_agreement(check)}, under {check['min_agreement']:.0%}" \
            if refused == "agreement" and check else refused
        how = f"{result['precision']}; the int8 pass was refused: {why}"
    else:
        how = f"{result['precision']}{chose}" + (f"; it gave fp32's answers on {_agreement(check)}" if check else "")
    return f"cached teacher logits for {result['rows']}{windows}{ran} ({how})"
