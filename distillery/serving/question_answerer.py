"""The registered extractive-QA student: an MLflow pyfunc that takes questions with their contexts and
returns each answer's text, character span and score.

MLflow logs this file as the model's code ("models from code") next to four artifacts: the ONNX model
(inputs: the tokenizer's; outputs: ``start_logits``, ``end_logits``), the tokenizer's ``tokenizer.json``,
``qa.json`` (max length, stride, answer length, n-best, input names, padding) and ``postprocess.py``,
the span selection Distillery's evaluation uses, loaded from its artifact path. It imports only numpy,
pandas, onnxruntime, tokenizers and mlflow, never Distillery.

Input: a DataFrame with ``question`` and ``context`` columns (other columns are ignored), a list of
``{"question", "context"}`` records, or the same column-wise (``{"question": [...], "context": [...]}``,
which MLflow hands over as one row holding the lists, read as rows when every column holds a list of one length).
Output: a DataFrame with ``answer``, ``start`` and ``end`` (the answer is ``context[start:end]``) and
``score`` (P(start) x P(end) within the chosen window), one row per question, in order.
Refused with an ``MlflowException`` (``INVALID_PARAMETER_VALUE``: HTTP 400 from ``mlflow models serve``):
a question or context that is null, empty, not a string, not valid Unicode (a lone surrogate) or of no tokens
(control characters only), a missing column, more than ``max_rows`` questions in one call, and more than
``max_characters`` of questions and contexts in one call (every window of a context is read, so a 2 MB context is
1,600 windows). A question too long for a window keeps its first tokens, as in training.
"""
from __future__ import annotations

import importlib.util
import json
import os

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import set_model
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel

QUESTION, CONTEXT = "question", "context"


def _refuse(message: str):
    raise MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


def _frame(model_input) -> pd.DataFrame:
    if isinstance(model_input, dict):
        model_input = pd.DataFrame(model_input, dtype=object)  # Python strings: pandas' arrow ones refuse a surrogate
    if isinstance(model_input, (list, tuple)):
        if not all(isinstance(row, dict) for row in model_input):
            _refuse(f"expected records with {QUESTION!r} and {CONTEXT!r}")
        model_input = pd.DataFrame(list(model_input), columns=None if model_input else [QUESTION, CONTEXT],
                                   dtype=object)
    if not isinstance(model_input, pd.DataFrame):
        _refuse(f"expected a DataFrame with {QUESTION!r} and {CONTEXT!r} columns, got {type(model_input).__name__}")
    missing = [c for c in (QUESTION, CONTEXT) if c not in model_input.columns]
    if missing:
        _refuse(f"input has columns {list(model_input.columns)}; it needs {QUESTION!r} and {CONTEXT!r}")
    frame = model_input
    if len(frame) == 1 and any(_is_sequence(frame[c].iloc[0]) for c in (QUESTION, CONTEXT)):
        # column-wise ({"inputs": {"question": [...], "context": [...]}}): MLflow hands it over as one row
        cells = column_wise(frame, "question")
        frame = pd.DataFrame({QUESTION: list(cells[QUESTION]), CONTEXT: list(cells[CONTEXT])}, dtype=object)
    return frame


def _is_sequence(value) -> bool:
    return isinstance(value, (list, tuple, np.ndarray))


def column_wise(frame: pd.DataFrame, what: str) -> dict:
    """The one row of column-wise input, ``{column: list}``, when every column holds a list and all have one
    length. Else refused: a record whose text is a list (``{"id": 7, "text": ["a", "b"]}``) would be answered
    with several rows for one, which the caller could not match back to its rows. (The same in each pyfunc file,
    each standalone.)"""
    cells = {column: frame[column].iloc[0] for column in frame.columns}
    scalars = [column for column, value in cells.items() if not _is_sequence(value)]
    if scalars:
        listed = next(column for column, value in cells.items() if _is_sequence(value))
        _refuse(f"{listed!r} of row 0 is a list but {scalars[0]!r} is not; send one {what} per row, or every column "
                "as a list of the same length (column-wise)")
    lengths = {column: len(value) for column, value in cells.items()}
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{column!r} {length}" for column, length in lengths.items())
        _refuse(f"column-wise input with lists of different lengths ({listed}); give one value per {what} in every "
                "column")
    return cells


def _strings(values: list, column: str) -> list[str]:
    for row, value in enumerate(values):
        if not isinstance(value, str) or not value.strip():
            what = "null" if value is None or (isinstance(value, float) and value != value) else \
                ("empty" if isinstance(value, str) else f"not a string ({type(value).__name__})")
            _refuse(f"{column!r} of row {row} is {what}; every row needs a non-empty string {column!r}")
        at = -1 if value.isascii() else next((i for i, c in enumerate(value) if "\ud800" <= c <= "\udfff"), -1)
        if at >= 0:  # JSON's lone "\ud800": no UTF-8 holds it, and the tokenizer failed on the whole batch
            _refuse(f"{column!r} of row {row} holds a lone surrogate at character {at}, not valid Unicode: "
                    f"{value[max(at - 20, 0):at + 20]!r}")
    return list(values)


def _environment_threads() -> int:
    """``OMP_NUM_THREADS`` as a thread count when it is one (the cores a process sharing the machine may use, as
    torch reads it), else 0: ONNX Runtime's own default, a thread per physical core."""
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(value) if value.isdigit() else 0


