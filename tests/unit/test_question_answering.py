"""Extractive QA (``distillery/task_types/question_answering``): windows and answer positions, the span
post-processing, the official SQuAD EM/F1, the DistilBERT start/end loss, the readers and the by-article
split. Expected values are worked out by hand in the comments, or (the loss) by an independent float64
numpy implementation."""
from __future__ import annotations

import dataclasses
import gzip
import json
import math
import re

import numpy as np
import pandas as pd
import pytest
import torch

from distillery.config import (DataConfig, DistillConfig, GateConfig, Params, QuestionAnsweringConfig, RegisterConfig,
                               StudentConfig, TeacherConfig, TrainConfig, TransferSetConfig)
from distillery.errors import ConfigError, DataError
from distillery.task_types.question_answering import features, postprocess, reading, rows
from distillery.task_types.question_answering.loss import span_distillation_loss, span_loss
from distillery.task_types.question_answering.squad import exact_match, f1, normalize_answer, squad_metrics
from tiny import make_squad_document

WORDS = "the car drives road today news city report good great love happy excellent nice".split()


@pytest.fixture(scope="module")
def tokenizer(tiny_bert):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(tiny_bert))


# --- windows and answer positions ---------------------------------------------------------------------

def test_an_answer_across_a_stride_boundary_is_labelled_only_in_the_window_that_holds_it(tokenizer):
    # 14 context words w0..w13, one token each; the question "good" is one token. max_length 12 leaves
    # 12 - 4 ([CLS] q [SEP] ... [SEP]) = 8 context tokens per window; stride 3 repeats the last 3 tokens of a
    # window at the start of the next: windows w0-w7, w5-w12, w10-w13. The answer w6 w7 w8 crosses the
    # end of the first window: the first and the third get CLS (0, 0), the second holds it at positions
    # [CLS]=0 q=1 [SEP]=2 w5=3 w6=4 w7=5 w8=6, so (4, 6).
    context = " ".join(WORDS)
    assert tokenizer.tokenize(context) == WORDS  # one token per word: the counting above holds
    start = len(" ".join(WORDS[:6])) + 1
    answer = " ".join(WORDS[6:9])
    assert context[start:start + len(answer)] == answer == "city report good"
    frame = pd.DataFrame({"question": ["good"], "context": [context], "answer_texts": [[answer]],
                          "answer_starts": [[start]]})
    columns = features.features_of(tokenizer, frame, max_length=12, stride=3)
    firsts = []
    for offsets in columns["offset_mapping"]:
        first = next(o for o in offsets if o[0] != -1)
        firsts.append(context[first[0]:first[1]])
    assert firsts == [WORDS[0], WORDS[5], WORDS[10]]
    assert columns["example_index"] == [0, 0, 0]
    assert [label[:2] for label in columns["labels"]] == [[0, 0], [4, 6], [0, 0]]
    assert [label[2] for label in columns["labels"]] == [0, 1, 2]  # each window's own index
    # question and special tokens have no offsets: only context tokens can be answers
    assert columns["offset_mapping"][1][:3] == [[-1, -1]] * 3 and columns["offset_mapping"][1][-1] == [-1, -1]


def test_answer_positions_by_hand():
    # tokens: CLS, question, SEP, "ab"(0-2), "cd"(3-5), "ef"(6-8), SEP
    offsets = [(-1, -1), (-1, -1), (-1, -1), (0, 2), (3, 5), (6, 8), (-1, -1)]
    assert features.answer_positions(offsets, 0, 3, 8) == (4, 5)  # "cd ef"
    assert features.answer_positions(offsets, 0, 0, 2) == (3, 3)  # "ab"
    assert features.answer_positions(offsets, 0, 4, 5) == (4, 4)  # inside one token: that token
    assert features.answer_positions(offsets, 0, 6, 12) == (0, 0)  # runs past the window: CLS


def test_the_cache_must_match_the_windows(tokenizer):
    frame = pd.DataFrame({"question": ["good"], "context": [" ".join(WORDS)], "answer_texts": [["the"]],
                          "answer_starts": [[0]]})
    with pytest.raises(Exception, match=r"cache holds 2 windows but these rows make 3: the student must use the "
                                        r"teacher's tokenizer"):
        features.tokenize(frame, tokenizer, 12, 3, np.zeros((2, 2, 12), dtype=np.float32))


# --- post-processing ------------------------------------------------------------------------------------

# a window of the context "abc defg hij klm": CLS, question, SEP, "abc"(0-3), "defg"(4-8), "hij"(9-12), SEP; the
# high logits at CLS and at the final SEP must be ignored, they are not in the context
CONTEXT = "abc defg hij klm"
OFFSETS = [(-1, -1), (-1, -1), (-1, -1), (0, 3), (4, 8), (9, 12), (-1, -1)]
START = np.array([9.0, 0.0, 0.0, 1.0, 5.0, 2.0, 8.0])
END = np.array([0.0, 7.0, 0.0, 1.0, 3.0, 6.0, 9.0])


def test_best_span_by_hand():
    # valid (start, end) among tokens 3..5 with end >= start: (3,3)=1+1=2, (3,4)=1+3=4, (3,5)=1+6=7,
    # (4,4)=5+3=8, (4,5)=5+6=11, (5,5)=2+6=8 -> (4, 5), characters 4..12
    assert postprocess.best_span(START, END, OFFSETS, 20, 30) == (11.0, 4, 5, 4, 12)
    # at most one token: (4,4)=8 and (5,5)=8 tie; the first found (start 4, the higher start logit) stays
    assert postprocess.best_span(START, END, OFFSETS, 20, 1) == (8.0, 4, 4, 4, 8)
    # n-best 2 keeps starts {0, 6} and ends {6, 1}: none in the context, so no span
    assert postprocess.best_span(START, END, OFFSETS, 2, 30) is None
    # n-best 3 adds start 4 and end 5: (4, 5) again
    assert postprocess.best_span(START, END, OFFSETS, 3, 30)[1:3] == (4, 5)


def test_the_best_span_across_the_windows_of_an_example():
    context = CONTEXT
    # second window: CLS, question, SEP, "hij"(9-12), "klm"(13-16), SEP; its best pair (3, 4) scores 4 + 4 = 8 < 11
    second = ([0.0, 0.0, 0.0, 4.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0, 4.0, 0.0],
              [(-1, -1), (-1, -1), (-1, -1), (9, 12), (13, 16), (-1, -1)])
    answer = postprocess.example_answer([(START, END, OFFSETS), second], context, 20, 30)
    assert (answer["text"], answer["start"], answer["end"]) == ("defg hij", 4, 12)
    # the first window's scores halved (start 2.5 + end 3 = 5.5 < 8): the second window wins
    answer = postprocess.example_answer([(START / 2, END / 2, OFFSETS), second], context, 20, 30)
    assert (answer["text"], answer["start"], answer["end"]) == ("hij klm", 9, 16)
    # score: P(start) x P(end), each a softmax over the window; 2 equal logits -> 0.5 x 0.5
    two = postprocess.example_answer([([0.0, 0.0], [0.0, 0.0], [(0, 1), (2, 3)])], "a b", 20, 30)
    assert (two["text"], two["score"]) == ("a", pytest.approx(0.25))
    # no window with a valid span: empty answer
    assert postprocess.example_answer([([1.0], [1.0], [(-1, -1)])], "x", 20, 30) == \
        {"text": "", "start": 0, "end": 0, "score": 0.0}
    # windows are grouped back to their examples by index
    found = postprocess.answers([START, second[0]], [END, second[1]], [OFFSETS, second[2]], [1, 0],
                                ["abc defg hij klm", context], 20, 30)
    assert [a["text"] for a in found] == ["hij klm", "defg hij"]


# --- EM / F1 ----------------------------------------------------------------------------------------------

def test_normalisation_as_the_official_script():
    assert normalize_answer("The  Denver Broncos!") == "denver broncos"
    assert normalize_answer("U.S.A.") == "usa"
    assert normalize_answer("an apple, a pear") == "apple pear"
    assert normalize_answer("Theatre") == "theatre"  # articles only as whole words


