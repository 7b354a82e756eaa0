"""The registered student: an MLflow pyfunc that takes raw text and returns label names and probabilities.

MLflow logs this file as the model's code ("models from code") next to the ONNX model, ``tokenizer.json`` and
``classifier.json`` (labels, max length, input names, padding). It imports only numpy, pandas, onnxruntime, tokenizers
and mlflow, never Distillery, so ``mlflow models serve`` serves it on a machine without Distillery.

Input: a DataFrame with a ``text`` column (and ``text_pair`` for sentence-pair tasks), or the same column-wise
(``{"text": [...]}``; MLflow hands that over as one row holding the lists, read as rows when every column holds a list
of one length: a record with a list for its text beside an ``id`` is refused). Columns are matched by name; other
columns (an ``id``) are ignored. A model trained on other column names (``source_columns``: ``{"text": "review"}``)
reads a request holding all of them from them, and names them in its refusals. Called directly (without MLflow's
signature check), texts, ``[text, text_pair]`` pairs and a one-column DataFrame too. Output: a DataFrame of ``label``,
``score`` (its probability), ``prob_<label>`` per label; a row per input row. Refused, with an ``MlflowException``
(``INVALID_PARAMETER_VALUE``, which ``mlflow models serve`` answers with HTTP 400) that says why, naming the columns
as the request did: a text that is null, not a string, empty (only white space: ``prepare`` rejects such rows, so the
model never saw one) or not valid Unicode (a lone surrogate), more rows than ``max_rows`` (``classifier.json``) in one
call, more than ``max_characters`` of text in one call, and a text that gives no tokens (a tokenizer with no start or
end token of its own, dropping all it holds). A text is read up to ``text_characters``, on the side kept."""
from __future__ import annotations

import json
import os
import unicodedata

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import set_model
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.pyfunc import PythonModel

TEXT, PAIR = "text", "text_pair"


def _refuse(message: str):
    """A bad request: ``mlflow models serve`` answers it with HTTP 400 and this message."""
    raise MlflowException(message, error_code=INVALID_PARAMETER_VALUE)


def _columns(model_input) -> tuple[list, list | None]:
    """The raw ``text`` values, and the ``text_pair`` values or None, as lists (not yet checked)."""
    if isinstance(model_input, dict):
        model_input = pd.DataFrame(model_input, dtype=object)  # Python strings: pandas' arrow ones refuse a surrogate
    if isinstance(model_input, pd.Series):
        model_input = model_input.to_frame(TEXT)
    if isinstance(model_input, np.ndarray):
        model_input = model_input.tolist()
    if isinstance(model_input, (list, tuple)):
        rows = list(model_input)
        if rows and all(isinstance(row, (list, tuple)) and len(row) == 2 for row in rows):
            return [a for a, _ in rows], [b for _, b in rows]
        if rows and all(isinstance(row, dict) for row in rows):
            return _columns(pd.DataFrame(rows, dtype=object))
        return rows, None
    if not isinstance(model_input, pd.DataFrame):
        _refuse(f"expected texts, text pairs or a DataFrame with a {TEXT!r} column, got {type(model_input).__name__}")
    frame = model_input
    if TEXT not in frame.columns:
        if len(frame.columns) != 1:
            _refuse(f"input has columns {list(frame.columns)}; name the text column {TEXT!r} "
                    f"(and the second text {PAIR!r})")
        frame = frame.rename(columns={frame.columns[0]: TEXT})
    if len(frame) == 1 and _is_sequence(frame[TEXT].iloc[0]):
        # Column-wise input ({"inputs": {"text": [...]}}): with the signature's columns typed `any`, MLflow hands it
        # over as one row holding the lists
        cells = column_wise(frame, "text")
        return list(cells[TEXT]), (list(cells[PAIR]) if PAIR in cells else None)
    texts = frame[TEXT].tolist()
    if PAIR in frame.columns and frame[PAIR].notna().any():
        return texts, frame[PAIR].tolist()
    return texts, None


def _is_sequence(value) -> bool:
    return isinstance(value, (list, tuple, np.ndarray))


def _records(given) -> bool:
    return isinstance(given, (list, tuple)) and bool(given) and all(isinstance(row, dict) for row in given)


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


