"""The ``question_answering`` section: how extractive QA splits long contexts and picks answers.

Read only when ``task: question_answering``; the other task types ignore it."""
from __future__ import annotations

from pydantic import Field

from distillery.config.base import allowed, section


@section("question_answering")
class QuestionAnsweringConfig:
    """Tokenisation with a stride over long contexts, and the post-processing of start/end logits to answers."""

    doc_stride: int = Field(128, ge=0, description="tokens shared by two consecutive windows of a context longer "
                                                   "than max_length (the HF recipe's doc_stride)",
                            json_schema_extra=allowed("it must be >= 0 and below half of teacher.max_length"))
    max_answer_length: int = Field(30, ge=1, description="longest answer span considered, in tokens")
    n_best_size: int = Field(20, ge=1, description="start and end candidates kept per window before pairing them")
