"""The ``export`` stage: ONNX fp32 + int8 for the student (and the teacher, for a fair comparison),
checked against PyTorch on every row of the real test split by the task type's parity check.

The student's int8 recipe (fused or not, dynamic or static, per-channel or not) is chosen on the validation
split by ``distillery.export_recipes``: the fastest candidate that passes the gates there ships.

Gates:
- fp32 parity: the largest absolute output difference must be within ``export.fp32_atol``. If not,
  the stage fails and writes no models, so nothing downstream can ship them.
- int8: if its quality drops more than ``export.int8_max_accuracy_drop`` points below the fp32
  student's, it is marked not deployable (with the reason) and the fp32 model stays deployable.
"""
from __future__ import annotations

from pathlib import Path
from typing import Union

from distillery import export_recipes
from distillery.config import Params
from distillery.errors import DistilleryError
from distillery.files import atomic_dir, read_json, sha256_files, write_json
from distillery.onnx_runtime import LAST_LAYER_KEY, disabled_optimizers, metadata, quantize_int8
from distillery.paths import ONNX_DIR, PREPARED_DIR, REPORTS_DIR
from distillery.prepared import check_trained_on, load_labels, load_split
from distillery.students.load import student_family
from distillery.task_types.load import task_type
from distillery.tokenizer_padding import padding

EXPORTED = ("student", "teacher")


class ParityError(DistilleryError):
    """An exported fp32 model does not reproduce its PyTorch outputs."""


def export(params: Params, models_dir: Union[str, Path] = "models", prepared_dir: Union[str, Path] = PREPARED_DIR,
           out_dir: Union[str, Path] = ONNX_DIR, reports_dir: Union[str, Path] = REPORTS_DIR) -> dict:
    task = task_type(params.task, params)
    test = load_split("test", prepared_dir)
    labels = load_labels(prepared_dir)
    report: dict = {"labels": labels}
    parity_path = Path(reports_dir) / "metrics" / "parity.json"
    for name in EXPORTED:  # run by hand after `prepare`, it scored old models on new splits (parity 0.0)
        model_dir, stage = Path(models_dir) / name, "train_teacher" if name == "teacher" else "distill"
        check_trained_on(read_json(model_dir / "training.json", stage), model_dir, prepared_dir, stage)
    with atomic_dir(out_dir) as scratch:
        for name in EXPORTED:
            model_dir = Path(models_dir) / name
            model = task.load_model(str(model_dir), str(model_dir))
            tokenizer = task.load_featuriser(str(model_dir), str(model_dir))
            training = read_json(model_dir / "training.json", "train_teacher" if name == "teacher" else "distill")
            fp32_path, int8_path = scratch / f"{name}.onnx", scratch / f"{name}.int8.onnx"
            if name == "student":
                student_family(training.get("family", params.student.source)).export_onnx(
                    task, model, tokenizer, fp32_path, params.export.opset)
            else:
                task.export_onnx(model, tokenizer, fp32_path, params.export.opset)
            if name == "student":  # the int8 recipe is chosen on validation (distillery/export_recipes.py)
                recipes = export_recipes.search(task, model, tokenizer, fp32_path, int8_path,
                                                load_split("validation", prepared_dir), training["max_length"],
                                                params.export, params.benchmark.threads)
            else:  # the teacher's int8 is the plain recipe: a reference point, never deployed
                quantize_int8(fp32_path, int8_path)
            print(f"export: {name}: parity of ONNX fp32 and int8 with PyTorch on {len(test):,} test rows"
                  + (" (the teacher's int8 is a reference point, never deployed)" if name == "teacher" else ""),
                  flush=True)  # the longest silent stretch of the stage without it (two minutes by default)
            report[name] = task.parity(model, tokenizer, fp32_path, int8_path, test, training["max_length"],
                                       params.export)
            if name == "student":
                report[name]["recipes"] = recipes
                report[name]["recipe"] = recipes["chosen"]
            # "first_token": the file computes its last layer for the position the head reads, and no other
            report[name]["last_layer"] = metadata(fp32_path, LAST_LAYER_KEY) or "every_position"
            report[name]["size_mb"] = {"fp32": fp32_path.stat().st_size / 1e6, "int8": int8_path.stat().st_size / 1e6}
        failed = [n for n in EXPORTED if not report[n]["fp32"]["passed"]]
        student_int8 = report["student"]["int8"]
        # auto ships no int8 that failed on validation: the test split checks the chosen model, never overrules
        unchosen = params.export.deploy == "auto" and not report["student"]["recipes"].get("searched", True)
        ships_int8 = student_int8["deployable"] and params.export.deploy != "fp32" and not unchosen
        report["deployable"] = "student.int8.onnx" if ships_int8 else "student.onnx"
        report["deploy"] = params.export.deploy
        reason = student_int8["reason"] if not student_int8["deployable"] else (
            "export.deploy is fp32" if params.export.deploy == "fp32" else
            f"no int8 recipe of {len(report['student']['recipes']['candidates'])} passed the gates on validation "
            "(export.deploy: int8 ships it on the test split's gate alone)" if unchosen else None)
        report["int8_not_deployable_reason"] = reason
        report["fp32_parity_passed"] = not failed
        # a failed export leaves the last good parity.json beside the last good models (it describes them) and
        # writes its own report apart, for the error to point at
        failed_path = parity_path.with_name("parity.failed.json")
        problem = None
        if failed:
            worst = report[failed[0]]["fp32"]
            problem = (f"fp32 ONNX parity failed for {', '.join(failed)}: largest output difference "
                       f"{worst['max_abs_logit_diff']:.3g} > export.fp32_atol = {worst['atol']} on the test split")
        elif params.export.deploy == "int8" and not student_int8["deployable"]:
            problem = f"export.deploy is int8 but the int8 student fails its gate ({student_int8['reason']})"
        if problem:
            write_json(failed_path, report)
            raise ParityError(f"{problem}; no ONNX model was written (see {failed_path})"
                              + ("; export.deploy: auto ships fp32 instead" if not failed else ""))
        write_json(parity_path, report)
        failed_path.unlink(missing_ok=True)
        student_dir = Path(models_dir) / "student"
        write_json(scratch / "deployment.json", {
            "deployable": report["deployable"], "int8_deployable": student_int8["deployable"],
            "reason": reason, "labels": labels, "tokenizer": str(student_dir),
            "max_length": read_json(Path(models_dir) / "student" / "training.json")["max_length"],
            # the ONNX Runtime optimizers the deployed file runs without (also in its metadata, which sessions read)
            "onnxruntime_disabled_optimizers": disabled_optimizers(scratch / report["deployable"]),
            # the file this stage checked: register refuses another in its place (changed by hand, then benchmarked)
            "deployable_sha256": sha256_files([scratch / report["deployable"]]),
            # read here, where transformers is loaded already: register serves them without loading it (and torch)
            **({"tokenizer_padding": padding(student_dir)} if (student_dir / "tokenizer.json").is_file() else {}),
            **task.settings()})
    return report


