"""The teacher-output cache: where ``teacher_logits`` keeps the teacher's outputs, the manifest of
what they were computed from, and the checks ``distill`` runs before it trusts them.

The manifest holds hashes of the teacher's weights, each prepared data file and the tokenizer
settings. :func:`load_cached_logits` recomputes them and refuses a cache that no longer matches, so
a student is never trained on outputs from another teacher or other data.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Union

import numpy as np
import pandas as pd

from distillery.config import Params
from distillery.errors import CacheError
from distillery.files import read_json, sha256_files

PARTS = ("train", "transfer", "validation")
AUGMENTED = "augmented"  # texts drawn by the stage itself, kept beside their logits
# the weights and their config; not training_args.bin, the Trainer's pickled arguments, which name a scratch
# directory and so differ between two trainings of the same weights
WEIGHT_FILES = ("*.safetensors", "pytorch_model*.bin", "config.json")
TOKENIZER_FILES = ("tokenizer.json", "pixel_processor.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "merges.txt",
                   "special_tokens_map.json", "spiece.model", "sentencepiece.bpe.model")


def _files(directory: Path, patterns) -> list[Path]:
    return sorted({p for pattern in patterns for p in directory.glob(pattern) if p.is_file()})


def fingerprint(teacher_dir: Union[str, Path], prepared_dir: Union[str, Path], max_length: int,
                settings: Union[dict, None] = None) -> dict:
    """Hashes that identify a set of teacher logits. ``settings``: the task type's own featurising settings
    (``TaskType.settings()``, e.g. extractive QA's doc_stride), hashed with the tokenizer when there are any."""
    teacher_dir, prepared_dir = Path(teacher_dir), Path(prepared_dir)
    for path in [prepared_dir / f"{part}.parquet" for part in PARTS]:
        if not path.is_file():
            raise CacheError(f"{path}: prepared split not found; run `dvc repro prepare` first")
    if not _files(teacher_dir, WEIGHT_FILES):
        raise CacheError(f"{teacher_dir}: no teacher weights found; run `dvc repro train_teacher` first")
    return {
        "teacher_weights": teacher_weights_hash(teacher_dir),
        "tokenizer": sha256_files(_files(teacher_dir, TOKENIZER_FILES), extra=f"max_length={max_length}" +
                                  "".join(f",{key}={value}" for key, value in sorted((settings or {}).items()))),
        "data": {part: sha256_files([prepared_dir / f"{part}.parquet"]) for part in PARTS},
    }


def teacher_weights_hash(teacher_dir: Union[str, Path]) -> str:
    """The hash of the teacher's weight files, as the cache manifest records it (``teacher_weights``)."""
    return sha256_files(_files(Path(teacher_dir), WEIGHT_FILES))


def augment_seed(params: Params) -> int:
    return params.seed if params.distill.augment.seed is None else params.distill.augment.seed


def augment_settings(params: Params) -> dict:
    """The augmentation settings in force (seed resolved), as recorded in the manifest."""
    cfg = params.distill.augment
    if cfg.copies == 0 or cfg.max_rows == 0:
        return {"copies": 0}  # off: the other settings do not matter
    return {**dataclasses.asdict(cfg), "seed": augment_seed(params)}


def load_augmented(logits_dir: Union[str, Path]) -> pd.DataFrame:
    """The augmented texts cached by ``teacher_logits`` (empty when augmentation is off)."""
    path = Path(logits_dir) / f"{AUGMENTED}.parquet"
    if not path.is_file():
        raise CacheError(f"{path}: not found; the cache predates augmentation, run `dvc repro teacher_logits`")
    return pd.read_parquet(path)


def load_cached_logits(logits_dir: Union[str, Path], teacher_dir: Union[str, Path],
                       prepared_dir: Union[str, Path], max_length: int,
                       augment: Union[dict, None] = None, settings: Union[dict, None] = None) -> dict[str, np.ndarray]:
    """The cached logits per part (``augmented`` included), after checking the manifest against the
    current inputs; ``augment`` (from :func:`augment_settings`) also checks the augmentation settings."""
    logits_dir = Path(logits_dir)
    manifest_path = logits_dir / "manifest.json"
    if not manifest_path.is_file():
        raise CacheError(f"{manifest_path}: teacher-logit cache not found; run `dvc repro teacher_logits`")
    manifest = read_json(manifest_path)
    current = fingerprint(teacher_dir, prepared_dir, max_length, settings)
    stale = []
    if manifest.get("teacher_weights") != current["teacher_weights"]:
        stale.append(f"the teacher weights in {teacher_dir}")
    if manifest.get("tokenizer") != current["tokenizer"]:
        stale.append("the tokenizer or teacher.max_length (or the task type's settings, e.g. doc_stride)")
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
    cached = {}
    for part in parts:
        path = logits_dir / f"{part}.npy"
        try:
            cached[part] = np.load(path, allow_pickle=False)
        except PermissionError:
            raise  # not a broken file: running the pass again would not help
        except (OSError, ValueError, EOFError) as exc:  # cut short (a full disk, a kill), or overwritten
            import textwrap

            said = textwrap.shorten(str(exc).splitlines()[0], 120, placeholder=" ...") if str(exc) else ""
            raise CacheError(f"{path}: unreadable ({said or type(exc).__name__}); run `dvc repro teacher_logits` (or "
                             "`python -m distillery teacher_logits`)") from None
    counts = manifest.get("outputs", manifest["rows"])  # outputs per part, when they are not one per row
    for part, logits in cached.items():
        if len(logits) != counts[part]:
            raise CacheError(f"{logits_dir / (part + '.npy')}: {len(logits)} rows, manifest says "
                             f"{counts[part]}; run `dvc repro teacher_logits`")
        finite = np.isfinite(logits) | (logits <= -1e3) if logits.dtype.kind == "f" else np.ones(1, dtype=bool)
        if not finite.all():  # QA pads with -1e4, never NaN: a NaN or +inf is a broken teacher or a broken file
            raise CacheError(f"{logits_dir / (part + '.npy')}: holds values that are not finite numbers (NaN or "
                             "infinity); the teacher's pass broke or the file did: run `dvc repro teacher_logits`")
    for part in cached:  # a well-formed file of the right shape that is not the pass's (older caches: not recorded)
        path = logits_dir / f"{part}.npy"
        if part in manifest.get("files", {}) and sha256_files([path]) != manifest["files"][part]:
            raise CacheError(f"{path}: not the file teacher_logits wrote (its sha256 is not the manifest's); run "
                             "`dvc repro teacher_logits` (or `python -m distillery teacher_logits`)")
    return cached
