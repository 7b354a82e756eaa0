"""Image classification end to end: the ``mnist`` profile (profiles/mnist.yaml) on scikit-learn's 8x8 digits,
through every stage in a temporary git + DVC repo (run in the test process and recorded by ``dvc commit``:
conftest's ``run_stages_in_process``; ``test_pipeline_dvc`` runs the stages as ``dvc repro`` does), then the
registered champion served by `mlflow models serve` and asked over HTTP for two images, one as nested lists and
one as a base64 PNG."""
from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests
import yaml

from conftest import ROOT, _merge, dvc, make_project, run_stages_in_process, write_params
from servers import env_with_venv, free_port, running

from distillery.stages import STAGES

NAME = "distillery-digits-student"
TEACHER_TRAIN = {"epochs": 4, "batch_size": 32, "eval_batch_size": 256, "learning_rate": 3e-3, "warmup": 0.0,
                 "logging_steps": 20}
TINY = {
    "seed": 0,
    "data": {"source": "bundled:digits"},
    "teacher": {"cnn": {"channels": [8, 16], "hidden_size": 32, "dropout": 0.0}, "train": TEACHER_TRAIN},
    # max_length is a text setting: the gate's latency cell is the images' own (b1_s64), whatever it says (with 128
    # the gate looked for b1_s128 or longer and failed every image model)
    "student": {"mlp": {"hidden_sizes": [16]}, "max_length": 128},
    "distill": {"labelled_rows": 200, "train": dict(TEACHER_TRAIN, epochs=6)},
    "benchmark": {"batch_sizes": [1, 4], "sequence_lengths": [16, 64], "warmup": 2, "runs": 20, "threads": 1},
    "register": {"model_name": NAME, "gate": {"min_retention": 0.0, "max_p95_ms": 1000.0, "max_size_mb": 1000.0,
                                              "tolerance": 0.999, "min_compare_rows": 1,
                                              "above_baseline": False}},
}


def _png_base64(pixels: np.ndarray, pixel_max: float) -> tuple[str, np.ndarray]:
    """The image as a base64 PNG (intensities scaled to 0-255), and the pixels the served model should read
    back from it (the PNG's 8-bit values scaled to the data's range), computed here with Pillow."""
    from PIL import Image

    eight_bit = np.round(pixels * 255 / pixel_max).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(eight_bit, mode="L").save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode(), eight_bit.astype(np.float32) * pixel_max / 255