def summary(result: dict) -> str:
    student = result["student"]
    metric = "accuracy" if "accuracy_change_points" in student["int8"] else "f1"  # f1: extractive QA
    return (f"student fp32 parity: max |logit diff| {student['fp32']['max_abs_logit_diff']:.2e}, label agreement "
            f"{student['fp32']['label_agreement_vs_pytorch']:.4f}; int8 label agreement "
            f"{student['int8']['label_agreement_vs_fp32']:.4f}, {metric} change "
            f"{student['int8'][f'{metric}_change_points']:+.2f} points"
            + (f" (standard error {student['int8'][f'{metric}_drop_standard_error_points']:.2f}, "
               f"{student['int8']['rows']} test rows)"
               if f"{metric}_drop_standard_error_points" in student["int8"] else "")
            + ("; its last layer computed for the first token only, all the head reads"
               if student.get("last_layer") == "first_token" else "")
            + f"; deployable: {result['deployable']}"
            + (f" (the int8 student is not deployed: {result['int8_not_deployable_reason']})"
               if result.get("int8_not_deployable_reason") else "")
            + (_recipe_note(student) if "recipes" in student and result["deployable"].endswith(".int8.onnx") else ""))


def _recipe_note(student: dict) -> str:
    recipes = student["recipes"]
    if not recipes.get("searched", True):  # no candidate passed on validation: the plain recipe, gated on test
        return (f" (no int8 recipe of {len(recipes['candidates'])} passed the gates on validation: "
                f"{student['recipe']} written, and the test split's int8 gate decided)")
    return (f" (int8 recipe {student['recipe']}"
            + (f" without ONNX Runtime's {', '.join(recipes['disabled_optimizers'])}"
               if recipes.get("disabled_optimizers") else "")
            + f", chosen on validation from {len(recipes['candidates'])} candidates, "
              f"{sum(bool(c.get('kept')) for c in recipes['candidates'])} passing the gates)")