@pytest.mark.parametrize("prediction, gold, em, f", [
    ("the Broncos", "Broncos", 1.0, 1.0),
    ("U.S.A.", "USA", 1.0, 1.0),
    ("theatre", "atre", 0.0, 0.0),
    # tokens {denver, broncos, won} vs {denver, broncos}: P 2/3, R 1, F1 2*(2/3)/(5/3) = 0.8
    ("Denver Broncos won", "the Denver Broncos", 0.0, 0.8),
    # repeated tokens count with multiplicity: {a1:2} & {a1:1} -> 1 common; P 1/2, R 1, F1 2/3
    ("paris paris", "Paris", 0.0, 2 / 3),
    ("", "anything", 0.0, 0.0),
])
def test_em_and_f1_of_one_answer(prediction, gold, em, f):
    assert exact_match(prediction, gold) == em
    assert f1(prediction, gold) == pytest.approx(f)


def test_the_best_over_several_gold_answers_then_the_mean():
    # "in 1990" vs "1990": P 1/2, R 1 -> 2/3; vs "in the year 1990" (-> in year 1990): P 1, R 2/3 -> 0.8
    # second question: "Broncos" equals its second gold answer: EM 1, F1 1
    metrics = squad_metrics(["in 1990", "Broncos"], [["1990", "in the year 1990"], ["Denver Broncos", "the broncos"]])
    assert metrics == {"exact_match": pytest.approx(0.5), "f1": pytest.approx((0.8 + 1.0) / 2)}


# --- the loss ---------------------------------------------------------------------------------------------

def _numpy_loss(student, teacher, labels, alpha, temperature):
    """The DistilBERT SQuAD loss in float64 numpy, written out from its formula."""
    def log_softmax(x):
        x = x - x.max(axis=-1, keepdims=True)
        return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))

    total_kl, total_ce = 0.0, 0.0
    for k in (0, 1):  # start, end
        log_s, log_t = log_softmax(student[:, k] / temperature), log_softmax(teacher[:, k] / temperature)
        total_kl += (np.exp(log_t) * (log_t - log_s)).sum() / len(student)  # batchmean
        log_p = log_softmax(student[:, k])
        total_ce += -np.mean([log_p[i, labels[i, k]] for i in range(len(student))])
    return (1 - alpha) * temperature ** 2 * total_kl / 2 + alpha * total_ce / 2


def test_the_loss_against_float64_numpy():
    rng = np.random.default_rng(0)
    student, teacher = rng.normal(size=(3, 2, 7)) * 2, rng.normal(size=(3, 2, 7)) * 3
    labels = np.array([[1, 3, 0], [0, 0, 1], [6, 6, 2]])
    for alpha, temperature in ((0.5, 2.0), (0.3, 1.0), (1.0, 4.0), (0.0, 3.0)):
        ours = span_distillation_loss(torch.tensor(student), torch.tensor(teacher), torch.tensor(labels), alpha,
                                      temperature).item()
        assert ours == pytest.approx(_numpy_loss(student, teacher, labels, alpha, temperature), rel=1e-12)
    # the span loss alone is the alpha = 1 case
    assert span_loss(torch.tensor(student), torch.tensor(labels)).item() == \
        pytest.approx(_numpy_loss(student, teacher, labels, 1.0, 1.0), rel=1e-12)


def test_an_unlabelled_window_takes_the_distillation_term_alone_against_float64_numpy():
    # windows 1 and 3 are transfer-set windows (-100): T^2 (KL_start + KL_end) / 2 each, no span CE, no
    # (1 - alpha) factor; the others alpha CE + (1 - alpha) T^2 KL; the batch loss is the mean of the 4
    rng = np.random.default_rng(1)
    student, teacher = rng.normal(size=(4, 2, 6)) * 2, rng.normal(size=(4, 2, 6)) * 3
    labels = np.array([[1, 3, 0], [-100, -100, 1], [5, 5, 2], [-100, -100, 3]])
    labelled = [0, 2]
    for alpha, temperature in ((0.5, 2.0), (0.2, 1.0), (1.0, 3.0)):
        by_window = [_numpy_loss(student[[k]], teacher[[k]], labels[[k]], alpha, temperature) if k in labelled
                     else _numpy_loss(student[[k]], teacher[[k]], np.zeros((1, 3), dtype=int), 0.0, temperature)
                     for k in range(4)]
        ours = span_distillation_loss(torch.tensor(student), torch.tensor(teacher), torch.tensor(labels), alpha,
                                      temperature).item()
        assert ours == pytest.approx(np.mean(by_window), rel=1e-12)
    # a batch of transfer windows only (by_window is the last setting's, T 3): a finite KD loss whatever alpha,
    # and the span loss of nothing labelled is 0, not nan
    only = torch.tensor(labels[[1, 3]])
    assert span_distillation_loss(torch.tensor(student[[1, 3]]), torch.tensor(teacher[[1, 3]]), only, 0.5,
                                  3.0).item() == pytest.approx(np.mean([by_window[1], by_window[3]]), rel=1e-12)
    assert span_loss(torch.tensor(student[[1, 3]]), only).item() == 0.0


def test_a_pinned_loss_value():
    # 2 positions, uniform student, teacher (ln 3, 0): p_t = (3/4, 1/4); T = 1: KL = 3/4 ln(3/2) + 1/4 ln(1/2)
    # per head; CE of a uniform pair = ln 2 per head. alpha 0.5: 0.5 * KL + 0.5 * ln 2
    student = torch.zeros(1, 2, 2, dtype=torch.float64)
    teacher = torch.tensor([[[math.log(3), 0.0], [math.log(3), 0.0]]], dtype=torch.float64)
    kl = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    value = span_distillation_loss(student, teacher, torch.tensor([[0, 1, 0]]), 0.5, 1.0).item()
    assert value == pytest.approx(0.5 * kl + 0.5 * math.log(2), rel=1e-12)


# --- reading and splitting ----------------------------------------------------------------------------------

def _params(**data) -> Params:
    by_f1 = dataclasses.replace(TrainConfig(learning_rate=5e-5), metric_for_best_model="f1")
    distill = DistillConfig(transfer_set=TransferSetConfig(source="none"), train=by_f1)
    return Params(task="question_answering", data=DataConfig(**data), teacher=TeacherConfig(max_length=32, train=by_f1),
                  student=StudentConfig(max_length=32), distill=distill,
                  register=RegisterConfig(gate=GateConfig(metric="f1")),
                  question_answering=QuestionAnsweringConfig(doc_stride=8))


def test_the_same_rows_from_json_json_gz_jsonl_and_a_datasets_directory(tmp_path):
    document = make_squad_document(articles=3, paragraphs=2, questions=2, seed=5)
    (tmp_path / "a.json").write_text(json.dumps(document))
    with gzip.open(tmp_path / "a.json.gz", "wt") as handle:
        handle.write(json.dumps(document))
    flat = [{"id": qa["id"], "title": article["title"], "context": p["context"], "question": qa["question"],
             "answers": {"text": [a["text"] for a in qa["answers"]],
                         "answer_start": [a["answer_start"] for a in qa["answers"]]}}
            for article in document["data"] for p in article["paragraphs"] for qa in p["qas"]]
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps(r) for r in flat))
    hub = tmp_path / "hub"
    hub.mkdir()
    (hub / "train.jsonl").write_text("\n".join(json.dumps(r) for r in flat))
    expected = reading.read_file(tmp_path / "a.json")
    assert len(expected) == 12 and expected["answer_texts"].map(len).eq(2).all()
    for other in (reading.read_file(tmp_path / "a.json.gz"), reading.read_file(tmp_path / "a.jsonl"),
                  reading.read_hub(str(hub), None)["train"]):
        assert other[reading.COLUMNS].map(lambda v: list(v) if isinstance(v, (list, np.ndarray)) else v) \
            .equals(expected[reading.COLUMNS])


