"""What the CLI and the tables print for small models and for a registry without a champion."""
import numpy as np
import pytest

from distillery.reports import memory, parameters
from distillery.stages.register import summary


def test_a_small_models_parameters_are_not_shown_as_zero_millions():
    # the MNIST primer's student has 3.2K parameters: it was printed as "0.0M"
    assert [parameters(n) for n in (22_713_219, 15_606_147, 3_194, 850, 0)] == ["22.7M", "15.6M", "3.2K", "850", "0"]


def test_a_tiny_models_added_memory_is_under_one_mb_not_zero():
    # the benchmark's table printed "0" for the tiny models of the tests and the primer
    assert [memory(mb) for mb in (0.0, 0.4, 1.0, 412.6)] == ["<1", "<1", "1", "413"]


def test_the_registry_listing_gives_a_tiny_models_size_not_zero():
    """`distillery models` printed a 0.0175 MB model as 0.0 MB (the benchmark table too)."""
    from distillery.registry.listing import models_table

    rows = [{"version": str(i), "aliases": [], "created": "-", "metrics": {"accuracy": 0.5}, "retention": 1.0,
             "p95_ms": 1.0, "size_mb": size, "gate": "passed", "test_split": "abcd1234"}
            for i, size in enumerate((0.0175, 55.43, None), 1)]
    table = models_table({"model_name": "m", "tracking_uri": "sqlite:///x.db", "versions": rows})
    assert [line.split(" | ")[6] for line in table.splitlines()[4:]] == ["0.0175", "55.4", "-"]


def test_register_summary_without_a_champion_says_so():
    result = {"checks": [{"passed": False, "detail": "retention 0.90 < 0.97"}], "model_name": "students",
              "version": "1", "decision": "rejected", "alias": "challenger", "champion_after": None,
              "mlflow_run_id": "r1", "tracking_uri": "sqlite:///mlruns/mlflow.db"}
    assert summary(result).splitlines()[0] == ("students v1: rejected (alias challenger); no champion yet; "
                                               "failed: retention 0.90 < 0.97")
    assert "champion is v3;" in summary(dict(result, champion_after="3"))


def test_the_model_card_says_which_columns_the_served_model_reads(tmp_path):
    """A user whose data had a `body` column asked the served model with `body` and was refused: the card now
    says the served model reads `text`, and the data's own names of its columns where they differ."""
    from distillery.config import Params, load_params
    from distillery.model_card import model_card

    card = model_card(Params(), {"labels": ["a", "b"]}, {}, {}, {"rows": {"test": 2}}, "student.int8.onnx",
                      inputs=["text"])
    line = next(line for line in card.splitlines() if line.startswith("**Student:**"))
    assert line.endswith("Served as `student.int8.onnx` (ONNX), from a frame with the column `text` (the data's own "
                         "names).")
    (tmp_path / "pairs.yaml").write_text("data: {text_column: body, text_pair_column: text_pair}\n")
    pairs = load_params(tmp_path / "pairs.yaml")
    card = model_card(pairs, {"labels": ["a", "b"]}, {}, {}, {"rows": {"test": 2}}, "student.int8.onnx",
                      inputs=["text", "text_pair"])
    line = next(line for line in card.splitlines() if line.startswith("**Student:**"))
    assert line.endswith("Served as `student.int8.onnx` (ONNX), from a frame with the columns `text`, `text_pair` or "
                         "the data's own name `body`, read first when a request holds it.")


