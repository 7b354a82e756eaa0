"""`train.precision`: bf16 trains under bfloat16 autocast and saves fp32 weights; auto follows the hardware."""
import dataclasses

import pytest
import torch

from distillery.config import TrainConfig
from distillery.hf import load_tokenizer
from distillery.task_types.load import task_type
from tiny import load_classifier, make_texts

TASK = task_type("text_classification")
LABELS = ["negative", "neutral", "positive"]


@pytest.mark.parametrize("avx512_bf16, amx, expected", [(False, False, "fp32"), (True, False, "bf16"),
                                                        (False, True, "bf16")])
def test_auto_is_bf16_only_where_the_cpu_computes_it_natively(monkeypatch, avx512_bf16, amx, expected):
    from distillery import training

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    assert training.resolved_precision(TrainConfig(precision="auto")) == expected
    # an explicit choice is kept whatever the hardware
    assert training.resolved_precision(TrainConfig(precision="fp32")) == "fp32"
    assert training.resolved_precision(TrainConfig(precision="bf16")) == "bf16"


def test_a_bad_precision_is_refused(tmp_path):
    from distillery.config import load_params
    from distillery.errors import ConfigError

    path = tmp_path / "params.yaml"
    path.write_text("teacher:\n  train:\n    precision: fp16\n")
    with pytest.raises(ConfigError, match="teacher.train.precision"):
        load_params(path)


@pytest.mark.parametrize("precision, dtype", [("fp32", torch.float32), ("bf16", torch.bfloat16)])
def test_training_runs_its_matrix_products_in_the_precision_and_saves_fp32(tiny_bert, tmp_path, precision, dtype):
    from safetensors.torch import load_file

    from distillery.task_types.text_classification.features import tokenize
    from distillery.training import fit

    tokenizer = load_tokenizer(str(tiny_bert), "t")
    model = load_classifier(str(tiny_bert), "t", LABELS)
    seen = []
    model.classifier.register_forward_hook(lambda module, args, out: seen.append((module.training, out.dtype)))
    frame = make_texts(16)
    frame["label"] = frame["sentiment"].map({n: i for i, n in enumerate(LABELS)})
    cfg = dataclasses.replace(TrainConfig(learning_rate=5e-5), epochs=1, batch_size=8, warmup=0.0, precision=precision)
    summary = fit(TASK, model, tokenizer, tokenize(frame, tokenizer, 32), tokenize(frame, tokenizer, 32), cfg, 0,
                  tmp_path / "out")
    assert summary["precision"] == precision and summary["steps"] == 2
    assert {d for training, d in seen if training} == {dtype}  # the training steps' forward passes
    assert {str(t.dtype) for t in load_file(tmp_path / "out" / "model.safetensors").values()} == {"torch.float32"}


def test_a_bf16_teacher_pass_caches_logits_near_the_fp32_ones_and_says_so(tmp_path, tiny_bert):
    import numpy as np

    from distillery.stages.teacher_logits import teacher_logits
    from tiny import cache_teacher_logits

    params, manifest = cache_teacher_logits(tmp_path, tiny_bert)
    assert manifest["precision"] == "fp32"
    fp32 = np.load(tmp_path / "logits" / "train.npy")
    bf16_params = dataclasses.replace(params, teacher=dataclasses.replace(params.teacher,
                                                                          logits_precision="bf16"))
    manifest = teacher_logits(bf16_params, tmp_path / "teacher", tmp_path / "prepared", tmp_path / "bf16")
    assert manifest["precision"] == "bf16"
    bf16 = np.load(tmp_path / "bf16" / "train.npy")
    assert bf16.dtype == np.float32 and bf16.shape == fp32.shape
    # bfloat16 keeps 8 bits of mantissa: the logits move, by about its rounding, not more
    assert not np.array_equal(bf16, fp32) and np.abs(bf16 - fp32).max() < 0.05