def test_one_answer_as_plain_values_and_a_byte_order_mark_are_read_and_mixed_forms_are_named(tmp_path):
    context = "The answer is 42, said the computer."
    row = {"id": "q1", "title": "t", "context": context, "question": "What is the answer?"}
    (tmp_path / "plain.jsonl").write_text(json.dumps(row | {"answers": {"text": "42", "answer_start": 14}}))
    (tmp_path / "lists.jsonl").write_text(json.dumps(row | {"answers": {"text": ["42"], "answer_start": [14]}}))
    expected = reading.read_file(tmp_path / "lists.jsonl")
    assert expected["answer_texts"].tolist() == [["42"]] and expected["answer_starts"].tolist() == [[14]]
    assert reading.read_file(tmp_path / "plain.jsonl")[reading.COLUMNS].equals(expected[reading.COLUMNS])
    (tmp_path / "bom.json").write_bytes(b"\xef\xbb\xbf" + json.dumps(make_squad_document(1, 1, 2, seed=3)).encode())
    assert len(reading.read_file(tmp_path / "bom.json")) == 2
    for answers in ({"text": "42", "answer_start": [14]}, {"text": ["42", "the"], "answer_start": [14]},
                    {"text": ["42"], "answer_start": ["x"]}):
        (tmp_path / "mixed.jsonl").write_text(json.dumps(row | {"answers": answers}))
        with pytest.raises(DataError, match=r"mixed.jsonl.*'answers' must be \{text: \[...\], answer_start"):
            reading.read_file(tmp_path / "mixed.jsonl")


def test_json_lines_saved_as_json_are_read_and_a_document_saved_as_jsonl_is_refused_naming_the_suffix(tmp_path):
    """A .json of JSON lines was "not valid JSON (line 2: Extra data)"; a SQuAD document or an array in a .jsonl
    file was refused without a word about the suffix."""
    document = make_squad_document(1, 1, 2, seed=3)
    (tmp_path / "squad.json").write_text(json.dumps(document))
    expected = reading.read_file(tmp_path / "squad.json")
    records = [{"id": i, "title": t, "context": c, "question": q, "answers": {"text": list(a), "answer_start": list(s)}}
               for i, t, c, q, a, s in expected[reading.COLUMNS].itertuples(index=False)]
    (tmp_path / "lines.json").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    assert reading.read_file(tmp_path / "lines.json")[reading.COLUMNS].map(
        lambda v: list(v) if isinstance(v, (list, np.ndarray)) else v).equals(expected[reading.COLUMNS])
    # one broken line among them is named, as in a .jsonl file (it was "line 2: Extra data")
    (tmp_path / "broken.json").write_text("\n".join([json.dumps(r) for r in records] + ['{"id": "b" "question": 1}']))
    with pytest.raises(DataError, match=rf"broken.json: line {len(records) + 1} is not valid JSON \(Expecting ',' "):
        reading.read_file(tmp_path / "broken.json")
    # a .jsonl of arrays, one a line, is named by its first line, not sent to .json (where it would fail again)
    (tmp_path / "arrays.jsonl").write_text('["q", "c"]\n["q2", "c2"]\n')
    with pytest.raises(DataError, match=r"arrays.jsonl: line 1 is a JSON list, not an object of columns"):
        reading.read_file(tmp_path / "arrays.jsonl")
    (tmp_path / "other.json").write_text('{"text": "a", "label": 1}\n{"text": "b", "label": 0}\n')
    with pytest.raises(DataError, match=r"other.json: column 'context' not found; the columns are \['text', 'label'\]"):
        reading.read_file(tmp_path / "other.json")
    for name, text in (("squad.jsonl", json.dumps(document, indent=1)), ("one.jsonl", json.dumps(document)),
                       ("array.jsonl", json.dumps(records))):
        (tmp_path / name).write_text(text)
        with pytest.raises(DataError, match=rf"{name}: one JSON document \(a SQuAD-format .*not JSON lines \(one "
                                            r"object per line\): give it the suffix .json$"):
            reading.read_file(tmp_path / name)


def test_a_jsonl_line_that_is_not_an_object_is_named_and_a_value_that_is_not_text_is_a_rejected_row(tmp_path):
    context = "The answer is 42, said the computer."
    row = {"title": "t", "context": context, "question": "What is the answer?",
           "answers": {"text": ["42"], "answer_start": [14]}}
    good = [json.dumps(row | {"id": f"q{i}"}) for i in range(3)]
    (tmp_path / "broken.jsonl").write_text("\n".join(good + ["", '{"id": "q9", "context": '] + good))
    with pytest.raises(DataError, match=r"broken.jsonl: line 5 is not valid JSON \(Expecting value at column 25\)"):
        reading.read_file(tmp_path / "broken.jsonl")
    (tmp_path / "list.jsonl").write_text("\n".join(good + ['["a", "b"]']))
    with pytest.raises(DataError, match=r"list.jsonl: line 4 is a JSON list, not an object of columns"):
        reading.read_file(tmp_path / "list.jsonl")
    odd = [row | {"id": "n", "question": 17}, row | {"id": "o", "question": {"q": "What?"}},
           row | {"id": "c", "context": ["The answer is 42"]}, row | {"id": "e", "question": " "},
           row | {"id": "a", "answers": {"text": [42], "answer_start": [14]}}, row | {"id": "ok"},
           row | {"id": "null", "question": None}, {k: v for k, v in row.items() if k != "context"} | {"id": "m"},
           row | {"id": "sep", "context": "The answer\u2028 is 42, said it.", "answers": {"text": ["42"],
                                                                                     "answer_start": [15]}}]
    (tmp_path / "odd.jsonl").write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in odd))
    kept, rejected = rows.clean(reading.read_file(tmp_path / "odd.jsonl"), "odd")
    # a null or missing field is empty, as in a SQuAD .json file (pandas reads it as NaN from JSON lines)
    assert [r["reason"] for r in rejected] == ["the question is a number, not text",
                                               "the question is an object, not text", "the context is a list, not text",
                                               "empty question", "an answer text is not text", "empty question",
                                               "empty context"]
    assert [r["row"] for r in rejected] == [f"line {n}" for n in (1, 2, 3, 4, 5, 7, 8)]
    assert kept["id"].tolist() == ["ok", "sep"]


def test_a_negative_answer_start_is_rejected_even_where_a_slice_from_the_end_matches(tmp_path):
    """A negative answer_start once passed the check: context[-15:-5] slices from the end, and there the text was."""
    context = "The answer is 42, said the old computer."
    rows_in = [{"id": "neg", "answers": {"text": ["old computer"], "answer_start": [-13]}},
               {"id": "word", "answers": {"text": ["computer"], "answer_start": [-9]}},
               {"id": "first", "answers": {"text": ["The"], "answer_start": [-len(context)]}},
               {"id": "end", "answers": {"text": ["computer."], "answer_start": [len(context) - 9]}},
               {"id": "start", "answers": {"text": ["The"], "answer_start": [0]}}]
    # what the old check, context[s:s + len(t)] == t, accepted for the three negative starts
    assert context[-13:-1] == "old computer" and context[-9:-1] == "computer" and context[-40:-37] == "The"
    assert len(context) == 40
    (tmp_path / "starts.jsonl").write_text("\n".join(json.dumps(r | {"title": "t", "context": context,
                                                                    "question": "Who said it?"}) for r in rows_in))
    kept, rejected = rows.clean(reading.read_file(tmp_path / "starts.jsonl"), "starts")
    assert [(r["row"], r["reason"]) for r in rejected] == \
        [(f"line {n}", "answer not at its answer_start in the context") for n in (1, 2, 3)]
    assert kept["id"].tolist() == ["end", "start"]


def test_one_misplaced_reference_answer_drops_that_answer_not_the_question(tmp_path):
    """A question with three gold answers, one a converter's offset slip, was rejected whole: the answers at their
    starts are kept (training takes the first of them, scoring all), the slip is listed with its place; a question
    with no answer where it says is still rejected, and with data.on_bad_rows: fail a slip stops prepare."""
    context = "The answer is 42, said the old computer."
    rows_in = [{"id": "slip", "answers": {"text": ["old computer", "42", "computer"], "answer_start": [27, 10, 31]}},
               {"id": "none", "answers": {"text": ["42", "old"], "answer_start": [0, 1]}},
               {"id": "fine", "answers": {"text": ["42"], "answer_start": [14]}}]
    (tmp_path / "q.jsonl").write_text("\n".join(json.dumps(r | {"title": "t", "context": context,
                                                                "question": "Who said it?"}) for r in rows_in))
    dropped = []
    kept, rejected = rows.clean(reading.read_file(tmp_path / "q.jsonl"), "q.jsonl", dropped)
    assert [(r["row"], r["reason"]) for r in rejected] == [("line 2", "answer not at its answer_start in the context")]
    assert kept["id"].tolist() == ["slip", "fine"]
    assert list(kept["answer_texts"][0]) == ["old computer", "computer"] and list(kept["answer_starts"][0]) == [27, 31]
    assert [(d["source"], d["row"]) for d in dropped] == [("q.jsonl", "line 1 (answer 2 of 3)")]


