"""The served model's input rules (``distillery/serving/text_classifier.py``), without an ONNX model."""
import importlib.util

import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from distillery.task_types.text_classification.serving import MODEL_CODE


@pytest.fixture(scope="module")
def served():
    spec = importlib.util.spec_from_file_location("served", MODEL_CODE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _refused(call, match: str) -> MlflowException:
    with pytest.raises(MlflowException, match=match) as caught:
        call()
    assert caught.value.error_code == "INVALID_PARAMETER_VALUE"  # HTTP 400 from `mlflow models serve`
    assert caught.value.get_http_status_code() == 400
    return caught.value


def test_input_forms(served):
    parse = served._texts_and_pairs
    assert parse(["a", "b"]) == (["a", "b"], None)
    assert parse([["q", "a"], ("q2", "a2")]) == (["q", "q2"], ["a", "a2"])
    assert parse(pd.DataFrame({"text": ["x"], "text_pair": ["y"]})) == (["x"], ["y"])
    assert parse(pd.DataFrame({"id": ["u1"], "text": ["x"]})) == (["x"], None)  # matched by name, not position
    assert parse(pd.DataFrame({0: ["only column"]})) == (["only column"], None)
    assert parse([{"text": "x", "text_pair": "y"}]) == (["x"], ["y"])
    assert parse(np.asarray(["a", "b"])) == (["a", "b"], None)
    assert parse([]) == ([], None)
    # Column-wise, as MLflow passes {"inputs": {"text": [...]}} with the signature's `any` columns: one row holding
    # the lists, every column a list of one length (an id column too)
    assert parse(pd.DataFrame({"text": [["a", "b"]]})) == (["a", "b"], None)
    assert parse(pd.DataFrame({"text": [[]]})) == ([], None)
    assert parse(pd.DataFrame({"text": [["q"]], "text_pair": [["a"]]})) == (["q"], ["a"])
    assert parse(pd.DataFrame({"id": [[1, 2]], "text": [["a", "b"]]})) == (["a", "b"], None)
    _refused(lambda: parse(pd.DataFrame({"text": [["q", "q2"]], "text_pair": [["a"]]})),
             r"column-wise input with lists of different lengths \('text' 2, 'text_pair' 1\)")
    _refused(lambda: parse(pd.DataFrame({"text": [["a", None]]})), "'text' of row 1 is null")
    # A record whose text is a list, beside a column that is not one, was answered with two rows for one: refused
    _refused(lambda: parse(pd.DataFrame({"id": [7], "text": [["a", "b"]]})),
             "'text' of row 0 is a list but 'id' is not; send one text per row, or every column as a list")
    _refused(lambda: parse(pd.DataFrame({"text": [["a", "b"]], "text_pair": ["c"]})),
             "'text' of row 0 is a list but 'text_pair' is not")
    _refused(lambda: parse(pd.DataFrame({"text": ["a"], "text_pair": [["b", "c"]]})),
             "'text_pair' of row 0 is not a string")
    _refused(lambda: parse(pd.DataFrame({"a": ["x"], "b": ["y"]})), "name the text column 'text'")


@pytest.mark.parametrize("rows, what", [(["a", None], "'text' of row 1 is null"),
                                        (["a", "b", np.nan], "'text' of row 2 is null"),
                                        ([1, 2], "'text' of row 0 is not a string \\(int '1'\\)"),
                                        ([{"text": "x", "text_pair": None}, {"text": "y", "text_pair": "z"}],
                                         "'text_pair' of row 0 is null")])
def test_null_or_non_string_texts_are_refused_never_classified_as_empty(served, rows, what):
    _refused(lambda: served._texts_and_pairs(rows), what)


def _model(served, max_rows: int):
    model = served.OnnxTextClassifier()  # no load_context: these requests are refused before the model runs
    model.labels, model.max_rows, model.pair_task = ["negative", "positive"], max_rows, False
    model.text_characters = model.max_characters = 0  # no caps, as in a config written before them
    return model


def test_more_rows_than_max_rows_are_refused_with_the_cap(served):
    model = _model(served, max_rows=3)
    error = _refused(lambda: model.predict(None, ["a", "b", "c", "d"]), "4 rows in one request")
    assert "at most 3 rows per request" in error.message
    _refused(lambda: model.predict(None, pd.DataFrame({"text": ["a"] * 4})), "at most 3 rows")


def test_the_wrong_number_of_texts_for_the_model_is_refused_naming_the_column(served):
    pair_model = _model(served, max_rows=10)
    pair_model.pair_task = True
    # a text_pair column that is there but null: name the row, not "give 'text' and 'text_pair' columns"
    _refused(lambda: pair_model.predict(None, pd.DataFrame({"text": ["a", "b"], "text_pair": [None, None]})),
             "'text_pair' of row 0 is null")
    _refused(lambda: pair_model.predict(None, [{"text": "a", "text_pair": None}]), "'text_pair' of row 0 is null")
    _refused(lambda: pair_model.predict(None, {"text": ["a"], "text_pair": [None]}), "'text_pair' of row 0 is null")
    _refused(lambda: pair_model.predict(None, pd.DataFrame({"text": ["a"]})), "this model classifies text pairs")
    # a single-text model given pairs would read both texts as its input and answer for something else
    _refused(lambda: _model(served, max_rows=10).predict(None, pd.DataFrame({"text": ["a"], "text_pair": ["b"]})),
             "this model classifies single texts, but 'text_pair' values were given")
    _refused(lambda: _model(served, max_rows=10).predict(None, [["a", "b"]]), "classifies single texts")
    # a model of the data's own names (SNLI's sentence1, sentence2) names the columns as the request named them: a
    # request in the served names was told of 'sentence2', a column it never sent (a trial)
    pair_model.source_columns = {"text": "sentence1", "text_pair": "sentence2"}
    _refused(lambda: pair_model.predict(None, [{"text": "A man.", "text_pair": None}]), "'text_pair' of row 0 is null")
    _refused(lambda: pair_model.predict(None, [{"text": 5, "text_pair": "b"}]), "'text' of row 0 is not a string")
    _refused(lambda: pair_model.predict(None, [{"sentence1": "A man.", "sentence2": None}]),
             "'sentence2' of row 0 is null")
    _refused(lambda: pair_model.predict(None, {"sentence1": [None]}), "'sentence1' of row 0 is null")  # one of them
    _refused(lambda: pair_model.predict(None, [{"sentence1": 5}]), "'sentence1' of row 0 is not a string")
    _refused(lambda: pair_model.predict(None, pd.DataFrame({"text": ["a"]})),
             r"give 'sentence1' and 'sentence2' columns \(or 'text' and 'text_pair'\)")


def test_no_rows_in_no_rows_out(served):
    answer = _model(served, max_rows=3).predict(None, [])
    assert len(answer) == 0
    assert list(answer.columns) == ["label", "score", "prob_negative", "prob_positive"]


def test_served_process_memory_reports_a_model_that_cannot_load_in_one_line(tmp_path):
    from distillery.registry.pyfunc import served_process_memory

    code = tmp_path / "broken_model.py"
    code.write_text("class Broken:\n    def load_context(self, context):\n"
                    "        raise FileNotFoundError('model.onnx is missing')\n")
    result = served_process_memory(code, "Broken", {}, pd.DataFrame({"text": ["a"]}))
    assert result == {"error": "FileNotFoundError: model.onnx is missing"}


def test_served_process_memory_is_the_child_own_high_water_mark(tmp_path):
    from distillery.registry.pyfunc import served_process_memory

    code = tmp_path / "echo_model.py"  # allocates ~200 MB while answering
    code.write_text("class Echo:\n    def load_context(self, context):\n        self.n = int(context.artifacts['mb'])\n"
                    "    def predict(self, context, rows):\n        block = bytearray(self.n * 2**20)\n"
                    "        block[::4096] = b'x' * len(block[::4096])\n        return rows\n")
    small = served_process_memory(code, "Echo", {"mb": "1"}, pd.DataFrame({"text": ["a", "b"]}))
    large = served_process_memory(code, "Echo", {"mb": "200"}, pd.DataFrame({"text": ["a", "b"]}))
    assert small["rows"] == large["rows"] == small["batch"] == 2
    assert small["torch_imported"] is False and small["distillery_imported"] is False
    assert 180 < large["peak_memory_mb"] - small["peak_memory_mb"] < 230, (small, large)
    assert abs(large["after_imports_mb"] - small["after_imports_mb"]) < 20, (small, large)


def test_a_text_that_gives_no_tokens_is_refused_naming_its_row(served):
    """A GPT-2 style tokenizer adds no token of its own, so a text its normaliser empties (control characters)
    encodes to nothing: a 400 naming the row, not an ONNX Runtime failure on an empty sequence."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

    tokenizer = Tokenizer(models.WordLevel(vocab={"<eos>": 0, "<unk>": 1, "good": 2, "day": 3}, unk_token="<unk>"))
    tokenizer.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=False,
                                                      strip_accents=False, lowercase=False)
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.enable_padding(pad_id=0, pad_token="<eos>")
    model = _model(served, max_rows=100)
    model.tokenizer, model.input_names, model.batch_size = tokenizer, ["input_ids", "attention_mask"], 2

    class Session:  # stands in for ONNX Runtime: zero logits for each row of a batch
        def run(self, names, batch):
            return [np.zeros((len(batch["input_ids"]), 2), dtype=np.float32)]

    model.session = Session()
    assert model.predict(None, ["good day", "day", "good"])["score"].tolist() == [0.5, 0.5, 0.5]
    encoded = model._encode(["good day", "day"], None)
    assert encoded["input_ids"].tolist() == [[2, 3], [3, 0]] and encoded["attention_mask"].tolist() == [[1, 1], [1, 0]]
    # U+FFFD is a visible symbol (not empty), which the normaliser's clean_text removes with the control character
    error = _refused(lambda: model.predict(None, ["good day", "day", "good", "\ufffd\x01"]),
                     "'text' of row 3 gives no tokens")
    assert "('\ufffd\\x01')" in error.message


@pytest.mark.parametrize("rows, pair_task, what", [
    (["good", "", "day"], False, "'text' of row 1 is empty \\(''\\)"),
    (["good", " \t\n"], False, "'text' of row 1 is empty"),
    (pd.DataFrame({"text": ["a", "b"], "text_pair": ["c", " "]}), True, "'text_pair' of row 1 is empty \\(' '\\)"),
    ({"text": ["", "b"], "text_pair": ["c", "d"]}, True, "'text' of row 0 is empty"),
    # no visible character: a zero-width space (format, Cf), NUL bytes (control, Cc), beside white space
    (["good", "\u200b"], False, r"'text' of row 1 is empty \('\\u200b'\)"),
    (["good", "day", " \x00\x00 "], False, "'text' of row 2 is empty"),
    (pd.DataFrame({"text": ["a"], "text_pair": ["\ufeff\u200d"]}), True, "'text_pair' of row 0 is empty"),
    # a megabyte of white space is not echoed whole (it was, into a 1,000,092-character message)
    (["good", " " * 1_000_000], False, r"'text' of row 1 is empty \(' {40}' \.\.\.\); every row needs")])
def test_an_empty_text_or_text_pair_is_refused_as_prepare_rejects_it_for_training(served, rows, pair_task, what):
    """A pair with an empty second text was classified (BERT's tokenizer still gives [CLS] [SEP]), while prepare
    rejects such a row as "empty text pair": the model never saw one. A text of invisible characters only (a
    zero-width space) was classified; prepare now rejects it as empty too."""
    model = _model(served, max_rows=10)
    model.pair_task = pair_task
    error = _refused(lambda: model.predict(None, rows), what)
    assert "every row needs a non-empty" in error.message


@pytest.mark.parametrize("rows, pair_task, what", [
    (["good", "bad \ud800 day"], False, r"'text' of row 1 holds a lone surrogate at character 4, not valid Unicode: "
                                        r"'bad \\ud800 day'"),
    ([["a", "c"], ["b", "x" * 30 + "\udfff" + "y" * 30]], True,
     r"'text_pair' of row 1 holds a lone surrogate at character 30, not valid Unicode: '" + "x" * 20 + r"\\udfff"
     + "y" * 19 + "'"),
    # columns or records: made a frame of Python strings (pandas' arrow strings refuse a surrogate as it is made)
    ({"text": ["a", "b"], "text_pair": ["c", "\udfff"]}, True, "'text_pair' of row 1 holds a lone surrogate"),
    ([{"text": "fine"}, {"text": "x \ud800"}], False, "'text' of row 1 holds a lone surrogate at character 2"),
    (pd.DataFrame({"text": pd.Series(["a", "b"], dtype=object), "text_pair": pd.Series(["c", "\udfff"], dtype=object)}),
     True, "'text_pair' of row 1 holds a lone surrogate")])
def test_a_lone_surrogate_is_refused_naming_its_row_not_left_to_the_tokenizer(served, rows, pair_task, what):
    """JSON's "\\ud800" decodes to a lone surrogate, which no UTF-8 holds: the tokenizer failed on the whole batch
    with a TypeError, which MLflow answered with its stack trace (trial DD)."""
    model = _model(served, max_rows=10)
    model.pair_task = pair_task
    _refused(lambda: model.predict(None, rows), what)
    assert served._strings(["bad \U0001F600 day"], "text") == ["bad \U0001F600 day"]  # one code point, not a surrogate


def test_a_bilstm_students_tokenizer_loads_without_transformers_model_type_warning(tiny_bert, tmp_path):
    """The student directory of a BiLSTM or bag-of-embeddings student has a config.json of a model type
    transformers does not know; registering it used to print transformers' "model of type" warning. A fresh
    interpreter, as `register` is: this one may have registered Distillery's model types already."""
    import json
    import shutil
    import subprocess
    import sys

    student = tmp_path / "student"
    shutil.copytree(tiny_bert, student)
    (student / "config.json").write_text(json.dumps({"model_type": "distillery_bilstm", "hidden_size": 8}))
    code = ("import sys; from transformers import AutoTokenizer; from distillery.tokenizer_padding import tokenizer; "
            "loaded, plain = tokenizer(sys.argv[1]), AutoTokenizer.from_pretrained(sys.argv[2]); "
            "print(type(loaded) is type(plain), loaded.pad_token_id == plain.pad_token_id, "
            "loaded('a b c').input_ids == plain('a b c').input_ids, "
            "type(tokenizer(sys.argv[2])) is type(plain))")
    result = subprocess.run([sys.executable, "-c", code, str(student), str(tiny_bert)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    # the same tokenizer as beside a config it knows; a directory of a known model type loads as it always did
    assert result.stdout.split() == ["True", "True", "True", "True"]
    assert "model of type" not in result.stderr, result.stderr[-2000:]


def test_column_wise_reading_is_the_same_in_the_text_and_qa_pyfuncs():
    """Each pyfunc file stands alone (served without Distillery), so the helper is written twice: kept equal."""
    import inspect

    from distillery.serving import question_answerer, text_classifier

    assert inspect.getsource(text_classifier.column_wise) == inspect.getsource(question_answerer.column_wise)


@pytest.mark.parametrize("direction", ["right", "left"])
def test_long_sentence_pairs_encode_as_the_tokenizer_does_without_crossing_their_windows(served, tiny_bert,
                                                                                         direction):
    """Encoding a pair, the tokenizer built every window of one text beyond max_length crossed with every window of
    the other: two texts of 20,000 words took a served process to 15 GB. Each side is now cut alone, with the same
    tokens, type ids and padding as the tokenizer's own pair encoding gives."""
    import time

    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tiny_bert / "tokenizer.json"))
    tokenizer.enable_truncation(16, strategy="longest_first", direction=direction)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    model = _model(served, max_rows=100)
    model.tokenizer, model.input_names = tokenizer, ["input_ids", "token_type_ids", "attention_mask"]
    words = "good bad the car drives road today news city report".split()
    rng = np.random.default_rng(0)
    # every kind of pair: both short, one long, both long, of equal or nearly equal lengths about max_length
    lengths = [(a, b) for a in (1, 3, 7, 12, 13, 14, 15, 16, 17, 18, 30) for b in (1, 2, 7, 13, 14, 15, 16, 17, 25)]
    texts = [" ".join(rng.choice(words, size=a)) for a, _ in lengths]
    pairs = [" ".join(rng.choice(words, size=b)) for _, b in lengths]
    expected = tokenizer.encode_batch(list(zip(texts, pairs)))
    encoded = model._encode(texts, pairs)
    assert encoded["input_ids"].shape == (len(lengths), 16)
    assert encoded["input_ids"].tolist() == [e.ids for e in expected]
    assert encoded["token_type_ids"].tolist() == [e.type_ids for e in expected]
    assert encoded["attention_mask"].tolist() == [e.attention_mask for e in expected]
    # two texts of 3,000 words each: the crossed windows took about 1 s and 0.5 GB; side by side, milliseconds
    started = time.perf_counter()
    long = model._encode(["good day " * 1500], ["bad news " * 1500])
    assert time.perf_counter() - started < 0.2
    assert long["input_ids"].shape == (1, 16)


def test_the_served_model_cuts_long_texts_on_the_side_training_did(served, tiny_bert, tmp_path, monkeypatch):
    """A tokenizer that cuts on the left (truncation_side, kept by transformers outside tokenizer.json, recorded in
    classifier.json) was served cutting on the right: long inputs were answered from other tokens than training and
    evaluation saw."""
    import json

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert, truncation_side="left")
    config = {"labels": ["a", "b"], "max_length": 8, "input_names": ["input_ids", "token_type_ids", "attention_mask"],
              "text_pair": False, "pad_id": 0, "pad_token": "[PAD]", "pad_type_id": 0, "truncation_side": "left"}
    (tmp_path / "classifier.json").write_text(json.dumps(config))
    monkeypatch.setattr(served, "onnx_session", lambda path, threads: None)  # no ONNX model needed to tokenise
    model = served.OnnxTextClassifier()
    model.load_context(type("Context", (), {"artifacts": {"config": str(tmp_path / "classifier.json"), "onnx": "",
                                                          "tokenizer": str(tiny_bert / "tokenizer.json")}})())
    text = "good bad the car drives road today news city report love hate"
    assert model._encode([text], None)["input_ids"].tolist() == \
        [tokenizer(text, truncation=True, max_length=8)["input_ids"]]


def _word_model(served, max_length: int, direction: str = "right"):
    from tokenizers import Tokenizer, models, pre_tokenizers

    tokenizer = Tokenizer(models.WordLevel(vocab={"<pad>": 0, "<unk>": 1, "good": 2, "day": 3, "bad": 4},
                                           unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.enable_padding(pad_id=0, pad_token="<pad>")
    tokenizer.enable_truncation(max_length, direction=direction)
    model = _model(served, max_rows=100)
    model.tokenizer, model.input_names, model.batch_size, model.direction = tokenizer, ["input_ids"], 8, direction

    class Session:  # stands in for ONNX Runtime: logits (first id, last id) of each row
        def run(self, names, batch):
            return [np.stack([batch["input_ids"][:, 0], batch["input_ids"][:, -1]], axis=1).astype(np.float32)]

    model.session = Session()
    return model


@pytest.mark.parametrize("direction", ["right", "left"])
def test_a_long_text_is_read_up_to_text_characters_on_the_kept_side_with_the_same_tokens(served, direction):
    """A 10 MB text took the served process 1.4 GB to tokenise, for max_length tokens. It is cut first, on the side
    the tokenizer keeps, and the ids are those of the whole text (the tokenizer's own truncation, uncut)."""
    model = _word_model(served, max_length=3, direction=direction)
    long = "bad good " + "day " * 5000 + "good bad"
    model.text_characters = 40
    assert model._cut([long, "good day"]) == [long[:40] if direction == "right" else long[-40:], "good day"]
    whole = model.tokenizer.encode(long).ids  # truncated by the tokenizer, from the whole text
    assert whole == ([4, 2, 3] if direction == "right" else [3, 2, 4])
    assert model._encode(model._cut([long]), None)["input_ids"].tolist() == [whole]
    assert model.predict(None, [long])["score"].tolist() == model.predict(None, [long[:60] if direction == "right"
                                                                                 else long[-60:]])["score"].tolist()


def test_more_characters_than_max_characters_in_one_request_are_refused(served):
    model = _word_model(served, max_length=3)
    model.text_characters, model.max_characters = 40, 100
    assert len(model.predict(None, ["good day " * 5] * 2)) == 2  # 2 x 40 characters after the cut: 80
    error = _refused(lambda: model.predict(None, ["good day " * 5] * 3), "120 characters of text in one request")
    assert "at most 100 (max_characters)" in error.message


def test_scoring_slices_a_split_into_calls_within_both_caps():
    from distillery.registry.pyfunc import request_slices

    assert request_slices([5, 5, 5], max_rows=2, max_characters=100) == [slice(0, 2), slice(2, 3)]
    assert request_slices([5, 5, 30, 5], max_rows=10, max_characters=12) == [slice(0, 2), slice(2, 3), slice(3, 4)]
    assert request_slices([12, 12], max_rows=10, max_characters=12) == [slice(0, 1), slice(1, 2)]  # at the cap
    assert request_slices([], max_rows=10, max_characters=12) == []


def test_records_as_in_the_data_file_are_read_from_the_column_the_model_learnt(served):
    """A trial trained on `review` from a file that also held an unrelated `text` (a title). Sent the file's own
    records, the served model answered from the title: 9.5% accuracy, HTTP 200. A request holding the data's own
    names (source_columns) is now read from them; one in the served names alone as before."""
    model = _word_model(served, max_length=3)  # logits: (first id, last id), "good" 2, "day" 3, "bad" 4
    model.source_columns = {"text": "review"}
    expected = model.predict(None, ["good day", "bad"])
    as_in_file = pd.DataFrame({"id": [1, 2], "text": ["bad", "good day"], "review": ["good day", "bad"]})
    assert model.predict(None, as_in_file).equals(expected)
    assert model.predict(None, as_in_file.to_dict("records")).equals(expected)
    assert model.predict(None, pd.DataFrame({"text": ["good day", "bad"]})).equals(expected)  # the served name
    model.pair_task, model.source_columns = True, {"text": "premise", "text_pair": "hypothesis"}
    pairs = model.predict(None, pd.DataFrame({"text": ["good", "bad"], "text_pair": ["day", "good"]}))
    assert model.predict(None, pd.DataFrame({"premise": ["good", "bad"], "hypothesis": ["day", "good"],
                                             "text": ["bad", "bad"], "text_pair": ["bad", "bad"]})).equals(pairs)
    # one of the two own names is not a naming of the request: the served names are read
    assert model.predict(None, pd.DataFrame({"text": ["good", "bad"], "text_pair": ["day", "good"],
                                             "premise": ["bad", "bad"]})).equals(pairs)
    # MLflow's schema check hands a bare list ({"inputs": ["...", ...]}), or columns of other names, to a model of two
    # names as a frame of no columns and no rows (trial Y): it said "input has columns []; name the text column 'text'"
    from mlflow.models.utils import _enforce_schema

    from distillery.registry.pyfunc import signature

    model.pair_task, model.source_columns = False, {"text": "body"}
    schema = signature(pd.DataFrame({"text": ["a"]}), pd.DataFrame({"label": ["x"]}), ("body",)).inputs
    for request in (["good day", "bad"], pd.DataFrame({"message": ["good day"]}), pd.DataFrame(index=range(2))):
        with pytest.raises(MlflowException, match=r"^the request names none of the columns this model reads "
                                                  r"\('text', 'body'\); a bare list of texts, or columns of other "
                                                  r"names, reach a model of two names as no columns at all: name the "
                                                  r"column, e.g. \{\"inputs\": \{\"text\": \[\.\.\.\]\}\}$"):
            model.predict(None, _enforce_schema(request, schema) if isinstance(request, list) or len(request.columns)
                          else request)
    assert model.predict(None, _enforce_schema(pd.DataFrame({"body": ["good day"]}), schema)).equals(expected.iloc[:1])
    # its refusals name the columns as the data named them (trial CC: "'text' of row 3 is empty" to a `txt` user)
    _refused(lambda: model.predict(None, pd.DataFrame({"body": ["good", " "]})), "^'body' of row 1 is empty")
    model.pair_task, model.source_columns = True, {"text": "premise", "text_pair": "hypothesis"}
    _refused(lambda: model.predict(None, pd.DataFrame({"premise": ["good"]})),
             r"^this model classifies text pairs: give 'premise' and 'hypothesis' columns \(or 'text' and "
             r"'text_pair'\)$")


def test_the_signature_hands_the_model_the_datas_own_column_names_or_the_served_ones(tmp_path):
    """MLflow passes a model only the columns its signature names: the data's own names are in it, and every
    column is optional, so a request in the own names alone reaches the model (trial Q: the model card said so,
    and MLflow refused it, missing the served names); the model refuses a request in neither."""
    import mlflow
    from mlflow.pyfunc import PythonModel

    from distillery.registry.pyfunc import signature

    class Columns(PythonModel):  # answers with the columns MLflow handed over
        def predict(self, context, model_input, params=None):
            return pd.DataFrame({"columns": [",".join(sorted(model_input.columns))] * len(model_input)})

    example = pd.DataFrame({"text": ["a"]})
    mlflow.pyfunc.save_model(tmp_path / "m", python_model=Columns(),
                             signature=signature(example, pd.DataFrame({"columns": ["text"]}), ("review",)))
    model = mlflow.pyfunc.load_model(str(tmp_path / "m"))
    answer = model.predict(pd.DataFrame({"id": [1], "text": ["a title"], "review": ["the body"]}))
    assert answer["columns"].tolist() == ["review,text"]  # id is not in the signature: left out
    assert model.predict(pd.DataFrame({"text": ["a"]}))["columns"].tolist() == ["text"]
    assert model.predict(pd.DataFrame({"review": ["the body"]}))["columns"].tolist() == ["review"]
    # in neither: no column reaches the model, which refuses that (test_pair_pipeline.py, over HTTP)
    assert model.predict(pd.DataFrame({"id": [1]}))["columns"].tolist() == []