def onnx_session(path: str, threads: int):
    """The model's ONNX Runtime session, without the graph optimizers its metadata names (export timed the
    model with and without ONNX Runtime's SkipLayerNormFusion, and keeps the faster). The same in the three
    pyfunc files, each standalone; a test checks each of them. ``threads`` 0 is ``OMP_NUM_THREADS`` when set."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or _environment_threads()  # 0: OMP_NUM_THREADS, else ONNX Runtime's
    session = ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
    names = session.get_modelmeta().custom_metadata_map.get("onnxruntime.disabled_optimizers", "")
    disabled = [name.strip() for name in names.split(",") if name.strip()]
    if disabled:
        session = ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"],
                                       disabled_optimizers=disabled)
    return session


class OnnxQuestionAnswerer(PythonModel):
    """Cut each context into windows with ``tokenizers``, run the ONNX model, pick the best span."""

    def load_context(self, context) -> None:
        from tokenizers import Tokenizer

        with open(context.artifacts["config"], encoding="utf-8") as handle:
            config = json.load(handle)
        self.input_names = list(config["input_names"])
        self.batch_size = int(config.get("batch_size", 32))
        self.max_rows = int(config.get("max_rows") or 0)
        self.max_characters = int(config.get("max_characters") or 0)  # 0: no cap (configs written before it)
        self.n_best_size, self.max_answer_length = int(config["n_best_size"]), int(config["max_answer_length"])
        self.pad_id, self.pad_type_id = int(config["pad_id"]), int(config.get("pad_type_id", 0))
        self.question_tokenizer = Tokenizer.from_file(context.artifacts["tokenizer"])  # a question's tokens, whole
        self.question_tokenizer.no_padding()
        self.question_tokenizer.no_truncation()
        tokenizer = Tokenizer.from_file(context.artifacts["tokenizer"])
        tokenizer.no_padding()
        tokenizer.enable_truncation(int(config["max_length"]), stride=int(config["doc_stride"]),
                                    strategy="only_second")
        self.tokenizer = tokenizer
        specials = tokenizer.post_processor.num_special_tokens_to_add(True) if tokenizer.post_processor else 0
        spec = importlib.util.spec_from_file_location("_distillery_qa_postprocess", context.artifacts["postprocess"])
        self.postprocess = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(self.postprocess)
        self.question_room = self.postprocess.question_room(int(config["max_length"]), specials,
                                                            int(config["doc_stride"]))
        self.session = onnx_session(context.artifacts["onnx"], int(config.get("threads", 0)))

    def _windows(self, question: str, context: str, row: int) -> list:
        # a question too long to leave the context more than doc_stride tokens keeps its first tokens, as in training
        question = self.postprocess.fit_question(
            question.lstrip(), lambda text: self.question_tokenizer.encode(text, add_special_tokens=False).offsets,
            self.question_room)
        try:
            encoding = self.tokenizer.encode(question, context)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # noqa: BLE001 - a Rust panic (PanicException) is a BaseException
            _refuse(f"row {row}: the question and context cannot be cut into windows ({str(exc).splitlines()[0]})")
        for sequence, column, text in ((1, CONTEXT, context), (0, QUESTION, question)):
            if sequence not in encoding.sequence_ids:  # control characters only, say: nothing to read or answer from
                _refuse(f"{column!r} of row {row} gives no tokens ({text[:40]!r}); there is nothing to "
                        + ("answer from" if column == CONTEXT else "answer"))
        windows = []
        for window in [encoding, *encoding.overflowing]:
            offsets = [tuple(o) if s == 1 else (-1, -1) for o, s in zip(window.offsets, window.sequence_ids)]
            windows.append((window.ids, window.type_ids, offsets))
        return windows

    def _logits(self, windows: list) -> list:
        """(start, end) logits of each window, cut to its length; batches padded to their longest window."""
        out = []
        for start in range(0, len(windows), self.batch_size):
            part = windows[start:start + self.batch_size]
            length = max(len(ids) for ids, _, _ in part)
            arrays = {"input_ids": np.full((len(part), length), self.pad_id, dtype=np.int64),
                      "token_type_ids": np.full((len(part), length), self.pad_type_id, dtype=np.int64),
                      "attention_mask": np.zeros((len(part), length), dtype=np.int64)}
            for row, (ids, types, _) in enumerate(part):
                arrays["input_ids"][row, :len(ids)] = ids
                arrays["token_type_ids"][row, :len(ids)] = types
                arrays["attention_mask"][row, :len(ids)] = 1
            starts, ends = self.session.run(["start_logits", "end_logits"],
                                            {n: arrays[n] for n in self.input_names})
            out += [(starts[r, :len(ids)], ends[r, :len(ids)]) for r, (ids, _, _) in enumerate(part)]
        return out

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        frame = _frame(model_input)
        if self.max_rows and len(frame) > self.max_rows:
            _refuse(f"{len(frame)} rows in one request; this model takes at most {self.max_rows} rows per request "
                    f"(max_rows): split the request")
        questions, contexts = _strings(frame[QUESTION].tolist(), QUESTION), _strings(frame[CONTEXT].tolist(), CONTEXT)
        total = sum(map(len, questions)) + sum(map(len, contexts))
        if self.max_characters and total > self.max_characters:  # every window of a context is read: no cut
            _refuse(f"{total:,} characters of questions and contexts in one request; this model takes at most "
                    f"{self.max_characters:,} (max_characters): split the request")
        windows, owner = [], []
        for row, (question, text) in enumerate(zip(questions, contexts)):
            for window in self._windows(question, text, row):
                windows.append(window)
                owner.append(row)
        logits = self._logits(windows)
        found = self.postprocess.answers([s for s, _ in logits], [e for _, e in logits], [w[2] for w in windows],
                                         owner, contexts, self.n_best_size, self.max_answer_length)
        return pd.DataFrame({"answer": [a["text"] for a in found], "start": [int(a["start"]) for a in found],
                             "end": [int(a["end"]) for a in found], "score": [float(a["score"]) for a in found]},
                            columns=["answer", "start", "end", "score"])


set_model(OnnxQuestionAnswerer())