def test_a_context_longer_than_the_served_model_takes_is_a_rejected_row(tmp_path, monkeypatch):
    """The gate scores the test split through the served model, which refuses a request over max_characters: a longer
    test row passed evaluate, then stopped register with a traceback."""
    from distillery.task_types.question_answering import columns
    from distillery.task_types.question_answering import serving as qa_serving

    monkeypatch.setattr(rows, "MAX_CHARACTERS", 100)
    assert columns.MAX_CHARACTERS == qa_serving.MAX_CHARACTERS == 1_000_000  # the served cap is prepare's
    long = "The answer is 42. " + "More words follow here. " * 10
    rows_in = [{"id": "short", "context": long[:60]}, {"id": "long", "context": long}]
    (tmp_path / "long.jsonl").write_text("\n".join(json.dumps(r | {
        "title": "t", "question": "What is it?", "answers": {"text": ["42"], "answer_start": [14]}}) for r in rows_in))
    kept, rejected = rows.clean(reading.read_file(tmp_path / "long.jsonl"), "long")
    assert [(r["row"], r["reason"]) for r in rejected] == [
        ("line 2", "question and context longer than 100 characters, more than the served model takes in a request")]
    assert kept["id"].tolist() == ["short"]


def test_squad_json_of_the_wrong_shape_is_named_by_place_and_a_null_answers_is_no_answer(tmp_path):
    document = make_squad_document(articles=2, paragraphs=1, questions=2, seed=4)
    for change, message in (
            (lambda d: d["data"].append("oops"), r"odd.json data\[2\]: expected an article \(a JSON object with "
                                                 r"'paragraphs'\), got \"oops\""),
            (lambda d: d["data"][1].update(paragraphs="text"), r"odd.json data\[1\].paragraphs: expected a list"),
            (lambda d: d["data"][0]["paragraphs"].append(7), r"odd.json data\[0\].paragraphs\[1\]: expected a "
                                                            r"paragraph \(a JSON object with 'qas'\), got 7"),
            (lambda d: d["data"][0]["paragraphs"][0]["qas"].insert(1, ["q"]),
             r"odd.json data\[0\].paragraphs\[0\].qas\[1\]: expected a question \{id, question, answers\}")):
        odd = json.loads(json.dumps(document))
        change(odd)
        (tmp_path / "odd.json").write_text(json.dumps(odd))
        with pytest.raises(DataError, match=message):
            reading.read_file(tmp_path / "odd.json")
    odd = json.loads(json.dumps(document))
    odd["data"][0]["paragraphs"][0]["qas"][0]["answers"] = None
    odd["data"][1]["paragraphs"] = None  # an article without paragraphs has no questions
    (tmp_path / "odd.json").write_text(json.dumps(odd))
    kept, rejected = rows.clean(reading.read_file(tmp_path / "odd.json"), "odd")
    assert [(r["row"], r["reason"]) for r in rejected] == \
        [("data[0].paragraphs[0].qas[0] (id s4-0-0-0)", "no answer")]
    assert kept["id"].tolist() == ["s4-0-0-1"]
    (tmp_path / "cut.json").write_text('{"data": [{"title": "t", "paragraphs": [{"context": "abc')
    with pytest.raises(DataError, match=r"cut.json: not valid JSON \(line 1: Unterminated string starting at "
                                        r"column 53\)$"):  # the quote before abc
        reading.read_file(tmp_path / "cut.json")


def test_splits_are_by_article_and_bad_rows_are_named(tmp_path):
    document = make_squad_document(articles=10, paragraphs=2, questions=2, seed=1)
    bad = document["data"][0]["paragraphs"][0]["qas"]
    for answer in bad[0]["answers"]:
        answer["answer_start"] += 1  # no longer where the text is
    bad[1]["question"] = "  "
    slipped = document["data"][1]["paragraphs"][0]["qas"][0]
    slipped["answers"].append({**slipped["answers"][0], "answer_start": slipped["answers"][0]["answer_start"] + 1})
    (tmp_path / "all.json").write_text(json.dumps(document))
    splits, rejected, report = rows.prepare_splits(_params(source=str(tmp_path / "all.json"),
                                                           split_fractions={"train": 0.6, "validation": 0.2,
                                                                            "test": 0.2}))
    assert [r["reason"] for r in rejected] == ["answer not at its answer_start in the context", "empty question"]
    assert [r["row"] for r in rejected] == ["data[0].paragraphs[0].qas[0] (id s1-0-0-0)",
                                            "data[0].paragraphs[0].qas[1] (id s1-0-0-1)"]
    titles = {name: set(frame["title"]) for name, frame in splits.items()}
    assert [len(titles[s]) for s in ("train", "validation", "test")] == [6, 2, 2]  # 20% of 10 articles = 2
    assert not (titles["train"] & titles["validation"]) and not (titles["train"] & titles["test"])
    assert sum(len(f) for f in splits.values()) == 40 - 2 and report["articles_in_train_and_another_split"] == []
    n = len(slipped["answers"])  # the last one, the slip
    assert report["answers_dropped"] == {"count": 1, "first": [
        f"{tmp_path / 'all.json'} [all] data[1].paragraphs[0].qas[0] (id {slipped['id']}) (answer {n} of {n})"]}
    with pytest.raises(DataError, match=r"all.json \[all\] data\[0\].paragraphs\[0\].qas\[0\] \(id s1-0-0-0\): "
                                        r"answer not at its answer_start"):
        rows.prepare_splits(_params(source=str(tmp_path / "all.json"), on_bad_rows="fail"))


def test_rows_titled_one_by_one_keep_a_passage_in_one_split(tmp_path):
    """A CSV export titled each row by its id: splits carved by title put 35 of 73 test passages in train too, and
    the report said no article was shared."""
    document = make_squad_document(articles=10, paragraphs=2, questions=4, seed=1)
    (tmp_path / "squad.json").write_text(json.dumps(document))
    squad = reading.read_file(tmp_path / "squad.json")
    # titles that own their passages (SQuAD): each article is its title, so the carving is the one by title
    assert rows.articles(squad).tolist() == squad["title"].astype(str).tolist()
    lines = [{"id": qa["id"], "title": qa["id"], "context": paragraph["context"], "question": qa["question"],
              "answers": {"text": [a["text"] for a in qa["answers"]],
                          "answer_start": [a["answer_start"] for a in qa["answers"]]}}
             for article in document["data"] for paragraph in article["paragraphs"] for qa in paragraph["qas"]]
    (tmp_path / "rows.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    splits, _, report = rows.prepare_splits(_params(source=str(tmp_path / "rows.jsonl"),
                                                    split_fractions={"train": 0.6, "validation": 0.2, "test": 0.2}))
    contexts = {name: set(frame["context"]) for name, frame in splits.items() if name != "transfer"}
    assert not contexts["train"] & (contexts["validation"] | contexts["test"])
    assert report["contexts_in_train_and_another_split"] == 0
    assert len(contexts["test"]) >= 2 and sum(len(f) for n, f in splits.items() if n != "transfer") == 80


def test_json_lines_rows_without_a_title_make_one_untitled_article(tmp_path):
    """A line without a title once crashed the split by article (TypeError comparing NaN with a title)."""
    records = _flat(make_squad_document(articles=6, paragraphs=1, questions=2, seed=2))
    for record in records[:3]:
        del record["title"]
    (tmp_path / "all.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    splits, rejected, _ = rows.prepare_splits(_params(source=str(tmp_path / "all.jsonl"),
                                                      split_fractions={"train": 0.6, "validation": 0.2,
                                                                       "test": 0.2}))
    assert rejected == [] and sum(len(f) for f in splits.values()) == 12
    untitled = [name for name, frame in splits.items() if "" in set(frame["title"])]
    assert len(untitled) == 1 and (splits[untitled[0]]["title"] == "").sum() == 3  # one article, in one split


