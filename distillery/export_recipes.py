"""The student's int8 recipe, chosen by measurement (as Olive's auto-optimizer and Intel Neural Compressor's
accuracy-aware tuning do): ``export`` builds every candidate of ``export.recipes``, checks each against the
parity and accuracy gates on the validation split, times the survivors in interleaved rounds on one cell,
and deploys the fastest (of a tie, the first listed). The test split stays untouched until the chosen model's final gate.

A recipe is ``[fused_](dynamic|static)[_per_channel]``:
- ``fused_``: ONNX Runtime's transformer graph fusions (``onnxruntime.transformers.optimizer``: attention,
  embedding + layer norm, skip + layer norm, bias + GELU) before quantization. A graph where no fusion
  matches (a BiLSTM, a CNN) drops the candidate: it would be the unfused recipe again;
- ``dynamic``: int8 weights, activations quantized on the fly (``quantize_dynamic``, today's default);
- ``static``: int8 weights and activations, QDQ format, ranges calibrated (MinMax) on validation rows;
- ``_per_channel``: one weight scale per output channel instead of one per tensor.

Each surviving recipe whose residual adds and layer norms ONNX Runtime fuses at load is timed twice: as
ONNX Runtime loads it by default, and without its load-time ``SkipLayerNormFusion`` (the file's metadata says
so, and every session of it, the served one too, honours it). The default load is that recipe's latency
unless the other is measurably faster; ``disabled_optimizers`` says which shipped.

Timings within noise of each other are a tie, settled by preference, not by a hair (:func:`prefer`): the
recipe listed first in ``export.recipes`` among those not measurably slower than the fastest ships, so the
shipped file does not flip between two equally fast recipes from one run to the next.
"""
from __future__ import annotations

import hashlib
import shutil
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pandas as pd

from distillery.config.operations import RECIPE_PATTERN
from distillery.onnx_runtime import (SKIP_LAYER_NORM_FUSION, fuse_transformer, fuses_skip_layer_norm, quantize_int8,
                                     run_outputs, session, without_skip_layer_norm)
from distillery.timing import bootstrap_ratio, median_interval, time_interleaved

DEFAULT_RECIPE = "dynamic"
CALIBRATION_BATCHES, CALIBRATION_BATCH = 8, 16
BOOTSTRAP_RESAMPLES = 2000


def parse(recipe: str) -> dict:
    """``{"fused", "mode", "per_channel"}`` of a recipe name (``export.recipes`` validates them on load);
    ValueError naming the allowed form."""
    match = RECIPE_PATTERN.fullmatch(recipe)
    if not match:
        raise ValueError(f"unknown export recipe {recipe!r}: use [fused_](dynamic|static)[_per_channel], "
                         f"e.g. dynamic, fused_dynamic_per_channel, static")
    return {"fused": bool(match.group(1)), "mode": match.group(2), "per_channel": bool(match.group(3))}


def calibration_batches(task, tokenizer, frame: pd.DataFrame, length: int) -> list[dict]:
    """Up to ``CALIBRATION_BATCHES`` batches of distinct validation rows, as the model is fed."""
    batches = []
    for start in range(0, min(len(frame), CALIBRATION_BATCHES * CALIBRATION_BATCH), CALIBRATION_BATCH):
        rows = frame.iloc[start:start + CALIBRATION_BATCH]
        batches.append(task.benchmark_inputs(tokenizer, rows, len(rows), length))
    return batches


def _build(recipe: str, fp32_path: Path, work: Path, model, calibration: Callable[[], list[dict]],
           fusions: dict) -> dict:
    """Write the candidate's graph (and, fused, its fp32 graph, once for every fused recipe:
    ``fusions`` keeps its counts); ``{"path", "fp32_path", "fused_ops"}``."""
    spec = parse(recipe)
    source, fused_ops = fp32_path, None
    if spec["fused"]:
        config = getattr(model, "config", None)
        if not getattr(config, "num_attention_heads", 0):  # a BiLSTM, a bag of embeddings, an image MLP or CNN
            raise _Dropped(f"no transformer fusion matched this graph (a "
                           f"{getattr(config, 'model_type', type(model).__name__)!r} model has no attention)")
        source = work / "fused.onnx"
        if "ops" not in fusions:
            fusions["ops"] = fuse_transformer(fp32_path, source, model)
        fused_ops = fusions["ops"]
        if not fused_ops:
            raise _Dropped("no transformer fusion matched this graph (it would equal the unfused recipe)")
    target = work / f"{recipe}.onnx"
    quantize_int8(source, target, per_channel=spec["per_channel"],
                  calibration=calibration() if spec["mode"] == "static" else None)
    return {"path": target, "fp32_path": source, "fused_ops": fused_ops}