def test_the_export_summary_says_how_many_int8_recipes_passed_of_those_tried():
    from distillery.stages.export import summary as export_summary

    candidates = [{"recipe": name, "kept": kept, "chosen": name == "dynamic"} for name, kept in
                  (("fused_dynamic", False), ("fused_dynamic_per_channel", False), ("dynamic", True),
                   ("dynamic_per_channel", True))]
    result = {"deployable": "student.int8.onnx", "student": {
        "fp32": {"max_abs_logit_diff": 1e-6, "label_agreement_vs_pytorch": 1.0},
        "int8": {"label_agreement_vs_fp32": 0.99, "accuracy_change_points": -0.2},
        "recipe": "dynamic", "recipes": {"candidates": candidates, "disabled_optimizers": []}}}
    assert export_summary(result).endswith("(int8 recipe dynamic, chosen on validation from 4 candidates, 2 passing "
                                           "the gates)")
    # none passed on a small validation split: the plain recipe was written and the test split's gate decided; the
    # line said "int8 recipe dynamic, chosen on validation from 4 candidates, 0 passing the gates"
    for c in candidates:
        c.update(kept=False, chosen=False)
    result["student"]["recipes"]["searched"] = False
    assert export_summary(result).endswith("; deployable: student.int8.onnx (no int8 recipe of 4 passed the gates on "
                                           "validation: dynamic written, and the test split's int8 gate decided)")
    # int8 passed on validation, failed on test: fp32 ships, and the line said "int8 recipe dynamic, chosen ..."
    result.update(deployable="student.onnx", int8_not_deployable_reason="f1 drop 1.06 points > 1.0")
    result["student"]["recipes"]["searched"] = True
    assert export_summary(result).endswith("; deployable: student.onnx (the int8 student is not deployed: f1 drop "
                                           "1.06 points > 1.0)")


def test_the_results_table_of_a_small_test_split_says_its_differences_are_mostly_noise():
    """On 40 rows a newcomer read "distillation gain over the baseline: +37.5 accuracy points" as a finding; the next
    seed said +45.0, another split -3.8."""
    from distillery.reports import results_table

    model = {"accuracy": 0.5, "macro_f1": 0.5, "roc_auc": None, "parameters": 1000, "train_seconds": 1.0}
    results = {"teacher": model, "student": model, "baseline": model, "student_accuracy_retention": 1.0,
               "student_minus_baseline_accuracy": 0.375, "student_minus_baseline_macro_f1": 0.3, "test_rows": 40}
    assert "One test row is 2.5 points here: one seed's differences on so few rows are mostly noise; `python -m " \
           "distillery kd_gain` measures the gain over seeds" in results_table(results)
    assert "noise" not in results_table({**results, "test_rows": 3000})
    # extractive QA's table (F1 and exact match) says the same of its few questions
    qa_model = {"f1": 0.5, "exact_match": 0.4, "parameters": 1000, "train_seconds": 1.0}
    qa = {"teacher": qa_model, "student": qa_model, "baseline": qa_model, "student_f1_retention": 0.75,
          "student_minus_baseline_f1": 0.1, "student_minus_baseline_exact_match": 0.05, "test_rows": 37}
    table = results_table(qa, "f1", "exact_match")
    assert "(test split, 37 rows). One test row moves a score by up to 2.7 points here: one seed's differences on " \
           "so few rows are mostly noise" in table
    assert "noise" not in results_table({**qa, "test_rows": 3000}, "f1", "exact_match")


def test_a_distilled_student_clearly_below_its_baseline_is_called_out():
    """A bag-of-embeddings student at 38.3% against its baseline's 75.6% was summed up as "distillation gain over the
    baseline: -37.2 accuracy points" in the middle of a sentence."""
    from distillery.reports import results_table

    model = {"accuracy": 0.5, "macro_f1": 0.5, "roc_auc": None, "parameters": 1000, "train_seconds": 1.0}
    results = {"teacher": model, "student": model, "baseline": model, "student_accuracy_retention": 1.0,
               "student_minus_baseline_accuracy": -0.372, "student_minus_baseline_macro_f1": -0.3, "test_rows": 3000}
    assert "\n\nWarning: the distilled student is 37.2 accuracy points BELOW its labels-only baseline: distillation " \
           "did not help on this run." in results_table(results)
    assert "Warning" not in results_table({**results, "student_minus_baseline_accuracy": -0.009})  # within a point
    qa_model = {"f1": 0.5, "exact_match": 0.4, "parameters": 1000, "train_seconds": 1.0}
    qa = {"teacher": qa_model, "student": qa_model, "baseline": qa_model, "student_f1_retention": 0.75,
          "student_minus_baseline_f1": -0.05, "student_minus_baseline_exact_match": 0.05, "test_rows": 3000}
    assert "Warning: the distilled student is 5.0 F1 points BELOW" in results_table(qa, "f1", "exact_match")