def test_a_training_file_whose_questions_are_all_rejected_says_so(tmp_path):
    document = make_squad_document(articles=4, paragraphs=1, questions=2, seed=3)
    for article in document["data"][:2]:
        for paragraph in article["paragraphs"]:
            paragraph["context"] = 5  # not text
    train, test = {"data": document["data"][:2]}, {"data": document["data"][2:]}
    (tmp_path / "train.json").write_text(json.dumps(train))
    (tmp_path / "test.json").write_text(json.dumps(test))
    with pytest.raises(DataError, match=r"train.json: no training row is left after cleaning: 4 rejected, all the "
                                        r"context is a number, not text: 4; the first, data\[0\]"):
        rows.prepare_splits(_params(source="unused", files={"train": str(tmp_path / "train.json"),
                                                            "test": str(tmp_path / "test.json")}))


def test_the_remainder_transfer_set_is_the_capped_training_questions_without_their_answers(tmp_path):
    document = make_squad_document(articles=10, paragraphs=2, questions=2, seed=1)
    (tmp_path / "all.json").write_text(json.dumps(document))
    fractions = {"train": 0.6, "validation": 0.2, "test": 0.2}

    def prepared(max_rows, cap=10, source="remainder"):
        params = _params(source=str(tmp_path / "all.json"), split_fractions=fractions,
                         max_samples={"train": cap, "validation": None, "test": None})
        distill = dataclasses.replace(params.distill, transfer_set=TransferSetConfig(source=source, max_rows=max_rows))
        return rows.prepare_splits(dataclasses.replace(params, distill=distill))

    splits, _, report = prepared(max_rows=100)
    train, transfer = splits["train"], splits["transfer"]
    # 6 training articles x 4 questions = 24: 10 labelled, the other 14 unlabelled, no question in both
    assert (len(train), len(transfer), report["transfer_rows"]) == (10, 14, 14)
    assert not set(train["id"]) & set(transfer["id"])
    assert not set(transfer["title"]) & (set(splits["validation"]["title"]) | set(splits["test"]["title"]))
    assert list(transfer.columns) == ["id", "title", "context", "question"]  # no answers reach the students
    capped, _, _ = prepared(max_rows=5)
    assert len(capped["transfer"]) == 5 and set(capped["transfer"]["id"]) <= set(transfer["id"])
    assert capped["train"]["id"].tolist() == train["id"].tolist()  # the labelled rows do not depend on it
    assert len(prepared(max_rows=100, source="none")[0]["transfer"]) == 0
    assert len(prepared(max_rows=100, cap=None)[0]["transfer"]) == 0  # nothing left over


def test_transfer_windows_are_labelled_minus_100_and_join_labelled_ones(tokenizer):
    from distillery.task_types.question_answering.features import features_of

    labelled = pd.DataFrame({"question": ["who?"], "context": ["Ann met Bob."], "answer_texts": [["Bob"]],
                             "answer_starts": [[8]]})
    unlabelled = pd.DataFrame({"question": ["where?"], "context": ["Ann met Bob in Paris."]})
    columns = features_of(tokenizer, pd.concat([labelled, unlabelled], ignore_index=True), 64, 16)
    assert [label[:2] for label in columns["labels"]][1] == [-100, -100]
    start, end = columns["labels"][0][:2]
    assert start > 0 and start <= end  # the labelled row keeps its answer span
    assert columns["labels"] == [[start, end, 0], [-100, -100, 1]]


@pytest.mark.parametrize("change, message", [
    ({"distill": DistillConfig(transfer_set=TransferSetConfig(source="questions.jsonl"),
                               train=dataclasses.replace(TrainConfig(learning_rate=5e-5), metric_for_best_model="f1"))},
     r"distill\.transfer_set\.source = 'questions\.jsonl' is not allowed; extractive QA's transfer set is none "
     r"or remainder"),
    ({"student": StudentConfig(max_length=64)}, r"student\.max_length = 64 is not allowed; .* must equal "
                                                r"teacher\.max_length \(32\)"),
    ({"question_answering": QuestionAnsweringConfig(doc_stride=16)}, r"question_answering\.doc_stride = 16 is not "
                                                                     r"allowed; it must be below half"),
    ({"teacher": TeacherConfig(max_length=32, train=dataclasses.replace(TeacherConfig().train,
                                                                          metric_for_best_model="accuracy"))},
     r"teacher\.train\.metric_for_best_model = 'accuracy' is not allowed; task question_answering is scored by "
     r"f1 \| exact_match \| loss"),
])
def test_question_answering_params_are_checked(change, message):
    with pytest.raises(ConfigError, match=message):
        dataclasses.replace(_params(source="x.json"), **change)


# --- the layers student with the QA head, and the served code -----------------------------------------------

@pytest.mark.parametrize("layers", [[0, 3], [0, 2, 3]])
def test_a_layers_student_copies_the_teacher_s_layers_and_its_qa_head(tiny_bert, layers):
    from distillery.students.layers import select_layers
    from distillery.task_types.load import task_type

    task = task_type("question_answering")
    torch.manual_seed(0)
    source = task.load_model(str(tiny_bert), "t")
    student = select_layers(task, source, layers)
    assert student.config.num_hidden_layers == len(layers) and type(student) is type(source)
    teacher_state, student_state = source.state_dict(), student.state_dict()
    for i, layer in enumerate(layers):
        key = "encoder.layer.{}.attention.self.query.weight"
        assert torch.equal(student_state["bert." + key.format(i)], teacher_state["bert." + key.format(layer)])
    assert torch.equal(student_state["qa_outputs.weight"], teacher_state["qa_outputs.weight"])
    output = student(input_ids=torch.tensor([[2, 7, 3, 9, 3]]))
    assert task.outputs_of(output).shape == (1, 2, 5)  # start and end logits per token


@pytest.mark.parametrize("code", ["distillery/serving/question_answerer.py",
                                  "distillery/task_types/question_answering/postprocess.py"])
def test_the_served_code_never_imports_distillery(code):
    import ast
    from pathlib import Path

    tree = ast.parse((Path(__file__).resolve().parents[2] / code).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names} | \
        {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert not [name for name in imported if name.split(".")[0] in ("distillery", "torch", "transformers")], imported


def test_the_cache_key_holds_the_stride_and_is_unchanged_without_settings(tmp_path):
    from distillery.logit_cache import PARTS, fingerprint

    (tmp_path / "teacher").mkdir()
    (tmp_path / "teacher" / "config.json").write_text("{}")
    (tmp_path / "teacher" / "tokenizer.json").write_text("{}")
    (tmp_path / "prepared").mkdir()
    for part in PARTS:
        pd.DataFrame({"x": [1]}).to_parquet(tmp_path / "prepared" / f"{part}.parquet")
    key = lambda settings: fingerprint(tmp_path / "teacher", tmp_path / "prepared", 32, settings)["tokenizer"]  # noqa
    assert key(None) == key({})  # text classification has no settings: its cache key is as before
    assert len({key(None), key({"doc_stride": 8}), key({"doc_stride": 4})}) == 3


def test_windows_run_sorted_by_length_come_back_in_window_order(tiny_bert, tokenizer):
    from distillery.task_types.load import task_type
    from distillery.task_types.question_answering.onnx import window_logits

    torch.manual_seed(0)
    model = task_type("question_answering").load_model(str(tiny_bert), "t")
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa".split()
    frame = pd.DataFrame({"question": ["why?", "who is it?", "when?"],
                          "context": [" ".join(words * 3), " ".join(words[:2]), " ".join(words[:6])]})
    columns = features.features_of(tokenizer, frame, 24, 8)
    lengths = [len(ids) for ids in columns["input_ids"]]
    assert lengths != sorted(lengths)  # the run order differs from the window order
    in_order = window_logits(model, tokenizer, {}, columns, 2)["pytorch"]
    by_length = window_logits(model, tokenizer, {}, columns, 2, by_length=True)["pytorch"]
    assert [len(w[0]) for w in by_length] == lengths
    for (start_a, end_a), (start_b, end_b) in zip(in_order, by_length):
        np.testing.assert_allclose(start_a, start_b, atol=1e-5)
        np.testing.assert_allclose(end_a, end_b, atol=1e-5)


# --- a question too long for a window ------------------------------------------------------------------------

def _served_token_model(tmp_path, tiny_bert, max_length: int, stride: int):
    """The served pyfunc over an ONNX model whose start and end logits are the token ids themselves, so its
    answer follows from the windows alone: the context token of highest id (within max_answer_length 1)."""
    import onnx
    from onnx import TensorProto, helper

    from distillery.task_types.question_answering import serving

    nodes = [helper.make_node("Cast", ["input_ids"], [name], to=TensorProto.FLOAT) for name in ("start_logits",
                                                                                               "end_logits")]
    inputs = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "sequence"])
              for n in ("input_ids", "token_type_ids", "attention_mask")]
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", "sequence"])
               for n in ("start_logits", "end_logits")]
    graph = helper.make_graph(nodes, "ids", inputs[:1], outputs)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8),
              tmp_path / "ids.onnx")
    (tmp_path / "qa.json").write_text(json.dumps({
        "max_length": max_length, "doc_stride": stride, "max_answer_length": 1, "n_best_size": 20,
        "input_names": ["input_ids"], "pad_id": 0}))
    return serving.load_code_model({"onnx": str(tmp_path / "ids.onnx"), "tokenizer": str(tiny_bert / "tokenizer.json"),
                                    "config": str(tmp_path / "qa.json"),
                                    "postprocess": str(postprocess.__file__)})