def _visible(text: str) -> bool:
    """Whether ``text`` has a character other than white space, control (Cc) and format (Cf) characters (a zero-width
    space or NUL bytes only is empty); the rule of ``prepare``'s ``visible``, which this file cannot import."""
    return any(not (ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf")) for ch in text)


def _strings(values: list, column: str) -> list[str]:
    """``values`` if every one is a string; else refused, naming the first bad row."""
    for row, value in enumerate(values):
        if not isinstance(value, str):
            bad = sum(not isinstance(v, str) for v in values)
            what = "null" if value is None or (isinstance(value, float) and value != value) else \
                f"not a string ({type(value).__name__} {str(value)[:40]!r})"
            _refuse(f"{column!r} of row {row} is {what}; every row needs a string {column!r} "
                    f"({bad} of {len(values)} rows are not strings)")
    for row, value in enumerate(values):
        if not _visible(value):  # prepare rejects such rows: the model never learnt what an empty text means
            _refuse(f"{column!r} of row {row} is empty ({value[:40]!r}{' ...' if len(value) > 40 else ''}); every "
                    f"row needs a non-empty {column!r}, as every training row had")
        at = -1 if value.isascii() else next((i for i, c in enumerate(value) if "\ud800" <= c <= "\udfff"), -1)
        if at >= 0:  # JSON's lone "\ud800": no UTF-8 holds it, and the tokenizer failed on the whole batch
            _refuse(f"{column!r} of row {row} holds a lone surrogate at character {at}, not valid Unicode: "
                    f"{value[max(at - 20, 0):at + 20]!r}")
    return list(values)


def _texts_and_pairs(model_input) -> tuple[list[str], list[str] | None]:
    return tuple(None if v is None else _strings(v, c) for v, c in zip(_columns(model_input), (TEXT, PAIR)))


def _whole_length(encoding) -> int:
    """The tokens of a text before truncation cut it: its encoding's and its overflowing windows' (no stride)."""
    return len(encoding.ids) + sum(len(window.ids) for window in encoding.overflowing)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


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


class OnnxTextClassifier(PythonModel):
    """Tokenize with ``tokenizers``, run the ONNX model with onnxruntime, return labels and probabilities."""

    def load_context(self, context) -> None:
        from tokenizers import Tokenizer

        with open(context.artifacts["config"], encoding="utf-8") as handle:
            config = json.load(handle)
        self.labels = list(config["labels"])
        self.input_names = list(config["input_names"])
        self.batch_size = int(config.get("batch_size", 32))
        self.pair_task = bool(config.get("text_pair", False))
        self.source_columns = dict(config.get("source_columns") or {})  # served name -> the data's own name
        self.max_rows = int(config.get("max_rows") or 0)  # 0: no cap (configs written before the cap)
        # a text is read up to its first (cut on the left, last) text_characters; max_characters a request (0: none)
        self.text_characters = int(config.get("text_characters") or 0)
        self.max_characters = int(config.get("max_characters") or 0)
        self.tokenizer = tokenizer = Tokenizer.from_file(context.artifacts["tokenizer"])
        self.direction = config.get("truncation_side", "right")  # models registered before it: the right
        tokenizer.enable_truncation(int(config["max_length"]), strategy="longest_first", direction=self.direction)
        tokenizer.enable_padding(pad_id=int(config["pad_id"]), pad_token=config["pad_token"],
                                 pad_type_id=int(config.get("pad_type_id", 0)))
        self.session = onnx_session(context.artifacts["onnx"], int(config.get("threads", 0)))

    def _encode(self, texts: list, pairs: list | None, first_row: int = 0) -> dict:
        encodings = self.tokenizer.encode_batch(texts) if pairs is None else self._encode_pairs(texts, pairs)
        empty = next((i for i, e in enumerate(encodings) if not any(e.attention_mask)), None)
        if empty is not None:  # a tokenizer without start/end tokens (GPT-2 style) and an empty text
            _refuse(f"{TEXT!r} of row {first_row + empty} gives no tokens ({texts[empty]!r}); this model's tokenizer "
                    f"adds none of its own, so there is nothing to classify")
        arrays = {"input_ids": [e.ids for e in encodings], "attention_mask": [e.attention_mask for e in encodings],
                  "token_type_ids": [e.type_ids for e in encodings]}
        return {name: np.asarray(arrays[name], dtype=np.int64) for name in self.input_names}

    def _encode_pairs(self, texts: list, pairs: list) -> list:
        """The pairs as ``encode_batch`` gives them, without its cost: encoding a pair, the tokenizer builds every
        window of one text beyond ``max_length`` crossed with every window of the other (two texts of 20,000 words
        took 15 GB). Each side is encoded and cut alone (linear), then the pair is truncated and given its special
        tokens, and the batch padded.

        The cut keeps what ``longest_first`` keeps: it keeps at most ``max_length`` tokens of a side, and it reads
        only how the two sides' lengths compare (the longer keeps the odd token). So each side is cut to
        ``max_length + 1`` tokens, and of two sides cut to that length, the shorter one (in full) to ``max_length``."""
        cap, direction = int(self.tokenizer.truncation["max_length"]), self.tokenizer.truncation["direction"]
        sides = getattr(self, "_sides", None)
        if sides is None:  # the tokenizer cutting at cap + 1, without padding: each side as it is
            from tokenizers import Tokenizer

            sides = Tokenizer.from_str(self.tokenizer.to_str())
            sides.no_padding()
            sides.enable_truncation(cap + 1, direction=direction)
            self._sides = sides
        encodings = []
        for first, second in zip(sides.encode_batch(texts, add_special_tokens=False),
                                 sides.encode_batch(pairs, add_special_tokens=False)):
            if len(first.ids) == len(second.ids) == cap + 1:
                whole_first, whole_second = _whole_length(first), _whole_length(second)
                if whole_first < whole_second:
                    first.truncate(cap, direction=direction)
                elif whole_second < whole_first:
                    second.truncate(cap, direction=direction)
            encodings.append(self.tokenizer.post_process(first, second, add_special_tokens=True))
        padding = self.tokenizer.padding or {}
        longest = max((len(e.ids) for e in encodings), default=0)
        for encoding in encodings:
            encoding.pad(longest, direction=padding.get("direction", "right"), pad_id=padding.get("pad_id", 0),
                         pad_type_id=padding.get("pad_type_id", 0), pad_token=padding.get("pad_token", "[PAD]"))
        return encodings

    def _as_served(self, model_input):
        """A request in the data's own names (``review``) renamed to the served ones; any other as it is. A frame of
        no columns (MLflow's make of a bare list, or other columns, for a model of two names) is refused."""
        own, given = getattr(self, "source_columns", None), model_input
        frame = pd.DataFrame(given, dtype=object) if own and (isinstance(given, dict) or _records(given)) else given
        if own and isinstance(frame, pd.DataFrame) and not len(frame.columns):
            names = ", ".join(map(repr, [*own, *own.values()]))
            _refuse(f"the request names none of the columns this model reads ({names}); a bare list of texts, or "
                    f"columns of other names, reach a model of two names as no columns at all: name the column, e.g. "
                    f"{{\"inputs\": {{\"{TEXT}\": [...]}}}}")
        if not own or not isinstance(frame, pd.DataFrame) or not set(own.values()) <= set(frame.columns):
            return model_input
        served = [column for column in own if column in frame.columns and column not in own.values()]
        return frame.drop(columns=served).rename(columns={v: k for k, v in own.items()})

    def logits(self, model_input) -> np.ndarray:
        sent, model_input = model_input, self._as_served(model_input)
        texts, pairs = _columns(model_input)
        if self.max_rows and len(texts) > self.max_rows:
            _refuse(f"{len(texts)} rows in one request; this model takes at most {self.max_rows} rows per request "
                    f"(max_rows): split the request")
        named = {TEXT: TEXT, PAIR: PAIR, **(getattr(self, "source_columns", None) or {})}  # the data's names
        keys = sent.columns if isinstance(sent, pd.DataFrame) else sent if isinstance(sent, dict) else \
            sent[0] if _records(sent) else ()  # the columns the request named: its refusals name them so
        shown = {c: named[c] if named[c] in set(keys) else c for c in (TEXT, PAIR)}
        texts, pairs = _strings(texts, shown[TEXT]), None if pairs is None else _strings(pairs, shown[PAIR])
        texts, pairs = self._cut(texts), None if pairs is None else self._cut(pairs)
        total = sum(map(len, texts)) + (sum(map(len, pairs)) if pairs is not None else 0)
        if self.max_characters and total > self.max_characters:
            _refuse(f"{total:,} characters of text in one request (each text counted up to {self.text_characters:,}); "
                    f"this model takes at most {self.max_characters:,} (max_characters): split the request")
        if not texts:  # no rows in, no rows out
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        if self.pair_task and pairs is None:
            given = pd.DataFrame(model_input, dtype=object) if isinstance(model_input, dict) or _records(model_input) \
                else model_input
            if isinstance(given, pd.DataFrame) and PAIR in given.columns:
                _strings(given[PAIR].tolist(), shown[PAIR])  # the column is there, all null: name the first row
            also = f" (or {TEXT!r} and {PAIR!r})" if named[PAIR] != PAIR else ""  # the served names work too
            _refuse(f"this model classifies text pairs: give {named[TEXT]!r} and {named[PAIR]!r} columns{also}")
        if not self.pair_task and pairs is not None:
            _refuse(f"this model classifies single texts, but {PAIR!r} values were given: send {named[TEXT]!r} alone "
                    f"(a second text would be read as part of the input and change the answer)")
        parts = []
        for start in range(0, len(texts), self.batch_size):
            batch = self._encode(texts[start:start + self.batch_size],
                                 pairs[start:start + self.batch_size] if pairs is not None else None, start)
            parts.append(self.session.run(["logits"], batch)[0])
        return np.concatenate(parts)

    def _cut(self, texts: list) -> list:
        """Each text cut to ``text_characters`` where the tokenizer cuts (tokenising 10 MB took 1.4 GB and 13 s)."""
        keep = self.text_characters  # 0: no cut (configs written before it)
        return [t if not keep or len(t) <= keep else t[-keep:] if self.direction == "left" else t[:keep]
                for t in texts]

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        probabilities = _softmax(self.logits(model_input).astype(np.float64))
        best = probabilities.argmax(axis=-1) if len(probabilities) else np.zeros(0, dtype=int)
        frame = pd.DataFrame({"label": [self.labels[i] for i in best],
                              "score": probabilities.max(axis=-1) if len(probabilities) else []})
        for index, label in enumerate(self.labels):
            frame[f"prob_{label}"] = probabilities[:, index]
        return frame


set_model(OnnxTextClassifier())
