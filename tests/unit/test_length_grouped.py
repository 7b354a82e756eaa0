"""Every training's length-grouped samplers (training and evaluation) read the rows' lengths from a list of ints,
in the order the ``Trainer``'s own sampler gives. The ``Trainer`` hands them the dataset's ``length`` column, which
datasets (4 and 5) gives as a lazy ``Column``: sorting by it read each length at about 0.4 ms, 7-8 s an epoch of the
default transfer set."""
import dataclasses

import torch

from distillery.config import TrainConfig
from distillery.hf import load_tokenizer
from distillery.task_types.load import task_type
from distillery.task_types.text_classification.features import tokenize
from distillery.training import _trainer_classes, training_arguments
from tiny import load_classifier, make_texts

LABELS = ["negative", "neutral", "positive"]
TASK = task_type("text_classification")


def _order(sampler, seed: int) -> list[int]:
    torch.manual_seed(seed)  # the training sampler draws from torch's global generator
    return list(iter(sampler))


def test_the_samplers_get_the_lengths_as_a_list_and_keep_the_trainers_order(tiny_bert, tmp_path):
    tokenizer = load_tokenizer(str(tiny_bert), "t")
    frame = make_texts(120)
    frame["label"] = frame["sentiment"].map({name: i for i, name in enumerate(LABELS)})
    train = tokenize(frame, tokenizer, 32, torch.randn(len(frame), 3).numpy())
    validation = tokenize(frame.head(50), tokenizer, 32)
    cfg = dataclasses.replace(TrainConfig(), epochs=1, batch_size=4, eval_batch_size=8, learning_rate=1e-3)
    trainer_class, distillation_trainer, _ = _trainer_classes()
    trainer = distillation_trainer(model=load_classifier(str(tiny_bert), "t", LABELS),
                                   args=training_arguments(cfg, str(tmp_path / "out"), 0), train_dataset=train,
                                   eval_dataset=validation, data_collator=TASK.collator(tokenizer),
                                   processing_class=tokenizer, task=TASK)
    for ours, theirs, rows in ((trainer._get_train_sampler(train), trainer_class._get_train_sampler(trainer, train),
                                train),
                               (trainer._get_eval_sampler(validation),
                                trainer_class._get_eval_sampler(trainer, validation), validation)):
        assert not isinstance(theirs.lengths, list), type(theirs.lengths)  # the lazy column this is about
        assert isinstance(ours.lengths, list) and {type(n) for n in ours.lengths} == {int}
        assert ours.lengths == [len(ids) for ids in rows["input_ids"]]
        lengths = {len(ids) for ids in rows["input_ids"]}
        assert len(lengths) > 3  # lengths that differ, so the grouping has something to order
        for seed in (0, 1):
            assert _order(ours, seed) == _order(theirs, seed)
