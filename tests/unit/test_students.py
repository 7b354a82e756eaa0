"""Student families behind one interface: the ``config`` family builds the teacher's architecture from
scratch at the configured sizes, with the teacher's tokenizer, and exports with parity like any student."""
import numpy as np
import pytest
import torch

from distillery.config import Params, StudentConfig, TeacherConfig
from distillery.config.sections import StudentArchConfig
from distillery.errors import ConfigError
from distillery.students import FAMILIES
from distillery.students.load import student_family
from distillery.task_types import TASK_TYPES
from distillery.task_types.load import task_type
from tiny import load_classifier, make_texts

LABELS = ["negative", "neutral", "positive"]
TASK = task_type("text_classification")


def _params(tiny_bert, **sizes) -> Params:
    return Params(teacher=TeacherConfig(model=str(tiny_bert)),
                  student=StudentConfig(source="config", config=StudentArchConfig(**sizes)))


def test_config_student_has_the_configured_sizes_and_the_teachers_tokenizer(tiny_bert, tmp_path):
    params = _params(tiny_bert, hidden_size=16, num_layers=1, num_heads=2, intermediate_size=24)
    student, tokenizer = student_family("config").build(params, TASK, LABELS, tmp_path, seed=0)
    config = student.config
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads, config.intermediate_size) == \
        (16, 1, 2, 24)
    assert config.num_labels == 3 and config.id2label[2] == "positive"
    teacher = load_classifier(str(tiny_bert), "t", LABELS)
    assert config.model_type == teacher.config.model_type and config.vocab_size == teacher.config.vocab_size
    assert tokenizer("good day")["input_ids"] == \
        __import__("transformers").AutoTokenizer.from_pretrained(str(tiny_bert))("good day")["input_ids"]
    # the tiny teacher is 32 wide with 4 layers: nothing of it fits, so nothing was copied
    assert student.bert.embeddings.word_embeddings.weight.shape == (config.vocab_size, 16)
    assert sum(p.numel() for p in student.parameters()) < sum(p.numel() for p in teacher.parameters()) / 2


@pytest.mark.parametrize("kind", ["distilbert", "gpt2"])
def test_config_student_gets_the_feed_forward_width_under_its_architectures_own_name(kind, tiny_bert, tmp_path):
    """DistilBERT calls the feed-forward width hidden_dim and GPT-2 n_inner: the student's layers are built at
    student.config.intermediate_size either way (the weights' shapes say so), not at the teacher's width."""
    from transformers import AutoTokenizer, DistilBertConfig, DistilBertModel, GPT2Config, GPT2Model

    vocab = AutoTokenizer.from_pretrained(str(tiny_bert)).vocab_size
    teacher = tmp_path / kind
    if kind == "distilbert":
        DistilBertModel(DistilBertConfig(vocab_size=vocab, dim=32, n_layers=2, n_heads=2, hidden_dim=64)
                        ).save_pretrained(teacher)
    else:
        GPT2Model(GPT2Config(vocab_size=vocab, n_embd=32, n_layer=2, n_head=2, n_inner=64)).save_pretrained(teacher)
    AutoTokenizer.from_pretrained(str(tiny_bert)).save_pretrained(teacher)
    student, _ = student_family("config").build(_params(teacher, hidden_size=16, num_layers=1, num_heads=2,
                                                        intermediate_size=24), TASK, LABELS, tmp_path, seed=0)
    if kind == "distilbert":
        widths = [layer.ffn.lin1.weight.shape for layer in student.distilbert.transformer.layer]
        assert widths == [(24, 16)]
    else:
        widths = [block.mlp.c_fc.weight.shape for block in student.transformer.h]
        assert widths == [(16, 24)]  # GPT-2's Conv1D keeps (in, out)


def test_config_student_is_deterministic_for_a_seed(tiny_bert, tmp_path):
    params = _params(tiny_bert, hidden_size=16, num_layers=2, num_heads=4, intermediate_size=32)
    family = student_family("config")
    a, _ = family.build(params, TASK, LABELS, tmp_path, seed=5)
    b, _ = family.build(params, TASK, LABELS, tmp_path, seed=5)
    c, _ = family.build(params, TASK, LABELS, tmp_path, seed=6)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.classifier.weight, c.classifier.weight)


