"""Text classification's featurising, chunked: the training dataset and the inference pass tokenise a split a
chunk of rows at a time, with the same result as all at once, and without the whole split's token lists."""
import tracemalloc

import numpy as np
import pandas as pd
import pytest
from transformers import AutoTokenizer

from distillery.task_types import tokens
from distillery.task_types.text_classification import features
from tiny import load_classifier, make_texts


@pytest.fixture
def frame() -> pd.DataFrame:
    texts = make_texts(23)
    texts["label"] = [i % 3 for i in range(len(texts))]
    texts["text_pair"] = texts["text"].iloc[::-1].tolist()
    # a shuffled index with repeats, as a filtered or concatenated frame has
    return texts.set_index(pd.Index([5, 5, 2] + list(range(20)))).sample(frac=1.0, random_state=0)


@pytest.mark.parametrize("pairs", [False, True])
def test_the_dataset_and_the_logits_are_the_same_chunk_by_chunk_as_all_at_once(frame, tiny_bert, monkeypatch, pairs):
    frame = frame if pairs else frame.drop(columns="text_pair")
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    model = load_classifier(tiny_bert, "tiny", labels=["a", "b", "c"])
    teacher = np.random.default_rng(0).standard_normal((len(frame), 3)).astype(np.float32)
    monkeypatch.setattr(tokens, "CHUNK_ROWS", 10_000)
    whole = features.tokenize(frame, tokenizer, 12, teacher).to_dict()
    logits = features.predict_logits(model, tokenizer, frame, 12, batch_size=4)
    monkeypatch.setattr(tokens, "CHUNK_ROWS", 5)  # 23 rows: 5 chunks, the last of 3
    assert features.tokenize(frame, tokenizer, 12, teacher).to_dict() == whole
    np.testing.assert_array_equal(features.predict_logits(model, tokenizer, frame, 12, batch_size=4), logits)
    monkeypatch.setattr(tokens, "CHUNK_CHARACTERS", 60)  # chunks of a few rows by their characters
    assert features.tokenize(frame, tokenizer, 12, teacher).to_dict() == whole
    np.testing.assert_array_equal(features.predict_logits(model, tokenizer, frame, 12, batch_size=4), logits)
    # and both are the rows' own: row i's teacher logits and tokens, in the frame's order
    assert np.allclose(whole[features.TEACHER_LOGITS], teacher)
    texts = frame["text"].tolist()
    assert whole["input_ids"] == tokenizer(texts, frame["text_pair"].tolist() if pairs else None, truncation=True,
                                           max_length=12)["input_ids"]
    assert whole["labels"] == frame["label"].tolist()
    one = features.predict_logits(model, tokenizer, frame.iloc[[7]], 12, batch_size=4)
    np.testing.assert_allclose(one[0], logits[7], atol=1e-5)


def test_no_rows(tiny_bert):
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    model = load_classifier(tiny_bert, "tiny", labels=["a", "b"])
    empty = pd.DataFrame({"text": pd.Series([], dtype=str), "label": pd.Series([], dtype="int64")})
    assert features.predict_logits(model, tokenizer, empty, 12, batch_size=4).shape == (0, 2)
    assert len(features.tokenize(empty, tokenizer, 12)) == 0


def test_the_inference_pass_holds_its_tokens_in_arrays_not_a_whole_splits_lists(tiny_bert, monkeypatch):
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    frame = make_texts(20_000)
    monkeypatch.setattr(tokens, "CHUNK_ROWS", 1_000)
    tracemalloc.start()
    try:
        encoded = features.encode_rows(tokenizer, frame, 32)
        _, chunked_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        baseline, _ = tracemalloc.get_traced_memory()
        lists = tokenizer(frame["text"].tolist(), truncation=True, max_length=32)
        _, whole_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert encoded.rows([3, 19_999]) == [{k: lists[k][i] for k in lists.keys()} for i in (3, 19_999)]
    assert list(encoded.lengths[:5]) == [len(ids) for ids in lists["input_ids"][:5]]
    # the whole split's lists of Python ints against one chunk's lists and the int32 arrays
    assert chunked_peak < (whole_peak - baseline) / 4, (chunked_peak, whole_peak - baseline)


