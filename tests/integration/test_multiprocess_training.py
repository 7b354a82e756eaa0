"""Multi-process training: ``teacher.train.processes: 2`` and ``distill.train.processes: 2`` re-launch the
stages under torchrun (DDP, gloo on CPU) from the same ``dvc repro``, with the same outputs as one process."""
from __future__ import annotations

import json
import re

import pytest
import yaml

from conftest import dvc, make_project, run_stages_in_process, update_params


def _outputs(project) -> dict:
    return {stage: sorted(out["path"] for out in spec.get("outs", []))
            for stage, spec in yaml.safe_load((project / "dvc.lock").read_text())["stages"].items()}


def _failure(result) -> str:
    """What a failed launch printed: first the traceback of each process other than rank 0 (torch prefixes its
    lines with ``[rankN]:``; rank 0 mostly reports only that a peer went away), then the ends of the outputs."""
    others = [line for line in result.stderr.splitlines() if re.match(r"\[rank[1-9][0-9]*\]:", line)]
    return "\n".join(others[-80:]) + "\n...\n" + result.stderr[-2500:] + result.stdout[-2000:]


def test_two_processes_train_the_same_steps_into_the_same_outputs(tmp_path, tiny_bert):
    project = make_project(tmp_path / "project", tiny_bert)
    run_stages_in_process(project, through="distill")  # one process: the figures to compare with
    one = {name: json.loads((project / f"models/{name}/training.json").read_text())
           for name in ("teacher", "student", "baseline")}
    files = {name: sorted(p.name for p in (project / f"models/{name}").iterdir()) for name in one}
    outputs = _outputs(project)

    update_params(project / "params.yaml", **{"teacher.train.processes": 2, "distill.train.processes": 2})
    temp = tmp_path / "tmp"  # the processes' own temporary directory: the shared checkpoints are kept there
    temp.mkdir()
    result = dvc(project, "repro", "distill", env={"TMPDIR": str(temp)})
    assert result.returncode == 0, _failure(result)
    assert "train_teacher: training in 2 processes" in result.stdout and "distill: training in 2 processes" in \
        result.stdout
    # the stage's own lines once, from the launching process (rank 0 said them again, "done in" every rank)
    for stage in ("train_teacher", "distill"):
        assert result.stdout.count(f"distillery {stage}: done in") == 1, _failure(result)
    assert result.stdout.count("distill: distilling ") == 1, _failure(result)
    for name, before in one.items():
        after = json.loads((project / f"models/{name}/training.json").read_text())
        assert (before["processes"], after["processes"]) == (1, 2)
        # the global batch stays batch_size: each process takes half, so the steps are the same
        assert after["steps"] == before["steps"] and after["train_examples"] == before["train_examples"]
        assert sorted(p.name for p in (project / f"models/{name}").iterdir()) == files[name]
        assert set(after["best_validation"]) == set(before["best_validation"])
    assert _outputs(project) == outputs
    from distillery.files import SCRATCH

    leftovers = [p.name for p in (project / "models").iterdir() if SCRATCH.match(p.name)]
    assert leftovers == []  # no scratch directory of either process is left behind
    checkpoints = [p.name for p in temp.glob("distillery-*/*")]
    assert checkpoints == []  # nor the checkpoints of any of the three fits
    from distillery.cli import main

    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(project)
        assert main(["evaluate"]) == 0  # the 2-process models load and score as any
