"""Task type ``question_answering``: extractive QA in the SQuAD v1.1 style. A question and a context in;
the answer, a span of the context, out.

How rows and features flow through the stages (rows = questions; the model sees features = windows):

- ``prepare`` (:mod:`.reading` reads, :mod:`.rows` checks and splits) writes one row per question, split by article;
- ``featurise`` cuts each row into windows of ``max_length`` tokens, ``question_answering.doc_stride``
  apart (:mod:`.features`), labelled with the first gold answer's token span (CLS when a window misses it);
- ``teacher_logits`` caches ``predict``: start and end logits per WINDOW ``[windows, 2, max_length]``, in
  the order ``featurise`` makes them, keyed like every cache (teacher weights, tokenizer and max_length,
  prepared data; the stride is a params key of the stage); ``distill`` re-featurises the same rows with
  the same tokenizer and settings and checks the window count before pairing windows and cached logits;
- the loss (:mod:`.loss`) is DistilBERT's: ``(1 − alpha) · T² · (KL_start + KL_end)/2 + alpha · span CE``;
- ``answers`` runs the model over the windows and post-processes (:mod:`.postprocess`) them back to one
  answer per row: n-best starts and ends, a maximum answer length, the best span over the row's windows;
  ``metrics`` scores those answers with the official SQuAD v1.1 EM/F1 (:mod:`.squad`);
- ONNX (:mod:`.onnx`) outputs ``start_logits`` and ``end_logits``; the served model (:mod:`.serving`)
  takes ``question`` and ``context`` columns and answers text, character span and score.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from distillery.hf import quiet_from_pretrained
from distillery.task_types.base import TaskType
from distillery.task_types.question_answering import features, loss, onnx, postprocess
from distillery.task_types.question_answering.features import ANSWER_TEXTS, CONTEXT, QUESTION
from distillery.task_types.question_answering.squad import squad_metrics, squad_scores


class QuestionAnswering(TaskType):
    name = "question_answering"
    primary_metric, secondary_metric = "f1", "exact_match"
    teacher_outputs = ("start_logits", "end_logits")
    model_input_unit = "windows"
    teacher_key = features.TEACHER_LOGITS

    def __init__(self, doc_stride: int = 128, max_answer_length: int = 30, n_best_size: int = 20,
                 max_length: int = 384):
        self.doc_stride, self.max_answer_length, self.n_best_size = doc_stride, max_answer_length, n_best_size
        self.max_length = max_length  # the teacher's: the length of the cached logits

    def configured(self, params) -> "QuestionAnswering":
        cfg = params.question_answering
        return QuestionAnswering(cfg.doc_stride, cfg.max_answer_length, cfg.n_best_size, params.teacher.max_length)

    def settings(self) -> dict:
        return {"doc_stride": self.doc_stride, "max_answer_length": self.max_answer_length,
                "n_best_size": self.n_best_size}

    # --- featurising ---------------------------------------------------------------------------
    def augment_columns(self, frame):
        """The question is perturbed; its context is carried over whole, for the teacher to read anew."""
        return [QUESTION, CONTEXT], [QUESTION]

    def featurise(self, frame, tokenizer, max_length, teacher_outputs=None):
        return features.tokenize(frame, tokenizer, max_length, self.doc_stride, teacher_outputs)

    def collator(self, tokenizer):
        return features.Collator(tokenizer)

    # --- the model head ------------------------------------------------------------------------
    def load_model(self, name: str, key: str, labels=None):
        from transformers import AutoModelForQuestionAnswering

        return quiet_from_pretrained(AutoModelForQuestionAnswering, name, key)

    def head_from_config(self, config, labels):
        from transformers import AutoModelForQuestionAnswering

        config.num_labels = 2  # start and end
        return AutoModelForQuestionAnswering.from_config(config)

    # --- the teacher's outputs -----------------------------------------------------------------
    def predict(self, model, tokenizer, frame, max_length, batch_size) -> np.ndarray:
        logits, _ = features.predict_features(model, tokenizer, frame, max_length, self.doc_stride, batch_size,
                                              columns_too=False)
        return logits

    def empty_outputs(self, num_labels: int) -> np.ndarray:
        return np.zeros((0, 2, self.max_length), dtype=np.float32)

    # --- the loss terms --------------------------------------------------------------------------
    def outputs_of(self, model_output):
        import torch

        return torch.stack([model_output.start_logits, model_output.end_logits], dim=1)

    def supervised_loss(self, student_outputs, labels):
        return loss.span_loss(student_outputs, labels)

    def distillation_loss(self, student_outputs, teacher_outputs, labels, alpha, temperature, kind):
        if kind != "kl":
            raise ValueError(f"question answering distils with kl, not {kind!r}")
        return loss.span_distillation_loss(student_outputs, teacher_outputs, labels, alpha, temperature)

    # --- post-processing and metrics -------------------------------------------------------------
    answer_unit = "questions"

    def same_answers(self, tokenizer, frame, max_length, reference, found) -> np.ndarray:
        """Whether two models' window outputs (``predict``'s, in ``frame``'s windows) give each question the same
        answer text, post-processed as ``answers`` does. Not each window's top start and end: a window without the
        answer points both at CLS, which post-processing never chooses, so most windows agreed whatever the
        model (a teacher that had learnt nothing passed the int8 check with 100%)."""
        frame = frame.reset_index(drop=True)
        offsets, examples = [], []
        for _, columns in features._chunked_features(tokenizer, frame, max_length, self.doc_stride):
            offsets.extend(columns["offset_mapping"])
            examples.extend(columns["example_index"])
        contexts = frame[CONTEXT].astype(str).tolist()
        texts = [[answer["text"] for answer in postprocess.answers(
            logits[:, 0], logits[:, 1], offsets, examples, contexts, self.n_best_size, self.max_answer_length)]
            for logits in (reference, found)]
        return np.asarray([a == b for a, b in zip(*texts)], dtype=bool)

    def answers(self, model, tokenizer, frame, max_length, batch_size) -> np.ndarray:
        """The predicted answer text of every row (object array), in the frame's order."""
        frame = frame.reset_index(drop=True)
        logits, columns = features.predict_features(model, tokenizer, frame, max_length, self.doc_stride,
                                                    batch_size)
        found = postprocess.answers(logits[:, 0], logits[:, 1], columns["offset_mapping"], columns["example_index"],
                                    frame[CONTEXT].astype(str).tolist(), self.n_best_size, self.max_answer_length)
        return np.asarray([a["text"] for a in found], dtype=object)

    def metrics(self, outputs, frame: pd.DataFrame, labels) -> dict:
        return squad_metrics(list(outputs), [list(g) for g in frame[ANSWER_TEXTS]])

    def evaluation_report(self, outputs, frame: pd.DataFrame, labels) -> dict:
        """EM/F1, no per-class figures, and per question its gold (first) and predicted answer as the
        ``confusion`` rows (``actual``, ``predicted``) with EM and F1."""
        golds = [list(g) for g in frame[ANSWER_TEXTS]]
        scores = squad_scores(list(outputs), golds)
        table = pd.DataFrame({"id": frame[features.ID].tolist(), "question": frame[QUESTION].tolist(),
                              "actual": [g[0] for g in golds], "predicted": list(outputs),
                              "exact_match": scores["exact_match"], "f1": scores["f1"]})
        return {"metrics": squad_metrics(list(outputs), golds), "per_class": {}, "plots": {"confusion": table}}

    def trainer_metrics(self, eval_pred) -> dict:
        raise NotImplementedError("question answering scores questions, not windows: use validation_metrics")

    def validation_metrics(self, eval_dataset):
        """EM/F1 on the validation questions from the Trainer's window logits (rows found by feature index)."""
        offsets, examples = list(eval_dataset["offset_mapping"]), [int(e) for e in eval_dataset["example_index"]]
        contexts = dict(zip(examples, eval_dataset[CONTEXT]))
        golds = {e: list(g) for e, g in zip(examples, eval_dataset["gold_answers"])}
        order = sorted(contexts)

        def compute(eval_pred) -> dict:
            starts, ends = eval_pred.predictions[:2]
            index = np.asarray(eval_pred.label_ids)[:, 2]  # the window each prediction row belongs to
            position = {int(e): k for k, e in enumerate(order)}
            found = postprocess.answers(list(starts), list(ends), [offsets[i] for i in index],
                                        [position[int(examples[i])] for i in index], [contexts[e] for e in order],
                                        self.n_best_size, self.max_answer_length)
            return squad_metrics([a["text"] for a in found], [golds[e] for e in order])

        return compute

    # --- ONNX ------------------------------------------------------------------------------------
    def export_onnx(self, model, tokenizer, path, opset):
        return onnx.export_onnx(model, tokenizer, path, opset)

    def parity(self, model, tokenizer, fp32_path, int8_path, frame, max_length, export_cfg) -> dict:
        return onnx.parity(model, tokenizer, fp32_path, int8_path, frame, max_length, self.doc_stride,
                           self.n_best_size, self.max_answer_length, export_cfg)

    def benchmark_inputs(self, tokenizer, frame, batch, length) -> dict:
        return features.padded_batch(tokenizer, frame, batch, length)


TASK_TYPE = QuestionAnswering()