def test_the_teacher_pass_through_onnx_runtime_caches_the_pytorch_logits_and_says_so(tmp_path, tiny_bert):
    import numpy as np

    from distillery.stages.teacher_logits import teacher_logits
    from tiny import cache_teacher_logits

    params, manifest = cache_teacher_logits(tmp_path, tiny_bert)
    assert manifest["runtime"] == "pytorch"
    onnx_params = dataclasses.replace(params, teacher=dataclasses.replace(params.teacher, logits_runtime="onnxruntime"))
    manifest = teacher_logits(onnx_params, tmp_path / "teacher", tmp_path / "prepared", tmp_path / "onnx")
    # checked on the first batch of training rows (evaluate.batch_size 128; the tiny split has 60)
    assert manifest["runtime"] == "onnxruntime" and manifest["precision"] == "fp32"
    assert manifest["check"]["rows"] == 60 and manifest["check"]["max_abs_diff_vs_pytorch"] <= 1e-4
    for part in ("train", "validation", "transfer"):
        pytorch, onnx = np.load(tmp_path / "logits" / f"{part}.npy"), np.load(tmp_path / "onnx" / f"{part}.npy")
        assert onnx.shape == pytorch.shape and onnx.dtype == np.float32 and len(onnx) > 0, part
        assert np.abs(onnx - pytorch).max() < 1e-4, part
    assert not list(tmp_path.glob("onnx/*.onnx")), "the ONNX teacher is a temporary file, not an output"
    # the check's tolerance is the pass's own, not export.fp32_atol: tightening (or loosening, to let the student's
    # export through) that gate neither changes this pass nor, through dvc.yaml, re-runs it
    strict = dataclasses.replace(onnx_params, export=dataclasses.replace(onnx_params.export, fp32_atol=1e-12))
    manifest = teacher_logits(strict, tmp_path / "teacher", tmp_path / "prepared", tmp_path / "strict")
    assert manifest["runtime"] == "onnxruntime" and manifest["check"]["atol"] == 1e-4


def test_an_onnx_teacher_off_pytorch_or_not_exportable_leaves_the_pass_to_pytorch(tmp_path, tiny_bert, monkeypatch,
                                                                                 capsys):
    import numpy as np

    from distillery import onnx_runtime
    from distillery.errors import ModelError
    from distillery.stages.teacher_logits import teacher_logits
    from distillery.task_types.text_classification.task import TextClassification
    from tiny import cache_teacher_logits

    params, _ = cache_teacher_logits(tmp_path, tiny_bert)
    onnx_params = dataclasses.replace(params, teacher=dataclasses.replace(params.teacher, logits_runtime="onnxruntime"))
    real = onnx_runtime.run_outputs
    monkeypatch.setattr(onnx_runtime, "run_outputs", lambda sess, batch: [o + 0.01 for o in real(sess, batch)])
    manifest = teacher_logits(onnx_params, tmp_path / "teacher", tmp_path / "prepared", tmp_path / "off")
    assert manifest["runtime"] == "pytorch" and manifest["onnxruntime_refused"] == "parity"
    assert manifest["check"]["max_abs_diff_vs_pytorch"] == pytest.approx(0.01, rel=1e-3)
    assert "outputs are 1.00e-02 off PyTorch's on 60 training rows" in capsys.readouterr().out
    assert np.array_equal(np.load(tmp_path / "off" / "train.npy"), np.load(tmp_path / "logits" / "train.npy"))

    # ONNX Runtime failing: on the check batch, or part-way through the pass (its third call: the check, the
    # training rows, then the validation rows): the whole pass runs in PyTorch, and the manifest says why
    for failing_call in (1, 3):
        calls = []

        def fail(sess, batch, failing_call=failing_call):
            calls.append(1)
            if len(calls) == failing_call:
                raise RuntimeError("[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : shapes")
            return real(sess, batch)

        monkeypatch.setattr(onnx_runtime, "run_outputs", fail)
        out = tmp_path / f"failed-{failing_call}"
        manifest = teacher_logits(onnx_params, tmp_path / "teacher", tmp_path / "prepared", out)
        assert manifest["runtime"] == "pytorch", manifest
        assert manifest["onnxruntime_refused"] == "ONNX Runtime failed: [ONNXRuntimeError] : 2 : INVALID_ARGUMENT : shapes"
        assert ("check" in manifest) == (failing_call == 3) and len(calls) == failing_call
        for part in ("train", "validation", "transfer"):
            assert np.array_equal(np.load(out / f"{part}.npy"), np.load(tmp_path / "logits" / f"{part}.npy")), part
    monkeypatch.setattr(onnx_runtime, "run_outputs", real)

    def refuse(self, *args):
        raise ModelError("ONNX export of Odd to teacher.onnx failed: no")

    monkeypatch.setattr(TextClassification, "export_onnx", refuse)
    manifest = teacher_logits(onnx_params, tmp_path / "teacher", tmp_path / "prepared", tmp_path / "refused")
    assert manifest["runtime"] == "pytorch" and "failed: no" in manifest["onnxruntime_refused"]
    assert np.array_equal(np.load(tmp_path / "refused" / "train.npy"), np.load(tmp_path / "logits" / "train.npy"))


