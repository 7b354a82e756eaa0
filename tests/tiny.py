"""Tiny offline fixtures: a WordPiece tokenizer + 2-layer BERT built from a config, and a small CSV
with a learnable signal. Nothing here touches the network."""
from __future__ import annotations

import random
import string
from pathlib import Path

import pandas as pd

POSITIVE = ["good", "great", "love", "happy", "excellent", "nice", "wonderful", "fun"]
NEGATIVE = ["bad", "awful", "hate", "sad", "terrible", "boring", "worst", "ugly"]
NEUTRAL = ["the", "car", "drives", "road", "today", "news", "city", "report"]
FILLER = ["a", "it", "is", "was", "this", "that", "very", "so", "and", "we"]


def make_texts(n: int, seed: int = 0) -> pd.DataFrame:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = ["positive", "negative", "neutral"][i % 3]
        vocab = {"positive": POSITIVE, "negative": NEGATIVE, "neutral": NEUTRAL}[label]
        words = [rng.choice(vocab) for _ in range(rng.randint(2, 4))] + \
                [rng.choice(FILLER) for _ in range(rng.randint(1, 6))]
        rng.shuffle(words)
        rows.append({"text": " ".join(words) + f" {i}", "sentiment": label})
    return pd.DataFrame(rows)


def make_csv(path: Path, n: int = 90, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    make_texts(n, seed).to_csv(path, index=False)
    return path


def make_tiny_bert(directory: Path, num_layers: int = 2, hidden: int = 32) -> Path:
    """Save a random tiny BERT (no head) and its tokenizer to ``directory``."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    # A fixed vocabulary (a trained WordPiece vocabulary's order changes between builds, and with it every
    # tiny model's start): the special tokens, each character alone and as a suffix, every word, the numbers.
    words = sorted(set(POSITIVE + NEGATIVE + NEUTRAL + FILLER + ["day", "car", "pair", "its", "long", "first", "which", "number", "comes"]))
    chars = sorted(set(string.ascii_lowercase + string.digits + string.punctuation))
    pieces = special + chars + [f"##{c}" for c in chars] + words + [str(i) for i in range(200)]
    vocab = {piece: i for i, piece in enumerate(dict.fromkeys(pieces))}
    tokenizer = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]",
                                   cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    config = BertConfig(vocab_size=fast.vocab_size, hidden_size=hidden, num_hidden_layers=num_layers,
                        num_attention_heads=2, intermediate_size=2 * hidden, max_position_embeddings=128)
    directory.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = BertModel(config)
    model.save_pretrained(directory)
    fast.save_pretrained(directory)
    return directory


def cache_teacher_logits(root: Path, tiny_bert: Path, **distill):
    """Prepare 120 tiny rows (60 train, the rest as transfer), save a random teacher and cache its logits.

    ``distill`` adds DistillConfig fields (e.g. ``augment=...``). Returns (params, manifest).
    """
    from distillery.config import DataConfig, DistillConfig, Params, StudentConfig, TeacherConfig, TransferSetConfig
    from distillery.stages.prepare import prepare
    from distillery.stages.teacher_logits import teacher_logits
    from distillery.hf import load_tokenizer

    source = root / "data.csv"
    make_texts(120).to_csv(source, index=False)
    params = Params(seed=0, data=DataConfig(source=str(source), label_column="sentiment", max_samples={"train": 60},
                                            min_rows_per_class=1),
                    teacher=TeacherConfig(model=str(tiny_bert), max_length=32), student=StudentConfig(layers=[0, 3]),
                    distill=DistillConfig(transfer_set=TransferSetConfig(source="remainder"), **distill))
    prepare(params, root / "prepared")
    load_classifier(str(tiny_bert), "t", ["negative", "neutral", "positive"]).save_pretrained(root / "teacher")
    load_tokenizer(str(tiny_bert), "t").save_pretrained(root / "teacher")
    return params, teacher_logits(params, root / "teacher", root / "prepared", root / "logits")


def load_classifier(name: str, key: str, labels=None):
    """A sequence classifier through the text-classification task type (as the stages load one)."""
    from distillery.task_types.load import task_type

    return task_type("text_classification").load_model(str(name), key, labels)


def build_student(student_cfg, teacher_model: str, teacher_dir, labels: list, seed: int):
    """(student, tokenizer) from the family ``student_cfg.source`` names, as ``distill`` builds it."""
    from distillery.config import Params, TeacherConfig
    from distillery.students.load import student_family
    from distillery.task_types.load import task_type

    params = Params(teacher=TeacherConfig(model=teacher_model or "bundled:minilm-l6"), student=student_cfg)
    return student_family(student_cfg.source).build(params, task_type("text_classification"), labels,
                                                    Path(teacher_dir), seed)


def make_squad_document(articles: int = 8, paragraphs: int = 3, questions: int = 2, seed: int = 0) -> dict:
    """A SQuAD-format document in the tiny tokenizer's words: each paragraph holds one number, and every
    question asks for it (its gold answers: the number, and the number with the word after it). Every third
    paragraph is long (about 45 words), so at max_length 32 it is cut into several windows."""
    rng = random.Random(seed)
    words = POSITIVE + NEGATIVE + NEUTRAL + FILLER
    data = []
    for a in range(articles):
        paras = []
        for p in range(paragraphs):
            body = [rng.choice(words) for _ in range(45 if p % 3 == 2 else rng.randint(8, 16))]
            number = str(rng.randint(0, 199))
            at = rng.randint(0, len(body) - 2)
            body.insert(at, number)
            context = " ".join(body)
            start = len(" ".join(body[:at])) + (1 if at else 0)
            qas = []
            for q in range(questions):
                answers = [{"text": number, "answer_start": start},
                           {"text": f"{number} {body[at + 1]}", "answer_start": start}]
                qas.append({"id": f"s{seed}-{a}-{p}-{q}", "question": f"which number comes {rng.choice(FILLER)} {q} ?",
                            "answers": answers})
            paras.append({"context": context, "qas": qas})
        data.append({"title": f"article_{a}", "paragraphs": paras})
    return {"data": data, "version": "1.1"}


def make_squad(path: Path, **kwargs) -> Path:
    """Write :func:`make_squad_document` as JSON (gzipped when ``path`` ends in .gz)."""
    import gzip
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(make_squad_document(**kwargs))
    if path.name.endswith(".gz"):
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            handle.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path
