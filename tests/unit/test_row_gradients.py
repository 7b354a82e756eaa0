"""The word-embedding gradient kept between steps (``distillery.row_gradients``): training with it gives the same
weights to the bit as PyTorch's dense backward, through the real ``Trainer`` and in a plain loop."""
import contextlib
import copy
import dataclasses

import pytest
import torch
from torch import nn

import distillery.row_gradients as row_module
import distillery.training as training
from distillery.config import TrainConfig
from distillery.hf import load_tokenizer
from distillery.row_gradients import RowGradientEmbedding, row_gradients
from distillery.task_types.load import task_type
from distillery.task_types.text_classification.features import tokenize
from tiny import load_classifier, make_texts

LABELS = ["negative", "neutral", "positive"]
TASK = task_type("text_classification")


def _fit(model, tokenizer, out, distill: bool, kept: bool, monkeypatch, used: list):
    frame = make_texts(24)
    frame["label"] = frame["sentiment"].map({name: i for i, name in enumerate(LABELS)})
    logits = torch.randn(24, 3, generator=torch.Generator().manual_seed(0)).numpy() if distill else None

    @contextlib.contextmanager
    def spy(model, enabled=True):
        with row_gradients(model, enabled=enabled and kept) as swapped:
            used.append(swapped)
            yield swapped

    monkeypatch.setattr(training, "row_gradients", spy)
    arguments = training.training_arguments  # every step's weights kept, not the best epoch's (ties keep the first)
    monkeypatch.setattr(training, "training_arguments", lambda *a, **k: dataclasses.replace(
        arguments(*a, **k), load_best_model_at_end=False))
    cfg = dataclasses.replace(TrainConfig(), epochs=2, batch_size=8, learning_rate=1e-2, warmup=0.0)
    options = dict(alpha=0.5, temperature=2.0, loss_kind="kl") if distill else None
    training.fit(TASK, model, tokenizer, tokenize(frame, tokenizer, 32, logits), tokenize(frame, tokenizer, 32), cfg,
                 0, out, distill=options)
    return {name: p.detach().clone() for name, p in model.named_parameters()}


@pytest.mark.parametrize("family", ["layers", "boe", "bilstm"])
def test_the_trainer_ends_with_the_same_weights_to_the_bit(tiny_bert, tmp_path, monkeypatch, family):
    monkeypatch.setattr(row_module, "MIN_ELEMENTS", 0)  # the tiny vocabulary counts as large
    if family == "layers":
        tokenizer = load_tokenizer(str(tiny_bert), "t")
        model = load_classifier(str(tiny_bert), "t", LABELS)
    else:
        from test_embedding_students import _build

        model, tokenizer = _build(tiny_bert, tmp_path, family)
    build = lambda: copy.deepcopy(model)  # noqa: E731  (one start for both: a new head is drawn at random)
    used: list = []
    dense = _fit(build(), tokenizer, tmp_path / "dense", family != "layers", False, monkeypatch, used)
    kept = _fit(build(), tokenizer, tmp_path / "kept", family != "layers", True, monkeypatch, used)
    embeddings = sum(type(m) is nn.Embedding for m in build().modules())  # BERT's position and type ones too
    assert embeddings >= 1 and used == [0, embeddings]  # the second training took the kept-buffer path
    assert dense.keys() == kept.keys()
    differ = [name for name in dense if not torch.equal(dense[name], kept[name])]
    assert not differ, differ
    word = next(name for name in dense if "embed" in name and dense[name].dim() == 2)
    start = build().state_dict()
    assert not torch.equal(kept[word], start[word])  # the matrix did train


def _loop(embedding_kept: bool, batches, autocast: bool):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(1 << 14, 64, padding_idx=0), nn.Dropout(0.1), nn.Linear(64, 3))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.01)
    kept = []
    with row_gradients(model, enabled=embedding_kept) as swapped:
        assert swapped == int(embedding_kept)
        for ids, labels in batches:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                loss = nn.functional.cross_entropy(model(ids).mean(dim=1).float(), labels)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 0.01)  # clipped: the gradients scaled in place
            rows = getattr(model[0], "_rows", None)
            kept.append(rows is not None and model[0].weight.grad is rows.buffer)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    assert type(model[0]) is nn.Embedding  # a plain embedding again afterwards
    return model, kept


