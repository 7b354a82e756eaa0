"""``Params``: the whole of params.yaml, one section per stage."""
from __future__ import annotations

import dataclasses
from typing import Any

from pydantic import Field, model_validator

from distillery.config.base import not_allowed, section
from distillery.config.distill import DistillConfig
from distillery.config.operations import (BenchmarkConfig, EvaluateConfig, ExportConfig, RegisterConfig,
                                          ScheduleConfig, SweepConfig)
from distillery.config.sections import DataConfig, StudentConfig, TeacherConfig


@section("")
class Params:
    """Every knob of the pipeline; ``load_params`` reads it from params.yaml."""

    task: str = Field("text_classification",
                      description="the task type (distillery/task_types/): what the data's rows are and what the "
                                  "models predict; text_classification covers single texts and text pairs")
    seed: int = Field(42, description="one seed for splits, initialisation, data order")
    data: DataConfig = Field(default_factory=DataConfig, description="the labelled corpus, read by prepare")
    teacher: TeacherConfig = Field(default_factory=TeacherConfig, description="read by train_teacher "
                                                                              "(and teacher_logits: max_length)")
    student: StudentConfig = Field(default_factory=StudentConfig, description="read by distill")
    distill: DistillConfig = Field(default_factory=DistillConfig, description="read by distill "
                                                                              "(transfer_set also by prepare)")
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig, description="read by teacher_logits and "
                                                                                 "evaluate")
    sweep: SweepConfig = Field(default_factory=SweepConfig, description="read by `python -m distillery sweep`, "
                                                                        "not by any DVC stage")
    export: ExportConfig = Field(default_factory=ExportConfig, description="read by export")
    benchmark: BenchmarkConfig = Field(default_factory=BenchmarkConfig, description="read by benchmark")
    register: RegisterConfig = Field(default_factory=RegisterConfig, description="read by register")
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig, description="read by the Prefect flow and "
                                                                                 "`python -m flows.deploy`")

    @model_validator(mode="after")
    def _known_task(self) -> "Params":
        from distillery.task_types import TASK_TYPES  # the task-type table; importing it loads no task type

        if self.task not in TASK_TYPES:
            raise not_allowed(f"task types: {', '.join(TASK_TYPES)}", "task", self.task)
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
