"""params.yaml validation: bad values fail at load time, naming the key and the allowed range."""
from pathlib import Path

import pytest
import yaml

from distillery.config import load_params
from distillery.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def _load(tmp_path, text: str):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return load_params(path)


def test_repository_params_load():
    params = load_params(ROOT / "params.yaml")
    assert params.teacher.model == "bundled:minilm-l6"
    assert params.data.source == "bundled:tweets"
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert params.distill.alpha == raw["distill"]["alpha"] and params.distill.loss == raw["distill"]["loss"]
    assert params.student.layers == raw["student"]["layers"] and params.seed == raw["seed"]


def test_repository_params_cover_every_key():
    """params.yaml documents every knob: all dataclass fields appear in it."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    flat = load_params(ROOT / "params.yaml").flat()
    for dotted in flat:
        node = raw
        for part in dotted.split("."):
            assert part in node, f"params.yaml lacks {dotted}"
            node = node[part]
            if not isinstance(node, dict) or not node:
                break


@pytest.mark.parametrize("text, key, hint", [
    ("distill:\n  alpha: 1.5\n", "distill.alpha", "[0, 1]"),
    ("distill:\n  alpha: -0.1\n", "distill.alpha", "[0, 1]"),
    ("distill:\n  temperature: 0\n", "distill.temperature", "> 0"),
    ("distill:\n  loss: cosine\n", "distill.loss", "kl, mse"),
    ("distill:\n  train:\n    epochs: 0\n", "distill.train.epochs", "> 0"),
    ("teacher:\n  train:\n    batch_size: two\n", "teacher.train.batch_size", "integer"),
    ("student:\n  layers: [0, -1]\n", "student.layers", "every_other"),
    ("student:\n  layers: [1, 1]\n", "student.layers", "distinct"),
    ("student:\n  source: model\n", "student.model", "Hub id"),
    ("data:\n  on_bad_rows: ignore\n", "data.on_bad_rows", "drop, fail"),
    ("data:\n  split_fractions: {train: 0.5, validation: 0.1, test: 0.1}\n", "data.split_fractions", "sum to 1"),
    ("data:\n  max_samples: {train: 0}\n", "data.max_samples.train", "positive"),
    ("data:\n  max_samples: {training: 5}\n", "data.max_samples", "splits are"),
    ("student:\n  model: 123\n", "student.model", "expected a str or null"),
    ("distill:\n  transfer_set:\n    source: train_texts\n", "distill.transfer_set.source", "remainder"),
    ("evaluate:\n  seeds: [1]\n", "evaluate.seeds", "at least two"),
    ("distill:\n  alpha: null\n", "distill.alpha", "a value is required"),
    ("distill:\n  augment:\n    ngram_max: 0\n", "distill.augment.ngram_max", ">= 1"),
    ("distill:\n  augment:\n    seed: '7'\n", "distill.augment.seed", "expected an int or null"),
    ("distill:\n  hidden_loss:\n    weight: -1\n", "distill.hidden_loss.weight", ">= 0"),
])
def test_bad_values_name_the_key(tmp_path, text, key, hint):
    with pytest.raises(ConfigError) as error:
        _load(tmp_path, text)
    assert key in str(error.value) and hint in str(error.value)
    assert "\n" not in str(error.value)


def test_unknown_key_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key distill\.alfa"):
        _load(tmp_path, "distill:\n  alfa: 0.3\n")


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="params file not found"):
        load_params(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        _load(tmp_path, "distill: [unclosed\n")


def test_yaml_tags_that_run_code_are_refused(tmp_path):
    with pytest.raises(ConfigError):
        _load(tmp_path, "seed: !!python/object/apply:os.system ['echo hi']\n")


def test_values_are_typed_and_frozen(tmp_path):
    params = _load(tmp_path, "distill:\n  alpha: 1\n  temperature: 4\nstudent:\n  layers: every_other\n")
    assert params.distill.alpha == 1.0 and isinstance(params.distill.temperature, float)
    assert params.student.layers == "every_other"
    with pytest.raises(Exception):
        params.distill.alpha = 0.2  # frozen
