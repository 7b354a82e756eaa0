"""Tang-style augmentation: deterministic for a seed, each operation does what it says, and the
augmented texts are cached, hashed and fed to the distilled student only."""
import dataclasses

import numpy as np
import pandas as pd
import pytest

from distillery.augment import _augment_text, augment, replacement_vocabulary
from distillery.config import AugmentConfig
from distillery.errors import CacheError, ConfigError
from distillery.logit_cache import augment_settings, load_augmented, load_cached_logits
from distillery.hf import load_tokenizer
from tiny import cache_teacher_logits, make_texts

LABELS = ["negative", "neutral", "positive"]
ON = AugmentConfig(copies=2, p_mask=0.2, p_replace=0.2, p_ngram=0.3, ngram_max=3)


@pytest.fixture(scope="module")
def tokenizer(tiny_bert):
    return load_tokenizer(str(tiny_bert), "t")


def test_same_seed_same_texts_other_seed_other_texts(tokenizer):
    frame = make_texts(40)[["text"]]
    first, again = augment(frame, tokenizer, ON, seed=7), augment(frame, tokenizer, ON, seed=7)
    pd.testing.assert_frame_equal(first, again)
    assert len(first) > 40  # two copies per text, minus duplicates
    assert not first.equals(augment(frame, tokenizer, ON, seed=8))


def test_each_operation(tokenizer):
    rng = np.random.default_rng(0)
    words = "good car today it was so very nice".split()
    text = " ".join(words)
    masked = _augment_text(text, rng, AugmentConfig(p_mask=1.0, p_replace=0.0, p_ngram=0.0), "[MASK]", ["x"])
    assert masked == " ".join(["[MASK]"] * len(words))
    vocabulary = replacement_vocabulary(tokenizer)
    assert vocabulary and all(w.isalpha() and not w.startswith("##") for w in vocabulary)
    assert "[MASK]" not in vocabulary and "[PAD]" not in vocabulary
    replaced = _augment_text(text, rng, AugmentConfig(p_mask=0.0, p_replace=1.0, p_ngram=0.0), "[MASK]", vocabulary)
    assert len(replaced.split()) == len(words) and all(w in vocabulary for w in replaced.split())
    for _ in range(20):
        gram = _augment_text(text, rng, AugmentConfig(p_mask=0.0, p_replace=0.0, p_ngram=1.0, ngram_max=3),
                             "[MASK]", vocabulary).split()
        assert 1 <= len(gram) <= 3
        start = words.index(gram[0])
        assert words[start:start + len(gram)] == gram  # a contiguous piece of the text
    untouched = _augment_text(text, rng, AugmentConfig(p_mask=0.0, p_replace=0.0, p_ngram=0.0), "[MASK]", vocabulary)
    assert untouched == text


def test_known_texts_are_never_returned_and_rows_are_capped(tokenizer):
    frame = make_texts(30)[["text"]]
    out = augment(frame, tokenizer, dataclasses.replace(ON, copies=3), seed=1)
    assert not set(out["text"]) & set(frame["text"])
    assert out["text"].is_unique
    capped = augment(frame, tokenizer, dataclasses.replace(ON, copies=3, max_rows=10), seed=1)
    assert len(capped) == 10 and set(capped["text"]) <= set(out["text"])
    exclude = out.iloc[:5]
    assert not set(augment(frame, tokenizer, dataclasses.replace(ON, copies=3), seed=1, exclude=exclude)["text"]) \
        & set(exclude["text"])
    # a held-out text that differs from a new one only in case and spacing counts as the same text
    shouted = exclude.assign(text=[" " + "  ".join(t.upper().split()) for t in exclude["text"]])
    again = augment(frame, tokenizer, dataclasses.replace(ON, copies=3), seed=1, exclude=shouted)
    assert len(again) == len(out) - 5 and not set(again["text"]) & set(exclude["text"])
    assert augment(frame, tokenizer, AugmentConfig(copies=0), seed=1).empty


def test_text_pairs_are_augmented_on_both_sides(tokenizer):
    frame = pd.DataFrame({"text": ["good car today it was"] * 3, "text_pair": ["so very nice and fun"] * 3})
    out = augment(frame, tokenizer, dataclasses.replace(ON, p_mask=0.5, p_ngram=0.0), seed=3)
    assert list(out.columns) == ["text", "text_pair"] and len(out) > 0
    assert (out["text_pair"] != "so very nice and fun").any() and (out["text"] != "good car today it was").any()


