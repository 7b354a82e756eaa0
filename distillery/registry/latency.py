"""The gate's latency figures, read from the benchmark report: the deployable student's p95 at batch 1 in the
served model's cell, and the teacher's in the same cell."""
from __future__ import annotations

from typing import Optional


def latency(benchmark: dict, deployable: str, max_length: int) -> tuple[Optional[float], Optional[str]]:
    """p95 at batch 1 for the deployable model: the cell at ``max_length``, else the shortest batch-1 cell longer
    than it (inputs as long as the served model takes, or longer: never a shorter cell, which would understate the
    latency), else none (the latency check then fails, naming the missing cell)."""
    key = "student_onnx_int8" if deployable.endswith(".int8.onnx") else "student_onnx_fp32"
    cells = benchmark.get("models", {}).get(key, {}).get("cells", {})
    if f"b1_s{max_length}" in cells:
        return cells[f"b1_s{max_length}"]["p95_ms"], f"b1_s{max_length}"
    longer = {int(name[4:]): name for name in cells if name.startswith("b1_s") and name[4:].isdigit()
              and int(name[4:]) > max_length}
    if not longer:
        return None, f"b1_s{max_length}"
    name = longer[min(longer)]
    return cells[name]["p95_ms"], name


def teacher_latency(benchmark: dict, cell: Optional[str]) -> Optional[float]:
    """The teacher's PyTorch p95 in ``cell`` of the same benchmark run, or None."""
    stats = benchmark.get("models", {}).get("teacher_pytorch_fp32", {}).get("cells", {}).get(cell or "")
    return None if not stats or stats.get("p95_ms") is None else float(stats["p95_ms"])
