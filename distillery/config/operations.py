"""Sections after training: evaluation, the sweep, export, benchmark and the schedule (the registry's are in
register.py)."""
from __future__ import annotations

import re
from typing import Annotated, Literal, Optional

from pydantic import AfterValidator, Field, field_validator

from distillery.config.base import SEED_MAX, allowed, not_allowed, section
from distillery.stages import STAGES

Stage = Literal[STAGES]  # type: ignore[valid-type]
_POSITIVE_INTS = allowed("list positive integers")
_SEEDS_RULE = f"list at least two distinct integer seeds from 0 to {SEED_MAX} (a spread needs two)"


def _two_distinct(seeds: list[int]) -> list[int]:
    if len(seeds) < 2 or len(set(seeds)) != len(seeds) or not all(0 <= seed <= SEED_MAX for seed in seeds):
        raise not_allowed(_SEEDS_RULE)
    return seeds


Seeds = Annotated[list[int], AfterValidator(_two_distinct)]  # a spread over seeds needs two distinct ones


def _each_once(values: list[int]) -> list[int]:
    if len(set(values)) != len(values):  # a cell timed twice: the second timing replaced the first (a trial)
        raise not_allowed("list positive integers, each once (each makes cells of the grid)")
    return values

# an export recipe (distillery/export_recipes.py): fusion, quantization mode, per-channel weight scales
RECIPE_PATTERN = re.compile(r"(fused_)?(dynamic|static)(_per_channel)?")
_RECIPE_RULE = "list recipes of the form [fused_](dynamic|static)[_per_channel], e.g. [dynamic, fused_dynamic]"
# static QDQ is left out of the default: on the fine-tuned MiniLM-L6 it lost 23.3 validation accuracy points
# (MinMax ranges of transformer activations), and fused_static could not be built (README, export)
# in order of preference when timings tie: per-channel scales are the closer to fp32, an unfused graph the simpler
DEFAULT_RECIPES = ("dynamic_per_channel", "dynamic", "fused_dynamic_per_channel", "fused_dynamic")


def _recipe(name: str) -> str:
    if not RECIPE_PATTERN.fullmatch(name):
        raise not_allowed(_RECIPE_RULE)
    return name


Recipe = Annotated[str, AfterValidator(_recipe)]


@section("evaluate")
class EvaluateConfig:
    """Read by ``teacher_logits`` and ``evaluate``."""

    batch_size: int = Field(128, ge=1, description="inference batch size")
    seeds: Seeds = Field(default_factory=lambda: [1, 2, 3],
                             description="`python -m distillery kd_gain`: distilled vs baseline student, one pair "
                                         "per seed",
                             json_schema_extra=allowed(_SEEDS_RULE))


@section("sweep")
class SweepConfig:
    """``python -m distillery sweep``: the distilled student over alpha x temperature x seeds, chosen on validation."""

    alpha: list[Annotated[float, Field(ge=0, le=1)]] = Field(
        default_factory=lambda: [0.0, 0.25, 0.5, 0.75], min_length=1,
        description="distill.alpha values swept (weight of the hard-label CE)",
        json_schema_extra=allowed("list distinct values in [0, 1]"))
    temperature: list[Annotated[float, Field(gt=0, le=1000)]] = Field(
        default_factory=lambda: [1.0, 2.0, 4.0, 8.0], min_length=1,
        description="distill.temperature values swept", json_schema_extra=allowed("list distinct values in (0, 1000]"))
    seeds: Seeds = Field(default_factory=lambda: [1, 2, 3],
                             description="one labels-only baseline per seed, and one distilled student per seed "
                                         "and setting, all from that seed's initialisation",
                             json_schema_extra=allowed(_SEEDS_RULE))
    metric: Optional[Literal["accuracy", "macro_f1", "f1", "exact_match"]] = Field(
        None, description="the setting with the best mean of this on the VALIDATION split is selected: "
                          "accuracy | macro_f1 (classification), f1 | exact_match (question answering); "
                          "null: the task's primary metric (accuracy; f1 for question answering)")

    @field_validator("alpha", "temperature")
    @classmethod
    def _distinct(cls, values: list[float]) -> list[float]:
        if len(set(values)) != len(values):
            raise not_allowed("list distinct values")
        return values


