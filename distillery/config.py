"""params.yaml, read once into frozen, validated dataclasses.

Every value is checked at load time. A bad value raises ``ConfigError`` naming the key and the
allowed range, so a run never fails half-way because of a typo.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml

from distillery.errors import ConfigError

SPLITS = ("train", "validation", "test")


@dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters shared by every model Distillery trains with the HF ``Trainer``."""

    epochs: float = 2.0
    batch_size: int = 32
    eval_batch_size: int = 128
    learning_rate: float = 5e-5
    weight_decay: float = 0.01
    warmup: float = 0.06  # fraction of the training steps
    logging_steps: int = 50
    metric_for_best_model: str = "accuracy"  # accuracy | macro_f1 | loss


@dataclass(frozen=True)
class DataConfig:
    source: str = "bundled:tweets"
    hub_config: Union[str, None] = None
    files: dict = field(default_factory=dict)  # split -> local file, when the source already has splits
    splits: dict = field(default_factory=lambda: {s: s for s in SPLITS})  # our split -> source split name
    text_column: str = "text"
    text_pair_column: Union[str, None] = None
    label_column: str = "label"
    labels: Union[list, None] = None
    on_bad_rows: str = "drop"  # drop | fail
    encoding_errors: str = "strict"  # strict | replace
    split_fractions: dict = field(default_factory=lambda: {"train": 0.8, "validation": 0.1, "test": 0.1})
    max_samples: dict = field(default_factory=dict)  # split -> row cap, for quick runs


@dataclass(frozen=True)
class TeacherConfig:
    model: str = "bundled:minilm-l6"
    max_length: int = 64
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass(frozen=True)
class StudentConfig:
    source: str = "layers"  # layers: copy layers of a transformer | model: any Hub id or local path
    init: str = "pretrained"  # pretrained: layers of teacher.model | finetuned: layers of the trained teacher
    layers: Union[list, str] = field(default_factory=lambda: [0, 5])  # encoder layer indices, or "every_other"
    model: Union[str, None] = None
    max_length: int = 64


@dataclass(frozen=True)
class TransferSetConfig:
    """Unlabelled texts the teacher labels; the students' KD term learns from them, the baseline never sees them."""

    source: str = "none"  # none | remainder | a local file | hub:<id>
    max_rows: int = 20000
    text_column: Union[str, None] = None  # defaults to data.text_column
    split: str = "train"  # split name for a hub:<id> source
    hub_config: Union[str, None] = None  # config name for a hub:<id> source


@dataclass(frozen=True)
class AugmentConfig:
    """Tang et al. 2019 augmentation: perturbed copies of the training texts join the transfer set."""

    copies: int = 0  # augmented texts drawn per source text; 0 = off
    p_mask: float = 0.1  # per word: replace with the mask token
    p_replace: float = 0.1  # per word (if not masked): replace with a random vocabulary word
    p_ngram: float = 0.25  # per text: cut to a random n-gram
    ngram_max: int = 5
    include_transfer: bool = False  # also augment the transfer-set texts, not only the labelled training texts
    max_rows: int = 20000
    seed: Union[int, None] = None  # null = the top-level seed


@dataclass(frozen=True)
class HiddenLossConfig:
    """PKD / TinyBERT-style hidden-state MSE between each student layer and the teacher layer it was copied from."""

    weight: float = 0.0  # 0 = off; > 0 runs the fine-tuned teacher on every training batch (not cached)


