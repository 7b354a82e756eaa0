"""The served model's tokenizer settings: export records them, register takes the record without loading
transformers (or torch) while the tokenizer's files are unchanged, and reads them again when they changed."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from distillery.tokenizer_padding import padding, recorded_padding


def _text_workspace(root: Path, student: Path, record: dict | None) -> Path:
    """What the text task's ``served_artifacts`` reads: the student's tokenizer, a deployable ONNX file with the
    student's input names, and deployment.json (with ``record`` as its ``tokenizer_padding``, if any)."""
    import onnx
    from onnx import TensorProto, helper

    shutil.copytree(student, root / "models/student")
    inputs = [helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "sequence"])
              for name in ("input_ids", "attention_mask")]
    output = helper.make_tensor_value_info("logits", TensorProto.INT64, ["batch", "sequence"])
    graph = helper.make_graph([helper.make_node("Add", ["input_ids", "attention_mask"], ["logits"])], "tiny",
                              inputs, [output])
    (root / "models/onnx").mkdir(parents=True)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # what this onnxruntime reads (onnx writes its own newest)
    onnx.save(model, root / "models/onnx/s.onnx")
    deployment = {"deployable": "s.onnx", "tokenizer": "models/student",
                  **({"tokenizer_padding": record} if record is not None else {})}
    (root / "models/onnx/deployment.json").write_text(json.dumps(deployment))
    return root


_SERVED_CONFIG = """
import json, sys
from pathlib import Path
import pandas as pd
from distillery.task_types.text_classification.serving import served_artifacts
artifacts = served_artifacts(Path(sys.argv[1]), Path(sys.argv[1]), ["a", "b"], 16, pd.DataFrame({"text": ["x"]}))
config = json.loads(Path(artifacts["config"]).read_text())
print(json.dumps({"config": config, "loaded": sorted(m for m in ("torch", "transformers") if m in sys.modules)}))
"""


def _served_config(root: Path) -> dict:
    """The served config ``register`` would write for ``root``, and which of torch and transformers it loaded, from
    a fresh interpreter (as ``register`` is: this one has both loaded)."""
    result = subprocess.run([sys.executable, "-c", _SERVED_CONFIG, str(root)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture
def left_padded(tiny_bert, tmp_path) -> Path:
    """A student whose tokenizer pads with [MASK] and cuts long texts on the left (neither is the default)."""
    from transformers import AutoTokenizer

    student = tmp_path / "left-padded"
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_bert))
    tokenizer.pad_token = "[MASK]"
    tokenizer.save_pretrained(student)
    settings = json.loads((student / "tokenizer_config.json").read_text())
    (student / "tokenizer_config.json").write_text(json.dumps({**settings, "truncation_side": "left"}))
    assert AutoTokenizer.from_pretrained(str(student)).truncation_side == "left"
    return student


def test_the_record_is_what_transformers_reads(left_padded):
    from transformers import AutoTokenizer

    loaded = AutoTokenizer.from_pretrained(str(left_padded))
    record = padding(left_padded)
    assert (record["pad_id"], record["pad_token"], record["truncation_side"]) == \
        (loaded.convert_tokens_to_ids("[MASK]"), "[MASK]", "left")
    assert record["pad_id"] != loaded.convert_tokens_to_ids("[PAD]")


def test_register_serves_the_record_without_loading_transformers_or_torch(left_padded, tmp_path):
    record = padding(left_padded)
    served = _served_config(_text_workspace(tmp_path / "recorded", left_padded, record))
    assert served["loaded"] == []
    config = served["config"]
    assert (config["pad_id"], config["pad_token"], config["pad_type_id"], config["truncation_side"]) == \
        (record["pad_id"], "[MASK]", 0, "left")
    # an export from before the record: the same config, read through transformers
    older = _served_config(_text_workspace(tmp_path / "older", left_padded, None))
    assert older["config"] == config and older["loaded"] == ["torch", "transformers"]


def test_a_tokenizer_changed_since_the_export_is_read_again(left_padded, tmp_path):
    record = padding(left_padded)
    root = _text_workspace(tmp_path / "changed", left_padded, record)
    settings = root / "models/student/tokenizer_config.json"
    changed = json.loads(settings.read_text())
    changed["truncation_side"] = "right"
    settings.write_text(json.dumps(changed))
    again = recorded_padding(root / "models/student", record)
    assert again is not record and again["truncation_side"] == "right"
    served = _served_config(root)
    assert served["config"]["truncation_side"] == "right" and served["loaded"] == ["torch", "transformers"]
    # the weights are not the tokenizer's: a retrained student's new weights keep the record
    record = padding(root / "models/student")
    (root / "models/student/model.safetensors").write_bytes(b"other weights")
    assert recorded_padding(root / "models/student", record) is record
