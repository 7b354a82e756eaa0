"""Does the int8 teacher pass give the same logits on a CPU without AMX? On an Intel Xeon with AMX-INT8, this runs the
``teacher_logits`` stage with ``teacher.logits_precision: int8`` twice, each in a process of its own: once as it is,
once with AMX tiles refused to the process (an ``LD_PRELOAD`` library, compiled here with the system's C compiler,
installs a seccomp filter failing ``arch_prctl(ARCH_REQ_XCOMP_PERM)``), so that ONNX Runtime's int8 matrix products
run the AVX-512 VNNI kernels of an Intel Xeon without AMX. It also times the fp32 pass (ONNX Runtime) that such a CPU
runs otherwise, and ONNX Runtime's int8 GEMM peak each way, which shows which kernels ran.

Run after the pipeline (it reads ``models/teacher`` and ``data/prepared``), nothing else running:
``python scripts/int8_kernels.py --out x.json [--rounds 2]``. Each pass writes to a temporary directory; the report
gives each pass's seconds (the stage's whole call: export, quantization, its check, the pass) and the sha256 of each
part's logits.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

NO_AMX = r"""
#include <stddef.h>
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
__attribute__((constructor)) static void no_amx(void) {
  struct sock_filter f[] = {
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_arch_prctl, 0, 3),
    BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])),
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0x1023, 0, 1),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
    BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog prog = {sizeof(f) / sizeof(f[0]), f};
  prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
  prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
}
"""

ONE_PASS = r"""
import dataclasses, json, sys, time
from pathlib import Path
from distillery.config import load_params
from distillery.roofline import gemm_peaks
from distillery.stages.teacher_logits import teacher_logits
params = load_params("params.yaml")
params = dataclasses.replace(params, teacher=dataclasses.replace(params.teacher, logits_precision=sys.argv[1],
                                                                   logits_runtime="onnxruntime"))
start = time.perf_counter()
manifest = teacher_logits(params, out_dir=Path(sys.argv[2]))
seconds = time.perf_counter() - start
print(json.dumps({"seconds": round(seconds, 1), "precision": manifest["precision"],
                  "int8_check": manifest.get("int8_check"), "int8_gops": round(gemm_peaks(2)["int8_gops"], 1)}))
"""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="int8-kernels-") as scratch:
        library = Path(scratch) / "no_amx.so"
        (Path(scratch) / "no_amx.c").write_text(NO_AMX)
        subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-o", str(library), str(Path(scratch) / "no_amx.c")],
                       check=True)
        arms = {"int8_amx": ("int8", {}), "int8_vnni": ("int8", {"LD_PRELOAD": str(library)}),
                "fp32_onnxruntime": ("fp32", {})}
        runs = []
        for round_ in range(args.rounds):
            for arm, (setting, env) in arms.items():
                out = Path(scratch) / f"{arm}-{round_}"
                done = subprocess.run([sys.executable, "-c", ONE_PASS, setting, str(out)], env={**os.environ, **env},
                                      check=True, capture_output=True, text=True)
                result = json.loads(done.stdout.strip().splitlines()[-1])
                result.update(arm=arm, round=round_,
                              sha256={p.stem: _sha256(p) for p in sorted(out.glob("*.npy"))})
                print(json.dumps(result), flush=True)
                runs.append(result)
    first = {run["arm"]: run["sha256"] for run in reversed(runs)}
    report = {"cpu": _cpu(), "runs": runs,
              "int8_logits_identical_with_and_without_amx": first["int8_amx"] == first["int8_vnni"]}
    Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps({key: report[key] for key in ("cpu", "int8_logits_identical_with_and_without_amx")}))


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


if __name__ == "__main__":
    main()
