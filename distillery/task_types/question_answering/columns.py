"""The prepared rows' columns of extractive QA, in a module of their own: ``prepare`` (:mod:`.rows`) and
``register`` (:mod:`.serving`) read them without loading the featuriser (and torch)."""
from __future__ import annotations

QUESTION, CONTEXT, ID, TITLE = "question", "context", "id", "title"
ANSWER_TEXTS, ANSWER_STARTS = "answer_texts", "answer_starts"
# characters of questions and contexts the served model takes in one request (a 4M-character context took 2.4 GB and
# 13 s to answer); prepare refuses a row longer than this, which no request could carry
MAX_CHARACTERS = 1_000_000
# the local files a question-answering source can be: SQuAD-format JSON or JSON lines, either gzipped
SUFFIXES = (".json", ".jsonl", ".json.gz", ".jsonl.gz")
