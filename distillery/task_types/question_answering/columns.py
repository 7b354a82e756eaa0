"""The prepared rows' columns of extractive QA, in a module of their own: ``prepare`` (:mod:`.rows`) and
``register`` (:mod:`.serving`) read them without loading the featuriser (and torch)."""
from __future__ import annotations

QUESTION, CONTEXT, ID, TITLE = "question", "context", "id", "title"
ANSWER_TEXTS, ANSWER_STARTS = "answer_texts", "answer_starts"
