"""The ``teacher_logits`` stage: run the teacher once over the training, transfer and validation
rows, and cache its logits with a manifest of what they were computed from.

With ``distill.augment.copies > 0`` the stage first draws Tang-style augmented texts from the
training texts (:mod:`distillery.augment`, with the teacher's tokenizer), stores them as
``augmented.parquet`` and caches the teacher's logits for them too: they join the transfer set.

The manifest holds hashes of the teacher's weights, each data file and the tokenizer settings.
``distill`` recomputes them and refuses a cache that no longer matches, so a student is never
trained on logits from another teacher or other data.
"""
from __future__ import annotations

from pathlib import Path
from typing import Union

import numpy as np

import dataclasses

import pandas as pd

from distillery.augment import augment
from distillery.config import Params
from distillery.data import PAIR, TEXT, load_split
from distillery.errors import CacheError
from distillery.files import atomic_dir, read_json, sha256_files, write_json
from distillery.inference import predict_logits
from distillery.modeling import load_classifier, load_tokenizer
from distillery.paths import LOGITS_DIR, PREPARED_DIR, TEACHER_DIR

PARTS = ("train", "transfer", "validation")
AUGMENTED = "augmented"  # texts drawn by the stage itself, kept beside their logits
WEIGHT_FILES = ("*.safetensors", "*.bin", "config.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "merges.txt",
                   "special_tokens_map.json", "spiece.model", "sentencepiece.bpe.model")


def _files(directory: Path, patterns) -> list[Path]:
    return sorted({p for pattern in patterns for p in directory.glob(pattern) if p.is_file()})


def fingerprint(teacher_dir: Union[str, Path], prepared_dir: Union[str, Path], max_length: int) -> dict:
    """Hashes that identify a set of teacher logits."""
    teacher_dir, prepared_dir = Path(teacher_dir), Path(prepared_dir)
    for path in [prepared_dir / f"{part}.parquet" for part in PARTS]:
        if not path.is_file():
            raise CacheError(f"{path}: prepared split not found; run `dvc repro prepare` first")
    if not _files(teacher_dir, WEIGHT_FILES):
        raise CacheError(f"{teacher_dir}: no teacher weights found; run `dvc repro train_teacher` first")
    return {
        "teacher_weights": sha256_files(_files(teacher_dir, WEIGHT_FILES)),
        "tokenizer": sha256_files(_files(teacher_dir, TOKENIZER_FILES), extra=f"max_length={max_length}"),
        "data": {part: sha256_files([prepared_dir / f"{part}.parquet"]) for part in PARTS},
    }


def _augment_seed(params: Params) -> int:
    return params.seed if params.distill.augment.seed is None else params.distill.augment.seed


def augment_settings(params: Params) -> dict:
    """The augmentation settings in force (seed resolved), as recorded in the manifest."""
    cfg = params.distill.augment
    if cfg.copies == 0 or cfg.max_rows == 0:
        return {"copies": 0}  # off: the other settings do not matter
    return {**dataclasses.asdict(cfg), "seed": _augment_seed(params)}


def _augmented_texts(params: Params, tokenizer, frames: dict, test: pd.DataFrame) -> pd.DataFrame:
    """Augmented copies of the training (and, if asked, transfer) texts, none equal to a prepared text."""
    columns = [c for c in (TEXT, PAIR) if c in frames["train"].columns]
    sources = [frames["train"]] + ([frames["transfer"]] if params.distill.augment.include_transfer else [])
    known = pd.concat([frame[columns] for frame in [*frames.values(), test]])
    return augment(pd.concat([f[columns] for f in sources], ignore_index=True), tokenizer, params.distill.augment,
                   _augment_seed(params), known)


