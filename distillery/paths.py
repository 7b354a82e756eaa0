"""Where each stage writes, relative to the project root (the directory holding dvc.yaml)."""
from pathlib import Path

PREPARED_DIR = Path("data/prepared")
LOGITS_DIR = Path("data/teacher_logits")
TEACHER_DIR = Path("models/teacher")
STUDENT_DIR = Path("models/student")
BASELINE_DIR = Path("models/baseline")
ONNX_DIR = Path("models/onnx")
REPORTS_DIR = Path("reports")
CURVES_DIR = REPORTS_DIR / "curves"