@pytest.mark.parametrize("runtime, precision, native, expected", [
    ("auto", "fp32", True, "onnxruntime"), ("auto", "auto", False, "onnxruntime"), ("auto", "auto", True, "pytorch"),
    ("auto", "bf16", False, "pytorch"), ("pytorch", "fp32", False, "pytorch"),
    ("onnxruntime", "auto", True, "onnxruntime"), ("auto", "int8", True, "onnxruntime")])
def test_the_logits_runtime_follows_the_pass_s_precision(monkeypatch, runtime, precision, native, expected):
    from distillery import precision as precisions
    from distillery.config import Params, TeacherConfig
    from distillery.stages.teacher_logits import runtime as resolve

    monkeypatch.setattr(precisions, "native_bf16", lambda: native)
    params = Params(teacher=TeacherConfig(logits_runtime=runtime, logits_precision=precision))
    assert resolve(params) == expected


@pytest.mark.parametrize("runtime, precision, message", [
    ("onnxruntime", "bf16", r"teacher\.logits_precision = 'bf16' is not allowed; ONNX Runtime runs the teacher's pass "
                            r"in fp32 or int8; .* \(teacher\.logits_runtime = onnxruntime\)"),
    ("pytorch", "int8", r"teacher\.logits_precision = 'int8' is not allowed; the int8 pass runs in ONNX Runtime; .* "
                        r"\(teacher\.logits_runtime = pytorch\)")])
def test_a_runtime_that_cannot_run_the_pass_s_precision_is_refused_when_params_are_read(tmp_path, runtime, precision,
                                                                                       message):
    from conftest import refused_when_read

    text = f"teacher:\n  logits_runtime: {runtime}\n  logits_precision: {precision}\n"
    refused_when_read(tmp_path / "params.yaml", text, message, (f"logits_runtime: {runtime}", "logits_runtime: auto"))


@pytest.mark.parametrize("setting, runtime, native, int8, cuda, expected", [
    ("auto", "auto", True, True, False, "bf16"), ("auto", "auto", False, True, False, "int8"),
    ("auto", "auto", False, False, False, "fp32"),  # AVX2 without VNNI: its int8 products may saturate
    ("auto", "onnxruntime", False, True, False, "int8"), ("auto", "onnxruntime", True, True, False, "fp32"),
    ("auto", "pytorch", False, True, False, "fp32"), ("auto", "pytorch", True, True, False, "bf16"),
    ("auto", "auto", False, True, True, "fp32"), ("auto", "auto", True, True, True, "bf16"),
    ("fp32", "auto", False, True, False, "fp32"), ("bf16", "pytorch", False, False, False, "bf16"),
    ("int8", "auto", True, False, False, "int8")])
def test_the_teacher_pass_s_auto_is_bf16_where_native_else_int8_where_native(monkeypatch, setting, runtime, native,
                                                                             int8, cuda, expected):
    """auto: bf16 where the hardware computes it (fp32 if ONNX Runtime is asked for), else int8 on a CPU with VNNI or
    AMX (ONNX Runtime runs it; not PyTorch, which then runs fp32), else fp32. An explicit setting is kept."""
    from distillery import precision as precisions
    from distillery.config import Params, TeacherConfig
    from distillery.stages.teacher_logits import pass_precision

    monkeypatch.setattr(precisions, "native_bf16", lambda: native)
    monkeypatch.setattr(precisions, "native_int8", lambda: int8)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    params = Params(teacher=TeacherConfig(logits_runtime=runtime, logits_precision=setting))
    assert pass_precision(params) == expected


