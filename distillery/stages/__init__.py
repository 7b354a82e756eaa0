"""The pipeline's stages: one module per verb, each exposing the stage function (named as the verb)
and ``summary(result) -> str``, the line the CLI prints. ``STAGES`` is the one list of them, in order;
``dvc.yaml``, the CLI, the Prefect tasks, the schedule validation and the tests all read it from here.

Importing this package is cheap: a stage module is imported only when its stage runs.
"""
from __future__ import annotations

import importlib
from types import ModuleType
from typing import Callable

STAGES: tuple[str, ...] = ("prepare", "train_teacher", "teacher_logits", "distill", "evaluate", "export",
                           "benchmark", "register")


def stage_module(stage: str) -> ModuleType:
    if stage not in STAGES:
        raise KeyError(f"unknown stage {stage!r}; the stages are {', '.join(STAGES)}")
    return importlib.import_module(f"{__name__}.{stage}")


def stage_function(stage: str) -> Callable:
    """The function ``python -m distillery <stage>`` runs: ``function(params) -> dict``."""
    return getattr(stage_module(stage), stage)


def stage_summary(stage: str, result: dict) -> str:
    """What the CLI prints after the stage ran."""
    return stage_module(stage).summary(result)


def stage_inputs(stage: str, params) -> dict:
    """The local files and directories ``stage`` reads, by params key (``tracked_inputs`` of its module)."""
    function = getattr(stage_module(stage), "tracked_inputs", None)
    return function(params) if function else {}