def test_mnist_profile_on_digits_through_every_stage_then_served_over_http(tmp_path, tiny_bert, capfd):
    import onnxruntime as ort

    project = make_project(tmp_path / "project", tiny_bert)
    params = _merge(yaml.safe_load((project / "params.yaml").read_text()),
                    yaml.safe_load((ROOT / "profiles/mnist.yaml").read_text()))
    write_params(project / "params.yaml", _merge(params, TINY))
    subprocess.run(["git", "commit", "-qam", "the mnist profile on digits"], cwd=project, check=True)
    run_stages_in_process(project, through=STAGES[-1])
    said = capfd.readouterr()  # what the stages printed
    status = dvc(project, "status")  # every stage's inputs and outputs are where dvc.yaml says
    assert status.returncode == 0 and "Data and pipelines are up to date" in status.stdout, status.stdout

    report = json.loads((project / "data/prepared/data_report.json").read_text())
    assert report["image"]["height"] == report["image"]["width"] == 8 and report["image"]["pixel_max"] == 16
    train_rows = report["rows"]["train"]
    distill = json.loads((project / "reports/metrics/distill.json").read_text())
    # the students learn labels from 200 images; the distilled one also from the teacher on the other train images
    assert distill["student"]["labelled_rows"] == distill["baseline"]["labelled_rows"] == 200
    assert distill["student"]["transfer_rows"] == train_rows - 200 and distill["baseline"]["transfer_rows"] == 0
    assert distill["student"]["train_examples"] == train_rows and distill["baseline"]["train_examples"] == 200
    # what computed the teacher outputs the student learnt from (the profile pins the pass to PyTorch fp32)
    logits = json.loads((project / "data/teacher_logits/manifest.json").read_text())
    assert distill["student"]["teacher_pass"] == {"precision": "fp32", "runtime": "pytorch"} == \
        {key: logits[key] for key in ("precision", "runtime")}
    assert "teacher_pass" not in distill["baseline"]
    evaluation = json.loads((project / "reports/metrics/eval.json").read_text())
    assert evaluation["teacher"]["accuracy"] > 0.85, evaluation["teacher"]  # a CNN learns 8x8 digits in 4 epochs
    teacher_config = json.loads((project / "models/teacher/config.json").read_text())
    student_config = json.loads((project / "models/student/config.json").read_text())
    for config in (teacher_config, student_config):  # the normalisation is recorded in every model
        assert config["pixel_mean"] == report["image"]["pixel_mean"] and config["pixel_std"] == report["image"]["pixel_std"]
    assert student_config["model_type"] == "distillery_image_mlp" and student_config["hidden_sizes"] == [16]

    parity = json.loads((project / "reports/metrics/parity.json").read_text())
    assert parity["student"]["fp32"]["passed"] and parity["student"]["rows"] == report["rows"]["test"]
    # an MLP has no transformer to fuse: the fused recipes are dropped with the reason, the others compete
    recipes = {c["recipe"]: c for c in parity["student"]["recipes"]["candidates"]}
    assert all(c["reason"].startswith("no transformer fusion matched") for name, c in recipes.items()
               if name.startswith("fused_")), recipes
    assert not recipes["dynamic"]["fused"] and "validation" in recipes["dynamic"]
    benchmark = json.loads((project / "reports/metrics/benchmark.json").read_text())
    # images have no sequence length: one cell per batch size, named by the pixels per image (8 x 8), and the
    # stage says the list it was given is not used
    length = report["image"]["height"] * report["image"]["width"]
    assert "benchmark.sequence_lengths [16, 64] is not used" in said.out + said.err
    assert set(benchmark["models"]["student_onnx_int8"]["cells"]) == {f"b1_s{length}", f"b4_s{length}"}
    assert benchmark["grid"]["sequence_lengths"] == [length]
    assert f"b1_s{length}" in (project / "reports/benchmark.md").read_text()
    # the roofline: an 8x8 image through the [16]-unit MLP is 2 x (64 x 16 + 16 x 10) FLOPs, whatever runs it
    assert benchmark["roofline"]["fp32_gflops"] > 0 and benchmark["roofline"]["int8_gops"] > 0
    for name in ("student_pytorch_fp32", "student_onnx_fp32", "student_onnx_int8"):
        cells = benchmark["models"][name]["cells"]
        assert [cells[c]["gflop"] * 1e9 for c in (f"b1_s{length}", f"b4_s{length}")] == pytest.approx([2368, 4 * 2368])
    register = json.loads((project / "reports/metrics/register.json").read_text())
    assert register["decision"] == "promoted", register
    assert "(b1_s64)" in next(c for c in register["checks"] if c["name"] == "latency")["detail"], register

    test = pd.read_parquet(project / "data/prepared/test.parquet").head(2)
    assert report["image"]["dtype"] == "float32"  # 0-16 digits are not 8-bit images
    pixels = [np.frombuffer(p, dtype=np.float32).reshape(8, 8) for p in test["pixels"]]
    png, png_pixels = _png_base64(pixels[1], 16.0)
    deployment = json.loads((project / "models/onnx/deployment.json").read_text())
    session = ort.InferenceSession(str(project / "models/onnx" / deployment["deployable"]),
                                   providers=["CPUExecutionProvider"])
    logits = session.run(None, {"pixel_values": np.stack([pixels[0], png_pixels])[:, None]})[0]
    labels = json.loads((project / "data/prepared/labels.json").read_text())["names"]
    expected = [labels[i] for i in logits.argmax(-1)]

    port = free_port()
    url = f"http://127.0.0.1:{port}/invocations"
    from distillery.tracking import tracking_uri

    command = [str(Path(sys.executable).parent / "mlflow"), "models", "serve", "-m", f"models:/{NAME}@champion",
               "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)]
    with running(command, f"http://127.0.0.1:{port}/ping", tmp_path / "serve.log",
                 env=env_with_venv(MLFLOW_TRACKING_URI=tracking_uri(project))):
        response = requests.post(url, json={"dataframe_records": [{"image": pixels[0].tolist()}, {"image": png}]},
                                 timeout=120)
        assert response.status_code == 200, response.text[:2000]
        served = response.json()["predictions"]
        assert [row["label"] for row in served] == expected
        probabilities = np.exp(logits - logits.max(-1, keepdims=True))
        probabilities /= probabilities.sum(-1, keepdims=True)
        np.testing.assert_allclose([row["score"] for row in served], probabilities.max(-1), rtol=1e-4)
        refused = requests.post(url, json={"dataframe_records": [{"image": [[1, 2], [3, 4]]}]}, timeout=120)
        assert refused.status_code == 400 and "'image' of row 0 is [2, 2]" in refused.json()["message"], \
            refused.text

    # Images of another size under the same name: the column is the same `image`, but the 8 x 8 pixel arrays
    # clients send would be refused. A trial's grey, unresized v2 was promoted over an RGB, resizing champion.
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri(project))
    assert json.loads(client.get_model_version(NAME, "1").tags["distillery.input_spec"]) == {
        "channels": 1, "height": 8, "width": 8, "pixel_min": 0.0, "pixel_max": 16.0, "resize": False}
    client.delete_model_version_tag(NAME, "1", "distillery.input_spec")  # as registered before it: read from its files
    write_params(project / "params.yaml", _merge(yaml.safe_load((project / "params.yaml").read_text()),
                                                 {"data": {"image_size": [6, 6]}}))
    run_stages_in_process(project, through=STAGES[-1])
    register = json.loads((project / "reports/metrics/register.json").read_text())
    inputs = next(c for c in register["checks"] if c["name"] == "inputs")
    assert register["decision"] != "promoted" and not inputs["passed"], register
    assert "it takes images of 6 x 6 pixels (width x height), the champion 8 x 8" in inputs["detail"], inputs
    assert {a: str(v) for a, v in client.get_registered_model(NAME).aliases.items()}["champion"] == "1"
    # by hand too: promote refuses it unless told the clients change with it
    from distillery.cli import main

    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(project)
        capfd.readouterr()
        assert main(["promote", "2", "--reason", "smaller images"]) == 2
        assert "it takes images of 6 x 6 pixels (width x height), the champion 8 x 8: requests sent to " \
               f"models:/{NAME}@champion would be refused or read otherwise" in capfd.readouterr().err
        assert main(["promote", "2", "--reason", "the clients send 6 x 6 now", "--other-inputs"]) == 0
        assert {a: str(v) for a, v in client.get_registered_model(NAME).aliases.items()}["champion"] == "2"
        # the way back is never refused, but said: the 6 x 6 clients must go back to 8 x 8
        capfd.readouterr()
        assert main(["rollback", "--reason", "clients not ready"]) == 0
        out = capfd.readouterr().out
        assert "note: v1 takes other requests: it takes images of 8 x 8 pixels (width x height), v2 6 x 6; v2 resized " \
               f"an encoded image of any size, it does not; the clients of models:/{NAME}@champion must change " \
               "back" in out, out
