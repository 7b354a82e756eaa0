"""dvc.yaml runs every stage of the one list, and lists for each stage every distillery module the stage
imports (statically, or through the task-type and student-family registries) and only real params keys."""
import ast
import subprocess
import sys
import re
from pathlib import Path

import pytest
import yaml

from distillery.config import load_params
from distillery.stages import STAGES
from distillery.students import FAMILIES
from distillery.task_types import TASK_TYPES

ROOT = Path(__file__).resolve().parents[2]
# A stage that imports a registry may load any of its entries at run time, so it depends on all of them.
DYNAMIC = {"distillery/task_types/load.py": [f"distillery.task_types.{name}.task" for name in TASK_TYPES],
           "distillery/students/load.py": [f"distillery.students.{name}" for name in FAMILIES]}
PART_CALL = re.compile(r"task_part\([^,]+,\s*[\"'](\w+)[\"']\)|(task_rows)\(")  # a stage's own part of each task type


def task_parts(stage: str) -> list[str]:
    """``rows``, ``serving``...: the task-type parts the stage loads by name (each task type has them all)."""
    text = (ROOT / "distillery" / "stages" / f"{stage}.py").read_text()
    return sorted({part or "rows" for part, rows in PART_CALL.findall(text)})


def _module_path(module: str):
    base = ROOT / module.replace(".", "/")
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _imports(module: str, seen: set) -> set:
    path = _module_path(module)
    if path is None or path in seen:
        return seen
    seen.add(path)
    parts = module.split(".")
    for index in range(1, len(parts)):  # importing a.b.c runs a/__init__ and a/b/__init__ first
        _imports(".".join(parts[:index]), seen)
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("distillery"):
            _imports(node.module, seen)
            for alias in node.names:  # `from distillery.x import submodule`
                _imports(f"{node.module}.{alias.name}", seen)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("distillery"):
                    _imports(alias.name, seen)
    for registry, entries in DYNAMIC.items():
        if ROOT / registry in seen:
            for entry in entries:
                _imports(entry, seen)
    return seen


def stage_imports(stage: str) -> set:
    """The stage's distillery files; a package whose every module the stage imports appears as its directory."""
    seen = _imports(f"distillery.stages.{stage}", set())
    for part in task_parts(stage):
        for name in TASK_TYPES:
            _imports(f"distillery.task_types.{name}.{part}", seen)
    files = {str(p.relative_to(ROOT)) for p in seen}
    for package in {p.parent for p in seen if p.name == "__init__.py" and p.parent != ROOT / "distillery"}:
        modules = {str(p.relative_to(ROOT)) for p in package.glob("*.py")}
        if modules <= files and not any(q.is_dir() and (q / "__init__.py").is_file() for q in package.iterdir()):
            files = (files - modules) | {str(package.relative_to(ROOT))}
    return files


@pytest.fixture(scope="module")
def dvc_stages():
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


CHECK = "check_params"  # dvc.yaml's first stage: every key of params.yaml, so a typo fails `dvc repro`


def test_every_stage_is_wired(dvc_stages):
    assert list(dvc_stages) == [CHECK, *STAGES]
    for stage in STAGES:
        assert dvc_stages[stage]["cmd"] == f"python -m distillery {stage}"
    check = dvc_stages[CHECK]
    assert check["cmd"] == "python -m distillery params --check" and check["params"] == [{"params.yaml": None}]
    assert "outs" not in check  # it writes nothing, so no stage waits for it or re-runs after it
    # so a targeted `dvc repro prepare` does not run it: DVC must not remove the prepared data before prepare refuses
    assert dvc_stages["prepare"]["outs"] == [{"data/prepared": {"persist": True}}]
    # a failed register left `git status` showing its two git-tracked reports deleted (a trial)
    assert [out for kind in ("metrics", "outs") for out in dvc_stages["register"][kind]] == [
        {"reports/metrics/register.json": {"cache": False, "persist": True}},
        {"reports/model_card.md": {"cache": False, "persist": True}}]
    # the user's inputs outside git (data files, local checkpoints) are its deps too: a checkpoint missing from a
    # fresh clone re-runs the check, which refuses it, before DVC removes models/teacher to run train_teacher (trial BB)
    outs = [next(iter(out)) if isinstance(out, dict) else out for stage in STAGES
            for kind in ("outs", "metrics", "plots") for out in dvc_stages[stage].get(kind, [])]
    inputs = {dep for stage in STAGES for dep in dvc_stages[stage].get("deps", []) if not dep.startswith("distillery/")
              and not any(dep == out or dep.startswith(out.rstrip("/") + "/") for out in outs)}
    assert inputs == {"data/raw", "models/pretrained"} and inputs <= set(check["deps"]), inputs