def test_a_question_too_long_for_a_window_keeps_its_first_tokens_in_training_and_serving(tokenizer, tiny_bert,
                                                                                        tmp_path):
    # max_length 12 with stride 3: [CLS] q [SEP] c [SEP] leaves the context more than 3 tokens only for a question
    # of at most 12 - 3 - 3 - 1 = 5 tokens. A 9-word question (one token per word) keeps its first 5 words; each
    # window then holds 4 context words, the next starting 1 word on (4 - 3): w0-w3, w1-w4, ..., w10-w13, 11 windows.
    # Before, the tokenizer panicked ("'stride' must be strictly less than 'max_len'"), a crash in evaluate and
    # an HTTP 500 from the served model.
    context = " ".join(WORDS)
    question = " ".join(WORDS[5:14])
    assert tokenizer.tokenize(question) == WORDS[5:14]
    frame = pd.DataFrame({"question": [question], "context": [context], "answer_texts": [["car"]],
                          "answer_starts": [[4]]})
    columns = features.features_of(tokenizer, frame, max_length=12, stride=3)
    windows = [tokenizer.convert_ids_to_tokens(ids) for ids in columns["input_ids"]]
    assert len(windows) == 11
    assert all(tokens[:7] == ["[CLS]", *WORDS[5:10], "[SEP]"] for tokens in windows)
    assert [tokens[7:11] for tokens in windows] == [WORDS[k:k + 4] for k in range(11)]
    assert [label[:2] for label in columns["labels"][:2]] == [[8, 8], [7, 7]]  # "car" is w1: token 7 + 1, then 7

    # served: the same cut, so the same answer as the question written with its first 5 words only
    served = _served_token_model(tmp_path, tiny_bert, max_length=12, stride=3)
    long, cut = served.predict(None, pd.DataFrame({"question": [question, " ".join(WORDS[5:10])],
                                                   "context": [context] * 2})).to_dict("records")
    assert long == cut and context[long["start"]:long["end"]] == long["answer"]
    # the answer is the context word of highest token id, as the model's logits are the ids
    assert long["answer"] == max(WORDS, key=lambda w: tokenizer.convert_tokens_to_ids(w))


@pytest.mark.parametrize("question, context, said", [
    ("car?", "\x00\x01", "'context' of row 1 gives no tokens ('\\x00\\x01'); there is nothing to answer from"),
    ("\x00", "w0 w1", "'question' of row 1 gives no tokens"),
    # a lone surrogate (JSON's "\\ud800"), which the tokenizer failed on: the row named, with the text around it
    ("car?", "w0 \ud800 w1", "'context' of row 1 holds a lone surrogate at character 3, not valid Unicode: "
                             "'w0 \\ud800 w1'"),
    ("why\udc00?", "w0 w1", "'question' of row 1 holds a lone surrogate at character 3")])
def test_a_question_or_context_of_no_tokens_is_refused_naming_its_row(tiny_bert, tmp_path, question, context, said):
    """A context of control characters only (not empty, so not refused as empty) was answered with "" at 0-0."""
    from mlflow.exceptions import MlflowException

    served = _served_token_model(tmp_path, tiny_bert, max_length=12, stride=3)
    rows = {"question": ["car?", question], "context": [" ".join(WORDS), context]}
    for request in (rows, pd.DataFrame(rows, dtype=object), [dict(zip(rows, pair)) for pair in zip(*rows.values())]):
        with pytest.raises(MlflowException, match=re.escape(said)) as refused:
            served.predict(None, request)
        assert refused.value.get_http_status_code() == 400


def test_column_wise_questions_are_rows_and_a_record_holding_a_list_is_refused(tiny_bert, tmp_path):
    """Column-wise input reaches the pyfunc as one row holding the lists; a record with a list for its question
    beside a column that is not a list ({"id": 7, "question": [..], "context": ".."}) was answered with one row per
    list item, which the caller could not match back to its rows."""
    from mlflow.exceptions import MlflowException

    served = _served_token_model(tmp_path, tiny_bert, max_length=12, stride=3)
    context = " ".join(WORDS)
    one_row = served.predict(None, pd.DataFrame({"question": [["car?", "day?"]], "context": [[context, context]]}))
    rows = served.predict(None, pd.DataFrame({"question": ["car?", "day?"], "context": [context] * 2}))
    assert len(one_row) == 2 and one_row.equals(rows)
    for frame, said in ((pd.DataFrame({"id": [7], "question": [["car?", "day?"]], "context": [[context] * 2]}),
                         "'question' of row 0 is a list but 'id' is not"),
                        (pd.DataFrame({"question": [["car?", "day?"]], "context": [context]}),
                         "'question' of row 0 is a list but 'context' is not"),
                        (pd.DataFrame({"question": [["car?", "day?"]], "context": [[context]]}),
                         "lists of different lengths ('question' 2, 'context' 1)")):
        with pytest.raises(MlflowException, match=re.escape(said)) as refused:
            served.predict(None, frame)
        assert refused.value.get_http_status_code() == 400


def test_a_benchmark_cell_shorter_than_a_question_keeps_half_the_window_for_it(tokenizer):
    """A 16-token cell once crashed the QA benchmark: the tokenizer could not cut a 9-token question's context."""
    context, question = " ".join(WORDS), " ".join(WORDS[5:14])
    frame = pd.DataFrame({"question": [question, "car"], "context": [context] * 2})
    batch = features.padded_batch(tokenizer, frame, batch=3, length=16)
    assert batch["input_ids"].shape == (3, 16)
    tokens = [tokenizer.convert_ids_to_tokens(ids) for ids in batch["input_ids"]]
    # 16 - 3 special tokens = 13: the long question keeps 6, the context takes the other 7
    assert tokens[0] == ["[CLS]", *WORDS[5:11], "[SEP]", *WORDS[:7], "[SEP]"]
    assert tokens[1] == ["[CLS]", "car", "[SEP]", *WORDS[:12], "[SEP]"]
    assert tokens[2] == tokens[0]  # the rows cycle
    with pytest.raises(DataError, match=r"benchmark: a window of 4 tokens holds no question and context"):
        features.padded_batch(tokenizer, frame, batch=1, length=4)


# --- ids, repeated rows, empty answers, lines -------------------------------------------------------------------

def _flat(document: dict) -> list[dict]:
    """The document's questions as JSON-lines records in the Hugging Face columns, without ids."""
    return [{"title": article["title"], "context": paragraph["context"], "question": qa["question"],
             "answers": {"text": [a["text"] for a in qa["answers"]],
                         "answer_start": [a["answer_start"] for a in qa["answers"]]}}
            for article in document["data"] for paragraph in article["paragraphs"] for qa in paragraph["qas"]]