@dataclass(frozen=True)
class DistillConfig:
    alpha: float = 0.5
    temperature: float = 2.0
    loss: str = "kl"  # kl (Hinton et al. 2015) | mse (Tang et al. 2019)
    transfer_set: TransferSetConfig = field(default_factory=TransferSetConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    hidden_loss: HiddenLossConfig = field(default_factory=HiddenLossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass(frozen=True)
class EvaluateConfig:
    batch_size: int = 128
    seeds: list = field(default_factory=lambda: [1, 2, 3])  # for `python -m distillery kd_gain`


@dataclass(frozen=True)
class ExportConfig:
    opset: int = 17
    fp32_atol: float = 1e-4  # largest |logit difference| allowed between ONNX fp32 and PyTorch
    int8_max_accuracy_drop: float = 1.0  # accuracy points below the fp32 student before int8 is not deployable
    parity_batch_size: int = 32  # test rows per batch, padded to the batch's longest row as when served


@dataclass(frozen=True)
class BenchmarkConfig:
    batch_sizes: list = field(default_factory=lambda: [1, 8, 32])
    sequence_lengths: list = field(default_factory=lambda: [16, 64, 128])
    warmup: int = 10
    runs: int = 100
    threads: int = 2  # the same for torch and onnxruntime


@dataclass(frozen=True)
class GateConfig:
    """What a candidate student must show before it becomes the registry's ``champion``."""

    min_retention: float = 0.97  # candidate accuracy / teacher accuracy, on the test split
    max_p95_ms: float = 10.0  # p95 latency at batch 1 (benchmark cell b1_s<max_length>), deployable model
    max_size_mb: float = 100.0  # size of the deployable ONNX file
    metric: str = "accuracy"  # accuracy | macro_f1: compared with the current champion on the same test split
    tolerance: float = 0.0  # the candidate may trail the champion by at most this much of ``metric``


@dataclass(frozen=True)
class RegisterConfig:
    model_name: str = "distillery-student"
    experiment: str = "distillery"
    lock_timeout_s: float = 600.0  # wait this long for another registration of the same model name
    gate: GateConfig = field(default_factory=GateConfig)


@dataclass(frozen=True)
class ScheduleConfig:
    """How the Prefect deployment runs the pipeline unattended (``python -m flows.deploy``). No stage reads it."""

    cron: Union[str, None] = "0 2 * * *"  # nightly; null = no schedule (runs start by trigger or by hand)
    timezone: str = "UTC"
    event: str = "distillery.data.updated"  # a run starts when this event arrives (`python -m flows.watch` emits it)
    watch_interval_seconds: float = 300.0  # how often `python -m flows.watch` hashes the data source
    stage_timeout_minutes: float = 120.0  # a stage's `dvc repro` is killed after this long
    stage_timeouts: dict = field(default_factory=dict)  # stage -> minutes, overriding stage_timeout_minutes

    def timeout_seconds(self, stage: str) -> float:
        return 60.0 * float(self.stage_timeouts.get(stage, self.stage_timeout_minutes))


@dataclass(frozen=True)
class Params:
    seed: int = 42
    task: str = "text_classification"
    data: DataConfig = field(default_factory=DataConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    benchmark: BenchmarkConfig = field(default_factory=BenchmarkConfig)
    register: RegisterConfig = field(default_factory=RegisterConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)

    def flat(self) -> dict[str, Any]:
        """Dotted keys -> values, for logging."""
        return _flatten(dataclasses.asdict(self))


def _flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def _build(cls: type, raw: Any, key: str) -> Any:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys and wrong types by name."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{key or 'params'}: expected a mapping, got {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        where = f"{key}." if key else ""
        raise ConfigError(f"unknown key {where}{unknown[0]}; allowed keys: {', '.join(fields)}")
    defaults = cls()
    values = {}
    for name, value in raw.items():
        sub_key = f"{key}.{name}" if key else name
        default = getattr(defaults, name)
        declared = str(fields[name].type)
        if value is None and default is not None and "None" not in declared and not dataclasses.is_dataclass(default):
            raise ConfigError(f"{sub_key}: a value is required, got null (the default is {default!r})")
        if default is None and value is not None:  # optional fields: check against the declared type
            wanted = list if "list" in declared else int if "int" in declared else str
            if not isinstance(value, wanted) or isinstance(value, bool):
                raise ConfigError(f"{sub_key}: expected {'an' if wanted is int else 'a'} {wanted.__name__} or null, "
                                  f"got {value!r}")
        if dataclasses.is_dataclass(default):
            values[name] = _build(type(default), value, sub_key)
        else:
            values[name] = _coerce(value, default, sub_key)
    return cls(**values)


def _coerce(value: Any, default: Any, key: str) -> Any:
    if value is None or default is None:
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if isinstance(default, int) and not isinstance(default, bool):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if isinstance(default, list) and isinstance(value, str):  # e.g. student.layers: every_other
        return value
    if isinstance(default, (dict, list)) and not isinstance(value, type(default)):
        raise ConfigError(f"{key}: expected a {type(default).__name__}, got {value!r}")
    if isinstance(default, str) and not isinstance(value, str):
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    return value


def _check(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{key} = {value!r} is not allowed; {allowed}")


def _check_train(train: TrainConfig, key: str) -> None:
    _check(train.epochs > 0, f"{key}.epochs", train.epochs, "it must be > 0")
    _check(train.batch_size >= 1, f"{key}.batch_size", train.batch_size, "it must be >= 1")
    _check(train.eval_batch_size >= 1, f"{key}.eval_batch_size", train.eval_batch_size, "it must be >= 1")
    _check(0 < train.learning_rate < 1, f"{key}.learning_rate", train.learning_rate, "it must be in (0, 1)")
    _check(train.weight_decay >= 0, f"{key}.weight_decay", train.weight_decay, "it must be >= 0")
    _check(0 <= train.warmup < 1, f"{key}.warmup", train.warmup, "it is a fraction of the steps, in [0, 1)")
    _check(train.logging_steps >= 1, f"{key}.logging_steps", train.logging_steps, "it must be >= 1")
    _check(train.metric_for_best_model in ("accuracy", "macro_f1", "loss"), f"{key}.metric_for_best_model",
           train.metric_for_best_model, "allowed: accuracy, macro_f1, loss")


def validate(params: Params) -> Params:
    """Range and consistency checks that a type alone cannot express."""
    data, student, distill = params.data, params.student, params.distill
    _check(data.on_bad_rows in ("drop", "fail"), "data.on_bad_rows", data.on_bad_rows, "allowed: drop, fail")
    _check(data.encoding_errors in ("strict", "replace"), "data.encoding_errors", data.encoding_errors,
           "allowed: strict, replace")
    _check(bool(data.source), "data.source", data.source, "name a bundled corpus, hub:<id> or a local file")
    for mapping_key, mapping in (("data.files", data.files), ("data.splits", data.splits),
                                 ("data.split_fractions", data.split_fractions), ("data.max_samples", data.max_samples)):
        extra = sorted(set(mapping) - set(SPLITS))
        _check(not extra, f"{mapping_key}.{extra[0] if extra else ''}", mapping, f"splits are {', '.join(SPLITS)}")
    fractions = data.split_fractions
    _check(all(isinstance(v, (int, float)) and 0 <= v < 1 for v in fractions.values()) and
           abs(sum(fractions.values()) - 1) < 1e-6 and fractions.get("train", 0) > 0,
           "data.split_fractions", fractions, "fractions must be in [0, 1), sum to 1, and train must be > 0")
    for split, cap in data.max_samples.items():
        _check(cap is None or (isinstance(cap, int) and not isinstance(cap, bool) and cap >= 1),
               f"data.max_samples.{split}", cap, "it must be a positive integer or null")
    if data.labels is not None:
        _check(isinstance(data.labels, list) and len(data.labels) >= 2 and len(set(map(str, data.labels))) ==
               len(data.labels), "data.labels", data.labels, "list at least two distinct labels, or null to infer")
    _check(params.teacher.max_length >= 2, "teacher.max_length", params.teacher.max_length, "it must be >= 2")
    _check(student.max_length >= 2, "student.max_length", student.max_length, "it must be >= 2")
    _check(student.source in ("layers", "model"), "student.source", student.source, "allowed: layers, model")
    _check(student.init in ("pretrained", "finetuned"), "student.init", student.init,
           "allowed: pretrained, finetuned")
    if student.source == "model":
        _check(bool(student.model), "student.model", student.model, "student.source: model needs a Hub id or path")
    else:
        layers = student.layers
        ok = layers == "every_other" or (isinstance(layers, list) and layers and all(
            isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in layers))
        _check(ok, "student.layers", layers, "list encoder layer indices (e.g. [0, 5]) or write every_other")
        if isinstance(layers, list):
            _check(len(set(layers)) == len(layers), "student.layers", layers, "indices must be distinct")
    _check(0 <= distill.alpha <= 1, "distill.alpha", distill.alpha, "it must be in [0, 1]")
    _check(distill.temperature > 0, "distill.temperature", distill.temperature, "it must be > 0")
    _check(distill.loss in ("kl", "mse"), "distill.loss", distill.loss, "allowed: kl, mse")
    transfer_source = distill.transfer_set.source
    _check(transfer_source in ("none", "remainder") or transfer_source.startswith("hub:") or
           Path(transfer_source).suffix.lower() in (".csv", ".tsv", ".json", ".jsonl", ".parquet", ".pq"),
           "distill.transfer_set.source", transfer_source,
           "allowed: none, remainder, hub:<dataset id>, or a .csv/.tsv/.json/.jsonl/.parquet file")
    _check(distill.transfer_set.max_rows >= 0, "distill.transfer_set.max_rows", distill.transfer_set.max_rows,
           "it must be >= 0")
    aug = distill.augment
    _check(aug.copies >= 0, "distill.augment.copies", aug.copies, "it must be >= 0 (0 turns augmentation off)")
    for name in ("p_mask", "p_replace", "p_ngram"):
        value = getattr(aug, name)
        _check(0 <= value <= 1, f"distill.augment.{name}", value, "it is a probability in [0, 1]")
    _check(aug.ngram_max >= 1, "distill.augment.ngram_max", aug.ngram_max, "it must be >= 1")
    _check(aug.max_rows >= 0, "distill.augment.max_rows", aug.max_rows, "it must be >= 0")
    weight = distill.hidden_loss.weight
    _check(weight >= 0, "distill.hidden_loss.weight", weight, "it must be >= 0 (0 turns it off)")
    _check(weight == 0 or student.source == "layers", "distill.hidden_loss.weight", weight,
           "the hidden-state loss maps student layers to the teacher layers they were copied from, so it needs "
           "student.source: layers; set it to 0")
    _check_train(params.teacher.train, "teacher.train")
    _check_train(distill.train, "distill.train")
    _check(params.evaluate.batch_size >= 1, "evaluate.batch_size", params.evaluate.batch_size, "it must be >= 1")
    seeds = params.evaluate.seeds
    _check(len(seeds) >= 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in seeds) and
           len(set(seeds)) == len(seeds), "evaluate.seeds", seeds,
           "list at least two distinct integer seeds (a spread needs two)")
    export, bench = params.export, params.benchmark
    _check(7 <= export.opset <= 20, "export.opset", export.opset, "use an opset in [7, 20] (17 is tested)")
    _check(export.fp32_atol > 0, "export.fp32_atol", export.fp32_atol, "it must be > 0")
    _check(export.int8_max_accuracy_drop >= 0, "export.int8_max_accuracy_drop", export.int8_max_accuracy_drop,
           "it is in accuracy points and must be >= 0")
    _check(export.parity_batch_size >= 1, "export.parity_batch_size", export.parity_batch_size, "it must be >= 1")
    for key, values in (("benchmark.batch_sizes", bench.batch_sizes),
                        ("benchmark.sequence_lengths", bench.sequence_lengths)):
        _check(bool(values) and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values),
               key, values, "list positive integers")
    _check(bench.warmup >= 0, "benchmark.warmup", bench.warmup, "it must be >= 0")
    _check(bench.runs >= 1, "benchmark.runs", bench.runs, "it must be >= 1")
    _check(bench.threads >= 1, "benchmark.threads", bench.threads, "it must be >= 1 (the same count is used for "
           "torch and onnxruntime)")
    _check_register(params.register)
    validate_schedule(params.schedule)
    return params


def _check_register(register: RegisterConfig) -> None:
    # MLflow's reserved and allowed characters for registered model names, kept simple and portable.
    _check(bool(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}", register.model_name)), "register.model_name",
           register.model_name, "use letters, digits, '_', '-' and '.', starting with a letter or digit")
    _check(bool(register.experiment.strip()), "register.experiment", register.experiment, "name an experiment")
    _check(register.lock_timeout_s >= 0, "register.lock_timeout_s", register.lock_timeout_s, "it must be >= 0")
    gate = register.gate
    _check(0 <= gate.min_retention <= 1.5, "register.gate.min_retention", gate.min_retention,
           "it is a ratio of accuracies, e.g. 0.97")
    _check(gate.max_p95_ms > 0, "register.gate.max_p95_ms", gate.max_p95_ms, "it must be > 0")
    _check(gate.max_size_mb > 0, "register.gate.max_size_mb", gate.max_size_mb, "it must be > 0")
    _check(gate.metric in ("accuracy", "macro_f1"), "register.gate.metric", gate.metric,
           "allowed: accuracy, macro_f1")
    _check(0 <= gate.tolerance < 1, "register.gate.tolerance", gate.tolerance, "it must be in [0, 1)")


def validate_schedule(schedule: ScheduleConfig) -> ScheduleConfig:
    """Checks of the ``schedule`` section; the flow checks that stage_timeouts names real stages."""
    if schedule.cron is not None:
        _check(len(schedule.cron.split()) in (5, 6), "schedule.cron", schedule.cron,
               "write a cron expression such as '0 2 * * *' (five fields), or null for no schedule")
    _check(bool(schedule.event.strip()), "schedule.event", schedule.event, "name the event that starts a run")
    _check(schedule.watch_interval_seconds > 0, "schedule.watch_interval_seconds", schedule.watch_interval_seconds,
           "it must be > 0")
    _check(schedule.stage_timeout_minutes > 0, "schedule.stage_timeout_minutes", schedule.stage_timeout_minutes,
           "it must be > 0")
    for stage, minutes in schedule.stage_timeouts.items():
        _check(isinstance(minutes, (int, float)) and not isinstance(minutes, bool) and minutes > 0,
               f"schedule.stage_timeouts.{stage}", minutes, "minutes, > 0")
    return schedule


def _read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found (run from the project root or pass --params)")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None


def load_params(path: Union[str, Path] = "params.yaml") -> Params:
    """Read and validate params.yaml. Safe YAML only: no tags that run code."""
    path = Path(path)
    raw = _read_yaml(path)
    try:
        return validate(_build(Params, raw, ""))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def load_schedule(path: Union[str, Path] = "params.yaml") -> ScheduleConfig:
    """Only the ``schedule`` section: the flow reads it without failing on a bad key a stage will report."""
    path = Path(path)
    raw = _read_yaml(path)
    try:
        return validate_schedule(_build(ScheduleConfig, raw.get("schedule") if isinstance(raw, dict) else None,
                                        "schedule"))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