def test_a_teacher_below_the_labels_only_baseline_is_named_as_the_cause():
    """A scratch image teacher at 33.3% against the baseline's 81.5%: the card said the student "keeps 177.8% of the
    teacher's accuracy", and the warning blamed the student's learning rate, alpha and temperature."""
    from distillery.reports import results_table

    def scored(accuracy):
        return {"accuracy": accuracy, "macro_f1": accuracy, "roc_auc": None, "parameters": 1000, "train_seconds": 1.0}

    results = {"teacher": scored(0.333), "student": scored(0.593), "baseline": scored(0.815),
               "student_accuracy_retention": 1.778, "student_minus_baseline_accuracy": -0.222,
               "student_minus_baseline_macro_f1": -0.222, "test_rows": 3000}
    table = results_table(results)
    assert "\n\nWarning: the teacher is 48.2 accuracy points BELOW the labels-only baseline: it has less to teach" \
           in table and "Fix the teacher first" in table
    assert "distillation did not help" not in table  # the student's settings are not the cause to chase
    assert "teacher_*.csv. The distilled student is 22.2 accuracy points below the baseline too." in table
    # a teacher within a point of the baseline leaves the student's own warning
    fair = {**results, "teacher": scored(0.810), "student_accuracy_retention": 0.732}
    assert "the teacher is" not in results_table(fair) and "BELOW its labels-only baseline" in results_table(fair)


def test_the_model_card_names_its_version_and_the_champion():
    """After `dvc exp run -S distill.alpha=0.3` reports/model_card.md described the rejected version 4 without a word
    of it, while version 3 stayed the champion."""
    from distillery.config import Params
    from distillery.model_card import model_card

    gate = {"model_name": "reviews-student", "version": "4", "decision": "rejected", "alias": "challenger",
            "champion_after": "3", "checks": []}
    card = model_card(Params(), {"labels": ["a", "b"]}, {}, {}, {"rows": {"test": 2}}, "student.int8.onnx", gate)
    lines = card.splitlines()
    now = " `python -m distillery models` gives the registry as it is now."
    assert lines[0] == "# Model card: Distillery student" and lines[2] == (
        "**This model:** `reviews-student` version 4, rejected (alias `challenger`) when registered; the champion was "
        "then version 3." + now)
    # a card is what its run left: after `dvc exp apply` of an earlier experiment, a trial read "it is the champion"
    # of a version a later run had replaced, so it says "then" and where to look now
    promoted = model_card(Params(), {"labels": ["a", "b"]}, {}, {}, {"rows": {"test": 2}}, "student.int8.onnx",
                          {**gate, "decision": "promoted", "alias": "champion", "champion_after": "4"})
    assert promoted.splitlines()[2].endswith("promoted (alias `champion`) when registered; it was then the champion."
                                             + now)
    first = model_card(Params(), {"labels": ["a", "b"]}, {}, {}, {"rows": {"test": 2}}, "student.int8.onnx",
                       {**gate, "version": "1", "champion_after": None})
    assert first.splitlines()[2].endswith("there was no champion yet." + now)


