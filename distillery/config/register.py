"""The ``register`` section: MLflow tracking, the model registry and its promotion gate."""
from __future__ import annotations

import re
from typing import Literal, Optional

from pydantic import Field, model_validator

from distillery.config.base import allowed, not_allowed, section

LOCK_RULE = ("write file (an OS file lock, this machine only) or postgresql://[user@]host[:port]/database (a "
             "PostgreSQL advisory lock, for registrations from several machines)")


@section("register.gate")
class GateConfig:
    """What a candidate student must show before it becomes the registry's ``champion``."""

    min_retention: float = Field(0.97, ge=0, le=1.5, description="the candidate's score / the teacher's, on "
                                                                 "the test split, in the task's first metric "
                                                                 "(accuracy; F1 for QA)",
                                 json_schema_extra=allowed("it is a ratio of two scores, e.g. 0.97"))
    max_p95_ms: float = Field(10.0, gt=0, description="p95 latency at batch 1, sequence student.max_length "
                                                      "(benchmark cell b1_s<max_length>), deployable model")
    max_p95_ratio_to_teacher: Optional[float] = Field(
        None, gt=0, description="also pass latency when p95 <= this x the teacher's PyTorch p95 in the same "
                                "benchmark cell and run (robust to a loaded machine); null = off",
        json_schema_extra=allowed("it is a ratio > 0, e.g. 0.5, or null for off"))
    max_size_mb: float = Field(100.0, gt=0, description="size of the deployable ONNX file")
    metric: Literal["accuracy", "macro_f1", "f1", "exact_match"] = Field(
        "accuracy", description="compared with the current champion on the same test split: accuracy | macro_f1 "
                                "(text classification), f1 | exact_match (question answering)")
    tolerance: float = Field(0.0, ge=0, lt=1, description="the candidate may trail the champion by at most this "
                                                          "much of metric")
    min_compare_rows: int = Field(100, ge=1, description="on fewer test rows than this (after a data refresh: "
                                                         "rows the champion did not see) only a clear win replaces "
                                                         "the champion: better on significantly more rows than "
                                                         "worse (one-sided sign test, p < 0.05)",
                                  json_schema_extra=allowed("it is a count of test rows >= 1, e.g. 100"))
    above_one_label: bool = Field(True, description="classification: metric must beat answering the test split's "
                                                    "most frequent label for every row (a model at chance is never "
                                                    "promoted); false = off")
    above_baseline: bool = Field(True, description="the distilled student's metric in this run's evaluate must be "
                                                   "at least its labels-only baseline's (a student distillation made "
                                                   "worse is not promoted); false = off")
    min_metric: Optional[float] = Field(None, ge=0, le=1, description="the candidate's metric on the test split "
                                                                      "must be at least this, whatever its teacher "
                                                                      "(a student keeping 100% of a useless "
                                                                      "teacher's score is not promoted); null = off",
                                        json_schema_extra=allowed("it is a score in [0, 1], e.g. 0.7, or null for "
                                                                  "off"))


@section("register")
class RegisterConfig:
    """Read by ``register``: MLflow tracking, the model registry and its promotion gate."""

    # MLflow's reserved and allowed characters for registered model names, kept simple and portable.
    model_name: str = Field("distillery-student", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$",
                            description="registered model name; served as models:/<model_name>@champion",
                            json_schema_extra=allowed("use letters, digits, '_', '-' and '.', starting with a "
                                                      "letter or digit"))
    experiment: str = Field("distillery", pattern=r"\S", description="MLflow experiment of the pipeline's runs",
                            json_schema_extra=allowed("name an experiment"))
    lock_timeout_s: float = Field(600.0, ge=0, description="wait this long for another registration of the same "
                                                           "model name, then fail")
    lock: str = Field("file", description="what serialises registrations of one model name: file (an OS file lock, "
                                          "this machine only) | postgresql://[user@]host[:port]/database (a "
                                          "PostgreSQL advisory lock, shared by every machine that reaches it; the "
                                          "password comes from PGPASSWORD or ~/.pgpass)",
                      json_schema_extra=allowed(LOCK_RULE))
    gate: GateConfig = Field(default_factory=GateConfig, description="the candidate becomes champion only if "
                                                                     "every check passes; else challenger")
    promote: bool = Field(True, description="false: a candidate that passes the gate is recorded as passed but "
                                            "gets the challenger alias, never champion (exploratory `dvc exp run "
                                            "-S register.promote=false ...`); promote it later with `distillery "
                                            "promote <version> --reason ...`")

    @model_validator(mode="after")
    def _lock_url(self) -> "RegisterConfig":
        """``file`` or a PostgreSQL URL without a password; an error shows the URL without its credentials."""
        lock = self.lock
        if lock == "file":
            return self
        from urllib.parse import parse_qs, urlsplit

        shown = re.sub(r"//[^/]*@", "//", lock.split("?", 1)[0])  # no user or password in the message
        try:
            parts = urlsplit(lock)
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            raise not_allowed(LOCK_RULE, "lock", shown) from None
        if parts.scheme not in ("postgresql", "postgres") or not parts.hostname:
            raise not_allowed(LOCK_RULE, "lock", shown)
        if parts.password is not None or "password" in parse_qs(parts.query):
            raise not_allowed("params.yaml is committed, so it holds no password: give it in PGPASSWORD or "
                              "~/.pgpass", "lock", shown)
        return self
