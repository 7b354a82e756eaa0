"""What the served model takes from the student's tokenizer beyond ``tokenizer.json``: its padding and the side
a long text is cut on. Reading them means loading the tokenizer through transformers, and with it torch: about 4.5
of the 13.5 s a tiny ``register`` took on a 2-core machine. ``export``, which has both loaded already, records
them in ``deployment.json`` with a hash of the tokenizer's files; ``register`` takes that record while the files
are the ones it was read from, and reads them again otherwise (an export from before the record, or files changed
by hand since)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from distillery.files import sha256_files

# the files of a model directory that are not the tokenizer's, whatever else it holds: the weights
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".onnx", ".h5", ".msgpack", ".ckpt")


def tokenizer(directory: Path):
    """The student's tokenizer, from its directory. A student of Distillery's own families (BiLSTM, bag of
    embeddings) has a ``config.json`` of a model type transformers does not know: when its tokenizer names its
    own class, that config is not read (reading it only prints transformers' "model of type" warning). Any
    other directory loads as transformers loads it, config and all (the config can decide the class)."""
    from transformers import AutoTokenizer, PretrainedConfig
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING_NAMES

    def read(name: str) -> dict:
        path = Path(directory) / name
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}

    unknown = read("config.json").get("model_type") not in (None, *CONFIG_MAPPING_NAMES)
    named = isinstance(read("tokenizer_config.json").get("tokenizer_class"), str)
    return AutoTokenizer.from_pretrained(str(directory), **({"config": PretrainedConfig()} if unknown and named
                                                            else {}))


def files_sha256(directory: Path) -> str:
    """One hash of every file in ``directory`` that may decide how its tokenizer loads (all but the weights)."""
    return sha256_files(sorted(path for path in Path(directory).iterdir()
                               if path.is_file() and path.suffix not in WEIGHT_SUFFIXES))


def padding(directory: Path) -> dict:
    """The tokenizer's padding (id, token, type id) and truncation side, read through transformers, with the hash
    of the files they were read from."""
    loaded = tokenizer(directory)
    return {"pad_id": loaded.pad_token_id, "pad_token": loaded.pad_token,
            "pad_type_id": getattr(loaded, "pad_token_type_id", 0) or 0,
            # the side a long text is cut on, as in training (transformers keeps it outside tokenizer.json)
            "truncation_side": getattr(loaded, "truncation_side", "right") or "right",
            "files_sha256": files_sha256(directory)}


def recorded_padding(directory: Path, recorded: Optional[dict]) -> dict:
    """``recorded`` (export's ``padding``) when the tokenizer's files are still the ones it was read from, else
    ``padding`` read again."""
    if isinstance(recorded, dict) and recorded.get("files_sha256") == files_sha256(directory):
        return recorded
    return padding(directory)
