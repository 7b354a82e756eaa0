"""Hugging Face models and tokenizers: resolving ``bundled:<name>``, local paths and Hub ids, loading
with one-line errors, padding, parameter counts. Shared by every task type and student family."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Optional

from torch import nn

from distillery.errors import DataError, HubUnreachable, ModelError, hub_out_of_reach, hub_unreachable
from distillery.model_limits import BUNDLED_MODELS, model_name_problem, usable_positions  # noqa: F401 (re-exported)
from distillery.sources import package_dir, quiet_hub

def resolve_model(name: str, key: str) -> str:
    """Turn ``bundled:<name>``, a local path or a Hub id into something ``from_pretrained`` accepts."""
    problem = model_name_problem(name, key)
    if problem:
        raise ModelError(problem)
    if name.startswith("bundled:"):
        package, relative = BUNDLED_MODELS[name.split(":", 1)[1]]
        return str(package_dir(package) / relative)
    path = Path(name).expanduser()
    return str(path) if path.exists() else name  # a Hub id ("org/name"); from_pretrained says whether it can be fetched


REVISIONS: dict[str, str] = {}  # Hub id -> the commit this process loaded it at (local paths have none)


def hub_revisions() -> dict[str, str]:
    """The Hub ids this process loaded, each with the commit of the snapshot it read: recorded in training.json, so
    a run names the exact upstream model, and a later stage can tell when the Hub (or the cache) has moved on."""
    return dict(REVISIONS)


def check_same_revisions(recorded: Optional[dict], key: str, stage: str) -> None:
    """A Hub id loaded here at another commit than ``recorded`` (the teacher's training.json) loaded it: a student
    whose layers come from ``teacher.model`` would start from another model than the teacher was trained from, and
    DVC, which hashes no Hub model, calls the teacher up to date."""
    for name, commit in (recorded or {}).items():
        now = REVISIONS.get(name)
        if now is not None and commit and now != commit:
            raise ModelError(f"{key}: {name!r} is at commit {now[:12]} on the Hub (or in the cache) now, but the "
                             f"teacher was trained from {commit[:12]}: retrain it (`dvc repro -f train_teacher`), or "
                             f"{stage} would mix two models")


def _cached_commit(name: str) -> Optional[str]:
    """The commit of the snapshot of Hub id ``name`` that the Hugging Face cache serves now (what from_pretrained
    just read, online or off), or None. transformers 5 no longer sets a config's ``_commit_hash``."""
    import re

    try:
        from huggingface_hub import try_to_load_from_cache

        path = try_to_load_from_cache(name, "config.json")
    except Exception:  # noqa: BLE001 - a record, never the reason a load fails
        return None
    found = re.search(r"[/\\]snapshots[/\\]([0-9a-f]{40})[/\\]", path) if isinstance(path, str) else None
    return found.group(1) if found else None


def from_pretrained(loader, name: str, key: str, **kwargs):
    local = Path(name).exists()
    try:
        with quiet_hub(name):
            loaded = loader.from_pretrained(name, **kwargs)
        if not local:
            commit = _cached_commit(name)
            if commit:
                REVISIONS[name] = commit
        return loaded
    except Exception as exc:  # noqa: BLE001 - httpx's ProxyError is no OSError: a proxy refusing the Hub is an outage
        unreachable = not local and hub_unreachable(exc)
        damaged = type(exc).__name__ == "SafetensorError"  # a weights file cut short or overwritten
        if not isinstance(exc, (OSError, ValueError)) and not unreachable and not damaged:
            raise
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if damaged:  # the fix depends on who wrote it: a stage, the Hub's download, the user
            fix = "run the stage that wrote it again (dvc repro)" if key.startswith("models/") else (
                "replace it" if local else "delete its copy in the Hugging Face cache (HF_HOME) to download it again")
            raise ModelError(f"{key}: cannot load {name!r}: its weights file is damaged ({message}); {fix}") from None
        if unreachable:
            cache = "" if hub_out_of_reach() else " (or the model in the HF cache with HF_HUB_OFFLINE=1)"
            raise HubUnreachable(f"{key}: the Hugging Face Hub did not answer for {name!r} ({message}); retry once it "
                                 f"does, or use a local directory{cache}") from None
        hint = "" if local else " (it is not a local directory, and the Hugging Face Hub could not provide it)"
        raise ModelError(f"{key}: cannot load {name!r}{hint}: {message}") from None


def load_tokenizer(name: str, key: str):
    from transformers import AutoTokenizer

    return from_pretrained(AutoTokenizer, name, key)


def ensure_padding(model: nn.Module, tokenizer, key: str) -> None:
    """Batches are padded: give a tokenizer without a pad token its EOS token (GPT-2 style models)."""
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ModelError(f"{key}: the tokenizer has neither a pad nor an EOS token, so batches cannot be padded")
        tokenizer.pad_token = tokenizer.eos_token
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tokenizer.pad_token_id


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())




