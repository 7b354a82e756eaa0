"""The ``teacher_logits`` stage: run the teacher once over the training, transfer and validation
rows, and cache its outputs (for text classification, its logits) with a manifest of what they were
computed from (:mod:`distillery.logit_cache`).

With ``distill.augment.copies > 0`` the stage first draws Tang-style augmented texts from the
training texts (:mod:`distillery.augment`, with the teacher's tokenizer), stores them as
``augmented.parquet`` and caches the teacher's outputs for them too: they join the transfer set.
"""
from __future__ import annotations

from pathlib import Path
from typing import Union

import numpy as np
import pandas as pd

from distillery import precision
from distillery.augment import augment
from distillery.config import Params
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


def teacher_logits(params: Params, teacher_dir: Union[str, Path] = TEACHER_DIR,
                   prepared_dir: Union[str, Path] = PREPARED_DIR, out_dir: Union[str, Path] = LOGITS_DIR) -> dict:
    teacher_dir, prepared_dir = Path(teacher_dir), Path(prepared_dir)
    task = task_type(params.task, params)
    if (teacher_dir / "training.json").is_file():
        check_trained_on(read_json(teacher_dir / "training.json"), teacher_dir, prepared_dir, "train_teacher")
    model = task.load_model(str(teacher_dir), "models/teacher")
    tokenizer = task.load_featuriser(str(teacher_dir), "models/teacher")
    max_length = params.teacher.max_length
    rows, outputs = {}, {}
    frames = {part: load_split(part, prepared_dir) for part in PARTS}
    frames[AUGMENTED] = _augmented_texts(params, tokenizer, frames, load_split("test", prepared_dir))
    with atomic_dir(out_dir) as scratch:
        for part, frame in frames.items():
            with reporting(f"teacher on {len(frame):,} {part} rows"):
                with precision.autocast(params.teacher.logits_precision):
                    logits = task.predict(model, tokenizer, frame, max_length, params.evaluate.batch_size) \
                        if len(frame) else task.empty_outputs(model.config.num_labels)
            np.save(scratch / f"{part}.npy", logits)
            rows[part], outputs[part] = int(len(frame)), int(len(logits))
        frames[AUGMENTED].to_parquet(scratch / f"{AUGMENTED}.parquet", index=False)
        # a task whose model sees several features per row (extractive QA: windows) also records their count
        counts = {"outputs": outputs} if outputs != rows else {}
        manifest = {**fingerprint(teacher_dir, prepared_dir, max_length, task.settings()), "rows": rows, **counts,
                    "num_labels": int(model.config.num_labels), "max_length": max_length,
                    "precision": precision.resolve(params.teacher.logits_precision),
                    "augment": {"settings": augment_settings(params),
                                "texts": sha256_files([scratch / f"{AUGMENTED}.parquet"])}}
        write_json(scratch / "manifest.json", manifest)
    return manifest


def summary(result: dict) -> str:
    windows = f" (outputs: {result['outputs']})" if "outputs" in result else ""
    return f"cached teacher logits for {result['rows']}{windows}"
