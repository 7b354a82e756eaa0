"""Does the benchmark's thread policy move its headline ratio? The headline pair (teacher PyTorch fp32, the deployed
student ONNX file) at batch 1, sequence 64, timed under three policies, each in a process of its own (OpenMP reads
its wait policy once, at start):

- ``passive``: as the benchmark stage times them. ``OMP_WAIT_POLICY=PASSIVE``, ONNX Runtime without spinning,
  interleaved rounds, no pause;
- ``idle``: as served, a request after a pause. OpenMP's and ONNX Runtime's defaults (their threads spin while
  waiting for work), interleaved, 100 ms idle before every run, so a spinning pool has parked;
- ``busy``: as served under load. The defaults, blocks of 10 back-to-back runs of one model (the first untimed),
  the models alternating, 100 ms between blocks.

Run after the pipeline (it reads ``models/`` and ``data/prepared``): ``python scripts/thread_policy.py --out x.json``.
Each line: p50 of each model, their ratio and its percentile-bootstrap 95% interval (2000 resamples, seed 0).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

MODES = ("passive", "idle", "busy")


def measure(mode: str, rounds: int, threads: int, length: int) -> dict:
    import numpy as np
    import torch

    from distillery.config import load_params
    from distillery.files import read_json
    from distillery.onnx_runtime import run_session, session
    from distillery.prepared import load_split
    from distillery.task_types.load import task_type
    from distillery.timing import fingerprint

    torch.set_num_threads(threads)
    params = load_params("params.yaml")
    task = task_type(params.task, params)
    test = load_split("test", Path("data/prepared"))
    deployed = read_json(Path("models/onnx/deployment.json"))["deployable"]
    teacher = task.load_model("models/teacher", "models/teacher").eval()
    teacher_batch = task.benchmark_inputs(task.load_featuriser("models/teacher", "models/teacher"), test, 1, length)
    student_batch = task.benchmark_inputs(task.load_featuriser("models/student", "models/student"), test, 1, length)
    student = session(Path("models/onnx") / deployed, threads, spin=mode != "passive")

    def run_teacher():
        with torch.inference_mode():
            teacher(**{k: torch.from_numpy(v) for k, v in teacher_batch.items()})

    runs = {"teacher_pytorch_fp32": run_teacher, "student_onnx": lambda: run_session(student, student_batch)}
    for run in runs.values():
        for _ in range(10):
            run()
    timings: dict = {name: [] for name in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            if mode == "busy":
                time.sleep(0.1)
                run()
                for _ in range(9):
                    started = time.perf_counter()
                    run()
                    timings[name].append(time.perf_counter() - started)
                continue
            if mode == "idle":
                time.sleep(0.1)
            started = time.perf_counter()
            run()
            timings[name].append(time.perf_counter() - started)
    slow, fast = (np.asarray(t) * 1e3 for t in timings.values())
    rng = np.random.default_rng(0)
    ratios = [np.median(slow[i]) / np.median(fast[i])
              for i in (rng.integers(0, len(slow), len(slow)) for _ in range(2000))]
    return {"mode": mode, "deployed": deployed, "cell": f"b1_s{length}", "threads": threads,
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset"), "onnxruntime_spinning": mode != "passive",
            "teacher_p50_ms": round(float(np.median(slow)), 3), "student_p50_ms": round(float(np.median(fast)), 3),
            "ratio": round(float(np.median(slow) / np.median(fast)), 2),
            "ratio_ci95": [round(float(x), 2) for x in np.percentile(ratios, [2.5, 97.5])], "runs": int(len(slow)),
            "fingerprint": fingerprint(threads)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2, help="each mode this many times, alternating")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)  # one measurement, in this process
    args = parser.parse_args()
    if args.mode:
        print(json.dumps(measure(args.mode, args.rounds, args.threads, args.length)))
        return
    results = []
    for _ in range(args.repeats):
        for mode in MODES:
            env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
            if mode == "passive":
                env["OMP_WAIT_POLICY"] = "PASSIVE"
            out = subprocess.run([sys.executable, __file__, "--mode", mode, "--rounds", str(args.rounds),
                                  "--threads", str(args.threads), "--length", str(args.length)],
                                 env=env, check=True, capture_output=True, text=True).stdout
            result = json.loads(out.strip().splitlines()[-1])
            results.append(result)
            print(f"{mode:8s} teacher {result['teacher_p50_ms']:7.2f} ms  student {result['student_p50_ms']:6.3f} ms  "
                  f"{result['ratio']:5.1f}x (95% CI {result['ratio_ci95'][0]}-{result['ratio_ci95'][1]}x)", flush=True)
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