def test_config_student_exports_with_parity(tiny_bert, tmp_path):
    from distillery.config import ExportConfig
    from distillery.onnx_runtime import quantize_int8

    params = _params(tiny_bert, hidden_size=16, num_layers=1, num_heads=2, intermediate_size=24)
    family = student_family("config")
    student, tokenizer = family.build(params, TASK, LABELS, tmp_path, seed=0)
    frame = make_texts(40)
    frame["label"] = frame["sentiment"].map({n: i for i, n in enumerate(LABELS)})
    family.export_onnx(TASK, student, tokenizer, tmp_path / "s.onnx", 17)
    quantize_int8(tmp_path / "s.onnx", tmp_path / "s.int8.onnx")
    report = TASK.parity(student, tokenizer, tmp_path / "s.onnx", tmp_path / "s.int8.onnx", frame, 32,
                         ExportConfig(parity_batch_size=8))
    assert report["rows"] == 40 and report["fp32"]["passed"] and report["fp32"]["max_abs_logit_diff"] < 1e-4
    assert report["fp32"]["label_agreement_vs_pytorch"] == 1.0
    assert np.isfinite(report["int8"]["max_abs_logit_diff_vs_pytorch"])


def test_config_sizes_are_checked_when_params_load(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("student:\n  source: config\n  config: {hidden_size: 100, num_heads: 3}\n")
    from distillery.config import load_params
    with pytest.raises(ConfigError, match=r"student.config.hidden_size = 100 is not allowed; it must be divisible "
                                          r"by num_heads \(3\)"):
        load_params(path)


def test_unknown_family_and_task_type_name_what_exists(tmp_path):
    with pytest.raises(ConfigError, match=r"student.source = 'rnn' is not allowed; student families: layers, "
                                          r"model, config, boe, bilstm, mlp, cnn"):
        student_family("rnn")
    with pytest.raises(ConfigError, match=r"task = 'qa' is not allowed; task types: text_classification, "
                                          r"question_answering, image_classification"):
        task_type("qa")


@pytest.mark.parametrize("stage", __import__("distillery.stages", fromlist=["STAGES"]).STAGES)
def test_stages_never_name_a_task_type_or_a_student_family(stage):
    """The stages ask the configured task type and family; they never branch on which one it is."""
    from pathlib import Path

    source = (Path(__file__).resolve().parents[2] / "distillery" / "stages" / f"{stage}.py")
    if not source.is_file():
        pytest.skip(f"{source} not found")
    import re

    text = source.read_text()
    named = [name for name in TASK_TYPES if name in text]
    named += re.findall(r"(?:[=!]=|\bin)\s*[\(\[{]?\s*['\"](" + "|".join(FAMILIES) + r")['\"]", text)
    assert named == [], f"{stage} names {named}"


def _card_student_line(params) -> str:
    from distillery.model_card import model_card

    card = model_card(params, {"labels": ["a", "b"]}, {}, {}, {"rows": {"test": 2}}, "student.int8.onnx")
    return next(line for line in card.splitlines() if line.startswith("**Student:**"))


def test_the_model_card_names_the_student_that_was_built():
    """The card's student line follows student.source: the teacher's layers, or the family with its sizes."""
    import dataclasses
    from pathlib import Path

    from distillery.config import load_params

    params = load_params(Path(__file__).resolve().parents[2] / "params.yaml")
    line = _card_student_line(params)
    assert "layers [0] from pretrained" in line and "kl loss, alpha 0.5, temperature 2.0" in line

    student = dataclasses.replace(params.student, source="bilstm")
    distill = dataclasses.replace(params.distill, loss="mse", alpha=0.0)
    line = _card_student_line(dataclasses.replace(params, student=student, distill=distill))
    assert "bilstm: " in line and f"BiLSTM {params.student.bilstm.hidden_size} per direction" in line
    assert "layers" not in line and "mse loss on logits, alpha 0.0" in line
    assert "temperature" not in line


def test_distill_warns_of_a_student_with_as_many_parameters_as_its_teacher(tiny_bert, tmp_path, capsys):
    """A trial's default-sized config and bilstm students were 6-10x a tiny teacher, and the report said only
    "the student keeps 126% of the teacher's accuracy"."""
    import json

    from distillery.hf import count_parameters
    from distillery.stages.distill import _warn_if_not_smaller

    params = _params(tiny_bert)  # student.config at its default sizes: 128 wide, 2 layers, under a 32-wide teacher
    student, _ = student_family("config").build(params, TASK, LABELS, tmp_path / "s", seed=0)
    teacher = count_parameters(load_classifier(str(tiny_bert), "t", LABELS))
    (tmp_path / "teacher").mkdir()
    (tmp_path / "teacher" / "training.json").write_text(json.dumps({"parameters": teacher}))
    _warn_if_not_smaller(count_parameters(student), params, tmp_path / "teacher")
    err = capsys.readouterr().err
    assert err.startswith(f"distill: warning: the student has {count_parameters(student):,} parameters, ") and \
        f"the teacher's {teacher:,} (student.source config): it is no cheaper to serve" in err
    small = _params(tiny_bert, hidden_size=16, num_layers=1, num_heads=2, intermediate_size=24)
    student, _ = student_family("config").build(small, TASK, LABELS, tmp_path / "small", seed=0)
    _warn_if_not_smaller(count_parameters(student), small, tmp_path / "teacher")
    assert capsys.readouterr().err == ""
