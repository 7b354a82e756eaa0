"""params.yaml, read once into frozen, validated dataclasses.

Each section is a pydantic dataclass whose fields carry their default, their description and their
checks. Every value is checked at load time: a bad value raises ``ConfigError`` with one line naming
the dotted key, the value and what is allowed, so a run never fails half-way because of a typo.
``python -m distillery params`` lists every key (``describe_params``).
"""
from distillery.config.base import SPLITS
from distillery.config.describe import describe_params
from distillery.config.distill import AugmentConfig, DistillConfig, HiddenLossConfig, TransferSetConfig
from distillery.config.loading import load_params, load_schedule, validate
from distillery.config.operations import BenchmarkConfig, EvaluateConfig, ExportConfig, ScheduleConfig, SweepConfig
from distillery.config.register import GateConfig, RegisterConfig
from distillery.config.params import Params
from distillery.config.question_answering import QuestionAnsweringConfig
from distillery.config.rates import train_settings
from distillery.config.sections import (DataConfig, StudentArchConfig, StudentBiLSTMConfig, StudentBoeConfig,
                                        StudentConfig, TeacherConfig, TrainConfig)

__all__ = ["SPLITS", "AugmentConfig", "BenchmarkConfig", "DataConfig", "DistillConfig", "EvaluateConfig",
           "ExportConfig", "GateConfig", "HiddenLossConfig", "Params", "QuestionAnsweringConfig", "RegisterConfig",
           "ScheduleConfig", "StudentArchConfig", "StudentBiLSTMConfig", "StudentBoeConfig", "StudentConfig",
           "SweepConfig", "TeacherConfig", "TrainConfig", "TransferSetConfig",
           "describe_params", "load_params", "load_schedule", "train_settings", "validate"]
