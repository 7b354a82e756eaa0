"""The gate's latency figures, read from the benchmark report: the deployable student's p95 at batch 1 in the
served model's cell, and the teacher's in the same cell."""
from __future__ import annotations

from typing import Optional


def served_length(lengths, max_length: int) -> Optional[int]:
    """The benchmark length the served model's latency is read at: ``max_length``, else the shortest one longer
    than it (inputs as long as the served model takes, or longer: never a shorter one, which would understate the
    latency); None when every length is shorter. The gate reads this cell, and the benchmark's headline too."""
    longer = [int(n) for n in lengths if int(n) >= max_length]
    return min(longer) if longer else None


def latency(benchmark: dict, deployable: str, max_length: int) -> tuple[Optional[float], Optional[str]]:
    """p95 at batch 1 for the deployable model in the cell of :func:`served_length`, else none (the latency check
    then fails, naming the missing cell)."""
    key = "student_onnx_int8" if deployable.endswith(".int8.onnx") else "student_onnx_fp32"
    cells = benchmark.get("models", {}).get(key, {}).get("cells", {})
    length = served_length([name[4:] for name in cells if name.startswith("b1_s") and name[4:].isdigit()], max_length)
    if length is None:
        return None, f"b1_s{max_length}"
    return cells[f"b1_s{length}"]["p95_ms"], f"b1_s{length}"


def teacher_latency(benchmark: dict, cell: Optional[str]) -> Optional[float]:
    """The teacher's PyTorch p95 in ``cell`` of the same benchmark run, or None."""
    stats = benchmark.get("models", {}).get("teacher_pytorch_fp32", {}).get("cells", {}).get(cell or "")
    return None if not stats or stats.get("p95_ms") is None else float(stats["p95_ms"])
