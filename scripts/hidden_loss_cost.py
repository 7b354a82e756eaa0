"""Cost of the hidden-state loss: distilled-student training time per example with and without it.

Run from a workspace where `dvc repro distill` has run (models/teacher and data/teacher_logits exist):

    python scripts/hidden_loss_cost.py --rows 2048 --repeats 2

Both variants train the same student on the same first ``--rows`` rows of the KD set for one epoch,
alternating, in one process; the ratio of their seconds per 1k examples is the cost. Times are
taken in one run because this machine is shared and noisy.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import tempfile
from pathlib import Path

from distillery.config import load_params, train_settings
from distillery.stages.distill import distill_inputs, hidden_options
from distillery.training import fit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--weight", type=float, default=1.0)
    args = parser.parse_args()
    params = load_params()
    inputs = distill_inputs(params)
    train = inputs.kd_dataset.shuffle(seed=0).select(range(min(args.rows, len(inputs.kd_dataset))))
    validation = inputs.validation_dataset.select(range(min(256, len(inputs.validation_dataset))))
    cfg = dataclasses.replace(train_settings(params, "distill"), epochs=1)
    hidden_params = dataclasses.replace(params, distill=dataclasses.replace(
        params.distill, hidden_loss=dataclasses.replace(params.distill.hidden_loss, weight=args.weight)))
    seconds = {"logits only": [], "logits + hidden states": []}
    for _ in range(args.repeats):
        for name in seconds:
            student = copy.deepcopy(inputs.student)
            options = dict(inputs.kd_options)
            if name != "logits only":
                options.update(hidden_options(hidden_params, inputs.task, student, "models/teacher"))
            with tempfile.TemporaryDirectory() as scratch:
                summary = fit(inputs.task, student, inputs.tokenizer, train, validation, cfg, params.seed, Path(scratch),
                              distill=options)
            seconds[name].append(summary["seconds_per_1k_examples"])
    result = {"rows": len(train), "repeats": args.repeats, "seconds_per_1k_examples": seconds,
              "ratio": min(seconds["logits + hidden states"]) / min(seconds["logits only"])}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