def test_questions_without_ids_or_with_ids_reused_per_paragraph_are_all_kept_and_true_repeats_dropped(tmp_path):
    # Before, a file without ids got ids 1..N, so a second file's questions were "duplicates" of the first's and
    # dropped; and ids reused in every paragraph ("q0", "q1") left one question per id.
    train, test = make_squad_document(articles=6, seed=1), make_squad_document(articles=3, seed=2)
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps(r) for r in _flat(train)))
    (tmp_path / "test.jsonl").write_text("\n".join(json.dumps(r) for r in _flat(test)))
    splits, rejected, report = rows.prepare_splits(_params(
        source="unused", files={"train": str(tmp_path / "train.jsonl"), "test": str(tmp_path / "test.jsonl")},
        split_fractions={"train": 0.7, "validation": 0.3, "test": 0.0}))
    assert rejected == [] and report["duplicates_dropped"] == {} and report["repeated_ids_renumbered"] == 0
    assert len(splits["test"]) == 3 * 3 * 2 and len(splits["train"]) + len(splits["validation"]) == 6 * 3 * 2
    assert splits["test"]["id"].iloc[0] == f"{tmp_path / 'test.jsonl'} line 1"

    for article in train["data"]:  # ids reused in each paragraph, and one question written twice
        for paragraph in article["paragraphs"]:
            for q, qa in enumerate(paragraph["qas"]):
                qa["id"] = f"q{q}"
    train["data"][0]["paragraphs"][0]["qas"].append(dict(train["data"][0]["paragraphs"][0]["qas"][0]))
    (tmp_path / "reused.json").write_text(json.dumps(train))
    splits, rejected, report = rows.prepare_splits(_params(source=str(tmp_path / "reused.json"),
                                                           split_fractions={"train": 0.6, "validation": 0.2,
                                                                            "test": 0.2}))
    assert report["duplicates_dropped"] == {"all": 1}  # the true repeat only
    assert sum(len(f) for f in splits.values()) == 6 * 3 * 2 and report["repeated_ids_renumbered"] == 6 * 3 * 2 - 2
    ids = pd.concat([splits[s]["id"] for s in ("train", "validation", "test")])
    assert ids.is_unique and {"q0", "q1", "q0~2", "q1~18"} <= set(ids)


def test_an_empty_gold_answer_is_no_answer_and_the_rejected_share_names_its_main_reason(tmp_path, capsys):
    document = make_squad_document(articles=4, seed=3)
    qas = [qa for article in document["data"] for paragraph in article["paragraphs"] for qa in paragraph["qas"]]
    qas[0]["answers"] = [{"text": "", "answer_start": -1}]  # SQuAD 2.0 converters' unanswerable question
    qas[1]["answers"] = [*qas[1]["answers"], {"text": "", "answer_start": -1}]  # one of its gold answers is empty
    qas[2]["answers"], qas[2]["is_impossible"] = [], True  # SQuAD 2.0 itself
    (tmp_path / "v2.json").write_text(json.dumps(document))
    kept, rejected = rows.clean(reading.read_file(tmp_path / "v2.json"), "v2")
    assert [(r["row"], r["reason"]) for r in rejected] == [
        ("data[0].paragraphs[0].qas[0] (id s3-0-0-0)", "no answer"),
        ("data[0].paragraphs[1].qas[0] (id s3-0-1-0)", "no answer")]
    second = kept.set_index("id").loc["s3-0-0-1"]
    assert "" not in second["answer_texts"] and len(second["answer_texts"]) == len(second["answer_starts"]) == 2
    rows.prepare_splits(_params(source=str(tmp_path / "v2.json")))  # a few: kept going, and said why (a trial)
    assert "prepare: note: 2 question(s) have no answer (SQuAD 2.0's unanswerable questions, is_impossible, are " \
        "such): extractive QA here always answers" in capsys.readouterr().err
    for qa in qas[3:]:  # most of the file unanswerable: the error says why
        qa["answers"] = []
    (tmp_path / "mostly.json").write_text(json.dumps(document))
    with pytest.raises(DataError, match=r"mostly.json: 23 of 24 rows \(95.8%\) were rejected, more than "
                                        r"data.max_rejected_fraction = 0.5 \(all no answer: 23 rows, the first "
                                        r"\S*mostly.json \[all\] data\[0\].paragraphs\[0\].qas\[0\] \(id s3-0-0-0\), "
                                        r".*\); SQuAD 2.0"):
        rows.prepare_splits(_params(source=str(tmp_path / "mostly.json")))


def test_a_rejected_json_lines_row_is_named_by_its_line_when_blank_lines_come_before_it(tmp_path):
    records = _flat(make_squad_document(articles=2, seed=4))
    records[5]["answers"]["answer_start"] = [0, 0]  # no longer where the text is (the contexts do not open with it)
    lines = [json.dumps(r) for r in records]
    (tmp_path / "blank.jsonl").write_text("\n".join(lines[:2] + ["", "   "] + lines[2:]))
    _, rejected = rows.clean(reading.read_file(tmp_path / "blank.jsonl"), "blank")
    assert [(r["row"], r["reason"]) for r in rejected] == [("line 8", "answer not at its answer_start in the context")]
    assert (tmp_path / "blank.jsonl").read_text().split("\n")[7] == lines[5]


def test_a_validation_file_that_only_repeats_test_questions_is_named(tmp_path):
    train, test = make_squad_document(articles=4, seed=5), make_squad_document(articles=2, seed=6)
    for name, document in (("train.json", train), ("test.json", test), ("validation.json", test)):
        (tmp_path / name).write_text(json.dumps(document))
    files = {s: str(tmp_path / f"{s}.json") for s in ("train", "validation", "test")}
    with pytest.raises(DataError, match=r"validation.json: every question of split 'validation' is also in a more "
                                        r"held-out split \(test\), so none is left; give it questions of its own"):
        rows.prepare_splits(_params(source="unused", files=files))


def test_answer_texts_and_starts_of_different_lengths_stay_a_rejected_row_even_with_an_empty_text():
    frame = pd.DataFrame({"id": ["a", "b"], "title": ["t", "t"], "context": ["The answer is 42."] * 2,
                          "question": ["What?"] * 2, "answer_texts": [["42", ""], ["42"]],
                          "answer_starts": [[14], [14]]})
    kept, rejected = rows.clean(frame, "hand")
    assert [(r["row"], r["reason"]) for r in rejected] == [("row 1", "no answer")] and kept["id"].tolist() == ["b"]


def test_an_answer_ending_on_a_decomposed_accent_is_labelled_on_its_word_and_answered_whole(tokenizer):
    """In Unicode NFD, "café" is "cafe" + U+0301, and an accent-stripping tokenizer leaves the mark out of every
    token's offsets: the label ran on to the next word ("café n..."), and the best answer a model could give,
    "cafe", scored EM 0 and F1 0 against "café"."""
    import unicodedata

    context, answer = (unicodedata.normalize("NFD", text) for text in ("le café noir 17", "café"))
    start = context.index(answer)
    frame = pd.DataFrame({"question": ["which?"], "context": [context], "answer_texts": [[answer]],
                          "answer_starts": [[start]]})
    columns = features.features_of(tokenizer, frame, max_length=32, stride=8)
    first, last, _ = columns["labels"][0]
    offsets = columns["offset_mapping"][0]
    assert context[offsets[first][0]:offsets[last][1]] == "cafe"  # the word's tokens, no more

    logits = np.full(len(offsets), -10.0)
    start_logits, end_logits = logits.copy(), logits.copy()
    start_logits[first], end_logits[last] = 10.0, 10.0
    answered = postprocess.example_answer([(start_logits, end_logits, offsets)], context, 20, 30)
    assert answered["text"] == answer and (answered["start"], answered["end"]) == (start, start + len(answer))
    assert exact_match(answered["text"], answer) == 1.0