def test_the_model_card_gives_the_recipe_that_ran_augmentation_hidden_loss_and_labelled_rows_included(tmp_path):
    """A trial's card left out the augmented copies and the hidden-state loss the student trained with, and said
    "learnt labels from 100,000 training rows; ... the teacher's outputs on the rest" of a 120-row split."""
    from distillery.config import load_params
    from distillery.model_card import model_card

    path = tmp_path / "params.yaml"
    path.write_text("distill: {labelled_rows: 100000, augment: {copies: 2}, hidden_loss: {weight: 1.5}, "
                    "transfer_set: {source: remainder}}\n")
    report = {"rows": {"train": 120, "test": 2}, "transfer_rows": 30}

    def card(trained):
        lines = model_card(load_params(path), {"labels": ["a", "b"]}, {}, {}, report, "student.int8.onnx",
                           trained=trained).splitlines()
        return next(line for line in lines if line.startswith("**Data:**")), \
            next(line for line in lines if line.startswith("**Student:**"))

    data, student = card({"labelled_rows": 120, "augmented_rows": 240})
    assert data.endswith("Transfer set: `remainder`, 30 rows. The students learnt labels from all 120 training rows "
                         "(distill.labelled_rows 100,000 is no fewer)."), data
    assert "distilled with kl loss, alpha 0.5, temperature 2.0, on 2 augmented copies per training text (240 rows "\
           "labelled by the teacher), with a hidden-state MSE of weight 1.5 against the teacher's layers." in student
    # a cap below the split: the rows the students had, and the rest in the KD term
    data, _ = card({"labelled_rows": 100, "augmented_rows": 200})
    assert data.endswith("The students learnt labels from 100 training rows; the distilled student also learnt the "
                         "teacher's outputs on the rest."), data
    path.write_text("distill: {loss: mse}\n")
    assert card(None)[1].startswith("**Student:** layers [0, 5] from pretrained, distilled with mse loss on logits, "
                                    "alpha 0.5. Served"), card(None)[1]


def test_the_model_card_describes_an_image_model_and_what_its_student_learnt_from(tmp_path):
    """An image model's card said "text classification", "Inputs longer than 64 tokens are truncated", a teacher
    "fine-tuned" from scratch, a transfer set of "up to 20000 rows" where none was read, and a 0.02 MB file as 0.0."""
    from distillery.config import load_params
    from distillery.model_card import model_card

    image, pairs = tmp_path / "image.yaml", tmp_path / "pairs.yaml"
    image.write_text("task: image_classification\nstudent: {source: mlp}\nteacher: {model: 'scratch:cnn'}\n"
                     "distill: {labelled_rows: 800}\n")
    pairs.write_text("data: {text_pair_column: hypothesis}\ndistill: {transfer_set: {source: remainder}}\n")
    params = load_params(image)
    benchmark = {"headline": {"cell": "b1"}, "models": {"student_onnx_int8": {
        "size_mb": 0.0213, "cells": {"b1": {"p50_ms": 0.01, "p95_ms": 0.02}}}}}
    card = model_card(params, {"labels": ["0", "1"]}, {}, benchmark, {"rows": {"test": 2}, "transfer_rows": 0},
                      "student.int8.onnx").splitlines()
    assert "**Task:** image classification into 2 classes: 0, 1." in card
    assert "**Teacher:** `scratch:cnn`, trained from scratch for 2 epochs." in card
    data = next(line for line in card if line.startswith("**Data:**"))
    assert data.endswith("Transfer set: none. The students learnt labels from 800 training rows; the rest were not "
                         "used by the students."), data
    image.write_text(image.read_text().replace("{labelled_rows: 800}", "{labelled_rows: 800, transfer_set: {source: "
                                                                         "remainder}}"))
    primer = model_card(load_params(image), {"labels": ["0", "1"]}, {}, {}, {"rows": {"test": 2}, "transfer_rows": 0},
                        "student.int8.onnx").splitlines()
    assert next(line for line in primer if line.startswith("**Data:**")).endswith(
        "Transfer set: `remainder`, 0 rows. The students learnt labels from 800 training rows; the distilled student "
        "also learnt the teacher's outputs on the rest.")
    # a trial read "0 rows" beside a student that learnt from 72 unlabelled rows: the training rows beyond the cap
    primer = model_card(load_params(image), {"labels": ["0", "1"]}, {}, {}, {"rows": {"test": 2}, "transfer_rows": 0},
                        "student.int8.onnx", trained={"labelled_rows": 800, "transfer_rows": 72}).splitlines()
    assert next(line for line in primer if line.startswith("**Data:**")).endswith(
        "the distilled student also learnt the teacher's outputs on the rest (72 unlabelled rows in all, with the "
        "transfer set's).")
    assert "| student_onnx_int8 | 0.01 | 0.02 | 0.0213 |" in card
    assert not [line for line in card if "tokens" in line], card
    pairs = model_card(load_params(pairs), {"labels": ["a", "b"]}, {}, {},
                       {"rows": {"test": 2}, "transfer_rows": 12345, "source": "data.files {train: a.csv, test: b.csv}"},
                       "student.int8.onnx").splitlines()
    # the data prepare read (data.files here), not data.source's unused default
    assert next(line for line in pairs if line.startswith("**Data:**")).startswith(
        "**Data:** `data.files {train: a.csv, test: b.csv}`; rows per split:")
    assert "**Task:** text-pair classification into 2 classes: a, b." in pairs
    assert "- Inputs longer than 64 tokens are truncated." in pairs
    assert next(line for line in pairs if line.startswith("**Data:**")).endswith("Transfer set: `remainder`, 12,345 rows.")


