"""Multi-seed evidence for the product's claim: ``python -m distillery kd_gain``.

For each seed in ``evaluate.seeds`` it builds the student afresh, trains the distilled student and
the labels-only baseline from that same initialisation (cached teacher logits, current params),
and scores both on the test split. It reports mean ± standard deviation and the paired
difference (distilled − baseline, per seed) with its 95% t-interval. Nothing is tuned on the test
split: hyperparameters come from params.yaml, and each model keeps its best *validation* epoch.

Each model is also scored on the validation split, and each finished run is kept at once under
``reports/sweep_runs/`` (as the sweep keeps its runs), so an interrupted kd_gain resumes where it stopped.
Each summary is kept under ``reports/kd_gain_runs/<variant>.json`` (the variant names the distillation
settings), so ``python -m distillery compare`` can set variants side by side and pick one on validation alone.

This is not part of `dvc repro` (it trains 2 × len(seeds) students); run it when the claim must
be re-established, e.g. after changing the student or the distillation settings.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Union

import numpy as np

from distillery.config import Params, train_settings
from distillery.files import private_temp, read_json, scratch_dir, sha256_files, write_json
from distillery.paths import LOGITS_DIR, PREPARED_DIR, REPORTS_DIR, TEACHER_DIR
from distillery.prepared import load_split
from distillery.students.load import student_family
from distillery.training import fit

METRICS = ("accuracy", "macro_f1")
RUNS_DIR = "kd_gain_runs"


def variant(params: Params) -> dict:
    """The settings that tell one distillation recipe from another."""
    d, s = params.distill, params.student
    transfer = ("none" if d.transfer_set.source == "none" or d.transfer_set.max_rows == 0
                else f"{d.transfer_set.source} (max {d.transfer_set.max_rows})")
    if d.labelled_rows is not None and d.transfer_set.source == "remainder":
        # distill adds the train rows past labelled_rows, unlabelled, whatever max_rows says (it caps prepare's
        # rows from outside the train split only)
        transfer = f"{transfer} + the train rows beyond labelled_rows {d.labelled_rows}"
    return {"student": student_family(s.source).describe(params),
            "transfer_set": transfer,
            "augment_copies": d.augment.copies, "hidden_loss_weight": d.hidden_loss.weight,
            "loss": d.loss, "alpha": d.alpha, "temperature": d.temperature,
            # two recipes that differ only in training are two runs (one file each), and compare names it
            "train": f"{d.train.epochs:g} epochs, lr {train_settings(params, 'distill').learning_rate:g}, "
                     f"batch {d.train.batch_size}"
                     + ("" if d.train.attention_dropout is None else
                        f", attention dropout {d.train.attention_dropout:g}")
                     + (", embeddings frozen" if d.train.freeze_embeddings else "")}


NAME_LIMIT = 150  # a file name holds at most 255 bytes; a long recipe keeps its start and a hash of the whole


def variant_name(settings: dict) -> str:
    text = "_".join(f"{k}-{v}" for k, v in settings.items())
    name = re.sub(r"[^A-Za-z0-9.=-]+", "_", text).strip("_")
    if len(name) > NAME_LIMIT:  # the full recipe is in the file, under "variant"
        name = f"{name[:NAME_LIMIT - 13].rstrip('_.-')}_{hashlib.sha256(text.encode()).hexdigest()[:12]}"
    return name


def paired_summary(student: list[float], baseline: list[float]) -> dict:
    """Mean ± sample std of each, and the paired difference with a 95% t-interval."""
    from scipy import stats

    student_arr, baseline_arr = np.asarray(student, float), np.asarray(baseline, float)
    diff = student_arr - baseline_arr
    n = len(diff)
    std = float(diff.std(ddof=1)) if n > 1 else float("nan")
    half = float(stats.t.ppf(0.975, n - 1) * std / np.sqrt(n)) if n > 1 else float("nan")
    return {
        "student_mean": float(student_arr.mean()), "student_std": float(student_arr.std(ddof=1)) if n > 1 else 0.0,
        "baseline_mean": float(baseline_arr.mean()),
        "baseline_std": float(baseline_arr.std(ddof=1)) if n > 1 else 0.0,
        "diff_mean": float(diff.mean()), "diff_std": std,
        # a t-interval on few seeds can run past what a difference of two scores in [0, 1] can be (a trial's 2 seeds:
        # -48 to +121 points): bounded to [-1, 1], and said so
        "diff_ci95": [max(-1.0, float(diff.mean() - half)), min(1.0, float(diff.mean() + half))],
        "diff_ci95_bounded": bool(n > 1 and (diff.mean() - half < -1.0 or diff.mean() + half > 1.0)),
        "diff_over_baseline_std": float(diff.mean() / baseline_arr.std(ddof=1))
        if n > 1 and baseline_arr.std(ddof=1) > 0 else None,
    }


def train_and_score(params: Params, inputs, model, dataset, options: Union[dict, None], seed: int,
                    frames: dict, labels: list, tag: str) -> dict:
    """Train ``model`` on ``dataset`` (distilled when ``options`` is given), keep its best validation epoch, and
    score it on ``frames["test"]`` and ``frames["validation"]``:
    ``{metric, validation_<metric>, train_seconds, train_examples}``."""
    with scratch_dir(private_temp() / f"distillery-seed-{seed}-{tag}") as scratch:
        summary = fit(inputs.task, model, inputs.tokenizer, dataset, inputs.validation_dataset,
                      train_settings(params, "distill"),
                      seed, Path(scratch), distill=options)
    scores, one_label = {}, None
    for split in ("test", "validation"):
        outputs = inputs.task.answers(model, inputs.tokenizer, frames[split], params.student.max_length,
                                      params.evaluate.batch_size)
        scores[split] = inputs.task.metrics(outputs, frames[split], labels)
        if split == "test":
            one_label = only_label(outputs, labels)
    metrics = (inputs.task.primary_metric, inputs.task.secondary_metric)  # accuracy, macro_f1 | f1, exact_match
    return {m: scores["test"][m] for m in metrics} | \
        {f"validation_{m}": scores["validation"][m] for m in metrics} | \
        {"train_seconds": summary["train_seconds"], "train_examples": summary["train_examples"],
         "one_label": one_label}


def only_label(outputs, labels: list):
    """The label a classifier gave every test row, when it gave them all one (its training collapsed), else None;
    None too for outputs that are not class scores (extractive QA's answers)."""
    scores = np.asarray(outputs) if isinstance(outputs, np.ndarray) else None
    if scores is None or scores.ndim != 2 or scores.shape[1] != len(labels) or len(scores) < 2:
        return None
    answered = np.unique(scores.argmax(axis=1))
    return str(labels[int(answered[0])]) if len(answered) == 1 else None


def collapsed(records: list[dict]) -> list[dict]:
    """The runs (kd_gain's or the sweep's records) whose model gave one label to every test row."""
    return [{"seed": r["seed"], "model": r["model"], "alpha": r.get("alpha"), "temperature": r.get("temperature"),
             "label": r["one_label"]} for r in records if r.get("one_label") is not None]


def collapse_warning(runs: list[dict]) -> str:
    """A warning line on the collapsed runs, or "": a gain over a baseline that answers one label, or a student
    that does, says little about distillation (evaluate warns of the pipeline's own models the same way)."""
    return f"\nWarning: {collapse_sentence(runs)}" if runs else ""


def collapse_sentence(runs: list[dict]) -> str:
    """Which collapsed runs answered which label, and what that means (compare repeats it per recipe)."""
    named = []
    for who in ("baseline", "student"):
        mine = [r for r in runs if r["model"] == who]
        if mine:
            seeds = sorted({r["seed"] for r in mine})
            answers = sorted({r["label"] for r in mine})
            name = "distilled student" if who == "student" else who  # as the summary line names it: "distilled"
            named.append(f"the {name} answered {' or '.join(map(repr, answers))} for every test row in "
                         f"{len(mine)} run{'s' if len(mine) != 1 else ''} (seed{'s' if len(seeds) != 1 else ''} "
                         f"{', '.join(map(str, seeds))})")
    both = len(named) > 1
    return ("; ".join(named) + f": {'their trainings' if both else 'its training'} collapsed to one label "
            f"(distill.train.learning_rate, .epochs), so a gain measured against {'them' if both else 'it'} says "
            "little about distillation.")


def kd_gain(params: Params, prepared_dir: Union[str, Path] = PREPARED_DIR, teacher_dir: Union[str, Path] = TEACHER_DIR,
            logits_dir: Union[str, Path] = LOGITS_DIR, reports_dir: Union[str, Path] = REPORTS_DIR) -> dict:
    """Per seed of ``evaluate.seeds`` the baseline, then the student at ``distill.alpha`` and
    ``distill.temperature``, as runs of the sweep's grid: each finished run is kept under
    ``reports/sweep_runs/`` with its fingerprint as soon as it ends, so an interrupted kd_gain (an hour and more on
    question answering) resumes at the first run it had not finished, and runs the sweep or the work pool already
    made with the same recipe are reused rather than trained again."""
    from distillery.sweep import RUNS_DIR as SWEEP_RUNS, _Runs, run_name

    cell = (float(params.distill.alpha), float(params.distill.temperature))
    runs = _Runs(params, prepared_dir, teacher_dir, logits_dir, reports_dir, "kd_gain")
    records, todo = [], [(seed, one) for seed in params.evaluate.seeds for one in (None, cell)]
    for n, (seed, one) in enumerate(todo, 1):
        kept = runs.kept(seed, one)
        if kept is not None:
            print(f"kd_gain: {run_name(seed, one)} kept from an earlier run "
                  f"({Path(reports_dir) / SWEEP_RUNS / run_name(seed, one)}.json)", flush=True)
        records.append(kept or runs.run(seed, one, f"run {n} of {len(todo)}"))
    return report_from_runs(params, records, prepared_dir, reports_dir, logits_dir)


def report_from_runs(params: Params, records: list[dict], prepared_dir: Union[str, Path] = PREPARED_DIR,
                     reports_dir: Union[str, Path] = REPORTS_DIR, logits_dir: Union[str, Path] = LOGITS_DIR) -> dict:
    """The same report from runs trained one by one (``distillery.sweep``'s records: per seed of
    ``evaluate.seeds`` a ``baseline`` and a ``student`` record, as a work pool's workers leave them)."""
    from distillery.task_types.load import task_type

    task = task_type(params.task, params)
    metrics = (task.primary_metric, task.secondary_metric)
    keys = (*metrics, *(f"validation_{m}" for m in metrics), "train_seconds", "train_examples")
    by_seed: dict = {}
    for record in records:  # one_label: absent from a record kept before it was recorded
        by_seed.setdefault(record["seed"], {})[record["model"]] = {**{k: record[k] for k in keys},
                                                                   "one_label": record.get("one_label")}
    missing = [f"seed {s} {who}" for s in params.evaluate.seeds for who in ("student", "baseline")
               if who not in by_seed.get(s, {})]
    if missing:
        raise ValueError(f"kd_gain: no run for {', '.join(missing)}")
    per_seed = [{"seed": s, "student": by_seed[s]["student"], "baseline": by_seed[s]["baseline"]}
                for s in params.evaluate.seeds]
    return _report(params, per_seed, metrics, load_split("test", prepared_dir), load_split("validation", prepared_dir),
                   reports_dir, logits_dir,
                   data={"task": params.task, "test_sha256": sha256_files([Path(prepared_dir) / "test.parquet"])})


def summary(result: dict) -> str:
    """The command's line: both models over the seeds, the paired gain with its interval, and the verdict."""
    metric = result.get("metrics", ["accuracy"])[0]  # f1 for extractive QA
    gain, warning = result[metric], collapse_warning(result.get("collapsed", []))  # on a line of its own
    if result.get("teacher_one_label") is not None:
        warning += (f"\nWarning: the teacher answers {result['teacher_one_label']!r} for every test row (evaluate): "
                    "its training collapsed, so the students' retention of its score means nothing.")
    name, unit = ("", "%") if metric == "accuracy" else (f"{metric.upper()} ", "")  # F1 on 0-100, as SQuAD's
    return (f"over seeds {result['seeds']}: distilled {name}{100 * gain['student_mean']:.2f} ± "
            f"{100 * gain['student_std']:.2f}{unit}, baseline {name}{100 * gain['baseline_mean']:.2f} ± "
            f"{100 * gain['baseline_std']:.2f}{unit}, paired gain {100 * gain['diff_mean']:+.2f} points "
            f"(95% CI {100 * gain['diff_ci95'][0]:+.2f} to {100 * gain['diff_ci95'][1]:+.2f}"
            f"{', bounded to possible values' if gain.get('diff_ci95_bounded') else ''}): "
            f"{verdict(gain, len(result['seeds']), metric)}" + (f".{warning}" if warning else ""))


def verdict(gain: dict, seeds: int, metric: str = "accuracy", key: str = "evaluate.seeds") -> str:
    """What a paired gain over ``seeds`` seeds shows, in words: a minus sign or an interval across 0 is easy to read
    past in a line of figures. ``key``: the params key of those seeds (the sweep's are sweep.seeds)."""
    low, high = gain["diff_ci95"]
    if seeds < 3:
        return (f"{seeds} seed{'s' if seeds != 1 else ''} are too few for the interval to mean much (two seeds with "
                f"equal gains give it no width); use 3 or more in {key}")
    if high < 0:
        return "the distilled student is BELOW its labels-only baseline over these seeds: distillation did not help"
    if low <= 0:
        below = " (the distilled student is below its baseline on average: look at the recipe)" \
            if gain["diff_mean"] < 0 else ""
        return f"the interval includes 0: these seeds show no {metric} gain from distillation{below}"
    return "the distilled student beats its labels-only baseline over these seeds"


def _report(params: Params, per_seed: list[dict], metrics: tuple, test, validation,
            reports_dir: Union[str, Path], logits_dir: Union[str, Path], data: Union[dict, None] = None) -> dict:
    """Summarise the per-seed scores, write kd_gain.json, its kept copy under kd_gain_runs/ and the plot. ``data``:
    the task and the test split's hash, so compare sets only runs of one task and one test split side by side."""
    runs = [{"seed": r["seed"], "model": who, **r[who]} for r in per_seed for who in ("baseline", "student")]
    result = {"variant": variant(params), **(data or {}), "seeds": params.evaluate.seeds, "test_rows": int(len(test)),
              "collapsed": collapsed(runs),
              "validation_rows": int(len(validation)), "per_seed": per_seed, "metrics": list(metrics),
              **{m: paired_summary([r["student"][m] for r in per_seed], [r["baseline"][m] for r in per_seed])
                 for m in metrics},
              "validation": {f"{who}_{m}_mean": float(np.mean([r[who][f"validation_{m}"] for r in per_seed]))
                             for who in ("student", "baseline") for m in metrics},
              "train_seconds_mean": {who: float(np.mean([r[who]["train_seconds"] for r in per_seed]))
                                     for who in ("student", "baseline")}}
    eval_path, manifest_path = Path(reports_dir) / "metrics" / "eval.json", Path(logits_dir) / "manifest.json"
    scored = read_json(eval_path) if eval_path.is_file() else {}
    cached = read_json(manifest_path) if manifest_path.is_file() else {}
    result["teacher_weights"] = cached.get("teacher_weights")  # which teacher taught: compare checks they agree
    # the teacher is trained once; quote it alongside, if evaluate scored the teacher whose outputs were distilled
    if scored.get("teacher_weights") and scored["teacher_weights"] == cached.get("teacher_weights") \
            and scored.get("test_rows") == len(test):
        teacher = scored["teacher"]
        result["teacher"] = {m: teacher[m] for m in metrics}
        primary = metrics[0]
        result[f"student_{primary}_retention_mean"] = result[primary]["student_mean"] / teacher[primary]
        from distillery.reports import one_answer

        result["teacher_one_label"] = one_answer(scored, "teacher")  # a retention of a collapsed teacher: none
    write_json(Path(reports_dir) / "metrics" / "kd_gain.json", result)
    record = Path(reports_dir) / RUNS_DIR / f"{variant_name(result['variant'])}.json"
    if record.is_file():  # the same recipe measured again: say what the kept record held, as it is replaced
        earlier = read_json(record)
        if earlier.get("seeds") != result["seeds"] or earlier.get("test_sha256") != result.get("test_sha256"):
            print(f"kd_gain: replacing {record} (seeds {earlier.get('seeds')}"
                  + ("" if earlier.get("test_sha256") == result.get("test_sha256") else ", another test split")
                  + f") with this run's seeds {result['seeds']}", flush=True)
    write_json(record, result)
    from distillery.plots import plot_kd_gain

    plot_kd_gain(result, Path(reports_dir) / "plots" / "kd_gain.png")
    return result