@pytest.mark.parametrize("setting, minimum", [("int8", 0.0), ("int8", 1.01), ("auto", 0.0)])
def test_an_int8_teacher_pass_is_used_only_when_its_answers_agree_with_fp32_on_validation(tmp_path, tiny_bert,
                                                                                         monkeypatch, capsys, setting,
                                                                                         minimum):
    """teacher.logits_precision: int8 (and auto on a CPU without native bf16) halved the default pass (42-46 s against
    80-89 s in fp32). Its check compares top answers on the validation rows with the fp32 ONNX teacher's; below the
    share it runs the fp32 pass, and says so."""
    import numpy as np

    from distillery import precision as precisions
    from distillery.stages import teacher_logits as stage
    from tiny import cache_teacher_logits

    params, _ = cache_teacher_logits(tmp_path, tiny_bert)
    monkeypatch.setattr(precisions, "native_bf16", lambda: False)
    monkeypatch.setattr(precisions, "native_int8", lambda: True)
    int8_params = dataclasses.replace(params, teacher=dataclasses.replace(params.teacher, logits_precision=setting,
                                                                          logits_runtime="auto"))
    monkeypatch.setattr(stage, "TEACHER_INT8_MIN_AGREEMENT", minimum)
    manifest = stage.teacher_logits(int8_params, tmp_path / "teacher", tmp_path / "prepared", tmp_path / "int8")
    fp32 = {part: np.load(tmp_path / "logits" / f"{part}.npy") for part in ("train", "validation", "transfer")}
    int8 = {part: np.load(tmp_path / "int8" / f"{part}.npy") for part in fp32}
    checked = manifest["int8_check"]
    assert manifest["runtime"] == "onnxruntime" and checked["rows"] == len(fp32["validation"]) > 0
    assert checked["agreement_with_fp32"] == pytest.approx(
        float((np.load(tmp_path / "logits" / "validation.npy").argmax(1) == _int8_answers(tmp_path, params)).mean()),
        abs=1e-4)
    if minimum == 0.0:
        assert manifest["precision"] == "int8" and "int8_refused" not in manifest
        for part in fp32:  # int8 weights move every logit
            assert int8[part].shape == fp32[part].shape and not np.allclose(int8[part], fp32[part], atol=1e-4), part
        # the manifest and the stage's line say whether auto chose the precision or it was asked for
        assert manifest["asked"] == {"logits_precision": setting, "logits_runtime": "auto"}
        agreed = f"it gave fp32's answers on {checked['agreement_with_fp32']:.1%} of {checked['rows']} validation rows"
        assert f"({'int8 chosen by auto' if setting == 'auto' else 'int8'}; {agreed})" in stage.summary(manifest)
    else:
        assert manifest["precision"] == "fp32" and manifest["int8_refused"] == "agreement"
        assert "validation rows (< 101%); the teacher's pass runs in fp32" in capsys.readouterr().out
        # the last line does not read as though fp32 were what auto chose
        assert stage.summary(manifest).endswith(
            f"(fp32; the int8 pass was refused: it gave fp32's answers on {checked['agreement_with_fp32']:.1%} of "
            f"{checked['rows']} validation rows, under 101%)")
        assert "chosen by auto" not in stage.summary(manifest)
        for part in fp32:
            assert np.abs(int8[part] - fp32[part]).max() < 1e-4, part
    assert not list(tmp_path.glob("int8/*.onnx"))


def test_an_int8_teacher_failing_part_way_falls_back_to_the_fp32_session_and_keeps_its_check(tmp_path, tiny_bert,
                                                                                             monkeypatch, capsys):
    """ONNX Runtime failing in the int8 session after its check passed: the pass runs again in the fp32 ONNX
    session (not PyTorch), the manifest keeps the check and says why; the validation rows, already run by the
    check, are not run again by the int8 session."""
    from pathlib import Path

    import numpy as np

    from distillery import onnx_runtime
    from distillery.stages import teacher_logits as stage
    from tiny import cache_teacher_logits

    params, _ = cache_teacher_logits(tmp_path, tiny_bert)
    int8_params = dataclasses.replace(params, teacher=dataclasses.replace(params.teacher, logits_precision="int8",
                                                                          logits_runtime="auto"))
    monkeypatch.setattr(stage, "TEACHER_INT8_MIN_AGREEMENT", 0.0)
    real, rows_by_file = onnx_runtime.run_outputs, {}

    def count(sess, batch):
        name = Path(sess._model_path).name
        rows_by_file[name] = rows_by_file.get(name, 0) + len(next(iter(batch.values())))
        return real(sess, batch)

    monkeypatch.setattr(onnx_runtime, "run_outputs", count)
    stage.teacher_logits(int8_params, tmp_path / "teacher", tmp_path / "prepared", tmp_path / "int8")
    parts = {part: len(np.load(tmp_path / "logits" / f"{part}.npy")) for part in ("train", "validation", "transfer")}
    assert rows_by_file["teacher.int8.onnx"] == sum(parts.values()), rows_by_file  # validation once: by the check
    sample = min(params.evaluate.batch_size, parts["train"])  # the rows checked against PyTorch
    assert rows_by_file["teacher.onnx"] == parts["validation"] + sample, rows_by_file

    def fail_int8_after_check(sess, batch, seen=[]):
        if Path(sess._model_path).name == "teacher.int8.onnx":
            seen.append(1)
            if len(seen) > 1:  # the check's validation rows fit one batch; then the training rows
                raise RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : int8 kernel")
        return real(sess, batch)

    assert parts["validation"] <= params.evaluate.batch_size
    monkeypatch.setattr(onnx_runtime, "run_outputs", fail_int8_after_check)
    manifest = stage.teacher_logits(int8_params, tmp_path / "teacher", tmp_path / "prepared", tmp_path / "fell")
    assert manifest["runtime"] == "onnxruntime" and manifest["precision"] == "fp32", manifest
    assert manifest["int8_refused"] == "ONNX Runtime failed: [ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : int8 kernel"
    assert manifest["int8_check"]["rows"] == parts["validation"] and "onnxruntime_refused" not in manifest
    assert "int8 kernel; the teacher's pass runs in fp32" in capsys.readouterr().out
    for part in parts:
        assert np.abs(np.load(tmp_path / "fell" / f"{part}.npy") - np.load(tmp_path / "logits" / f"{part}.npy")).max() \
            < 1e-4, part