@section("export")
class ExportConfig:
    """Read by ``export``."""

    # below 10 the exporter cannot write a BERT's attention (a Slice of dynamic inputs): export failed after every
    # model had trained (trial BB); ONNX Runtime's int8 quantization wants 11
    opset: int = Field(17, ge=11, le=20, description="ONNX opset",
                       json_schema_extra=allowed("use an opset in [11, 20] (17 is tested)"))
    fp32_atol: float = Field(1e-4, gt=0, description="largest |logit difference| allowed between ONNX fp32 and "
                                                     "PyTorch on the test split; above it the stage fails")
    int8_max_accuracy_drop: float = Field(1.0, ge=0, description="accuracy points below the fp32 student; above it "
                                                                 "int8 is marked not deployable",
                                          json_schema_extra=allowed("it is in accuracy points and must be >= 0"))
    int8_min_label_agreement: float = Field(
        0.95, ge=0, le=1, description="classification: share of rows where int8 gives the fp32 student's label; below "
                                      "it int8 is marked not deployable (its accuracy alone can hide flipped labels)",
        json_schema_extra=allowed("it is a share of rows in [0, 1]"))
    parity_batch_size: int = Field(32, ge=1, description="test rows per batch, padded to the batch's longest row, "
                                                         "as when served")
    recipes: Annotated[list[Recipe], Field(min_length=1)] = Field(
        default_factory=lambda: list(DEFAULT_RECIPES),
        description="the student's int8 candidates, tried on validation; the fastest that passes the gates ships (of a tie, the first listed)",
        json_schema_extra=allowed(_RECIPE_RULE))
    selection_batch: int = Field(1, ge=1, description="batch size of the cell that times the candidates")
    selection_length: int = Field(64, ge=1, description="sequence length of that cell (at most the student's "
                                                        "max_length)")
    selection_seconds: float = Field(10.0, gt=0, description="time cap on timing the candidates")
    deploy: Literal["auto", "fp32", "int8"] = Field(
        "auto", description="which student file ships: auto = int8 when a recipe passes the gates on validation "
                            "and the chosen one its gate on test, else fp32; fp32 = "
                            "always fp32 (int8 still built and reported); int8 = int8 or the stage fails",
        json_schema_extra=allowed("use auto, fp32 or int8"))


@section("benchmark")
class BenchmarkConfig:
    """Read by ``benchmark``."""

    batch_sizes: Annotated[list[Annotated[int, Field(ge=1)]], AfterValidator(_each_once)] = Field(
        default_factory=lambda: [1, 8, 32], min_length=1, description="batch sizes timed",
        json_schema_extra=_POSITIVE_INTS)
    sequence_lengths: Annotated[list[Annotated[int, Field(ge=1)]], AfterValidator(_each_once)] = Field(
        default_factory=lambda: [16, 64, 128], min_length=1,
        description="sequence lengths timed; each must be <= the model's max_position_embeddings",
        json_schema_extra=_POSITIVE_INTS)
    warmup: int = Field(10, ge=0, description="untimed rounds per cell (each runs every model once)")
    max_warmup_seconds: float = Field(2.0, gt=0, description="the warm-up rounds stop after this many seconds "
                                                              "(never before the first): a cell whose round "
                                                              "takes seconds is warm after one")
    runs: int = Field(100, ge=1, description="most timed runs per model and cell (p99 needs >= 100; the report "
                                              "marks a p99 from fewer)")
    min_runs: int = Field(20, ge=1, description="fewest timed runs per model and cell (at most runs); the time "
                                                 "cap never cuts a cell shorter")
    target_precision: float = Field(0.05, gt=0, lt=1, description="a cell stops early once every model's p50 has a "
                                                                    "95% interval within ± this fraction of it; "
                                                                    "0.05 is ±5%",
                                    json_schema_extra=allowed("it is a fraction in (0, 1), e.g. 0.05 for ±5%"))
    max_seconds_per_cell: float = Field(20.0, gt=0, description="a cell stops after this many seconds of timed "
                                                                  "rounds (all models together), once min_runs "
                                                                  "are done")
    peak_seconds: float = Field(1.5, gt=0, description="the GEMM peak microbenchmark's time per precision (fp32, "
                                                       "int8): the best of at least 3 matrix products in it")
    threads: int = Field(2, ge=1, description="intra-op threads, the same for torch and onnxruntime",
                         json_schema_extra=allowed("it must be >= 1 (the same count is used for torch and "
                                                   "onnxruntime)"))