@pytest.mark.parametrize("stage", STAGES)
def test_deps_cover_imported_modules(dvc_stages, stage):
    deps = set(dvc_stages[stage]["deps"])
    imported = stage_imports(stage)
    assert imported - deps == set(), f"{stage}: add these to its deps in dvc.yaml"
    if "distillery/metrics.py" in imported:
        assert "distillery/metric_scripts" in deps
    logged = {d for d in deps if d.startswith("distillery/serving/")}  # the served model's code, logged by path
    stale = {d for d in deps if d.startswith("distillery/") and d != "distillery/metric_scripts"} - imported - logged
    assert stale == set(), f"{stage}: these deps are not imported by the stage; drop them from dvc.yaml"


@pytest.mark.parametrize("part, owner", [("rows", "prepare"), ("serving", "register")])
def test_a_stage_s_own_task_part_re_runs_that_stage_alone(dvc_stages, part, owner):
    """Editing how rows are checked re-runs prepare, and nothing after it when its outputs are unchanged;
    editing the served schema re-runs register alone."""
    for stage in STAGES:
        deps = dvc_stages[stage]["deps"]
        reads = any(d.endswith(f"/{part}.py") or (ROOT / d / f"{part}.py").is_file() for d in deps)
        assert reads == (stage == owner), stage
        assert (f"distillery/stages/{owner}.py" in deps) == (stage == owner), stage


@pytest.mark.parametrize("stage", STAGES)
def test_params_keys_exist(dvc_stages, stage):
    flat = load_params(ROOT / "params.yaml").flat()
    for key in dvc_stages[stage].get("params", []):
        assert any(k == key or k.startswith(key + ".") for k in flat), f"{stage}: unknown params key {key}"


# Keys no stage of `dvc repro` reads: the Prefect flow's schedule, the sweep command, kd_gain's seeds.
OUTSIDE_DVC_REPRO = ("schedule", "sweep", "evaluate.seeds")


def test_every_params_key_a_stage_may_read_is_a_params_dependency_of_some_stage(dvc_stages):
    """Otherwise `dvc exp run -S key=...` re-runs nothing and records the old results under the new setting
    (distill.labelled_rows, the primer's 800 labels, was missing)."""
    declared = [key for stage in STAGES for key in dvc_stages[stage].get("params", [])]  # check_params: every key
    covered = (*declared, *OUTSIDE_DVC_REPRO)
    missing = [key for key in load_params(ROOT / "params.yaml").flat()
               if not any(key == d or key.startswith(d + ".") for d in covered)]
    assert missing == []


def test_a_changed_transfer_set_re_labels_but_never_re_trains_the_teacher(dvc_stages, tmp_path, monkeypatch):
    """train_teacher depends on the prepared files it reads, not on the whole directory: transfer.parquet and
    data_report.json change with distill.transfer_set, and the files it does read must not."""
    from conftest import tiny_params, write_params
    from distillery.stages.prepare import prepare
    from tiny import make_csv

    prepared_deps = [d for d in dvc_stages["train_teacher"]["deps"] if d.startswith("data/")]
    assert prepared_deps == ["data/prepared/train.parquet", "data/prepared/validation.parquet",
                             "data/prepared/labels.json"]
    assert "data/prepared/transfer.parquet" in dvc_stages["teacher_logits"]["deps"]  # it labels the transfer rows
    monkeypatch.chdir(tmp_path)
    make_csv(tmp_path / "data/raw/tweets.csv", n=200)
    files, rows = {}, {}
    for max_rows in (100, 20, 0):
        params = tiny_params(Path("models/none"), Path("data/raw/tweets.csv"),
                             **{"distill.transfer_set.max_rows": max_rows})
        report = prepare(load_params(write_params(tmp_path / "params.yaml", params)), f"prepared-{max_rows}")
        rows[max_rows] = report["transfer_rows"]
        files[max_rows] = {name: (tmp_path / f"prepared-{max_rows}" / name).read_bytes() for name in
                           ("train.parquet", "validation.parquet", "labels.json", "transfer.parquet")}
    assert rows[20] == 20 and rows[0] == 0 and rows[100] > 20, rows  # 200 rows: more than 20 are left over
    assert files[100]["transfer.parquet"] != files[20]["transfer.parquet"] != files[0]["transfer.parquet"]
    for name in ("train.parquet", "validation.parquet", "labels.json"):
        assert files[100][name] == files[20][name] == files[0][name], name


