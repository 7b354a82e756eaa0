"""``python -m distillery profile <name>``: profiles/<name>.yaml merged over params.yaml, validated first."""
import dataclasses
import shutil
from pathlib import Path

import pytest

from distillery.cli import main
from distillery.config import load_params
from distillery.errors import ConfigError
from distillery.profiles import apply_profile

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def project(tmp_path, monkeypatch):
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    shutil.copytree(ROOT / "profiles", tmp_path / "profiles")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_snli_switches_to_pairs_and_tweets_switches_back(project, capsys):
    default = load_params("params.yaml")
    assert main(["profile", "snli"]) == 0
    assert "profile snli applied, 15 key(s) changed" in capsys.readouterr().out
    snli = load_params("params.yaml")
    assert (snli.data.source, snli.data.text_column, snli.data.text_pair_column, snli.data.label_column) == \
        ("bundled:snli", "sentence1", "sentence2", "gold_label")
    assert snli.data.labels == ["entailment", "neutral", "contradiction"]
    assert snli.data.splits == {"train": "train", "validation": None, "test": "test"}
    assert snli.register.model_name == "distillery-snli"
    # pairs keep the 2-layer student of their measured recipe, where the default has 1 layer trained 4 epochs
    assert (default.student.layers, default.distill.train.epochs) == ([0], 4)
    assert (snli.student.layers, snli.distill.train.epochs) == ([0, 5], 2)
    # every key the profile does not name keeps its value
    assert (snli.teacher, snli.sweep) == (default.teacher, default.sweep)
    assert dataclasses.replace(snli.student, layers=default.student.layers) == default.student
    assert snli.distill.transfer_set.max_rows == 10000 and snli.distill.transfer_set.source == "remainder"
    assert dataclasses.replace(snli.distill, transfer_set=default.distill.transfer_set,
                               train=dataclasses.replace(snli.distill.train, epochs=4)) == default.distill
    text = (project / "params.yaml").read_text()
    assert "# read by `prepare`" in text and "alpha: 0.5                  # weight of the hard-label CE" in text
    assert main(["profile", "tweets"]) == 0
    assert dataclasses.asdict(load_params("params.yaml")) == dataclasses.asdict(default)
    before = (project / "params.yaml").read_bytes()
    assert main(["profile", "tweets"]) == 0
    assert "nothing changed" in capsys.readouterr().out
    assert (project / "params.yaml").read_bytes() == before  # it said so, and re-indented a list all the same
    pristine = (ROOT / "params.yaml").read_bytes()
    (project / "params.yaml").write_bytes(pristine)
    assert main(["profile", "tweets"]) == 0 and (project / "params.yaml").read_bytes() == pristine


def test_a_bad_profile_is_refused_and_params_yaml_untouched(project, capsys):
    before = (project / "params.yaml").read_text()
    (project / "profiles/bad.yaml").write_text("distill:\n  alpha: 1.5\n")
    with pytest.raises(ConfigError, match=r"profile bad \(profiles/bad.yaml\): params.yaml: distill.alpha = 1.5 "
                                          r"is not allowed; it must be in \[0, 1\]"):
        apply_profile("bad")
    (project / "profiles/typo.yaml").write_text("data:\n  sorce: x.csv\n")
    with pytest.raises(ConfigError, match="data.sorce"):
        apply_profile("typo")
    assert (project / "params.yaml").read_text() == before
    assert not list(project.glob(".params.profile.tmp-*"))
    assert main(["profile", "squad"]) == 2
    assert "profile 'squad': profiles/squad.yaml not found; profiles: bad, fashion-mnist, mnist, qa, snli, tweets, typo" in \
        capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["profile"])


def test_qa_switches_to_question_answering_and_tweets_switches_back(project, capsys):
    default = load_params("params.yaml")
    assert main(["profile", "qa"]) == 0
    qa = load_params("params.yaml")
    assert (qa.task, qa.data.files["test"], qa.teacher.max_length, qa.student.max_length) == \
        ("question_answering", "data/raw/squad/squad_v1.1_heldout.json.gz", 256, 256)
    assert (qa.teacher.train.metric_for_best_model, qa.register.gate.metric, qa.distill.transfer_set.source,
            qa.distill.transfer_set.max_rows, qa.student.layers) == ("f1", "f1", "remainder", 20000, [0, 2, 5])
    # the profile's augment mapping merges into params.yaml's; tweets' own augment sets include_transfer back
    assert (qa.distill.augment.copies, qa.distill.augment.include_transfer, qa.distill.augment.p_mask) == (2, True, 0.1)
    assert main(["profile", "tweets"]) == 0
    assert dataclasses.asdict(load_params("params.yaml")) == dataclasses.asdict(default)


@pytest.mark.parametrize("profile, source", [("mnist", "bundled:mnist-5k"), ("fashion-mnist", "bundled:fashion-mnist")])
def test_image_profiles_switch_to_the_primer_and_tweets_switches_back(project, profile, source):
    default = load_params("params.yaml")
    assert main(["profile", profile]) == 0
    images = load_params("params.yaml")
    assert (images.task, images.data.source, images.teacher.model, images.student.source) == \
        ("image_classification", source, "scratch:cnn", "mlp")
    assert (images.student.mlp.hidden_sizes, images.distill.labelled_rows, images.distill.transfer_set.source) == \
        ([4], 800, "remainder")
    # measured in fp32 PyTorch: the teacher's pass stays there (tweets sets the runtime back to auto)
    assert (images.teacher.logits_precision, images.teacher.logits_runtime) == ("fp32", "pytorch")
    assert main(["profile", "tweets"]) == 0
    assert dataclasses.asdict(load_params("params.yaml")) == dataclasses.asdict(default)


