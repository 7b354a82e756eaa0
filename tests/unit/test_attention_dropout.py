"""``train.attention_dropout``: the model is rebuilt with the new dropout on its attention probabilities,
keeps its weights and its identity, and says which key is wrong where it cannot take one."""
import pytest
import torch
from torch import nn
from transformers import (BertConfig, BertForQuestionAnswering, DistilBertConfig,
                          DistilBertForSequenceClassification, T5Config, T5EncoderModel)

from conftest import refused_when_read
from distillery.errors import ModelError
from distillery.hf import set_attention_dropout


def _bert(attention: float) -> BertForQuestionAnswering:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=32, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=attention)
    return BertForQuestionAnswering(config)


def _twice_in_training(model) -> tuple:
    model.train()
    ids = torch.arange(1, 13).reshape(2, 6)
    return [model(input_ids=ids).start_logits.detach() for _ in range(2)]


def test_zero_makes_training_passes_deterministic_and_keeps_the_weights():
    model = _bert(0.5)
    first, second = _twice_in_training(model)
    assert not torch.equal(first, second)  # dropout on the probabilities draws a new mask each pass
    model.eval()
    ids = torch.arange(1, 13).reshape(2, 6)
    before = model(input_ids=ids).start_logits.detach()

    set_attention_dropout(model, 0.0, "distill.train.attention_dropout")  # in place: the caller's model

    assert model.config.attention_probs_dropout_prob == 0.0
    model.eval()
    assert torch.equal(model(input_ids=ids).start_logits.detach(), before)
    first, second = _twice_in_training(model)
    assert torch.equal(first, second)


def test_training_mode_is_kept():
    model = _bert(0.1)
    model.eval()
    set_attention_dropout(model, 0.0, "k")
    assert not model.training and not any(m.training for m in model.modules())


def test_null_changes_nothing():
    model = _bert(0.5)
    modules = list(model.modules())
    set_attention_dropout(model, None, "k")
    assert list(model.modules()) == modules and model.config.attention_probs_dropout_prob == 0.5


def test_distilbert_names_it_attention_dropout():
    torch.manual_seed(0)
    config = DistilBertConfig(vocab_size=50, dim=16, n_layers=1, n_heads=2, hidden_dim=32, max_position_embeddings=32,
                              dropout=0.0, seq_classif_dropout=0.0, attention_dropout=0.5)
    model = DistilBertForSequenceClassification(config)
    ids = torch.arange(1, 13).reshape(2, 6)
    model.train()
    assert not torch.equal(model(input_ids=ids).logits, model(input_ids=ids).logits)
    set_attention_dropout(model, 0.0, "k")
    assert model.config.attention_dropout == 0.0
    assert torch.equal(model(input_ids=ids).logits, model(input_ids=ids).logits)


def test_a_model_without_attention_is_refused_naming_the_key():
    with pytest.raises(ModelError, match=r"^distill\.train\.attention_dropout: .*not a transformer"):
        set_attention_dropout(nn.LSTM(4, 4), 0.0, "distill.train.attention_dropout")


def test_an_architecture_without_the_setting_is_refused_naming_the_key():
    model = T5EncoderModel(T5Config(vocab_size=50, d_model=16, d_kv=8, d_ff=32, num_layers=1, num_heads=2))
    with pytest.raises(ModelError, match=r"^teacher\.train\.attention_dropout: the t5 architecture has no attention"):
        set_attention_dropout(model, 0.0, "teacher.train.attention_dropout")


def test_fit_trains_and_saves_the_model_with_the_keys_dropout(tiny_bert, tmp_path):
    import dataclasses
    import json

    from distillery.config import TrainConfig
    from distillery.hf import load_tokenizer
    from distillery.task_types.load import task_type
    from distillery.task_types.text_classification.features import tokenize
    from distillery.training import fit
    from tiny import load_classifier, make_texts

    labels = ["negative", "neutral", "positive"]
    tokenizer = load_tokenizer(str(tiny_bert), "t")
    model = load_classifier(str(tiny_bert), "t", labels)
    assert model.config.attention_probs_dropout_prob == 0.1
    frame = make_texts(16)
    frame["label"] = frame["sentiment"].map({n: i for i, n in enumerate(labels)})
    cfg = dataclasses.replace(TrainConfig(learning_rate=5e-5), epochs=1, batch_size=8, warmup=0.0,
                              attention_dropout=0.0)
    fit(task_type("text_classification"), model, tokenizer, tokenize(frame, tokenizer, 32),
        tokenize(frame, tokenizer, 32), cfg, 0, tmp_path / "out")
    assert model.config.attention_probs_dropout_prob == 0.0
    assert json.loads((tmp_path / "out" / "config.json").read_text())["attention_probs_dropout_prob"] == 0.0


def test_the_key_is_checked_at_load(tmp_path):
    from distillery.config import load_params
    from distillery.errors import ConfigError

    path = tmp_path / "params.yaml"
    path.write_text("distill:\n  train:\n    attention_dropout: 1.5\n")
    with pytest.raises(ConfigError, match=r"distill\.train\.attention_dropout = 1\.5 is not allowed"):
        load_params(path)


@pytest.mark.parametrize("yaml_text, message", [
    ("student:\n  source: bilstm\ndistill:\n  train:\n    attention_dropout: 0.0\n",
     r"distill\.train\.attention_dropout = 0\.0 is not allowed; a bilstm student has no attention; set it to null"),
    ("student:\n  source: boe\ndistill:\n  train:\n    attention_dropout: 0.0\n", "a boe student has no attention"),
    ("task: image_classification\nteacher:\n  model: scratch:cnn\n  train:\n    attention_dropout: 0.0\nstudent:\n"
     "  source: cnn\n", r"teacher\.train\.attention_dropout = 0\.0 is not allowed; image networks have no attention"),
])
def test_a_model_without_attention_is_refused_when_params_are_read(tmp_path, yaml_text, message):
    """A trial: `distill` refused a bilstm student's attention_dropout only after `dvc repro` had removed
    models/student and models/baseline."""
    refused_when_read(tmp_path / "params.yaml", yaml_text, message,
                      ("attention_dropout: 0.0", "attention_dropout: null"))
