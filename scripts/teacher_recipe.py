"""One teacher recipe, outside the pipeline: ``prepare`` and ``train_teacher`` with params overrides into
their own directory, then EM/F1 (or the task's metrics) on the validation and test splits.

Run from a project (its params.yaml, e.g. after `python -m distillery profile qa`):

    python scripts/teacher_recipe.py b8_lr2e-4 teacher.train.batch_size=8 teacher.train.learning_rate=2.0e-4

Values are YAML. Everything goes under ``.distillery/teacher_recipes/NAME`` (git-ignored): prepared data, the
teacher, its curves, ``result.json``; params.yaml, data/ and models/ are not touched. Choose on validation,
not test.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, ".")
from distillery.config import Params, load_params  # noqa: E402
from distillery.errors import DistilleryError  # noqa: E402


def params_with(overrides: list[str]) -> Params:
    """params.yaml with ``key=value`` overrides applied as ``dvc exp run -S`` applies them (on a scratch copy),
    checked as params.yaml is."""
    from dvc.exceptions import InvalidArgumentError
    from dvc.utils.hydra import apply_overrides

    scratch = Path(f".params-recipe.tmp-{os.getpid()}.yaml")
    scratch.write_text(Path("params.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    try:
        apply_overrides(scratch, overrides)
        return load_params(scratch)
    except InvalidArgumentError as exc:
        cause = f": {exc.__cause__}" if exc.__cause__ else ""
        raise SystemExit(f"teacher_recipe: overrides {overrides}: {exc}{cause}".replace("\n", " ")) from None
    except DistilleryError as exc:
        raise SystemExit(f"teacher_recipe: {str(exc).replace(str(scratch), 'params.yaml (with the overrides)')}") from None
    finally:
        scratch.unlink(missing_ok=True)


def main(name: str, overrides: list[str]) -> dict:
    import torch

    from distillery.prepared import load_labels, load_split
    from distillery.stages.prepare import prepare
    from distillery.stages.train_teacher import train_teacher
    from distillery.task_types.load import task_type

    params = params_with(overrides)
    out = Path(".distillery/teacher_recipes") / name
    out.mkdir(parents=True, exist_ok=True)
    result = {"name": name, "overrides": overrides, "threads": torch.get_num_threads()}
    started = time.perf_counter()
    prepare(params, out / "prepared")
    result["prepare_s"] = round(time.perf_counter() - started, 1)
    started = time.perf_counter()
    summary = train_teacher(params, out / "prepared", out / "teacher", out / "curves")
    result["train_s"] = round(time.perf_counter() - started, 1)
    result["best_validation"] = summary.get("best_validation")
    task, labels = task_type(params.task, params), load_labels(out / "prepared")
    model = task.load_model(str(out / "teacher"), "teacher", labels).eval()
    featuriser = task.load_featuriser(str(out / "teacher"), "teacher")
    for split in ("validation", "test"):
        frame = load_split(split, out / "prepared")
        started = time.perf_counter()
        with torch.no_grad():
            outputs = task.answers(model, featuriser, frame, params.teacher.max_length, params.evaluate.batch_size)
        result[split] = task.metrics(outputs, frame, labels)
        result[f"{split}_s"], result[f"{split}_n"] = round(time.perf_counter() - started, 1), len(frame)
    (out / "result.json").write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    try:
        print(json.dumps(main(sys.argv[1], sys.argv[2:])))
    except DistilleryError as exc:
        raise SystemExit(f"teacher_recipe: {exc}") from None
