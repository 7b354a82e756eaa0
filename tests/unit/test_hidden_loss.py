"""The optional hidden-state loss: hand-computed numbers, the layer map, and its place in the trainer."""
import dataclasses

import pytest
import torch

from distillery.config import DistillConfig, HiddenLossConfig, Params, StudentConfig, TrainConfig
from distillery.losses import distillation_loss, hidden_state_loss
from distillery.hf import load_tokenizer
from distillery.students.layers import select_layers
from distillery.task_types.load import task_type
from tiny import load_classifier

TASK = task_type("text_classification")

LABELS = ["negative", "neutral", "positive"]


def test_hidden_state_loss_by_hand():
    # batch 1, 2 tokens (the second is padding), hidden 2; student has 2 layers, teacher 4
    emb = torch.zeros(1, 2, 2)
    student = (emb, torch.tensor([[[1.0, 2.0], [9.0, 9.0]]]), torch.tensor([[[3.0, 3.0], [7.0, 7.0]]]))
    teacher = (emb, torch.zeros(1, 2, 2), torch.full((1, 2, 2), 8.0), torch.full((1, 2, 2), 8.0),
               torch.tensor([[[1.0, 1.0], [-5.0, -5.0]]]))
    mask = torch.tensor([[1, 0]])
    # student layer 0 vs teacher layer 0: (1² + 2²) / 2 = 2.5; student layer 1 vs teacher layer 3: (2² + 2²) / 2 = 4
    assert hidden_state_loss(student, teacher, [(0, 0), (1, 3)], mask).item() == pytest.approx(3.25)
    assert hidden_state_loss(student, teacher, [(1, 3)], mask).item() == pytest.approx(4.0)


@pytest.fixture
def teacher_dir(tiny_bert, tmp_path):
    teacher = load_classifier(str(tiny_bert), "t", LABELS)
    teacher.config.hidden_dropout_prob = teacher.config.attention_probs_dropout_prob = 0.0  # exact comparisons
    teacher.save_pretrained(tmp_path / "teacher")
    load_tokenizer(str(tiny_bert), "t").save_pretrained(tmp_path / "teacher")
    return tmp_path / "teacher"


def _trainer(model, tokenizer, tmp_path, task=TASK, **options):
    from distillery.task_types.text_classification.features import Collator
    from distillery.training import _trainer_classes, training_arguments

    _, DistillationTrainer, _ = _trainer_classes()
    args = dataclasses.replace(training_arguments(TrainConfig(learning_rate=5e-5), str(tmp_path / "ckpt"), 0),
                               eval_strategy="no", save_strategy="no", load_best_model_at_end=False)
    return DistillationTrainer(model=model, args=args, data_collator=Collator(tokenizer), processing_class=tokenizer,
                               task=task, **options)


def test_trainer_adds_the_weighted_hidden_loss(teacher_dir, tmp_path):
    from distillery.stages.distill import hidden_options

    tokenizer = load_tokenizer(str(teacher_dir), "t")
    teacher = load_classifier(str(teacher_dir), "t")
    params = Params(student=StudentConfig(layers=[0, 3]),
                    distill=DistillConfig(hidden_loss=HiddenLossConfig(weight=0.7)))
    student = select_layers(TASK, teacher, [0, 3]).train()
    options = hidden_options(params, TASK, student, teacher_dir)
    assert options["layer_map"] == [(0, 0), (1, 3)] and options["hidden_weight"] == 0.7
    batch = dict(tokenizer(["good day it was", "bad car"], padding=True, return_tensors="pt"))
    batch |= {"labels": torch.tensor([2, -100]), "teacher_logits": torch.tensor([[0.1, 0.2, 0.3], [1.0, 0.0, -1.0]])}
    trainer = _trainer(student, tokenizer, tmp_path, alpha=0.5, temperature=2.0, **options)
    loss = trainer.compute_loss(student, dict(batch))
    with torch.no_grad():
        inputs = {k: v for k, v in batch.items() if k not in ("labels", "teacher_logits")}
        s_out, t_out = student(**inputs, output_hidden_states=True), teacher.eval()(**inputs, output_hidden_states=True)
        expected = distillation_loss(s_out.logits, batch["teacher_logits"], batch["labels"], 0.5, 2.0) + \
            0.7 * hidden_state_loss(s_out.hidden_states, t_out.hidden_states, [(0, 0), (1, 3)],
                                    batch["attention_mask"])
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert expected.item() > distillation_loss(s_out.logits, batch["teacher_logits"], batch["labels"], 0.5, 2.0)
    # a student holding every teacher layer reproduces its hidden states: the extra term is exactly zero
    full = select_layers(TASK, teacher, [0, 1, 2, 3]).train()
    with torch.no_grad():
        f_out = full(**inputs, output_hidden_states=True)
    zero = hidden_state_loss(f_out.hidden_states, t_out.hidden_states, [(i, i) for i in range(4)],
                             batch["attention_mask"])
    assert zero.item() == pytest.approx(0.0, abs=1e-10)


