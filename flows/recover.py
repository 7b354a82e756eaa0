"""``python -m flows.recover``: undo the overrides of a flow run that was killed before it could.

A flow run with ``overrides`` writes them into params.yaml and puts the file, ``dvc.lock`` and the outputs it
replaced back when it ends (tasks/experiments.py). One killed first leaves them: the next flow run puts them back
before anything else, and ``python -m distillery <stage>`` (so ``dvc repro``) refuses to run under them. This does
the flow's recovery alone, under the repository lock, for a workspace whose next step is not a flow run.
"""
from __future__ import annotations

import sys
from typing import Optional


def main(argv: Optional[list[str]] = None) -> int:
    from distillery.errors import DistilleryError
    from distillery.locking import repository_lock, stage_lock_wait
    from distillery.paths import OVERRIDES_BACKUP
    from tasks.experiments import recover_params

    args = argv if argv is not None else sys.argv[1:]
    if args in (["-h"], ["--help"]):
        print(f"usage: python -m flows.recover\n\n{__doc__.strip()}")
        return 0
    if args:
        print("python -m flows.recover takes no arguments; run it from the project root", file=sys.stderr)
        return 2
    try:
        with repository_lock(".", "python -m flows.recover", timeout_s=stage_lock_wait()):
            recovered = recover_params(".")
    except DistilleryError as exc:  # a live flow run holds the lock: its overrides are its own
        print(f"flows.recover: {exc.label}: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"params.yaml, dvc.lock and the outputs put back from before a killed run's overrides ({OVERRIDES_BACKUP})"
          if recovered else "nothing to recover: no flow run's overrides were left in params.yaml")
    return 0


if __name__ == "__main__":
    sys.exit(main())