def _roberta_style(side: str):
    """A tiny tokenizer with RoBERTa's pair template (<s> A </s></s> B </s>), no token type ids, cutting on ``side``."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = "good bad the car drives road today news city report".split()
    vocab = {w: i for i, w in enumerate(["<pad>", "<s>", "</s>", "<unk>", *words])}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 1))
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>", model_input_names=["input_ids", "attention_mask"],
                                   truncation_side=side)


@pytest.mark.parametrize("kind", ["bert", "roberta-right", "roberta-left"])
def test_long_sentence_pairs_encode_as_the_tokenizer_does_in_linear_time(tiny_bert, kind):
    """Encoding a pair, the fast tokenizer crossed every window of one text with every window of the other: a pair
    of 1,200-word texts took 1.3 s in each stage that tokenised it. Each side is now cut alone."""
    import time

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert) if kind == "bert" else _roberta_style(kind.split("-")[1])
    words = "good bad the car drives road today news city report".split()
    rng = np.random.default_rng(0)
    # both short, one long, both long, equal or nearly equal lengths about max_length (16)
    lengths = [(a, b) for a in (1, 3, 7, 12, 13, 14, 15, 16, 17, 18, 30) for b in (1, 2, 7, 13, 14, 15, 16, 17, 25)]
    texts = [" ".join(rng.choice(words, size=a)) for a, _ in lengths]
    pairs = [" ".join(rng.choice(words, size=b)) for _, b in lengths]
    expected = tokenizer(texts, pairs, truncation=True, max_length=16)
    encoded = features.encode_texts(tokenizer, texts, pairs, 16)
    assert set(encoded) == set(expected.keys())
    for key in encoded:
        assert encoded[key] == expected[key], key
    started = time.perf_counter()
    long = features.encode_texts(tokenizer, ["good day " * 1500], ["bad news " * 1500], 16)
    assert time.perf_counter() - started < 0.2 and len(long["input_ids"][0]) == 16


def test_a_chunk_holds_at_most_its_characters_and_a_longer_row_alone(monkeypatch):
    """8,192 texts of 50,000 characters would have been one chunk: the tokenizer builds every window of what it
    cuts, about 170 bytes a token, 13.5 GB at once."""
    monkeypatch.setattr(tokens, "CHUNK_CHARACTERS", 10)
    frame = pd.DataFrame({"text": ["a" * n for n in (5, 5, 5, 20, 1)]})
    # 5 + 5 fit in 10; the third would make 15; 20 is over the budget alone; the last row follows
    found = [(start, list(chunk.index)) for start, chunk in tokens.chunks(frame, frame["text"].str.len())]
    assert found == [(0, [0, 1]), (2, [2]), (3, [3]), (4, [4])]
    # a missing text counts as none (its NaN length once turned the running total negative: one chunk of all)
    found = [list(chunk.index) for _, chunk in tokens.chunks(frame, [5, np.nan, 5, 20, 1])]
    assert found == [[0, 1, 2], [3], [4]]
    monkeypatch.setattr(tokens, "CHUNK_ROWS", 2)  # the rows' cap still holds
    found = [(start, list(chunk.index)) for start, chunk in tokens.chunks(frame, [0] * 5)]
    assert found == [(0, [0, 1]), (2, [2, 3]), (4, [4])]


def test_texts_filling_max_length_are_counted_and_said_when_many(capsys):
    """A new user's 400-word reviews trained at the default 64 tokens without a word that most of each was cut."""
    from datasets import Dataset

    from distillery.hf import note_truncated

    rows = [[101] + [7] * 62 + [102]] * 3 + [[101, 7, 102]] * 7  # 3 of 10 rows fill 64 tokens
    assert note_truncated(Dataset.from_dict({"input_ids": rows}), 64, "teacher.max_length", "training inputs",
                          "train_teacher") == 3
    assert capsys.readouterr().out == (
        "train_teacher: note: 3 of 10 training inputs (30%) fill teacher.max_length = 64 tokens: most of them are cut "
        "to that many (the rest of each is never seen); raise teacher.max_length if what is cut matters, at the cost "
        "of speed\n")
    assert note_truncated(Dataset.from_dict({"input_ids": rows}), 65, "teacher.max_length", "x", "y") == 0
    few = rows[:1] + [[101, 7, 102]] * 30  # 1 of 31: under 5%, counted but not said
    assert note_truncated(Dataset.from_dict({"input_ids": few}), 64, "teacher.max_length", "x", "y") == 1
    windows = Dataset.from_dict({"input_ids": rows, "example_index": list(range(10))})  # QA windows: not counted
    assert note_truncated(windows, 64, "teacher.max_length", "x", "y") == 0
    assert capsys.readouterr().out == ""


def test_a_student_reading_further_than_the_teacher_is_told_how_many_rows_it_was_taught_from_their_start(capsys):
    from datasets import Dataset

    from distillery.hf import note_beyond_teacher

    rows = [[101] + [7] * 70 + [102]] * 2 + [[101] + [7] * 62 + [102]] + [[101, 7, 102]] * 5  # 72, 72, 64, 3 tokens
    assert note_beyond_teacher(Dataset.from_dict({"input_ids": rows}), 128, 64) == 2
    assert capsys.readouterr().out == (
        "distill: note: student.max_length (128) is above teacher.max_length (64): 2 of 8 distilled rows are longer "
        "than 64 tokens, and the teacher's outputs for them came from their first 64 only\n")
    assert note_beyond_teacher(Dataset.from_dict({"input_ids": rows}), 64, 64) == 0  # the same length: nothing
    assert note_beyond_teacher(Dataset.from_dict({"input_ids": rows[2:]}), 128, 64) == 0  # none longer: nothing
    assert note_beyond_teacher(Dataset.from_dict({"pixel_values": [[0.0]]}), 128, 64) == 0  # images
    assert capsys.readouterr().out == ""