def test_prepare_summary_names_the_main_rejection_and_the_near_copies():
    """A forgotten class in data.labels dropped 297 rows (20% of the data) as "rejected 297", and 6 near copies
    dropped went unsaid beside "duplicates dropped 0"."""
    from distillery.stages.prepare import summary as prepare_summary

    report = {"rows": {"train": 10}, "class_counts": {"train": {"a": 5, "b": 5}}, "transfer_rows": 0,
              "rows_rejected": 299, "rejected_by_reason": {"unknown label '5'": 297, "empty text": 2},
              "duplicates_dropped": {}, "near_copies_dropped": {"train": 3, "transfer": 3}}
    assert prepare_summary(report).splitlines()[-1] == (
        "rejected 299 (mostly unknown label '5': 297; every one in rejected.csv), duplicates dropped 0, near copies "
        "dropped 6 (data.leak_check)")
    capped = {**report, "rows_over_cap": {"train": 1200}}  # a user's own file cut short is said
    assert prepare_summary(capped).splitlines()[0] == "     train:     10 rows (a 50%, b 50%), capped by " \
        "data.max_samples.train (1,200 more)"
    spread = {**report, "rows_over_cap": {}, "rows_rejected": 3, "near_copies_dropped": {},
              "rejected_by_reason": {"empty text": 1, "missing label": 1, "unknown label '5'": 1}}
    assert prepare_summary(spread).splitlines()[-1] == (  # one of each reason is not "mostly" one of them
        "rejected 3 (most often empty text: 1; every one in rejected.csv), duplicates dropped 0")
    clean = {**report, "rows_rejected": 0, "rejected_by_reason": {}, "near_copies_dropped": {}}
    assert prepare_summary(clean).splitlines()[-1] == "rejected 0, duplicates dropped 0"


def test_one_epoch_is_not_one_epochs(tmp_path):
    from distillery.announce import describe
    from distillery.config import load_params

    path = tmp_path / "params.yaml"
    path.write_text("teacher: {train: {epochs: 1}}\ndistill: {train: {epochs: 3}}\n")
    params = load_params(path)
    assert describe("train_teacher", params, tmp_path).endswith(", 1 epoch")
    assert ", 3 epochs, then the same student" in describe("distill", params, tmp_path)