def test_one_profile_switches_to_another_directly(project):
    """``profile mnist`` then ``profile qa`` failed: the primer's distill.labelled_rows (800) stayed behind, which
    question answering refuses; it took ``profile tweets`` in between."""
    assert main(["profile", "mnist"]) == 0
    assert main(["profile", "qa"]) == 0
    qa = load_params("params.yaml")
    assert (qa.task, qa.distill.labelled_rows, qa.student.source, qa.teacher.model) == \
        ("question_answering", None, "layers", "bundled:minilm-l6")
    assert main(["profile", "snli"]) == 0
    assert load_params("params.yaml").task == "text_classification"


def test_a_block_list_and_an_empty_value_are_rewritten_into_a_file_that_reads_back(project, monkeypatch, capsys):
    """student.layers written as a block list (`layers:` then `- 0`) and student.model left empty: the writer took
    the line break after max_length with the replaced list (`max_length: 256 config:`), and the error then
    blamed a line of params.yaml, which was valid."""
    import yaml

    text = (project / "params.yaml").read_text()
    text = text.replace("  layers: [0]                 # encoder layer indices",
                        "  layers:                     # encoder layer indices")
    text = text.replace("  model: null                 # with source: model", "  model:                      # with source: model")
    text = text.replace("                              # (README: The default student)\n",
                        "                              # (README: The default student)\n  - 0\n", 1)
    (project / "params.yaml").write_text(text)
    assert load_params("params.yaml").student.layers == [0] and load_params("params.yaml").student.model is None
    assert main(["profile", "qa"]) == 0
    merged = yaml.safe_load((project / "params.yaml").read_text())
    assert merged["student"]["layers"] == [0, 2, 5] and merged["student"]["max_length"] == 256
    assert merged["student"]["config"]["hidden_size"] == 128  # the key after max_length, still a mapping of its own
    assert "# encoder layer indices" in (project / "params.yaml").read_text()  # comments kept
    assert load_params("params.yaml").task == "question_answering"

    # a rewrite that does not read back as the merged keys is refused as the writer's fault; the file is unchanged
    monkeypatch.setattr("distillery.profiles._merge", lambda node, profile, prefix, changed: changed.update(x=1))
    before = (project / "params.yaml").read_bytes()
    capsys.readouterr()
    assert main(["profile", "tweets"]) == 2
    err = capsys.readouterr().err
    assert "profile tweets: rewriting params.yaml with its comments kept went wrong" in err and "unchanged" in err
    assert (project / "params.yaml").read_bytes() == before


def test_image_profiles_switch_to_snli_directly(project):
    """``profile mnist`` then ``profile snli`` was refused as the writer's fault: snli's data.max_samples.test is null,
    and a key params.yaml left out (the primer's max_samples is {}) read as null already, so it was not written."""
    for image in ("mnist", "fashion-mnist"):
        assert main(["profile", image]) == 0
        assert main(["profile", "snli"]) == 0
        params = load_params("params.yaml")
        assert (params.data.source, params.data.max_samples) == ("bundled:snli", {"train": 10000, "validation": 1000,
                                                                                   "test": None})


def test_a_profile_section_left_empty_is_refused_not_a_wipe_of_the_section(project, capsys):
    """A profile holding ``distill:`` with only a comment under it set params.yaml's whole distill section to
    null: every distill key fell back to the built-in defaults without a word."""
    before = (project / "params.yaml").read_bytes()
    (project / "profiles" / "empty.yaml").write_text("distill:\n  # alpha: 0.3\n")
    assert main(["profile", "empty"]) == 2
    assert "profile empty (profiles/empty.yaml): distill is an empty section in the profile" in capsys.readouterr().err
    (project / "profiles" / "empty.yaml").write_text("distill:\n  train: {}\n")
    assert main(["profile", "empty"]) == 2
    assert "distill.train is an empty section" in capsys.readouterr().err
    assert (project / "params.yaml").read_bytes() == before


def test_params_that_are_not_utf8_are_named_with_their_line(project, capsys):
    for path in (project / "params.yaml", project / "profiles" / "snli.yaml"):
        original = path.read_bytes()
        path.write_bytes(original + b"# caf\xe9\n")
        assert main(["params", "--check"]) == 2 if path.name == "params.yaml" else main(["profile", "snli"]) == 2
        lines = original.count(b"\n") + 1
        assert f"{path.relative_to(project)}: line {lines} is not valid UTF-8 (byte 0xe9)" in capsys.readouterr().err
        path.write_bytes(original)


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "qa", "snli", "tweets"])
def test_every_profiles_split_caps_can_be_set_one_by_one_with_dvc_exp_run(project, name):
    """The image profiles wrote ``data.max_samples: {}``, which `dvc exp run -S data.max_samples.train=600` (and
    even the whole mapping given with -S) refused: "Invalid --set-param value". Every profile now names each split."""
    from dvc.utils.hydra import apply_overrides

    assert main(["profile", name]) == 0
    apply_overrides("params.yaml", ["data.max_samples.train=600"])
    assert load_params("params.yaml").data.max_samples["train"] == 600
    apply_overrides("params.yaml", ["data.max_samples={train: 60, validation: 10, test: 20}"])
    assert load_params("params.yaml").data.max_samples == {"train": 60, "validation": 10, "test": 20}