def quiet_from_pretrained(loader, name: str, key: str, **kwargs):
    """``from_pretrained`` without the "newly initialised head" report and the per-load progress bar."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()  # the "newly initialised classifier" report is expected here
    hf_logging.disable_progress_bar()  # a "Loading weights" bar per load is noise
    try:
        return from_pretrained(loader, name, key, **kwargs)
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def check_max_length(model: nn.Module, max_length: int, key: str) -> None:
    """Refuse, before any training, a ``max_length`` longer than the model has position embeddings for."""
    limit = usable_positions(model.config.to_dict())
    if limit is not None and limit < 1:
        raise ModelError(f"{key}: the model's position ids start after its pad_token_id "
                         f"({model.config.pad_token_id}), beyond its {model.config.max_position_embeddings} position "
                         f"embeddings, so it cannot take a single token; check pad_token_id in its config.json")
    if limit is not None and max_length > limit:
        raise ModelError(f"{key} = {max_length} is not allowed; the model takes at most {limit} tokens "
                         f"(max_position_embeddings {model.config.max_position_embeddings}"
                         f"{', less its position offset' if limit != model.config.max_position_embeddings else ''}), "
                         f"so use at most {limit}")


UNREADABLE_FAIL_SHARE = 0.5  # more than this share of training rows the tokenizer cannot read stops the stage


def _input_ids(features) -> tuple:
    """The featurised rows' token ids as one flat int64 array and the row offsets into it (from 0), read from the
    Arrow column with numpy: a second for a million rows."""
    import numpy as np

    column = features.with_format("arrow")["input_ids"]
    column = column.combine_chunks() if hasattr(column, "combine_chunks") else column
    offsets = np.asarray(column.offsets, dtype=np.int64)
    return np.asarray(column.flatten(), dtype=np.int64), offsets - offsets[0]


def check_readable(features, tokenizer, key: str, where: str, stage: str) -> int:
    """Count the featurised rows whose every token but the special ones is the tokenizer's unknown token: text the
    tokenizer cannot read (emoji, or a script its vocabulary lacks, for a WordPiece or SentencePiece vocabulary),
    which every model then sees as one identical input. A token that is only a word-start mark (SentencePiece's
    "▁" before an unknown piece) is no content either. Some: a warning; more than half: a one-line DataError
    naming ``key``. Tokenizers without an unknown token (byte-level BPE) read everything. Counted on the Arrow
    column with numpy: a second for a million rows."""
    unknown = getattr(tokenizer, "unk_token_id", None)
    if unknown is None or "input_ids" not in getattr(features, "column_names", ()):
        return 0
    import numpy as np

    values, offsets = _input_ids(features)
    present = np.unique(values)
    marks = [int(i) for i, token in zip(present, tokenizer.convert_ids_to_tokens(present.tolist()))
             if isinstance(token, str) and not token.replace("\u2581", "").replace("\u0120", "").strip()]
    ignored = (set(getattr(tokenizer, "all_special_ids", ())) | set(marks)) - {unknown}
    content = ~np.isin(values, list(ignored))
    counted = np.concatenate([[0], np.cumsum(content)])
    unknowns = np.concatenate([[0], np.cumsum(content & (values == unknown))])
    per_row = counted[offsets[1:]] - counted[offsets[:-1]]
    unreadable = int(((per_row > 0) & (unknowns[offsets[1:]] - unknowns[offsets[:-1]] == per_row)).sum())
    rows = len(offsets) - 1
    if not unreadable:
        return 0
    share = unreadable / rows
    what = (f"{unreadable} of {rows} {where} ({share:.0%}) are nothing but the unknown token "
            f"{tokenizer.unk_token!r} to the tokenizer of {key}: it cannot read them (emoji, or a script its "
            f"vocabulary lacks), so every model sees them as one and the same input")
    if share > UNREADABLE_FAIL_SHARE:
        raise DataError(f"{what}; choose a {key} whose vocabulary covers the data's language")
    print(f"{stage}: warning: {what}")
    return unreadable


# Where architectures keep the dropout on attention probabilities: BERT-likes, DistilBERT / BART / Llama-likes, GPT-2.
ATTENTION_DROPOUT_KEYS = ("attention_probs_dropout_prob", "attention_dropout", "attn_pdrop")


def set_attention_dropout(model: nn.Module, probability: Optional[float], key: str) -> None:
    """Give ``model`` (in place) ``probability`` of dropout on its attention probabilities while training; ``None``
    keeps its own. The model is rebuilt from its config with the new value and its weights copied back, because
    architectures read the value at construction. With 0, PyTorch's fused attention kernel runs on CPU: the
    probabilities are never materialised, nor a mask drawn for them."""
    if probability is None:
        return
    from transformers import PreTrainedModel

    if not isinstance(model, PreTrainedModel):
        raise ModelError(f"{key}: this model ({type(model).__name__}) is not a transformer; set it to null")
    config = copy.deepcopy(model.config)
    names = [name for name in ATTENTION_DROPOUT_KEYS if name in config.to_dict()]
    if not names:
        raise ModelError(f"{key}: the {config.model_type} architecture has no attention dropout setting (none of "
                         f"{', '.join(ATTENTION_DROPOUT_KEYS)}); set it to null")
    if all(getattr(config, name) == probability for name in names):
        return
    for name in names:
        setattr(config, name, probability)
    rebuilt = type(model)(config)
    rebuilt.load_state_dict(model.state_dict())
    rebuilt.train(model.training)
    for name, child in rebuilt.named_children():
        setattr(model, name, child)
    model.config = rebuilt.config


def freeze_embeddings(model: nn.Module, freeze: bool, key: str) -> None:
    """Take ``model``'s input word-embedding matrix out of training (in place), when ``freeze``: no gradient is
    computed for it and the optimizer keeps no state for it. A model without one is refused."""
    if not freeze:
        return
    try:
        embeddings = model.get_input_embeddings()
    except (AttributeError, NotImplementedError):  # an image model
        embeddings = None
    if not isinstance(embeddings, nn.Embedding):
        raise ModelError(f"{key}: this model ({type(model).__name__}) has no input word embeddings to freeze; set "
                         "it to false")
    embeddings.weight.requires_grad_(False)


TRUNCATION_NOTE_SHARE = 0.05  # above this share of rows filling max_length, the stage says so


def note_truncated(features, max_length: int, key: str, where: str, stage: str) -> int:
    """Count the featurised rows that fill ``max_length`` tokens, cut there (or ending exactly at it); above
    ``TRUNCATION_NOTE_SHARE`` of them, print a note naming ``key``: texts much longer than ``max_length`` trained
    without a word (a new user's 400-word reviews against the default 64 tokens). Images and extractive QA's
    windows (which cover long contexts by their stride) have no such column, or say nothing."""
    columns = getattr(features, "column_names", ())
    if "input_ids" not in columns or "example_index" in columns:  # extractive QA: windows with a stride
        return 0
    import numpy as np

    lengths = np.diff(_input_ids(features)[1])
    full = int((lengths >= max_length).sum())
    if lengths.size and full / lengths.size > TRUNCATION_NOTE_SHARE:
        print(f"{stage}: note: {full:,} of {lengths.size:,} {where} ({full / lengths.size:.0%}) fill {key} = "
              f"{max_length} tokens: most of them are cut to that many (the rest of each is never seen); raise {key} "
              "if what is cut matters, at the cost of speed", flush=True)
    return full


def note_beyond_teacher(features, student_length: int, teacher_length: int) -> int:
    """The distilled rows longer than ``teacher.max_length`` in the student's tokens, when ``student.max_length`` is
    longer: the teacher's cached outputs saw only the start of those texts, so the student is taught, for the whole
    text, the teacher's answer to its start. Said, not refused: the longer reading can still help the labels. (A
    student with a tokenizer of its own counts in its tokens, not the teacher's: near enough for a note.)"""
    columns = getattr(features, "column_names", ())
    if student_length <= teacher_length or "input_ids" not in columns:
        return 0
    import numpy as np

    beyond = int((np.diff(_input_ids(features)[1]) > teacher_length).sum())
    if beyond:
        print(f"distill: note: student.max_length ({student_length}) is above teacher.max_length ({teacher_length}): "
              f"{beyond:,} of {len(features):,} distilled rows are longer than {teacher_length} tokens, and the "
              f"teacher's outputs for them came from their first {teacher_length} only", flush=True)
    return beyond


TRACE_TOKENS = 16  # the longest trace input: every model takes this many positions, whatever its tokenizer


def trace_sample(tokenizer, model, texts: list[str], pairs: Optional[list[str]] = None) -> dict:
    """The tokenized batch an export traces: ``texts`` (and ``pairs``) cut to ``TRACE_TOKENS`` tokens, or to the
    model's positions if fewer, and padded, so the traced graph takes a mask with padding in it. Uncut, a
    character-level tokenizer made 44 tokens of a sample sentence for a model of 40 positions, and the export
    failed after the whole training. Where both rows came out at the cap, the first is a single word."""
    positions = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    limit = TRACE_TOKENS if not positions else max(4, min(TRACE_TOKENS, int(positions) - 2))
    kwargs = dict(padding=True, truncation=True, max_length=limit, return_tensors="pt")
    sample = tokenizer(texts, pairs, **kwargs) if pairs else tokenizer(texts, **kwargs)
    if "attention_mask" in sample and bool(sample["attention_mask"].all()):
        texts = ["a", *texts[1:]]
        sample = tokenizer(texts, [pairs[0].split()[0], *pairs[1:]], **kwargs) if pairs else \
            tokenizer(texts, **kwargs)
    return sample