def _valid_cron(cron: str) -> bool:
    """Whether Prefect's schedule takes ``cron`` (its own validator; importing it costs about a second, so the
    default is taken as it is)."""
    if cron == "0 2 * * *":
        return True
    from prefect._internal.schemas.validators import validate_cron_string

    try:
        validate_cron_string(cron)
    except ValueError:
        return False
    return True


@section("schedule")
class ScheduleConfig:
    """How the Prefect deployment runs the pipeline unattended (``python -m flows.deploy``). No stage reads it."""

    cron: Optional[str] = Field("0 2 * * *", description="the served deployment's schedule (nightly retrain); "
                                                         "null = no schedule",
                                json_schema_extra=allowed("write a cron expression such as '0 2 * * *' (five "
                                                          "fields), or null for no schedule"))
    timezone: str = Field("UTC", description="time zone of the cron expression")
    event: str = Field("distillery.data.updated", pattern=r"\S",
                       description="a run starts when this event arrives; `python -m flows.watch` emits it",
                       json_schema_extra=allowed("name the event that starts a run"))
    debounce_seconds: float = Field(60.0, ge=0, description="after an event starts a run, further events in this "
                                                           "many seconds start none (a storm of events is one run; "
                                                           "0 = every event starts one)")
    watch_interval_seconds: float = Field(300.0, gt=0, description="how often `python -m flows.watch` hashes the "
                                                                   "data source")
    stage_timeout_minutes: float = Field(120.0, gt=0, description="each stage's `dvc repro` is killed after this "
                                                                  "long (the run fails, not retried)")
    stage_timeouts: dict[Stage, Annotated[float, Field(gt=0)]] = Field(
        default_factory=dict, description="per-stage minutes overriding stage_timeout_minutes, e.g. {benchmark: 30}",
        json_schema_extra=allowed(f"keys are stages ({', '.join(STAGES)}); values are minutes, > 0"))

    allowed_overrides: list[str] = Field(
        default_factory=lambda: ["distill", "student.source", "student.init", "student.layers", "student.config",
                                 "student.boe", "student.bilstm", "student.mlp", "student.cnn", "evaluate.seeds",
                                 "benchmark"],
        description="params key prefixes a flow run's `overrides` may set (a key is allowed when it equals a "
                    "prefix or starts with it and a dot); the gate's register.* keys, teacher.* (a weakened teacher "
                    "passes any retention check), student.model and student.max_length are not on it by default, so "
                    "whoever can start a flow run cannot lower the bar for promotion or choose the weights that "
                    "ship. schedule.allowed_overrides itself can never be overridden",
        json_schema_extra=allowed("list dotted params key prefixes, e.g. [distill, student.layers]"))

    @field_validator("allowed_overrides")
    @classmethod
    def _allowed_overrides(cls, prefixes: list[str]) -> list[str]:
        if any(not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", prefix) for prefix in prefixes):
            raise not_allowed("list dotted params key prefixes, e.g. [distill, student.layers]")
        return prefixes

    def override_allowed(self, key: str) -> bool:
        """Whether a flow run's ``overrides`` may set ``key``."""
        if key == "schedule" or key.startswith("schedule.allowed_overrides"):
            return False
        return any(key == prefix or key.startswith(prefix + ".") for prefix in self.allowed_overrides)

    @field_validator("cron")
    @classmethod
    def _cron(cls, cron: Optional[str]) -> Optional[str]:
        if cron is not None and (len(cron.split()) not in (5, 6) or not _valid_cron(cron)):
            raise not_allowed("write a cron expression such as '0 2 * * *' (five fields: minute 0-59, hour 0-23, "
                              "day 1-31, month 1-12, weekday 0-6), or null for no schedule")
        return cron

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, name: str) -> str:
        import zoneinfo

        # the IANA names, as Prefect's schedule checks them (zoneinfo alone also opens files such as posixrules)
        if name != "UTC" and name not in zoneinfo.available_timezones():
            raise not_allowed("name an IANA time zone, e.g. UTC or Europe/Berlin")
        return name

    def timeout_seconds(self, stage: str) -> float:
        return 60.0 * float(self.stage_timeouts.get(stage, self.stage_timeout_minutes))