class Remembered:
    """``model``, its outputs remembered by input: every candidate's validation check compares with one
    PyTorch pass over the validation rows, not one pass per candidate. The same batches come back for
    each candidate (the parity checks batch the rows the same way), so they are found by their bytes."""

    def __init__(self, model):
        self._model, self._outputs = model, {}
        self.passes = 0  # forward passes actually run

    def __call__(self, *args, **inputs):
        key = tuple(_fingerprint(v) for v in args) + tuple((k, _fingerprint(v)) for k, v in sorted(inputs.items()))
        if key not in self._outputs:
            self.passes += 1
            self._outputs[key] = self._model(*args, **inputs)
        return self._outputs[key]

    def eval(self):
        self._model.eval()
        return self

    def __getattr__(self, name: str):
        if name in ("_model", "_outputs"):  # not set yet (a copy being built): no endless lookup
            raise AttributeError(name)
        return getattr(self._model, name)


def _fingerprint(value) -> tuple:
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    array = np.ascontiguousarray(value)
    return array.dtype.str, array.shape, hashlib.sha1(array.tobytes()).hexdigest()


def prefer(order: list, timings: dict, confidence: float = 0.95) -> tuple:
    """(the key to ship, the keys tied with the fastest): of ``order`` (keys of ``timings``, most preferred
    first), the first whose p50 is not measurably above the fastest key's, so that a recipe chosen over another
    by a hair's timing noise does not flip from run to run. "Not measurably above": the paired-round bootstrap
    interval (:func:`distillery.timing.bootstrap_ratio`, the rounds of :func:`time_interleaved`) of its p50
    over the fastest's reaches down to 1."""
    fastest = min(order, key=lambda key: float(np.median(timings[key])))
    ties = [key for key in order if key == fastest or
            bootstrap_ratio(timings[key], timings[fastest], 50, BOOTSTRAP_RESAMPLES, confidence, paired=True)[0] <= 1]
    return ties[0], ties


def _setting_name(disabled: tuple) -> str:
    return "onnxruntime_default" if not disabled else "without_" + "_".join(disabled)


class _Dropped(Exception):
    """A candidate that cannot be built, with the reason."""


def _print(message: str) -> None:
    print(message, flush=True)  # a stage's output is a pipe under dvc and Prefect: each line as it happens


