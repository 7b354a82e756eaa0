"""The registry survives a kill at every write: ``register``, ``promote`` and ``rollback`` are SIGKILLed at
their N-th MLflow write (tests/kill_driver.py), then run again normally.

After the kill and after the rerun: ``champion`` is the old or the new version, never missing; no version is
both champion and challenger; the rollback guard is never lost while the alias has not moved; no version claims
a ``previous_champion`` it did not get by becoming champion. After the rerun: no run is left RUNNING, no gate is
``pending``, and the registry is where an uninterrupted command leaves it.

The default suite kills at the first and the last six writes of each command (where the alias moves); the whole
matrix, every N, is marked ``slow`` (``pytest -m slow tests/integration/test_registry_kills.py``).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from distillery.cli import main
from distillery.stages import register as stage
from test_registry import _export, _params, _write_test_split, build_project, project  # noqa: F401 - fixture
from tiny import make_texts

MOVE_TAG, GUARD, PREVIOUS = "distillery.champion_move", "distillery.rolled_back_at", "distillery.previous_champion"
# command, rerun, the old and the new champion
SCENARIOS = {
    "register": (["register"], ["register"], "1", "2"),
    "promote": (["promote", "2", "--reason", "reviewed"], ["promote", "2", "--reason", "reviewed"], "1", "2"),
    "rollback": (["rollback", "--reason", "complaints"], ["rollback", "--reason", "complaints"], "2", "1"),
}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, tiny_bert):
    """One project and a store snapshot per scenario: before register B; B champion; B rolled back and challenger."""
    mp = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("kills")
    try:
        proj = _make_project(root, tiny_bert, mp)
        snapshots = root / "snapshots"
        stage.register(_params(proj))  # v1 (model A) champion
        _export(proj, tiny_bert, shift=1)
        _write_test_split(proj, make_texts(40, seed=5)["text"].tolist(), shift=1)  # B wins on this split
        _params(proj, min_retention=0.0)
        shutil.copytree(proj / "mlruns", snapshots / "register")
        assert stage.register(_params(proj, min_retention=0.0))["decision"] == "promoted"
        shutil.copytree(proj / "mlruns", snapshots / "rollback")
        assert main(["rollback", "--reason", "complaints"]) == 0
        assert stage.register(_params(proj, min_retention=0.0))["decision"] == "rejected"  # v2 challenger, guarded
        shutil.copytree(proj / "mlruns", snapshots / "promote")
        yield proj, snapshots
    finally:
        mp.undo()


def _make_project(root: Path, tiny_bert: Path, mp: pytest.MonkeyPatch) -> Path:
    """The ``project`` fixture of test_registry, built once for the module."""
    proj = build_project(root / "project", tiny_bert)
    mp.chdir(proj)
    return proj


def _run_matrix(prepared, scenario: str, kill_at) -> list[dict]:
    proj, snapshots = prepared
    argv, rerun, _, _ = SCENARIOS[scenario]
    out = proj.parent / f"{scenario}-report.json"
    spec = proj.parent / f"{scenario}-spec.json"
    spec.write_text(json.dumps({"project": str(proj), "snapshot": str(snapshots / scenario), "argv": argv,
                                "rerun": rerun, "kill_at": kill_at, "out": str(out)}))
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "kill_driver.py"), str(spec)], cwd=proj,
                          capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(out.read_text())


def _snapshot_tags(snapshots: Path, scenario: str) -> dict:
    from mlflow import MlflowClient

    uri = f"sqlite:///{snapshots / scenario / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    return {str(v.version): dict(v.tags) for v in client.search_model_versions("name='distillery-student'")}


def _consistent(state: dict, scenario: str, before: dict, where: str) -> None:
    _, _, old, new = SCENARIOS[scenario]
    aliases, versions = state["aliases"], state["versions"]
    assert aliases.get("champion") in (old, new), (where, aliases)
    assert aliases.get("challenger") != aliases["champion"], (where, aliases)
    guarded = [v for v, tags in before.items() if GUARD in tags]
    for version in guarded + (["2"] if scenario == "rollback" else []):
        if scenario != "rollback" or aliases["champion"] != "2":
            assert version == aliases["champion"] or GUARD in versions[version], (where, version, aliases)
    for version, tags in versions.items():  # a previous_champion only where the alias moved
        if tags.get(PREVIOUS) != before.get(version, {}).get(PREVIOUS):
            assert version == aliases["champion"], (where, version, tags.get(PREVIOUS), aliases)


def _final(state: dict, scenario: str, where: str) -> None:
    aliases, versions = state["aliases"], state["versions"]
    assert state["running"] == [], (where, state["running"])
    assert not [v for v, t in versions.items() if t.get("distillery.gate") == "pending" or MOVE_TAG in t], where
    if scenario == "register":
        assert aliases == {"champion": "2"} and versions["2"][PREVIOUS] == "1", (where, aliases)
        assert versions["2"]["distillery.gate"] == "passed", where
    elif scenario == "promote":
        assert aliases == {"champion": "2"} and versions["2"][PREVIOUS] == "1", (where, aliases)
        assert GUARD not in versions["2"] and versions["2"]["distillery.promoted"] == "manual", where
    else:
        assert aliases == {"champion": "1"} and GUARD in versions["2"], (where, aliases)


def _check(prepared, scenario: str, report: list[dict]) -> None:
    before = _snapshot_tags(prepared[1], scenario)
    writes = report[0]["writes"]
    assert report[0]["kill_at"] == 0 and report[0]["killed"] == 0 and writes > 3, report[0]
    for case in report:
        where = f"{scenario}, killed at write {case['kill_at']} of {writes}"
        if case["kill_at"]:
            assert case["killed"] == -9, where  # it did die there
        _consistent(case["after_kill"], scenario, before, where + " (after the kill)")
        moved = case["after_kill"]["aliases"]["champion"] == SCENARIOS[scenario][3]
        # a rollback whose alias already moved has nothing left to roll back to: refused, and nothing changes
        allowed = (0, 2) if scenario == "rollback" and moved else (0,)
        assert case["rerun"] in allowed, (where, case["rerun"])
        _consistent(case["after_rerun"], scenario, before, where + " (after the rerun)")
        _final(case["after_rerun"], scenario, where + " (after the rerun)")


@pytest.mark.parametrize("scenario", [pytest.param(name, marks=[] if name == "promote" else [pytest.mark.slow])
                                      for name in SCENARIOS])
def test_a_kill_at_the_first_and_last_writes_leaves_a_consistent_registry(prepared, scenario):
    """The default suite runs promote (its champion move is the one register uses too); -m slow runs all."""
    report = _run_matrix(prepared, scenario, {"head": 1, "tail": 6})
    assert len(report) >= 5
    _check(prepared, scenario, report)


@pytest.mark.slow
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_a_kill_at_every_write_leaves_a_consistent_registry(prepared, scenario):
    report = _run_matrix(prepared, scenario, {"head": 10 ** 6, "tail": 0})
    assert len(report) == report[0]["writes"] + 1
    _check(prepared, scenario, report)
