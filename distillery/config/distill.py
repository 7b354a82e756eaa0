"""The ``distill`` section: the loss, the transfer set, augmentation and the hidden-state loss."""
from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from pydantic import Field, field_validator

from distillery.config.base import SEED_MAX, allowed, not_allowed, section
from distillery.config.sections import TrainConfig

_TRANSFER_FILES = (".csv", ".tsv", ".json", ".jsonl", ".parquet", ".pq")
_TRANSFER_ALLOWED = "allowed: none, remainder, hub:<dataset id>, or a .csv/.tsv/.json/.jsonl/.parquet file"


@section("distill.transfer_set")
class TransferSetConfig:
    """Unlabelled texts the teacher labels; the students' KD term learns from them, the baseline never sees them."""

    source: str = Field("none", description="none | remainder: corpus rows left out of the capped train split "
                                            "(and the training rows beyond distill.labelled_rows) | "
                                            "a local file | hub:<id>",
                        json_schema_extra=allowed(_TRANSFER_ALLOWED))
    max_rows: int = Field(20000, ge=0, description="at most this many transfer texts")
    text_column: Optional[str] = Field(None, description="text column of a file or Hub source; "
                                                         "null = data.text_column")
    text_pair_column: Optional[str] = Field(None, description="second text column of a file or Hub source, for a "
                                                              "sentence-pair task; null = data.text_pair_column")
    split: str = Field("train", description="split of a hub:<id> source")
    hub_config: Optional[str] = Field(None, description="config name of a hub:<id> source")

    @field_validator("source")
    @classmethod
    def _source(cls, source: str) -> str:
        if not (source in ("none", "remainder") or source.startswith("hub:")
                or Path(source).suffix.lower() in _TRANSFER_FILES):
            raise not_allowed(_TRANSFER_ALLOWED)
        return source


_PROBABILITY = allowed("it is a probability in [0, 1]")


@section("distill.augment")
class AugmentConfig:
    """Tang et al. 2019 augmentation: perturbed copies of the training texts join the transfer set."""

    copies: int = Field(0, ge=0, description="augmented texts drawn per training text; 0 = off",
                        json_schema_extra=allowed("it must be >= 0 (0 turns augmentation off)"))
    p_mask: float = Field(0.1, ge=0, le=1, description="per word: becomes the mask token",
                          json_schema_extra=_PROBABILITY)
    p_replace: float = Field(0.1, ge=0, le=1, description="per word (if not masked): becomes a random whole word "
                                                          "of the teacher's vocabulary", json_schema_extra=_PROBABILITY)
    p_ngram: float = Field(0.25, ge=0, le=1, description="per text: cut to a random n-gram, n in 1..ngram_max",
                           json_schema_extra=_PROBABILITY)
    ngram_max: int = Field(5, ge=1, description="longest n-gram kept by p_ngram")
    include_transfer: bool = Field(False, description="also augment the transfer-set texts, not only the labelled "
                                                      "training texts")
    max_rows: int = Field(20000, ge=0, description="at most this many augmented texts")
    seed: Optional[int] = Field(None, ge=0, le=SEED_MAX, description="augmentation seed; null = the top-level seed")


@section("distill.hidden_loss")
class HiddenLossConfig:
    """PKD / TinyBERT-style hidden-state MSE between each student layer and the teacher layer it was copied from."""

    weight: float = Field(0.0, ge=0, description="0 = off; > 0 runs the fine-tuned teacher on every training batch "
                                                 "(not cached); needs student.source: layers",
                          json_schema_extra=allowed("it must be >= 0 (0 turns it off)"))


@section("distill")
class DistillConfig:
    """How the student learns from the teacher, read by ``distill`` (transfer_set also by ``prepare``)."""

    alpha: float = Field(0.5, ge=0, le=1, description="weight of the hard-label CE; (1 - alpha) weighs the "
                                                      "distillation term")
    temperature: float = Field(2.0, gt=0, le=1000, description="softmax temperature T; the KL term is scaled by "
                                                               "T^2. Unused by mse")
    loss: Literal["kl", "mse"] = Field("kl", description="kl: Hinton et al. 2015 | mse: logit regression, "
                                                         "Tang et al. 2019")
    labelled_rows: Optional[int] = Field(
        None, ge=1, description="the students learn labels from this many training rows (a stratified sample, "
                                "seeded by seed; the teacher learns from all): the primer's 800 labelled images; "
                                "with transfer_set.source: remainder the other training rows join the distillation "
                                "term without labels; null = all")
    transfer_set: TransferSetConfig = Field(default_factory=TransferSetConfig,
                                            description="unlabelled text labelled by the teacher")
    augment: AugmentConfig = Field(default_factory=AugmentConfig,
                                   description="perturbed copies of the training texts, labelled by the teacher")
    hidden_loss: HiddenLossConfig = Field(default_factory=HiddenLossConfig,
                                          description="hidden-state MSE, student layer i vs teacher layer "
                                                      "student.layers[i]")
    train: TrainConfig = Field(default_factory=TrainConfig, description="the students' training hyperparameters")
