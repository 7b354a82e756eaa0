"""``Params``: the whole of params.yaml, one section per stage."""
from __future__ import annotations

import dataclasses
from typing import Any

from pydantic import Field, model_validator

from distillery.config.base import SEED_MAX, not_allowed, section
from distillery.config.distill import DistillConfig
from distillery.config.operations import BenchmarkConfig, EvaluateConfig, ExportConfig, ScheduleConfig, SweepConfig
from distillery.config.register import RegisterConfig
from distillery.config.question_answering import QuestionAnsweringConfig
from distillery.config.sections import DataConfig, StudentConfig, TeacherConfig

IMAGE_FAMILIES = ("mlp", "cnn")  # the student families (and scratch: teachers) of task image_classification


@section("")
class Params:
    """Every knob of the pipeline; ``load_params`` reads it from params.yaml."""

    task: str = Field("text_classification",
                      description="the task type (distillery/task_types/): what the data's rows are and what the "
                                  "models predict; text_classification covers single texts and text pairs")
    seed: int = Field(42, ge=0, le=SEED_MAX, description="one seed for splits, initialisation, data order")
    data: DataConfig = Field(default_factory=DataConfig, description="the labelled corpus, read by prepare")
    teacher: TeacherConfig = Field(default_factory=TeacherConfig, description="read by train_teacher "
                                                                              "(and teacher_logits: max_length, "
                                                                              "logits_precision, logits_runtime)")
    student: StudentConfig = Field(default_factory=StudentConfig, description="read by distill")
    distill: DistillConfig = Field(default_factory=DistillConfig, description="read by distill "
                                                                              "(transfer_set also by prepare)")
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig, description="read by teacher_logits and "
                                                                                 "evaluate")
    sweep: SweepConfig = Field(default_factory=SweepConfig, description="read by `python -m distillery sweep`, "
                                                                        "not by any DVC stage")
    export: ExportConfig = Field(default_factory=ExportConfig, description="read by export (opset also by "
                                                                          "teacher_logits)")
    benchmark: BenchmarkConfig = Field(default_factory=BenchmarkConfig, description="read by benchmark")
    register: RegisterConfig = Field(default_factory=RegisterConfig, description="read by register")
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig, description="read by the Prefect flow and "
                                                                                 "`python -m flows.deploy`")
    question_answering: QuestionAnsweringConfig = Field(
        default_factory=QuestionAnsweringConfig, description="extractive QA only (task: question_answering): "
                                                             "windows over long contexts and answer selection")

    @model_validator(mode="after")
    def _known_task(self) -> "Params":
        from distillery.task_types import TASK_TYPES  # the task-type table; importing it loads no task type

        if self.task not in TASK_TYPES:
            raise not_allowed(f"task types: {', '.join(TASK_TYPES)}", "task", self.task)
        return self

    @model_validator(mode="after")
    def _batch_shared_evenly(self) -> "Params":
        """Each of ``processes`` takes ``batch_size / processes`` rows a step: a remainder changed the global batch
        and the steps without a word (9 over 2 processes trained at 8)."""
        for key, cfg in (("teacher.train", self.teacher.train), ("distill.train", self.distill.train)):
            if cfg.batch_size % cfg.processes:
                near = cfg.batch_size - cfg.batch_size % cfg.processes or cfg.processes
                raise not_allowed(f"the {cfg.processes} processes share the batch, so it must be a multiple of "
                                  f"{cfg.processes} (e.g. {near})", f"{key}.batch_size", cfg.batch_size)
        return self

    @model_validator(mode="after")
    def _metrics_of_the_task(self) -> "Params":
        from distillery.task_types import VALIDATION_METRICS  # names only; importing it loads no task type

        names = VALIDATION_METRICS[self.task]
        for key, cfg in (("teacher.train", self.teacher.train), ("distill.train", self.distill.train)):
            if cfg.metric_for_best_model not in (*names, "loss"):
                raise not_allowed(f"task {self.task} is scored by {' | '.join(names)} | loss",
                                  f"{key}.metric_for_best_model", cfg.metric_for_best_model)
        for key, value in (("register.gate.metric", self.register.gate.metric), ("sweep.metric", self.sweep.metric)):
            if value is not None and value not in names:
                raise not_allowed(f"task {self.task} is scored by {' | '.join(names)}", key, value)
        return self

    @model_validator(mode="after")
    def _question_answering_needs(self) -> "Params":
        if self.task != "question_answering":
            return self
        d = self.distill
        checks = [
            ("distill.transfer_set.source", d.transfer_set.source, d.transfer_set.source in ("none", "remainder"),
             "extractive QA's transfer set is none or remainder (the training articles' questions beyond "
             "data.max_samples.train, without their answers)"),
            ("distill.loss", d.loss, d.loss == "kl", "extractive QA distils start/end logits with kl"),
            ("student.max_length", self.student.max_length, self.student.max_length == self.teacher.max_length,
             f"the student learns from the teacher's windows, so it must equal teacher.max_length "
             f"({self.teacher.max_length})"),
            ("student.source", self.student.source, self.student.source in ("layers", "config"),
             "the student must read the teacher's windows: layers or config (the teacher's tokenizer)"),
            ("distill.labelled_rows", d.labelled_rows, d.labelled_rows is None,
             "the teacher's outputs are cached per window, not per question; set it to null"),
            ("question_answering.doc_stride", self.question_answering.doc_stride,
             self.question_answering.doc_stride < self.teacher.max_length // 2,
             f"it must be below half of teacher.max_length ({self.teacher.max_length})"),
        ]
        for key, value, ok, text in checks:
            if not ok:
                raise not_allowed(text, key, value)
        return self

    @model_validator(mode="after")
    def _image_families_for_images(self) -> "Params":
        image_task = self.task == "image_classification"
        image_source, scratch = self.student.source in IMAGE_FAMILIES, self.teacher.model.startswith("scratch:")
        if image_task:
            d = self.distill
            checks = [
                ("student.source", self.student.source, image_source,
                 f"image_classification students: {' | '.join(IMAGE_FAMILIES)}"),
                ("teacher.model", self.teacher.model, not scratch or self.teacher.model[8:] in IMAGE_FAMILIES,
                 f"an image teacher is scratch:{' | scratch:'.join(IMAGE_FAMILIES)} or a trained image model's "
                 "directory"),
                ("distill.transfer_set.source", d.transfer_set.source, d.transfer_set.source in ("none", "remainder"),
                 "image tasks take none or remainder"),
                ("distill.augment.copies", d.augment.copies, d.augment.copies == 0,
                 "augmentation perturbs texts; set it to 0 for images"),
                ("data.text_pair_column", self.data.text_pair_column, self.data.text_pair_column is None,
                 "an image has no second text; set it to null for images"),
                *((f"{key}.freeze_embeddings", True, not frozen, "image networks have no word embeddings; set it to "
                   "false") for key, frozen in (("teacher.train", self.teacher.train.freeze_embeddings),
                                                ("distill.train", d.train.freeze_embeddings))),
            ]
        else:
            checks = [("data.image_size", self.data.image_size, self.data.image_size is None,
                       f"images only: task {self.task} reads no images; set it to null"),
                      ("student.source", self.student.source, not image_source,
                       f"{self.student.source} is an image network; task {self.task} needs a text student"),
                      ("teacher.model", self.teacher.model, not scratch,
                       f"scratch: teachers are image networks; task {self.task} needs a text model")]
        for key, value, ok, text in checks:
            if not ok:
                raise not_allowed(text, key, value)
        return self

    @model_validator(mode="after")
    def _frozen_embeddings_were_trained(self) -> "Params":
        source = self.student.source
        why = {"config": ""} if source == "config" else \
            {source: f" (student.{source}.init_from_teacher is false)"} if source in ("boe", "bilstm") and \
            not getattr(self.student, source).init_from_teacher else {}
        if self.distill.train.freeze_embeddings and source in why:
            raise not_allowed(f"this {source} student's word embeddings start random{why[source]}, and would stay "
                              "so; set it to false", "distill.train.freeze_embeddings", True)
        return self

    @model_validator(mode="after")
    def _attention_dropout_needs_attention(self) -> "Params":
        """Refused when params.yaml is read: ``fit`` refused it only after DVC had removed the stage's outputs."""
        without = ("boe", "bilstm", *IMAGE_FAMILIES)
        if self.distill.train.attention_dropout is not None and self.student.source in without:
            raise not_allowed(f"a {self.student.source} student has no attention; set it to null",
                              "distill.train.attention_dropout", self.distill.train.attention_dropout)
        if self.teacher.train.attention_dropout is not None and self.task == "image_classification":
            raise not_allowed("image networks have no attention; set it to null", "teacher.train.attention_dropout",
                              self.teacher.train.attention_dropout)
        return self

    @model_validator(mode="after")
    def _hidden_loss_needs_layers(self) -> "Params":
        weight = self.distill.hidden_loss.weight
        if weight and self.student.source != "layers":
            raise not_allowed("the hidden-state loss maps student layers to the teacher layers they were copied "
                              "from, so it needs student.source: layers; set it to 0", "distill.hidden_loss.weight",
                              weight)
        return self

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
