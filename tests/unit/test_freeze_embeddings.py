"""``train.freeze_embeddings``: the input word-embedding matrix stays as the model started while the rest trains,
for a transformer and for the embedding students; a model without one is refused, naming the key."""
import dataclasses

import pytest
import torch

from conftest import refused_when_read
from distillery.config import TrainConfig
from distillery.errors import ModelError
from distillery.hf import freeze_embeddings, load_tokenizer
from distillery.task_types.load import task_type
from distillery.task_types.text_classification.features import tokenize
from distillery.training import fit
from tiny import load_classifier, make_texts

LABELS = ["negative", "neutral", "positive"]
TASK = task_type("text_classification")


def _frame(n: int):
    frame = make_texts(n)
    frame["label"] = frame["sentiment"].map({name: i for i, name in enumerate(LABELS)})
    return frame


def _fit(model, tokenizer, tmp_path, freeze: bool, distill: bool, attention_dropout=None):
    frame = _frame(16)
    logits = torch.randn(16, 3).numpy() if distill else None
    cfg = dataclasses.replace(TrainConfig(), epochs=1, batch_size=8, learning_rate=1e-2, warmup=0.0,
                              freeze_embeddings=freeze, attention_dropout=attention_dropout)
    options = dict(alpha=0.5, temperature=2.0, loss_kind="kl") if distill else None
    return fit(TASK, model, tokenizer, tokenize(frame, tokenizer, 32, logits), tokenize(frame, tokenizer, 32), cfg,
               0, tmp_path / "out", distill=options)


@pytest.mark.parametrize("distill, attention_dropout", [(False, None), (True, None), (True, 0.0)])
def test_a_transformer_trains_all_but_its_word_embeddings(tiny_bert, tmp_path, distill, attention_dropout):
    """With attention_dropout set too, the model is rebuilt first (new parameters): the freeze must come after."""
    tokenizer = load_tokenizer(str(tiny_bert), "t")
    model = load_classifier(str(tiny_bert), "t", LABELS)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    word = "bert.embeddings.word_embeddings.weight"
    assert word in before

    summary = _fit(model, tokenizer, tmp_path, freeze=True, distill=distill, attention_dropout=attention_dropout)

    after = dict(model.named_parameters())
    assert summary["trainable_parameters"] == sum(p.numel() for p in before.values()) - before[word].numel()
    assert torch.equal(after[word], before[word])
    assert not after[word].requires_grad and after[word].grad is None  # no gradient was ever computed for it
    changed = [name for name in before if not torch.equal(after[name], before[name])]
    assert "bert.embeddings.position_embeddings.weight" in changed and "classifier.weight" in changed
    saved = load_classifier(str(tmp_path / "out"), "t", LABELS)  # the saved model holds the same matrix
    assert torch.equal(saved.get_input_embeddings().weight, before[word])


def test_without_it_the_word_embeddings_train(tiny_bert, tmp_path, capfd):
    tokenizer = load_tokenizer(str(tiny_bert), "t")
    model = load_classifier(str(tiny_bert), "t", LABELS)
    before = model.get_input_embeddings().weight.detach().clone()
    summary = _fit(model, tokenizer, tmp_path, freeze=False, distill=False)
    assert not torch.equal(model.get_input_embeddings().weight, before)
    assert summary["trainable_parameters"] == sum(p.numel() for p in model.parameters())
    # the progress lines name the precision, fp32 as well as bf16 (TrainConfig's default here is fp32)
    assert f"M-parameter model in {summary['precision']}: step 2/2" in capfd.readouterr().err


@pytest.mark.parametrize("family", ["boe", "bilstm"])
def test_an_embedding_student_keeps_its_table_and_trains_the_rest(tiny_bert, tmp_path, family):
    from test_embedding_students import _build

    model, tokenizer = _build(tiny_bert, tmp_path, family)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    _fit(model, tokenizer, tmp_path, freeze=True, distill=True)
    table = model.get_input_embeddings().weight
    assert torch.equal(table, before[next(n for n, p in model.named_parameters() if p is table)])
    assert sum(not torch.equal(p, before[n]) for n, p in model.named_parameters()) >= 2


def test_a_model_without_word_embeddings_is_refused_naming_the_key():
    with pytest.raises(ModelError, match=r"^teacher\.train\.freeze_embeddings: this model \(Sequential\) has no input "
                                         r"word embeddings to freeze; set it to false$"):
        freeze_embeddings(torch.nn.Sequential(torch.nn.Linear(4, 2)), True, "teacher.train.freeze_embeddings")
    freeze_embeddings(torch.nn.Sequential(torch.nn.Linear(4, 2)), False, "k")  # off: nothing asked of the model


@pytest.mark.parametrize("yaml_text, message", [
    ("student:\n  source: config\ndistill:\n  train:\n    freeze_embeddings: true\n",
     "this config student's word embeddings start random, and would stay so"),
    ("student:\n  source: bilstm\n  bilstm:\n    init_from_teacher: false\ndistill:\n  train:\n"
     "    freeze_embeddings: true\n",
     r"this bilstm student's word embeddings start random \(student.bilstm.init_from_teacher is false\)"),
    ("task: image_classification\nteacher:\n  model: scratch:cnn\n  train:\n    freeze_embeddings: true\nstudent:\n"
     "  source: cnn\n",
     "teacher.train.freeze_embeddings = True is not allowed; image networks have no word embeddings"),
])
def test_what_has_no_trained_word_embeddings_to_keep_is_refused_at_load(tmp_path, yaml_text, message):
    """Refused when params.yaml is read: `fit` would refuse an image model only after DVC removed the outputs."""
    refused_when_read(tmp_path / "params.yaml", yaml_text, message,
                      ("freeze_embeddings: true", "freeze_embeddings: false"))