def test_a_model_that_gives_every_test_row_one_label_is_called_out():
    """A student trained at the default learning rate on 600 rows answered "1" for every row, loss stuck at ln 5;
    evaluate said nothing and only the gate refused it."""
    from distillery.reports import results_table

    def model(matrix):
        return {"accuracy": 0.5, "macro_f1": 0.3, "roc_auc": None, "parameters": 1000, "train_seconds": 1.0,
                "confusion_matrix": matrix}

    results = {"labels": ["1", "2", "3"], "teacher": model([[5, 1, 0], [1, 5, 0], [0, 0, 6]]),
               "student": model([[6, 0, 0], [6, 0, 0], [6, 0, 0]]), "baseline": model([[0, 6, 0], [0, 6, 0], [0, 6, 0]]),
               "student_accuracy_retention": 1.0, "student_minus_baseline_accuracy": 0.0,
               "student_minus_baseline_macro_f1": 0.0, "test_rows": 3000}
    table = results_table(results)
    assert "Warning: the student answers '1' for every test row: its training collapsed to the one label" in table
    assert "Warning: the baseline answers '2' for every test row" in table and "the teacher answers" not in table


def test_a_qa_models_card_says_how_long_questions_and_contexts_are_read(tmp_path):
    """The card said "questions are not cut" (a question keeps its first max_length - doc_stride - 4 tokens) and
    called a QA model's answers its labels."""
    from distillery.config import load_params
    from distillery.model_card import model_card

    path = tmp_path / "qa.yaml"
    path.write_text("task: question_answering\nteacher: {max_length: 256, train: {metric_for_best_model: f1}}\n"
                    "student: {max_length: 256}\ndistill: {train: {metric_for_best_model: f1}}\n"
                    "question_answering: {doc_stride: 96}\nregister: {gate: {metric: f1}}\n")
    card = model_card(load_params(path), {}, {"student": {"int8": {"label_agreement_vs_fp32": 0.987}}}, {},
                      {"rows": {"test": 2}}, "student.onnx").splitlines()
    assert "- Contexts longer than 256 tokens (with the question) are read in windows overlapping by 96 tokens; a " \
           "question keeps at most its first 156 tokens." in card
    assert any(line.startswith("- int8 changes 1.30% of the fp32 student's answers on the test split") for line in card)


def test_a_model_run_logs_the_validation_figures_of_the_epoch_it_kept(tmp_path):
    """A trial: a nested run's eval_* metrics were the last epoch's (MLflow shows a series' last value), while the
    saved baseline was epoch 2's, scoring 0.6957 where the run said 0.6522."""
    import json

    from distillery.registry.pipeline_runs import best_epoch

    (tmp_path / "reports/curves").mkdir(parents=True)
    (tmp_path / "reports/curves/baseline_eval.csv").write_text(
        "epoch,step,loss,accuracy,roc_auc\n1.0,10,0.9,0.5,0.7\n2.0,20,0.8,0.6957,0.8333\n3.0,30,0.7,0.6957,0.9\n"
        "4.0,40,0.6,0.6522,1.0\n")
    (tmp_path / "models/baseline").mkdir(parents=True)
    (tmp_path / "models/baseline/training.json").write_text(json.dumps({"best_validation": {"accuracy": 0.6957}}))
    # the first of two equal epochs: the Trainer keeps an epoch only when it beats the best so far
    assert best_epoch("baseline", tmp_path) == {"best_epoch": 2.0, "best_eval_loss": 0.8, "best_eval_accuracy": 0.6957,
                                                "best_eval_roc_auc": 0.8333}
    assert best_epoch("student", tmp_path) == {}  # no files: nothing claimed


@pytest.mark.parametrize("seconds, said", [
    ((2.0, 0.4), "distilled student 2s, baseline 0s; both trainings were too short to compare their time per "
                 "example (under 30s)"),
    ((104.0, 7.0), "distilled student 104s, baseline 7s; the baseline training was too short to compare their time "
                   "per example (under 30s)"),  # a trial's QA run: "too short" of the 104 s one too, it read
    ((120.0, 40.0), "distilled student 120s, baseline 40s; time per example, distilled / baseline: 0.98"),
])
def test_the_distill_summary_gives_the_time_ratio_only_for_trainings_long_enough_to_time(seconds, said):
    """A trial: on tiny data the printed ratio swung from 0.14 to 40.9 between runs of the same settings."""
    from distillery.stages.distill import summary as distill_summary

    result = {"student": {"train_seconds": seconds[0]}, "baseline": {"train_seconds": seconds[1]},
              "time_ratio_per_example": 0.98}
    assert distill_summary(result) == said