def _int8_answers(root, params):
    """The validation rows' labels from the tiny teacher quantized as the stage does, computed apart from it."""
    import tempfile
    from pathlib import Path

    from distillery.onnx_runtime import SessionModel, quantize_int8, session
    from distillery.prepared import load_split
    from distillery.task_types.load import task_type

    task = task_type(params.task, params)
    model = task.load_model(str(root / "teacher"), "t")
    tokenizer = task.load_featuriser(str(root / "teacher"), "t")
    with tempfile.TemporaryDirectory() as directory:
        task.export_onnx(model, tokenizer, Path(directory) / "t.onnx", params.export.opset)
        quantize_int8(Path(directory) / "t.onnx", Path(directory) / "t8.onnx", per_channel=True)
        served = SessionModel(session(Path(directory) / "t8.onnx", threads=1), model.config)
        return task.predict(served, tokenizer, load_split("validation", root / "prepared"), 32, 128).argmax(1)


def test_training_that_diverges_stops_with_one_line_before_saving(tiny_bert, tmp_path):
    """A weight decay of 1e6 (allowed: >= 0) drove the weights to NaN, and the first evaluation ended in
    scikit-learn's "Input contains NaN" traceback."""
    from distillery.errors import ModelError
    from distillery.task_types.text_classification.features import tokenize
    from distillery.training import fit

    tokenizer = load_tokenizer(str(tiny_bert), "t")
    model = load_classifier(str(tiny_bert), "t", LABELS)
    frame = make_texts(16)
    frame["label"] = frame["sentiment"].map({n: i for i, n in enumerate(LABELS)})
    # each step scales every weight by 1 - lr x weight decay = -9999: past float32's range within 10 steps
    cfg = dataclasses.replace(TrainConfig(learning_rate=5e-5), epochs=1, batch_size=1, warmup=0.0, learning_rate=1e-2,
                              weight_decay=1e6)
    with pytest.raises(ModelError, match="training diverged, the model's outputs on the validation split are NaN or "
                                         "infinite; lower the learning rate or weight decay"):
        fit(TASK, model, tokenizer, tokenize(frame, tokenizer, 32), tokenize(frame, tokenizer, 32), cfg, 0,
            tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_the_stage_s_last_line_says_why_the_pass_is_not_what_auto_chose():
    """A pass that fell back to PyTorch (the ONNX export off PyTorch's outputs) read "(fp32 chosen by auto)" while
    auto had chosen int8; an int8 check run on training rows (no validation split) said "validation"."""
    from distillery.stages.teacher_logits import summary

    asked = {"logits_precision": "auto", "logits_runtime": "auto"}
    fell_back = {"rows": {"train": 9}, "asked": asked, "runtime": "pytorch", "onnxruntime_refused": "parity",
                 "precision": "fp32"}
    assert summary(fell_back) == ("cached teacher logits for {'train': 9} (fp32 in PyTorch; ONNX Runtime was "
                                  "refused: its outputs were off PyTorch's)")
    on_training_rows = {"rows": {"train": 9}, "asked": asked, "runtime": "onnxruntime", "precision": "int8",
                        "int8_check": {"rows": 8, "split": "training", "agreement_with_fp32": 1.0,
                                       "min_agreement": 0.97}}
    assert summary(on_training_rows).endswith("(int8 chosen by auto; it gave fp32's answers on 100.0% of 8 training "
                                              "rows)")