@pytest.mark.parametrize("autocast", [False, True])
def test_repeated_rows_padding_and_clipping_give_the_dense_result(autocast):
    generator = torch.Generator().manual_seed(1)
    batches = []
    for _ in range(6):  # few distinct ids, so each row is added to many times a step; padding in every row
        ids = torch.randint(1, 40, (8, 12), generator=generator)
        ids[:, -3:] = 0
        batches.append((ids, torch.randint(0, 3, (8,), generator=generator)))
    dense, dense_steps = _loop(False, batches, autocast)
    kept, kept_steps = _loop(True, batches, autocast)
    for a, b in zip(dense.parameters(), kept.parameters()):
        assert torch.equal(a, b)
    assert kept_steps == [True] * 6 and dense_steps == [False] * 6  # every step's gradient was the kept buffer


def test_only_a_large_trainable_plain_embedding_is_swapped(monkeypatch):
    class Scaled(nn.Embedding):
        def forward(self, ids):
            return super().forward(ids) * 2.0

    big = 1 << 20
    frozen = nn.Embedding(big // 64, 64)
    frozen.weight.requires_grad_(False)
    model = nn.ModuleDict({"plain": nn.Embedding(big // 64, 64), "small": nn.Embedding(100, 64),
                           "frozen": frozen, "renormed": nn.Embedding(big // 64, 64, max_norm=1.0),
                           "scaled": Scaled(big // 64, 64)})
    with row_gradients(model) as swapped:
        assert swapped == 1 and type(model["plain"]) is RowGradientEmbedding
        assert [type(m) for m in model.values()][1:] == [nn.Embedding, nn.Embedding, nn.Embedding, Scaled]
        monkeypatch.setattr(row_module._Lookup, "apply", None)  # evaluation inside training: the plain lookup
        with torch.no_grad():
            assert torch.equal(model["plain"](torch.tensor([3])), model["plain"].weight[3:4])
    with row_gradients(model, enabled=False) as swapped:  # a multi-process run: DDP needs autograd's own hooks
        assert swapped == 0


def _steps(model, lookup, ids, steps: int = 4):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(steps):
        lookup(model, ids).sum().backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return model


def test_a_weight_used_outside_the_lookup_gets_all_its_gradient_and_a_tied_one_is_left_alone(monkeypatch):
    """A review's case: the matrix read directly as well as looked up. Autograd's own gradient then lands in the
    kept buffer, in rows the lookup never wrote: they must be zeroed before the next step, or each step leaks
    into the next. A matrix tied to an output layer is not swapped at all."""
    monkeypatch.setattr(row_module, "MIN_ELEMENTS", 0)
    ids = torch.tensor([[1, 2, 2, 3]])
    twice = lambda m, ids: m.weight.square().sum() + m(ids).sum()  # noqa: E731  (the direct use first)
    torch.manual_seed(0)
    start = nn.Embedding(50, 4)
    dense = _steps(copy.deepcopy(start), twice, ids)
    with row_gradients(kept := copy.deepcopy(start)) as swapped:
        assert swapped == 1
        _steps(kept, twice, ids)
    assert torch.allclose(kept.weight, dense.weight, atol=1e-6, rtol=0)

    tied = nn.ModuleDict({"embed": nn.Embedding(50, 4), "head": nn.Linear(4, 50, bias=False)})
    tied["head"].weight = tied["embed"].weight
    with row_gradients(tied) as swapped:
        assert swapped == 0


def test_int32_ids_copies_and_pickles(monkeypatch):
    import pickle

    monkeypatch.setattr(row_module, "MIN_ELEMENTS", 0)
    torch.manual_seed(0)
    start = nn.Embedding(50, 4)
    ids = torch.tensor([[1, 2, 2, 3]], dtype=torch.int32)
    dense = _steps(copy.deepcopy(start), lambda m, i: m(i).square().sum(), ids)
    with row_gradients(kept := copy.deepcopy(start)):
        _steps(kept, lambda m, i: m(i).square().sum(), ids)  # int32 ids, as the dense backward takes them
        for twin in (copy.deepcopy(kept), pickle.loads(pickle.dumps(kept))):  # plain, without the 47 MB buffer
            assert type(twin) is nn.Embedding and "_rows" not in vars(twin) and torch.equal(twin.weight, kept.weight)
    assert torch.equal(kept.weight, dense.weight)
