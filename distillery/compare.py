"""``python -m distillery compare``: the distillation recipes measured by ``kd_gain``, side by side.

Every ``kd_gain`` run leaves ``reports/kd_gain_runs/<variant>.json``. This command reads them all
and writes ``reports/compare.md`` (a table of the task's two test metrics as mean ± std over seeds, each
recipe's own labels-only baseline and its paired gain over it, the validation score and training time, with
the teacher alongside) and ``reports/metrics/compare.json``. The recommended recipe is the one with the best
mean *validation* score: the test split only reports, it never chooses. Runs of another task or test split than
the prepared one are left out and named; runs on other seeds or teachers are listed, and the table says what differs
between them. A recipe whose gain's interval reaches 0 or below, or rests on fewer than 3 seeds, is said so in words.
"""
from __future__ import annotations

from pathlib import Path
from typing import Union

from distillery.config import Params
from distillery.errors import DataError
from distillery.files import read_json, sha256_files, write_json
from distillery.kd_gain import METRICS, RUNS_DIR, collapse_sentence, verdict
from distillery.paths import PREPARED_DIR, REPORTS_DIR

# what must be equal for two runs' figures to be compared, and how a difference is named
COMPARABLE = {"test_rows": "test rows", "validation_rows": "validation rows", "seeds": "seeds",
              "teacher_weights": "teacher"}


def _pm(summary: dict, who: str) -> str:
    return f"{100 * summary[f'{who}_mean']:.2f} ± {100 * summary[f'{who}_std']:.2f}"


def _label(settings: dict) -> str:
    return "; ".join(f"{k} {v}" for k, v in settings.items())


def _differences(runs: list[dict]) -> list[str]:
    """The names of the COMPARABLE fields whose values differ between runs (a run that did not record one, from
    an older Distillery, counts as unknown, not as different)."""
    return [name for key, name in COMPARABLE.items()
            if len({repr(r[key]) for r in runs if r.get(key) is not None}) > 1]


def _of_this_data(runs: list[dict], params: Params, prepared_dir: Path) -> tuple[list[dict], list[str]]:
    """The runs of this task on the prepared test split, and the files of the others (a run recorded before
    kd_gain kept its task and split counts as this data's). Runs of an earlier task or data stay in
    ``reports/kd_gain_runs/``, and were set beside these as one table (an image recipe marked best over a text
    one)."""
    test = Path(prepared_dir) / "test.parquet"
    current = sha256_files([test]) if test.is_file() else None
    others = [r["file"] for r in runs if r.get("task", params.task) != params.task
              or (current and r.get("test_sha256", current) != current)]
    return [r for r in runs if r["file"] not in others], others


def compare(params: Params, reports_dir: Union[str, Path] = REPORTS_DIR,
            prepared_dir: Union[str, Path] = PREPARED_DIR) -> dict:
    runs_dir = Path(reports_dir) / RUNS_DIR
    paths = sorted(runs_dir.glob("*.json"))
    if not paths:
        raise DataError(f"{runs_dir}: no kd_gain runs to compare; run `python -m distillery kd_gain` first")
    runs, left_out = _of_this_data([read_json(path) | {"file": path.name} for path in paths], params, prepared_dir)
    if not runs:
        raise DataError(f"{runs_dir}: every kd_gain run there is of another task or test split than "
                        f"{params.task} on {prepared_dir} ({', '.join(left_out)}); run `python -m distillery "
                        "kd_gain` on this data first")
    kinds = {tuple(r.get("metrics") or METRICS) for r in runs}
    if len(kinds) > 1:
        named = "; ".join(f"{r['file']}: {', '.join(r.get('metrics') or METRICS)}" for r in runs)
        raise DataError(f"{runs_dir}: the runs score different tasks ({named}); keep one task's runs there")
    primary, secondary = next(iter(kinds))
    best = max(runs, key=lambda r: r["validation"][f"student_{primary}_mean"])
    tied = [r for r in runs if r is not best and
            r["validation"][f"student_{primary}_mean"] == best["validation"][f"student_{primary}_mean"]]
    lines = [f"| recipe | seeds | test {primary} % | test {secondary} ×100 | its baseline, test {primary} % | "
             f"gain over that baseline, {primary} points (95% CI) | validation {primary} % | distill s / seed |",
             "|---|---|---|---|---|---|---|---|"]
    for run in runs:
        one, two = run[primary], run[secondary]
        mark = "" if run is not best else " **(best on validation)**" if not tied else \
            f" **(best on validation, tied with {len(tied)} more: the first listed)**"
        lines.append(f"| {_label(run['variant'])}{mark} | {run['seeds']} | {_pm(one, 'student')} | "
                     f"{_pm(two, 'student')} | {_pm(one, 'baseline')} | "
                     f"{100 * one['diff_mean']:+.2f} ({100 * one['diff_ci95'][0]:+.2f} to "
                     f"{100 * one['diff_ci95'][1]:+.2f}) | {100 * run['validation'][f'student_{primary}_mean']:.2f} | "
                     f"{run['train_seconds_mean']['student']:.0f} |")
    teachers = {repr(r["teacher"]): r["teacher"] for r in runs if "teacher" in r}
    if len(teachers) == 1:
        teacher = next(iter(teachers.values()))
        lines.append(f"| teacher | | {100 * teacher[primary]:.2f} | {100 * teacher[secondary]:.2f} | | | | |")
    differ = _differences(runs)
    caution = (f"\n\n**These runs are not all comparable:** they differ in {', '.join(differ)}. Their figures are "
               f"not on one footing, and the recommendation compares them as they are." if differ else "")
    caution += (f"\n\nLeft out, as runs of another task or test split: {', '.join(left_out)}." if left_out else "")
    collapsed = sorted({repr(r["teacher_one_label"]) for r in runs if r.get("teacher_one_label") is not None})
    caution += (f"\n\n**The teacher answers {' or '.join(collapsed)} for every test row:** its training collapsed, "
                "so what the students keep of its score means nothing." if collapsed else "")
    caution += "".join(f"\n\n{_label(r['variant'])}: {collapse_sentence(r['collapsed'])}"
                       for r in runs if r.get("collapsed"))  # kd_gain said it; the table repeats it
    caution += "".join(f"\n\n{_label(r['variant'])}: {verdict(r[primary], len(r['seeds']), primary)}." for r in runs
                       if r[primary]["diff_ci95"][0] <= 0 or len(r["seeds"]) < 3)
    text = (f"# Distillation recipes compared\n\nTest scores are mean ± sample standard deviation over the seeds; "
            f"each recipe's gain is the paired difference from its own labels-only baseline, trained from the same "
            f"initialisation (the baseline column). The recommendation uses validation {primary} only."
            f"{caution}\n\n" + "\n".join(lines) + "\n")
    (Path(reports_dir) / "compare.md").write_text(text, encoding="utf-8")
    result = {"runs": [{"file": r["file"], "variant": r["variant"], f"test_{primary}_mean": r[primary]["student_mean"],
                        f"baseline_test_{primary}_mean": r[primary]["baseline_mean"],
                        f"validation_{primary}_mean": r["validation"][f"student_{primary}_mean"]} for r in runs],
              "best_on_validation": best["variant"], "not_comparable_in": differ, "left_out": left_out,
              "table": text}
    write_json(Path(reports_dir) / "metrics" / "compare.json", result)
    return result