def test_extractive_qa_perturbs_the_question_and_keeps_its_context(tokenizer):
    from distillery.task_types.question_answering.task import QuestionAnswering

    contexts = ["The cat sat on the mat in the old house.", "Paris is the capital of France and its largest city."]
    frame = pd.DataFrame({"id": ["a", "b"], "question": ["Where did the cat sit today?", "What is the capital of France?"],
                          "context": contexts})
    columns, perturbed = QuestionAnswering().augment_columns(frame)
    out = augment(frame[columns], tokenizer, dataclasses.replace(ON, copies=4, p_ngram=0.0), seed=3,
                  columns=columns, perturbed=perturbed)
    assert list(out.columns) == ["question", "context"] and len(out) > 2
    assert set(out["context"]) == set(contexts)  # carried over word for word
    for question, context in zip(out["question"], out["context"]):
        source = frame.loc[frame["context"] == context, "question"].iloc[0]
        assert question != source and len(question.split()) == len(source.split())  # a word-for-word perturbation


def test_a_tokenizer_without_a_mask_token_is_a_clear_error(tokenizer):
    class NoMask:
        mask_token = None

    with pytest.raises(ConfigError, match="distill.augment.p_mask"):
        augment(make_texts(5)[["text"]], NoMask(), ON, seed=0)


@pytest.fixture
def cached(tmp_path, tiny_bert):
    params, manifest = cache_teacher_logits(tmp_path, tiny_bert, augment=ON)
    return params, tmp_path, manifest


def test_augmented_texts_are_cached_with_their_logits(cached):
    params, root, manifest = cached
    augmented = load_augmented(root / "logits")
    assert manifest["rows"]["augmented"] == len(augmented) > 60
    logits = load_cached_logits(root / "logits", root / "teacher", root / "prepared", 32, augment_settings(params))
    assert logits["augmented"].shape == (len(augmented), 3)
    labelled = pd.concat([pd.read_parquet(root / "prepared" / f"{s}.parquet") for s in ("train", "validation", "test")])
    assert not set(augmented["text"]) & set(labelled["text"])  # no test text leaks in as a "new" one


def test_changed_settings_or_texts_invalidate_the_cache(cached):
    params, root, _ = cached
    other = dataclasses.replace(params, distill=dataclasses.replace(params.distill,
                                                                    augment=dataclasses.replace(ON, seed=99)))
    with pytest.raises(CacheError, match="distill.augment changed"):
        load_cached_logits(root / "logits", root / "teacher", root / "prepared", 32, augment_settings(other))
    pd.DataFrame({"text": ["an edited augmented text"]}).to_parquet(root / "logits" / "augmented.parquet")
    with pytest.raises(CacheError, match="augmented.parquet changed"):
        load_cached_logits(root / "logits", root / "teacher", root / "prepared", 32, augment_settings(params))


def test_only_the_distilled_student_sees_augmented_rows(cached):
    from distillery.stages.distill import distill_inputs

    params, root, manifest = cached
    inputs = distill_inputs(params, root / "prepared", root / "teacher", root / "logits")
    assert inputs.augmented_rows == manifest["rows"]["augmented"]
    kd_labels = np.array(inputs.kd_dataset["labels"])
    assert len(kd_labels) == 60 + inputs.transfer_rows + inputs.augmented_rows
    assert (kd_labels[60:] == -100).all() and (kd_labels[:60] >= 0).all()
    assert len(inputs.baseline_dataset) == 60
    # each row with its own label, text and teacher logits: train, transfer, augmented, in that order
    train = pd.read_parquet(root / "prepared" / "train.parquet")
    transfer = pd.read_parquet(root / "prepared" / "transfer.parquet")
    assert kd_labels[:60].tolist() == train["label"].tolist() == list(inputs.baseline_dataset["labels"])
    cached = {part: np.load(root / "logits" / f"{part}.npy") for part in ("train", "transfer", "augmented")}
    np.testing.assert_array_equal(np.array(inputs.kd_dataset["teacher_logits"], dtype=np.float32),
                                  np.concatenate([cached["train"], cached["transfer"], cached["augmented"]]))
    texts = pd.concat([train["text"], transfer["text"], load_augmented(root / "logits")["text"]]).tolist()
    tokenizer = load_tokenizer(str(root / "teacher"), "t")
    for row in (0, 59, 60, len(kd_labels) - inputs.augmented_rows, len(kd_labels) - 1):
        assert inputs.kd_dataset[row]["input_ids"] == tokenizer(texts[row], truncation=True, max_length=32)[
            "input_ids"], row