def test_windows_are_the_same_chunk_by_chunk_as_all_at_once(tiny_bert, tokenizer, monkeypatch):
    from distillery.task_types import tokens
    from distillery.task_types.load import task_type

    torch.manual_seed(0)
    model = task_type("question_answering").load_model(str(tiny_bert), "t")
    rng = np.random.default_rng(1)
    contexts = [" ".join(rng.choice(WORDS, size=int(n))) for n in rng.integers(3, 40, size=11)]
    frame = pd.DataFrame({"question": [f"what is {w}?" for w in rng.choice(WORDS, size=11)], "context": contexts,
                          "answer_texts": [[c.split()[1]] for c in contexts],
                          "answer_starts": [[len(c.split()[0]) + 1] for c in contexts]})
    frame.loc[[4, 9], ["answer_texts", "answer_starts"]] = np.nan  # two unlabelled (transfer) questions
    frame.index = [7] * 11  # any index: rows are counted by position
    monkeypatch.setattr(tokens, "CHUNK_ROWS", 10_000)
    whole = features.features_of(tokenizer, frame.reset_index(drop=True), 24, 8)
    windows = len(whole["labels"])
    assert windows > 2 * len(frame)  # long contexts make several windows
    teacher = rng.standard_normal((windows, 2, 24)).astype(np.float32)
    dataset = features.tokenize(frame, tokenizer, 24, 8, teacher).to_dict()
    logits, columns = features.predict_features(model, tokenizer, frame, 24, 8, batch_size=4)
    monkeypatch.setattr(tokens, "CHUNK_ROWS", 3)  # 11 rows: 4 chunks, windows and examples counted across them
    assert features.tokenize(frame, tokenizer, 24, 8, teacher).to_dict() == dataset
    chunked_logits, chunked_columns = features.predict_features(model, tokenizer, frame, 24, 8, batch_size=4)
    np.testing.assert_array_equal(chunked_logits, logits)
    assert chunked_columns == columns
    # the teacher's pass keeps the logits alone, not every window's offsets
    alone, none = features.predict_features(model, tokenizer, frame, 24, 8, batch_size=4, columns_too=False)
    np.testing.assert_array_equal(alone, logits)
    assert none == {"example_index": [], "offset_mapping": [], "labels": [], "length": []}
    # both are the whole frame's windows, in window order, with their own teacher logits
    for key in ("input_ids", "example_index", "offset_mapping", "labels"):
        assert dataset[key] == whole[key], key
        if key != "input_ids":
            assert columns[key] == whole[key], key
    assert [label[2] for label in dataset["labels"]] == list(range(windows))
    assert np.allclose(dataset["teacher_logits"], teacher)
    assert dataset["gold_answers"] == [list(frame["answer_texts"].iloc[i]) if i not in (4, 9) else []
                                       for i in whole["example_index"]]
    # a cache of the wrong size is still named with the whole frame's count
    with pytest.raises(Exception, match=rf"cache holds {windows - 1} windows but these rows make {windows}:"):
        features.tokenize(frame, tokenizer, 24, 8, teacher[:-1])


def test_more_characters_than_max_characters_in_one_request_are_refused(tiny_bert, tmp_path):
    """Every window of a context is read: a 2 MB context was 1,600 windows in one request. The served config caps the
    characters of a request; the gate's scoring slices its split within the cap."""
    from mlflow.exceptions import MlflowException

    served = _served_token_model(tmp_path, tiny_bert, max_length=12, stride=3)
    assert served.max_characters == 0  # a qa.json without the key (written before it): no cap
    served.max_characters = 2 * (len("car?") + len(" ".join(WORDS)))
    frame = pd.DataFrame({"question": ["car?"] * 3, "context": [" ".join(WORDS)] * 3})
    assert len(served.predict(None, frame.head(2))) == 2
    with pytest.raises(MlflowException, match=f"{3 * (4 + len(' '.join(WORDS)))} characters of questions and "
                                              f"contexts in one request; this model takes at most "
                                              f"{served.max_characters}") as refused:
        served.predict(None, frame)
    assert refused.value.get_http_status_code() == 400


def test_a_jsonl_of_other_column_names_is_told_the_columns_a_qa_row_holds(tmp_path):
    """"column 'context' not found; the columns are ['title', 'passage', 'query', 'answer_text', 'answer_start']"
    did not say what a QA row needs."""
    line = {"title": "t", "passage": "Ada was born in London.", "query": "Where?", "answer_text": "London",
            "answer_start": 16}
    (tmp_path / "mine.jsonl").write_text(json.dumps(line) + "\n")
    with pytest.raises(DataError, match=r"mine.jsonl: column 'context' not found; the columns are \['title', 'passage', "
                                        r"'query', 'answer_text', 'answer_start'\]. A question answering row holds the "
                                        r"Hugging Face squad columns: 'question', 'context' and 'answers' "):
        reading.read_file(tmp_path / "mine.jsonl")


def test_an_answer_start_that_is_not_a_whole_number_is_refused_naming_its_line(tmp_path):
    """answer_start 28.9 was cut to 28 and false read as 0, each row kept; 28.0 (a float column) is 28."""
    context = "Ada was born in London in 1815."
    for start, message in ((16.9, r"answer_start 16.9 is not a whole number"), (False, r"answer_start False is not")):
        line = {"question": "Where?", "context": context, "answers": {"text": ["London"], "answer_start": [start]}}
        (tmp_path / "q.jsonl").write_text(json.dumps(line) + "\n")
        with pytest.raises(DataError, match=r"q.jsonl line 1: " + message):
            reading.read_file(tmp_path / "q.jsonl")
    line = {"id": "ada-7", "question": "Where?", "context": context,  # with an id, the line names it too
            "answers": {"text": ["London"], "answer_start": [16.9]}}
    (tmp_path / "q.jsonl").write_text(json.dumps(line) + "\n")
    with pytest.raises(DataError, match=r"q.jsonl line 1 \(id ada-7\): answer_start 16.9 is not a whole number"):
        reading.read_file(tmp_path / "q.jsonl")
    line = {"question": "Where?", "context": context, "answers": {"text": ["London"], "answer_start": [16.0]}}
    (tmp_path / "q.jsonl").write_text(json.dumps(line) + "\n")
    kept, rejected = rows.clean(reading.read_file(tmp_path / "q.jsonl"), "q")
    assert rejected == [] and kept["answer_starts"].tolist() == [[16]]


def test_a_file_that_is_not_utf8_is_named_by_line_or_read_with_replacement_as_data_encoding_errors_says(tmp_path):
    """A trial's Latin-1 ``é`` in a QA file gave "cannot read it: 'utf-8' codec can't decode byte 0xe9" under both
    settings: data.encoding_errors was not read for question answering."""
    context = "The café is open, said the computer."
    good = {"id": "q1", "context": context, "question": "What is open?", "answers": {"text": ["café"],
                                                                                     "answer_start": [4]}}
    text = json.dumps(good, ensure_ascii=False) + "\n" + json.dumps(good | {"id": "q2"}, ensure_ascii=False)
    (tmp_path / "latin1.jsonl").write_bytes(text.encode("latin-1"))
    with gzip.open(tmp_path / "latin1.jsonl.gz", "wb") as handle:
        handle.write(text.encode("latin-1"))
    for name in ("latin1.jsonl", "latin1.jsonl.gz"):
        with pytest.raises(DataError, match=rf"{name}: line 1 is not valid UTF-8 \(byte 0xe9 at offset 32\); "
                                            "re-encode the file as UTF-8 or set data.encoding_errors: replace"):
            reading.read_file(tmp_path / name)
        rows = reading.read_file(tmp_path / name, "replace")
        assert rows["context"].tolist() == ["The caf\ufffd is open, said the computer."] * 2


def test_the_int8_teachers_check_compares_each_questions_answer_not_each_windows_top_tokens(tokenizer):
    """Two models whose every window points at CLS agree window by window (the check before: 100%), but the answers
    post-processing takes from the context tokens differ, so they do not agree; the same outputs do."""
    from distillery.task_types.question_answering.task import QuestionAnswering

    task = QuestionAnswering(doc_stride=3)
    context = " ".join(WORDS)
    frame = pd.DataFrame({"question": ["good", "car"], "context": [context, context]})
    windows = len(features.features_of(tokenizer, frame, max_length=12, stride=3)["example_index"])
    assert windows == 6  # three windows a question (the counting of the first test)
    reference = np.full((windows, 2, 12), -5.0, dtype=np.float32)
    reference[:, :, 0] = 10.0  # CLS on top in every window: "no answer here"
    found = reference.copy()
    reference[:, :, 3] = 1.0  # of the context: each window's first word for one model, its second for the other
    found[:, :, 4] = 1.0
    assert (reference.argmax(-1) == found.argmax(-1)).all()  # the windows' top tokens agree everywhere
    assert task.answer_unit == "questions"
    assert task.same_answers(tokenizer, frame, 12, reference, found).tolist() == [False, False]
    assert task.same_answers(tokenizer, frame, 12, reference, reference.copy()).tolist() == [True, True]
    near = reference.copy()
    near[:, :, 3] += 0.01  # other logits, the same answers
    assert task.same_answers(tokenizer, frame, 12, reference, near).tolist() == [True, True]