PREPARED_FILES = ["data/prepared/train.parquet", "data/prepared/validation.parquet", "data/prepared/test.parquet",
                  "data/prepared/transfer.parquet", "data/prepared/labels.json"]


def test_the_same_rows_from_a_moved_or_converted_source_re_run_no_stage_after_prepare_but_register(dvc_stages,
                                                                                                 tmp_path, monkeypatch):
    """The stages after train_teacher depended on the whole prepared directory, and data_report.json names the
    source: the same rows moved to another file (CSV to JSON lines) re-ran teacher_logits through benchmark
    (minutes on the default data). They depend on the prepared files; register keeps the directory (the report
    is part of a registered version's record)."""
    from conftest import tiny_params, write_params
    from distillery.stages.prepare import prepare
    from tiny import make_texts

    for stage in ("teacher_logits", "distill", "evaluate", "export", "benchmark"):
        assert [d for d in dvc_stages[stage]["deps"] if d.startswith("data/prepared")] == PREPARED_FILES, stage
    assert "data/prepared" in dvc_stages["register"]["deps"]
    monkeypatch.chdir(tmp_path)
    rows = make_texts(200)
    Path("data/raw").mkdir(parents=True)
    rows.to_csv("data/raw/tweets.csv", index=False)
    rows.to_json("data/raw/moved.jsonl", orient="records", lines=True)
    files = {}
    for source in ("data/raw/tweets.csv", "data/raw/moved.jsonl"):
        params = tiny_params(Path("models/none"), Path(source), **{"distill.transfer_set.max_rows": 30})
        out = Path(f"prepared-{Path(source).suffix[1:]}")
        prepare(load_params(write_params(tmp_path / "params.yaml", params)), out)
        files[source] = {name: (out / name).read_bytes() for name in
                         [Path(f).name for f in PREPARED_FILES] + ["data_report.json"]}
    first, moved = files.values()
    assert first["data_report.json"] != moved["data_report.json"]  # it names the source
    for name in [Path(f).name for f in PREPARED_FILES]:
        assert first[name] == moved[name], name


def test_prepare_and_register_load_no_torch(tmp_path):
    """Their own task-type parts (rows, serving) load without the task type's class: a text task's prepare runs,
    and register's modules and every task type's serving part import, without torch or transformers. (They used
    to import torch, 3-5 s a process here, through the task-type package's __init__.)"""
    code = f"""
import sys
sys.path[:0] = [{str(ROOT / 'tests')!r}]
from pathlib import Path
from conftest import tiny_params, write_params
from tiny import make_csv
from distillery.config import load_params
from distillery.stages.prepare import prepare
make_csv(Path('tweets.csv'), n=60)
report = prepare(load_params(write_params(Path('params.yaml'), tiny_params(Path('models/none'), Path('tweets.csv')))),
                 'prepared')
assert report['rows']['train'] > 0, report
import distillery.stages.register
from distillery.task_types.parts import task_part
for name in ('text_classification', 'question_answering', 'image_classification'):
    task_part(name, 'rows'), task_part(name, 'serving')
loaded = sorted(m for m in ('torch', 'transformers') if m in sys.modules)
assert not loaded, loaded
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