def test_labelled_rows_keep_each_train_row_with_its_label_and_logits_and_the_rest_join_unlabelled(tmp_path, tiny_bert):
    """distill.labelled_rows with a remainder transfer set: the kept rows (stratified) keep their labels, the other
    train rows join the KD term unlabelled, each with its own cached teacher logits."""
    from distillery.stages.distill import distill_inputs, labelled_subset

    params, _ = cache_teacher_logits(tmp_path, tiny_bert, labelled_rows=21)
    inputs = distill_inputs(params, tmp_path / "prepared", tmp_path / "teacher", tmp_path / "logits")
    train = pd.read_parquet(tmp_path / "prepared" / "train.parquet")
    kept, rest = labelled_subset(train, 21, params.seed)
    assert len(kept) == 21 and len(rest) == 39 and not set(kept) & set(rest)
    assert sorted(train["label"].iloc[kept].value_counts().tolist()) == [7, 7, 7]  # stratified: 20 rows per class
    kd_labels = np.array(inputs.kd_dataset["labels"])
    assert kd_labels[:21].tolist() == train["label"].iloc[kept].tolist() == list(inputs.baseline_dataset["labels"])
    transfer = pd.read_parquet(tmp_path / "prepared" / "transfer.parquet")
    assert inputs.transfer_rows == 39 + len(transfer)  # the unlabelled train rows count as transfer rows
    assert (kd_labels[21:] == -100).all() and len(kd_labels) == 21 + inputs.transfer_rows
    cached = {part: np.load(tmp_path / "logits" / f"{part}.npy") for part in ("train", "transfer")}
    np.testing.assert_array_equal(np.array(inputs.kd_dataset["teacher_logits"], dtype=np.float32),
                                  np.concatenate([cached["train"][kept], cached["train"][rest], cached["transfer"]]))
    tokenizer = load_tokenizer(str(tmp_path / "teacher"), "t")
    order = train["text"].iloc[np.concatenate([kept, rest])].tolist()
    for row in (0, 20, 21, 59):
        assert inputs.kd_dataset[row]["input_ids"] == tokenizer(order[row], truncation=True, max_length=32)[
            "input_ids"], row


def test_augment_settings_are_validated(tmp_path):
    from distillery.config import load_params

    path = tmp_path / "params.yaml"
    path.write_text("distill:\n  augment:\n    p_mask: 1.5\n")
    with pytest.raises(ConfigError, match="distill.augment.p_mask"):
        load_params(path)
    path.write_text("distill:\n  augment:\n    copies: null\n")
    with pytest.raises(ConfigError, match="distill.augment.copies: a value is required"):
        load_params(path)
    path.write_text("distill:\n  augment:\n    seed: 3\n")
    assert load_params(path).distill.augment.seed == 3


def test_a_vocabulary_that_marks_word_starts_gives_only_whole_words():
    """Byte-level BPE marks a word's first piece with "Ġ"; its unmarked tokens are pieces ("errible"), never
    drawn as replacement words. In WordPiece it is the other way round: "##" marks the pieces."""
    class Vocabulary:
        all_special_tokens = ["<s>", "</s>", "<mask>"]

        def __init__(self, tokens):
            self.tokens = tokens

        def get_vocab(self):
            return {token: i for i, token in enumerate(self.tokens)}

    bpe = Vocabulary(["<s>", "</s>", "<mask>", "\u0120terrible", "errible", "\u0120happy", "appy", "\u0120day", "ing"])
    assert replacement_vocabulary(bpe) == ["day", "happy", "terrible"]
    wordpiece = Vocabulary(["[CLS]", "terrible", "##ible", "happy", "##py", "day", "\u2581"])
    assert replacement_vocabulary(wordpiece) == ["day", "happy", "terrible"]


def test_a_small_byte_level_bpe_marking_few_tokens_still_gives_only_whole_words():
    """A user's small byte-level BPE marked 113 of its 600 tokens with "Ġ" (under a quarter), so its pieces were
    drawn as words: 'and concert this as drummer this quite on rummer'. The tokenizer's model decides now."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    pieces = ["rummer", "ption", "ipe", "ot", "ing", "er", "ed", "ly", "al"]
    vocab = {token: i for i, token in enumerate(["<s>", "</s>", "\u0120drum", "\u0120concert", *pieces])}
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>")
    assert replacement_vocabulary(bpe) == ["concert", "drum"]
    # a WordPiece model: its tokens are words unless marked "##", whatever else they start with
    wordpiece_backend = Tokenizer(models.WordPiece(vocab={"[UNK]": 0, "day": 1, "##s": 2, "\u0120odd": 3},
                                                   unk_token="[UNK]"))
    wordpiece = PreTrainedTokenizerFast(tokenizer_object=wordpiece_backend, unk_token="[UNK]")
    assert replacement_vocabulary(wordpiece) == ["day", "odd"]