def search(task, model, tokenizer, fp32_path: Path, target: Path, validation: pd.DataFrame, max_length: int,
           export_cfg, threads: int, log: Callable[[str], None] = _print) -> dict:
    """Choose the student's int8 recipe on ``validation``; write the chosen model to ``target``.

    Returns the report: every candidate with its validation quality, its parity, its latency at the
    selection cell and why it was kept or dropped; ``chosen`` names the deployed recipe. With no survivor
    the default recipe (``dynamic``) is written and reported; export ships it only under ``export.deploy: int8``, on
    the test split's gate alone."""
    recipes = list(dict.fromkeys(export_cfg.recipes))
    length = min(export_cfg.selection_length, max_length)
    if length < export_cfg.selection_length:
        log(f"export: export.selection_length {export_cfg.selection_length} is above the student's max_length "
            f"{max_length}: the recipes are timed at {length} tokens")
    cell = {"batch": export_cfg.selection_batch, "length": length}
    calibration_cache: list = []
    fusions: dict = {}
    reference = Remembered(model)

    def calibration() -> list[dict]:
        if not calibration_cache:
            calibration_cache.extend(calibration_batches(task, tokenizer, validation, max_length))
        return calibration_cache

    candidates: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="distillery-recipes-") as tmp:
        work = Path(tmp)
        for recipe in recipes:
            entry: dict = {"recipe": recipe, **parse(recipe)}
            started = time.perf_counter()
            try:
                built = _build(recipe, fp32_path, work, model, calibration, fusions)
            except _Dropped as reason:
                entry.update(kept=False, reason=str(reason))
            except Exception as exc:  # a quantizer or optimizer that cannot handle this graph drops its recipe
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                entry.update(kept=False, reason=f"could not be built: {first[:200]}")
            else:
                entry["fused_ops"] = built["fused_ops"]
                gates = task.parity(reference, tokenizer, built["fp32_path"], built["path"], validation, max_length,
                                    export_cfg)
                entry["validation"] = {"rows": gates["rows"], "fp32": gates["fp32"], "int8": gates["int8"]}
                entry["size_mb"] = built["path"].stat().st_size / 1e6
                if not gates["fp32"]["passed"]:
                    entry.update(kept=False, reason=f"{'fused ' if entry['fused'] else ''}fp32 graph off PyTorch by "
                                                    f"{gates['fp32']['max_abs_logit_diff']:.2e} > fp32_atol")
                elif not gates["int8"]["deployable"]:
                    entry.update(kept=False, reason=f"validation: {gates['int8']['reason']}")
                else:
                    entry.update(kept=True, reason=None, _path=built["path"])
            entry["build_and_check_seconds"] = round(time.perf_counter() - started, 2)
            candidates.append(entry)
            log(f"export: recipe {recipe}: " + ("passes the gates on validation" if entry["kept"]
                                                else f"dropped ({entry['reason']})"))

        survivors = [c for c in candidates if c["kept"]]
        if survivors:
            batch = task.benchmark_inputs(tokenizer, validation, cell["batch"], length)
            # each survivor as ONNX Runtime loads it by default, and, where that load fuses a residual add and its
            # layer norm, without SkipLayerNormFusion: the same arithmetic in other kernels (SKIP_LAYER_NORM_FUSION)
            files = {}
            for c in survivors:
                files[(c["recipe"], ())] = c["_path"]
                if fuses_skip_layer_norm(c["_path"]):
                    plain = c["_path"].with_name(c["_path"].stem + ".plain_layer_norm.onnx")
                    without_skip_layer_norm(c["_path"], plain)
                    files[(c["recipe"], (SKIP_LAYER_NORM_FUSION,))] = plain
            sessions = {key: session(path, threads=threads, spin=False) for key, path in files.items()}
            timings = time_interleaved({key: (lambda s=s: run_outputs(s, batch)) for key, s in sessions.items()},
                                       warmup=5, min_runs=20, max_runs=500, target_precision=0.05,
                                       max_seconds=export_cfg.selection_seconds)
            # the keys in order of preference: export.recipes' order, and within a recipe ONNX Runtime's default load
            order = [key for c in survivors for key in files if key[0] == c["recipe"]]
            picked, ties = prefer(order, timings)
            for c in survivors:
                settings = {}
                for disabled in [d for (recipe, d) in files if recipe == c["recipe"]]:
                    ms = timings[(c["recipe"], disabled)]
                    low, high = median_interval(ms)
                    settings[_setting_name(disabled)] = {"disabled_optimizers": list(disabled),
                                                         "p50_ms": float(np.median(ms)), "p50_ci95_ms": [low, high],
                                                         "runs": int(len(ms))}
                # the recipe's own setting: the preferred one among those as fast as its fastest
                mine = [key for key in order if key[0] == c["recipe"]]
                own = picked if picked[0] == c["recipe"] else prefer(mine, timings)[0]
                c["disabled_optimizers"] = list(own[1])
                c["latency"] = {k: v for k, v in settings[_setting_name(own[1])].items() if k != "disabled_optimizers"}
                c["latency_by_setting"] = settings
                c["_path"] = files[own]
            best = next(c for c in survivors if c["recipe"] == picked[0])
            fastest = min(order, key=lambda key: float(np.median(timings[key])))
            fastest_p50 = float(np.median(timings[fastest]))
            tied_recipes = list(dict.fromkeys(key[0] for key in ties))  # a recipe is timed under 1 or 2 settings
            for c in survivors:
                if c is not best:
                    tied = next((key for key in ties if key[0] == c["recipe"]), None)
                    c["reason"] = (f"as fast within timing noise (p50 {c['latency']['p50_ms']:.3f} ms vs "
                                   f"{best['latency']['p50_ms']:.3f} ms), after {best['recipe']} in export.recipes"
                                   if tied else
                                   f"slower: p50 {c['latency']['p50_ms']:.3f} ms vs {fastest_p50:.3f} ms for "
                                   f"{fastest[0]}")
            best["reason"] = ("fastest that passes the gates" if len(tied_recipes) == 1 else
                              f"passes the gates, and first in export.recipes among the {len(tied_recipes)} recipes "
                              f"not measurably slower than the fastest ({fastest_p50:.3f} ms at p50)")
            best["tied_with"] = [name for name in tied_recipes if name != best["recipe"]]
            shutil.copyfile(best["_path"], target)
            chosen: Optional[str] = best["recipe"]
        else:
            quantize_int8(fp32_path, target)
            chosen = None
        for c in candidates:
            c.pop("_path", None)
            c["chosen"] = c["recipe"] == chosen
    shipped = next((c for c in candidates if c["chosen"]), {})
    return {"cell": cell, "threads": threads, "chosen": chosen or DEFAULT_RECIPE, "searched": chosen is not None,
            "disabled_optimizers": shipped.get("disabled_optimizers", []), "candidates": candidates,
            "pytorch_batches": reference.passes,
            "note": None if chosen else f"no recipe passed the gates on validation: {DEFAULT_RECIPE} written; the "
                                        f"test split's int8 gate decides"}