def test_the_hidden_loss_on_a_question_answering_student(tiny_bert, tmp_path):
    """QA models answer with start and end logits (no ``.logits``): the trainer adds the same hidden term."""
    from distillery.stages.distill import hidden_options
    from distillery.task_types.question_answering.loss import span_distillation_loss

    qa = task_type("question_answering")
    torch.manual_seed(0)
    teacher = qa.load_model(str(tiny_bert), "t")
    teacher.config.hidden_dropout_prob = teacher.config.attention_probs_dropout_prob = 0.0
    teacher.save_pretrained(tmp_path / "qa-teacher")
    tokenizer = load_tokenizer(str(tiny_bert), "t")
    tokenizer.save_pretrained(tmp_path / "qa-teacher")
    teacher = qa.load_model(str(tmp_path / "qa-teacher"), "t").eval()
    student = select_layers(qa, teacher, [0, 3]).train()
    params = Params(student=StudentConfig(layers=[0, 3]),
                    distill=DistillConfig(hidden_loss=HiddenLossConfig(weight=0.7)))
    options = hidden_options(params, qa, student, tmp_path / "qa-teacher")
    batch = dict(tokenizer(["good day"], ["it was a good day"], padding=True, return_tensors="pt"))
    length = batch["input_ids"].shape[1]
    batch |= {"labels": torch.tensor([[5, 6]]), "teacher_logits": torch.randn(1, 2, length)}
    trainer = _trainer(student, tokenizer, tmp_path, task=qa, alpha=0.5, temperature=2.0, **options)
    loss = trainer.compute_loss(student, dict(batch))
    with torch.no_grad():
        inputs = {k: v for k, v in batch.items() if k not in ("labels", "teacher_logits")}
        s_out, t_out = student(**inputs, output_hidden_states=True), teacher(**inputs, output_hidden_states=True)
        span = span_distillation_loss(qa.outputs_of(s_out), batch["teacher_logits"], batch["labels"], 0.5, 2.0)
        hidden = hidden_state_loss(s_out.hidden_states, t_out.hidden_states, [(0, 0), (1, 3)],
                                   batch["attention_mask"])
    assert hidden.item() > 0
    assert loss.item() == pytest.approx((span + 0.7 * hidden).item(), rel=1e-5)


def test_distilled_training_with_the_hidden_loss_runs(teacher_dir, tmp_path):
    from distillery.stages.distill import hidden_options
    from distillery.task_types.text_classification.features import tokenize
    from distillery.training import fit
    from tiny import make_texts

    tokenizer = load_tokenizer(str(teacher_dir), "t")
    frame = make_texts(24)
    frame["label"] = frame["sentiment"].map({n: i for i, n in enumerate(LABELS)})
    teacher = load_classifier(str(teacher_dir), "t")
    student = select_layers(TASK, teacher, [0, 3])
    before = [p.detach().clone() for p in student.parameters()]
    params = Params(student=StudentConfig(layers=[0, 3]), distill=DistillConfig(hidden_loss=HiddenLossConfig(0.5)))
    cfg = dataclasses.replace(TrainConfig(learning_rate=5e-5), epochs=1, batch_size=8, logging_steps=1, warmup=0.0)
    summary = fit(TASK, student, tokenizer, tokenize(frame, tokenizer, 32, torch.randn(24, 3).numpy()),
                  tokenize(frame, tokenizer, 32), cfg, 0, tmp_path / "out",
                  distill=dict(alpha=0.5, temperature=2.0, loss_kind="kl", **hidden_options(params, TASK, student,
                                                                                            teacher_dir)))
    assert summary["steps"] == 3
    assert any(not torch.equal(a, b) for a, b in zip(before, student.parameters()))


def test_hidden_loss_needs_a_layer_student(tmp_path):
    from distillery.config import load_params
    from distillery.errors import ConfigError

    path = tmp_path / "params.yaml"
    path.write_text("student:\n  source: model\n  model: some/model\ndistill:\n  hidden_loss:\n    weight: 1.0\n")
    with pytest.raises(ConfigError, match="distill.hidden_loss.weight.*student.source: layers"):
        load_params(path)
