"""Multi-process training: ``train_teacher`` and ``distill`` under ``torchrun`` (DDP through the ``Trainer``:
gloo on CPU, nccl on GPUs).

``teacher.train.processes`` / ``distill.train.processes`` > 1 makes ``python -m distillery <stage>`` (and so
``dvc repro`` and the flow, with no other change) re-launch the stage as ``torchrun --standalone
--nproc_per_node=N -m distillery <stage>``. Launched by hand with torchrun's own flags (several machines,
``--nnodes``/``--rdzv-endpoint``), the stage runs as it is. Every process trains; the global batch is the
configured ``batch_size`` (each process takes its share), so the model matches a single-process run's within
seed noise. Only the main process (global rank 0) writes outputs: the others' ``atomic_dir`` is a throwaway
scratch directory and their JSON/text writes are skipped, so outputs and ``dvc.lock`` paths are those of a
single process.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional

RESULT_ENV = "DISTILLERY_RESULT_FILE"  # the main process writes the stage's result here for the launching CLI


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def rank() -> int:
    return int(os.environ.get("RANK", "0") or 0)


def is_main() -> bool:
    """The process that writes outputs: rank 0, or the only process."""
    return rank() == 0


def speaks() -> bool:
    """The process that prints a stage's own lines (what it does, its summary, its time): the main process, unless a
    CLI launched it under torchrun and prints them itself (each line came twice, "done in" once per process)."""
    return is_main() and not os.environ.get(RESULT_ENV)


def shared_name(prefix: str) -> str:
    """A name every process of one launch agrees on (checkpoints the Trainer saves on rank 0 and loads on all)."""
    if world_size() == 1:
        return prefix
    run = os.environ.get("TORCHELASTIC_RUN_ID", "none")
    return f"{prefix}-{run}-{os.environ.get('MASTER_PORT', '0')}"


def dies_with(parent: int):
    """A ``preexec_fn`` by which Linux sends the child SIGTERM when ``parent`` (this process) dies, by a SIGKILL
    too: the launching CLI holds the repository lock, and torchrun's processes it left running kept training and
    writing beside the next run that took the lock. torchrun stops its processes on SIGTERM. Elsewhere: none."""
    if not sys.platform.startswith("linux"):
        return None

    def arm() -> None:
        import ctypes
        import signal

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before the signal was armed
            os.kill(os.getpid(), signal.SIGTERM)
    return arm


def launch(stage: str, processes: int, params_path: str) -> dict:
    """Run ``stage`` in ``processes`` torchrun processes on this machine; return the main process's result.

    The caller holds the repository lock; the children inherit its token (distillery/locking.py) and pass."""
    from distillery.errors import ConfigError, TransientError

    with tempfile.TemporaryDirectory(prefix="distillery-launch-") as tmp:
        result_file = Path(tmp) / "result.json"
        env = dict(os.environ, **{RESULT_ENV: str(result_file)})
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // processes)))
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
                   "-m", "distillery", stage, "--params", params_path]
        print(f"{stage}: training in {processes} processes: {' '.join(command[2:])}", flush=True)
        code = subprocess.run(command, env=env, preexec_fn=dies_with(os.getpid())).returncode
        if code == 2:  # bad input: the child printed the one-line error
            raise ConfigError(f"{stage} failed in one of its {processes} processes (the error is above)")
        if code != 0 or not result_file.is_file():
            raise TransientError(f"{stage}: a torchrun process exited with code {code} (its output is above); "
                                 "run the stage again")
        return json.loads(result_file.read_text(encoding="utf-8"))


def report_result(result: dict) -> None:
    """In the main process of a launch: hand the stage's result to the launching CLI."""
    path: Optional[str] = os.environ.get(RESULT_ENV)
    if path and is_main():
        from distillery.files import _json_default

        Path(path).write_text(json.dumps(result, default=_json_default), encoding="utf-8")
