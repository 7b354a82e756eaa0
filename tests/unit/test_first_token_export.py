"""The exported classifier's last layer on the first token only: the same logits as the whole model, in PyTorch and
in the ONNX file, fewer FLOPs, and the whole model exported where that would not be exact."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from transformers import (BertConfig, BertForSequenceClassification, DistilBertConfig,
                          DistilBertForSequenceClassification, ElectraConfig, ElectraForSequenceClassification,
                          RobertaConfig, RobertaForSequenceClassification)

from distillery.onnx_runtime import LAST_LAYER_KEY, metadata, run_session, session
from distillery.roofline import model_flops
from distillery.task_types.text_classification.first_token import (FIRST_TOKEN, FirstTokenClassifier,
                                                                   first_token_classifier)
from distillery.task_types.text_classification.onnx import export_onnx, exported_module
from distillery.hf import load_tokenizer

NAMES = ["input_ids", "token_type_ids", "attention_mask"]
SIZES = dict(vocab_size=120, hidden_size=32, num_attention_heads=4, intermediate_size=64, max_position_embeddings=64,
             num_labels=3)


def _model(cls, config_cls, layers: int = 2, **extra):
    torch.manual_seed(0)
    model = cls(config_cls(num_hidden_layers=layers, **SIZES, **extra)).eval()
    with torch.no_grad():  # classifier weights large enough that a wrong position shows in the logits
        for parameter in model.classifier.parameters():
            parameter.mul_(20)
    return model


def _batch(seed: int = 1, rows: int = 5, length: int = 17) -> dict:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 120, (rows, length), generator=generator)
    mask = torch.ones_like(ids)
    for row, keep in enumerate([length, 9, 2, 14, 1][:rows]):
        mask[row, keep:] = 0
    return {"input_ids": ids.masked_fill(mask == 0, 0), "token_type_ids": torch.zeros_like(ids),
            "attention_mask": mask}


@pytest.mark.parametrize("cls,config_cls,layers", [
    (BertForSequenceClassification, BertConfig, 1), (BertForSequenceClassification, BertConfig, 3),
    (RobertaForSequenceClassification, RobertaConfig, 2), (ElectraForSequenceClassification, ElectraConfig, 2)])
def test_same_logits_as_the_whole_model(cls, config_cls, layers):
    extra = {"pad_token_id": 1} if cls is RobertaForSequenceClassification else {}
    model = _model(cls, config_cls, layers, **extra)
    wrapper = first_token_classifier(model, NAMES)
    assert isinstance(wrapper, FirstTokenClassifier)
    batch = _batch()
    with torch.inference_mode():
        whole = model(**batch).logits
        assert torch.allclose(wrapper(*batch.values()), whole, atol=1e-5, rtol=0)
        assert torch.allclose(wrapper(**batch), whole, atol=1e-5, rtol=0)  # by keyword, as the FLOP count calls it
    # the model is left as it was: its layers all there, its weights shared, not copied
    assert len(model.base_model.encoder.layer) == layers
    assert wrapper.trunk.embeddings.word_embeddings.weight is model.base_model.embeddings.word_embeddings.weight
    assert len(wrapper.trunk.encoder.layer) == layers - 1


def test_it_does_less_work():
    model = _model(BertForSequenceClassification, BertConfig, 1)
    batch = {k: v.numpy() for k, v in _batch(rows=1, length=64).items()}
    whole, first = model_flops(model, batch), model_flops(first_token_classifier(model, NAMES), batch)
    # one layer at 64 tokens: keys and values over every token, the rest on one
    assert first < 0.5 * whole, (first, whole)


def test_a_head_that_reads_other_tokens_gets_the_whole_model():
    class MeanPooled(BertForSequenceClassification):  # a "bert" whose head averages every token
        def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, **kwargs):
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                               token_type_ids=token_type_ids).last_hidden_state
            logits = self.classifier(hidden.mean(dim=1))
            return type("Out", (), {"logits": logits})()

    model = _model(MeanPooled, BertConfig, 2)
    assert first_token_classifier(model, NAMES) is None


@pytest.mark.parametrize("build", [
    lambda: _model(BertForSequenceClassification, BertConfig, 2, position_embedding_type="relative_key"),
    lambda: _model(BertForSequenceClassification, BertConfig, 2, is_decoder=True),
    lambda: DistilBertForSequenceClassification(DistilBertConfig(vocab_size=120, dim=32, n_layers=2, n_heads=4,
                                                                 hidden_dim=64, num_labels=3)).eval(),
])
def test_architectures_it_does_not_know_get_the_whole_model(build):
    assert first_token_classifier(build(), NAMES) is None


def test_the_onnx_file_says_so_and_matches_pytorch(tiny_bert, tmp_path):
    from transformers import AutoModelForSequenceClassification

    tokenizer = load_tokenizer(str(tiny_bert), "teacher.model")
    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_bert), num_labels=3).eval()
    path = tmp_path / "model.onnx"
    names = export_onnx(model, tokenizer, path)
    assert metadata(path, LAST_LAYER_KEY) == FIRST_TOKEN
    texts = ["good great fun", "it was a very boring and sad day today so it was", "the car"]
    encoded = dict(tokenizer(texts, padding=True, return_tensors="np"))
    with torch.inference_mode():
        expected = model(**{k: torch.from_numpy(v) for k, v in encoded.items()}).logits.numpy()
    assert np.abs(run_session(session(path), encoded) - expected).max() < 1e-4
    # the benchmark counts the file's FLOPs on the module it was traced from
    module = exported_module(lambda: model, tokenizer, path)
    assert isinstance(module, FirstTokenClassifier) and module.input_names == names
    assert len(model.base_model.encoder.layer) == 4 and not model.training


def test_a_model_exported_whole_has_no_first_token_metadata(tiny_bert, tmp_path):
    from transformers import AutoModelForSequenceClassification

    tokenizer = load_tokenizer(str(tiny_bert), "teacher.model")
    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_bert), num_labels=3).eval()
    model.config.position_embedding_type = "relative_key"  # not one it computes: exported whole
    path = tmp_path / "whole.onnx"
    export_onnx(model, tokenizer, path)
    assert metadata(path, LAST_LAYER_KEY) == ""
    assert exported_module(lambda: pytest.fail("no model needed for a whole-model file"), tokenizer, path) is None
    assert onnx.load(str(path)).graph.node  # a real graph was written


def test_the_module_comes_in_the_models_mode():
    model = _model(BertForSequenceClassification, BertConfig, 2).train()
    wrapper = first_token_classifier(model, NAMES)
    assert model.training and wrapper.training and wrapper.last.training
    model.eval()
    assert not first_token_classifier(model, NAMES).training


def test_a_first_token_file_whose_model_fails_the_check_is_an_error(tiny_bert, tmp_path):
    from transformers import AutoModelForSequenceClassification

    from distillery.errors import ModelError

    tokenizer = load_tokenizer(str(tiny_bert), "teacher.model")
    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_bert), num_labels=3).eval()
    path = tmp_path / "model.onnx"
    export_onnx(model, tokenizer, path)
    other = DistilBertForSequenceClassification(DistilBertConfig(vocab_size=120, dim=32, n_layers=1, n_heads=4,
                                                                 hidden_dim=64, num_labels=3)).eval()  # not one it knows
    with pytest.raises(ModelError, match="model.onnx was exported with its last layer on the first token"):
        exported_module(lambda: other, tokenizer, path)


@pytest.mark.parametrize("task", ["text_classification", "question_answering"])
def test_a_tokenizer_that_makes_long_samples_still_exports_a_model_of_few_positions(tiny_bert, tmp_path, task):
    """A trial's student had 40 positions and its own character-level tokenizer: the export's sample sentence made
    44 tokens, and the export failed after the whole training ("The expanded size of the tensor (44) must match the
    existing size (40)"). The trace input is now cut to the model's positions, and the graph still takes padding."""
    from transformers import BertForQuestionAnswering

    from distillery.task_types.question_answering.onnx import export_onnx as export_qa

    tokenizer = load_tokenizer(str(tiny_bert), "student.model")
    assert len(tokenizer("a somewhat longer example sentence to pad against")["input_ids"]) > 24  # the old sample
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=24,
                        num_labels=3 if task == "text_classification" else 2)  # QA: a start and an end logit
    if task == "text_classification":
        model, export, output = BertForSequenceClassification(config).eval(), export_onnx, "logits"
        batch = tokenizer(["good day", "a very long text that is cut to twenty tokens by the tokenizer"],
                          padding=True, truncation=True, max_length=20, return_tensors="pt")
    else:
        model, export, output = BertForQuestionAnswering(config).eval(), export_qa, "start_logits"
        batch = tokenizer(["which day?", "what is the first number that comes"], ["the day", "one two three four"],
                          padding=True, truncation=True, max_length=20, return_tensors="pt")
    path = tmp_path / "model.onnx"
    names = export(model, tokenizer, path)
    assert bool((batch["attention_mask"] == 0).any())  # a padded row: the graph must honour the mask
    found = run_session(session(path), {n: batch[n].numpy() for n in names})
    with torch.no_grad():
        expected = getattr(model(**{n: batch[n] for n in names}), output).numpy()
    keep = batch["attention_mask"].numpy().astype(bool) if task == "question_answering" else slice(None)
    np.testing.assert_allclose(found[keep], expected[keep], atol=1e-4)