def test_a_teacher_barely_better_than_one_label_for_every_row_is_called_out():
    """SNLI at a trial's tiny size: the teacher scored 35.0% on 200 rows of three classes where one label alone
    scores 34.0%, and evaluate said "Student keeps 101.4% of the teacher's accuracy" without a word."""
    from distillery.reports import results_table

    def model(matrix):
        return {"accuracy": np.trace(np.asarray(matrix)) / np.sum(matrix), "macro_f1": 0.3, "roc_auc": None,
                "parameters": 1000, "train_seconds": 1.0, "confusion_matrix": matrix}

    students = {"student": model([[40, 14, 14], [40, 16, 10], [40, 10, 16]]),
                "baseline": model([[40, 14, 14], [40, 14, 12], [40, 12, 14]]),
                "student_accuracy_retention": 1.0, "student_minus_baseline_accuracy": 0.0,
                "student_minus_baseline_macro_f1": 0.0, "test_rows": 200}
    weak = {"labels": ["entailment", "neutral", "contradiction"],
            "teacher": model([[40, 14, 14], [40, 15, 11], [40, 11, 15]]), **students}
    assert weak["teacher"]["accuracy"] == 0.35
    assert ("Warning: the teacher's accuracy (35.0%) is within 6.7 points (two standard errors on 200 rows) of "
            "answering 'entailment' for every test row (34.0%): by accuracy it has barely learnt the task") \
        in results_table(weak)
    # a teacher clearly above that floor: 45.0% against 34.0%, 7.0 points of margin
    clear = dict(weak, teacher=model([[40, 14, 14], [30, 25, 11], [30, 11, 25]]))
    assert clear["teacher"]["accuracy"] == 0.45 and "barely learnt" not in results_table(clear)
    # below that floor, said as below; a test split of one label has no floor to be near
    below = dict(weak, teacher=model([[20, 24, 24], [30, 15, 21], [30, 21, 15]]))
    assert below["teacher"]["accuracy"] == 0.25
    assert "the teacher's accuracy (25.0%) is 9.0 points BELOW answering 'entailment' for every test row (34.0%)" \
        in results_table(below)
    one_label = dict(weak, teacher=model([[190, 6, 4], [0, 0, 0], [0, 0, 0]]))
    assert "barely learnt" not in results_table(one_label)


def test_the_model_card_describes_the_student_as_trained_without_importing_its_family():
    """register wrote the card's student line through the family's module, and so imported torch (about 4 s of a
    13 s register) for one line of text: distill records it in training.json, and the card reads it from there. A
    training.json from before the record still gets the line, from params.yaml."""
    import subprocess
    import sys

    code = """
import sys
from distillery.config import Params
from distillery.model_card import model_card
card = model_card(Params(), {"labels": ["a", "b"]}, {}, {}, {"rows": {"test": 2}}, "student.int8.onnx",
                  trained={"description": "layers [0, 5] from pretrained, as trained"})
print(next(line for line in card.splitlines() if line.startswith("**Student:**")))
print(sorted(m for m in ("torch", "transformers") if m in sys.modules))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    line, loaded = result.stdout.strip().splitlines()[-2:]
    assert line.startswith("**Student:** layers [0, 5] from pretrained, as trained, distilled with") and loaded == "[]"
    from distillery.config import Params
    from distillery.model_card import model_card

    older = model_card(Params(), {"labels": ["a", "b"]}, {}, {}, {"rows": {"test": 2}}, "student.int8.onnx",
                       trained={})
    assert f"**Student:** layers {list(Params().student.layers)} from {Params().student.init}, distilled" in older
