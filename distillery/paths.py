"""Where each stage writes, relative to the project root (the directory holding dvc.yaml)."""
from pathlib import Path
from typing import Optional

PREPARED_DIR = Path("data/prepared")
LOGITS_DIR = Path("data/teacher_logits")
TEACHER_DIR = Path("models/teacher")
STUDENT_DIR = Path("models/student")
BASELINE_DIR = Path("models/baseline")
ONNX_DIR = Path("models/onnx")
REPORTS_DIR = Path("reports")
CURVES_DIR = REPORTS_DIR / "curves"
# params.yaml as it was before a flow run's overrides (tasks/experiments.py): there only while such a run is live, or
# after one was killed before it could put the file back
OVERRIDES_BACKUP = Path(".distillery") / "params.yaml.before-overrides"


def experiment_origin(root: Path) -> Optional[Path]:
    """The project a DVC experiment's temporary copy was made from (``dvc exp run --queue`` or ``--temp`` run in
    ``<project>/.dvc/tmp/exps/...``), or None when ``root`` is no such copy. A checkout that merely lives under such
    a folder is its own project: the one that owns the copy has its pipeline (dvc.yaml)."""
    parts = Path(root).resolve().parts
    for i in range(1, len(parts) - 2):
        if parts[i:i + 3] == (".dvc", "tmp", "exps") and (Path(*parts[:i]) / "dvc.yaml").is_file():
            return Path(*parts[:i])
    return None
