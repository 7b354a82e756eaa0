"""The ``teacher_logits`` stage: run the teacher once over the training, transfer and validation
rows, and cache its logits with a manifest of what they were computed from.

The manifest holds hashes of the teacher's weights, each data file and the tokenizer settings.
``distill`` recomputes them and refuses a cache that no longer matches, so a student is never
trained on logits from another teacher or other data.
"""
from __future__ import annotations

from pathlib import Path
from typing import Union

import numpy as np

from distillery.config import Params
from distillery.data import load_split
from distillery.errors import CacheError
from distillery.files import atomic_dir, read_json, sha256_files, write_json
from distillery.inference import predict_logits
from distillery.modeling import load_classifier, load_tokenizer
from distillery.paths import LOGITS_DIR, PREPARED_DIR, TEACHER_DIR

PARTS = ("train", "transfer", "validation")
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


def teacher_logits(params: Params, teacher_dir: Union[str, Path] = TEACHER_DIR,
                   prepared_dir: Union[str, Path] = PREPARED_DIR, out_dir: Union[str, Path] = LOGITS_DIR) -> dict:
    teacher_dir = Path(teacher_dir)
    model = load_classifier(str(teacher_dir), "models/teacher")
    tokenizer = load_tokenizer(str(teacher_dir), "models/teacher")
    max_length = params.teacher.max_length
    rows = {}
    with atomic_dir(out_dir) as scratch:
        for part in PARTS:
            frame = load_split(part, prepared_dir)
            logits = predict_logits(model, tokenizer, frame, max_length, params.evaluate.batch_size) if len(frame) \
                else np.zeros((0, model.config.num_labels), dtype=np.float32)
            np.save(scratch / f"{part}.npy", logits)
            rows[part] = int(len(frame))
        manifest = {**fingerprint(teacher_dir, prepared_dir, max_length), "rows": rows,
                    "num_labels": int(model.config.num_labels), "max_length": max_length}
        write_json(scratch / "manifest.json", manifest)
    return manifest


def load_cached_logits(logits_dir: Union[str, Path], teacher_dir: Union[str, Path],
                       prepared_dir: Union[str, Path], max_length: int) -> dict[str, np.ndarray]:
    """The cached logits per part, after checking the manifest against the current inputs."""
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
    if stale:
        raise CacheError(f"{logits_dir} is stale: {', '.join(stale)} changed since the teacher logits were cached; "
                         "run `dvc repro teacher_logits` (or `python -m distillery teacher_logits`)")
    cached = {part: np.load(logits_dir / f"{part}.npy") for part in PARTS}
    for part, logits in cached.items():
        if len(logits) != manifest["rows"][part]:
            raise CacheError(f"{logits_dir / (part + '.npy')}: {len(logits)} rows, manifest says "
                             f"{manifest['rows'][part]}; run `dvc repro teacher_logits`")
    return cached