def teacher_logits(params: Params, teacher_dir: Union[str, Path] = TEACHER_DIR,
                   prepared_dir: Union[str, Path] = PREPARED_DIR, out_dir: Union[str, Path] = LOGITS_DIR) -> dict:
    teacher_dir, prepared_dir = Path(teacher_dir), Path(prepared_dir)
    model = load_classifier(str(teacher_dir), "models/teacher")
    tokenizer = load_tokenizer(str(teacher_dir), "models/teacher")
    max_length = params.teacher.max_length
    rows = {}
    frames = {part: load_split(part, prepared_dir) for part in PARTS}
    frames[AUGMENTED] = _augmented_texts(params, tokenizer, frames, load_split("test", prepared_dir))
    with atomic_dir(out_dir) as scratch:
        for part, frame in frames.items():
            logits = predict_logits(model, tokenizer, frame, max_length, params.evaluate.batch_size) if len(frame) \
                else np.zeros((0, model.config.num_labels), dtype=np.float32)
            np.save(scratch / f"{part}.npy", logits)
            rows[part] = int(len(frame))
        frames[AUGMENTED].to_parquet(scratch / f"{AUGMENTED}.parquet", index=False)
        manifest = {**fingerprint(teacher_dir, prepared_dir, max_length), "rows": rows,
                    "num_labels": int(model.config.num_labels), "max_length": max_length,
                    "augment": {"settings": augment_settings(params),
                                "texts": sha256_files([scratch / f"{AUGMENTED}.parquet"])}}
        write_json(scratch / "manifest.json", manifest)
    return manifest


def load_augmented(logits_dir: Union[str, Path]) -> pd.DataFrame:
    """The augmented texts cached by ``teacher_logits`` (empty when augmentation is off)."""
    path = Path(logits_dir) / f"{AUGMENTED}.parquet"
    if not path.is_file():
        raise CacheError(f"{path}: not found; the cache predates augmentation, run `dvc repro teacher_logits`")
    return pd.read_parquet(path)


def load_cached_logits(logits_dir: Union[str, Path], teacher_dir: Union[str, Path],
                       prepared_dir: Union[str, Path], max_length: int,
                       augment: Union[dict, None] = None) -> dict[str, np.ndarray]:
    """The cached logits per part (``augmented`` included), after checking the manifest against the
    current inputs; ``augment`` (from :func:`augment_settings`) also checks the augmentation settings."""
    logits_dir = Path(logits_dir)
    manifest_path = logits_dir / "manifest.json"
    if not manifest_path.is_file():
        raise CacheError(f"{manifest_path}: teacher-logit cache not found; run `dvc repro teacher_logits`")
    manifest = read_json(manifest_path)
    current = fingerprint(teacher_dir, prepared_dir, max_length)
    stale = []
    if manifest.get("teacher_weights") != current["teacher_weights"]:
        stale.append(f"the teacher weights in {teacher_dir}")
    if manifest.get("tokenizer") != current["tokenizer"]:
        stale.append("the tokenizer or teacher.max_length")
    for part in PARTS:
        if manifest.get("data", {}).get(part) != current["data"][part]:
            stale.append(f"{Path(prepared_dir) / (part + '.parquet')}")
    cached_augment = manifest.get("augment", {})
    augmented_path = logits_dir / f"{AUGMENTED}.parquet"
    if augment is not None and cached_augment.get("settings") != augment:
        stale.append("distill.augment")
    elif augmented_path.is_file() and cached_augment.get("texts") != sha256_files([augmented_path]):
        stale.append(str(augmented_path))
    if stale:
        raise CacheError(f"{logits_dir} is stale: {', '.join(stale)} changed since the teacher logits were cached; "
                         "run `dvc repro teacher_logits` (or `python -m distillery teacher_logits`)")
    parts = [*PARTS, AUGMENTED] if AUGMENTED in manifest["rows"] else list(PARTS)
    cached = {part: np.load(logits_dir / f"{part}.npy") for part in parts}
    for part, logits in cached.items():
        if len(logits) != manifest["rows"][part]:
            raise CacheError(f"{logits_dir / (part + '.npy')}: {len(logits)} rows, manifest says "
                             f"{manifest['rows'][part]}; run `dvc repro teacher_logits`")
    return cached
