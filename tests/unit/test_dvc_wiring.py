"""dvc.yaml lists, for each stage, every distillery module the stage imports and only real params keys."""
import ast
from pathlib import Path

import pytest
import yaml

from distillery.cli import STAGES
from distillery.config import load_params

ROOT = Path(__file__).resolve().parents[2]
STAGE_MODULES = {"prepare": "distillery.data", "train_teacher": "distillery.teacher",
                 "teacher_logits": "distillery.logits", "distill": "distillery.distill",
                 "evaluate": "distillery.evaluation", "export": "distillery.export",
                 "benchmark": "distillery.benchmark", "register": "distillery.stages.register"}


def _module_path(module: str):
    """The file of a distillery module or package (its ``__init__.py``), or None."""
    base = ROOT / module.replace(".", "/")
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _imports(module: str, seen: set) -> set:
    """The files Python runs for ``import module``: its parent packages' ``__init__.py`` and what it imports."""
    parts = module.split(".")
    for depth in range(2, len(parts)):  # importing a.b.c runs a/b/__init__.py first
        _imports(".".join(parts[:depth]), seen)
    path = _module_path(module)
    if path is None or path in seen:
        return seen
    seen.add(path)
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("distillery"):
            _imports(node.module, seen)
            for alias in node.names:  # ``from distillery.registry import gate``: a submodule
                if _module_path(f"{node.module}.{alias.name}") is not None:
                    _imports(f"{node.module}.{alias.name}", seen)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("distillery"):
                    _imports(alias.name, seen)
    return seen


@pytest.fixture(scope="module")
def dvc_stages():
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def test_every_stage_is_wired(dvc_stages):
    assert list(dvc_stages) == list(STAGES)
    for stage, spec in dvc_stages.items():
        assert spec["cmd"] == f"python -m distillery {stage}"


@pytest.mark.parametrize("stage", STAGES)
def test_deps_cover_imported_modules(dvc_stages, stage):
    deps = set(dvc_stages[stage]["deps"])
    imported = {str(p.relative_to(ROOT)) for p in _imports(STAGE_MODULES[stage], set())}
    assert imported - deps == set(), f"{stage}: add these to its deps in dvc.yaml"
    if "distillery/metrics.py" in imported:
        assert "distillery/metric_scripts" in deps
    if "distillery/registry/pyfunc.py" in imported:  # the served model's code is logged by path, not imported
        assert "distillery/serving/text_classifier.py" in deps


@pytest.mark.parametrize("stage", STAGES)
def test_params_keys_exist(dvc_stages, stage):
    flat = load_params(ROOT / "params.yaml").flat()
    for key in dvc_stages[stage].get("params", []):
        assert any(k == key or k.startswith(key + ".") for k in flat), f"{stage}: unknown params key {key}"
