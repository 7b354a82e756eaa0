"""The served model's packaging, for any task type: pip requirements and ``log_model``. What the
model takes and returns, and its artifacts, come from the task type's ``serving`` part."""
from __future__ import annotations

import numpy as np
import pandas as pd

from distillery.tracking import quiet_mlflow


def pip_requirements() -> list[str]:
    import mlflow
    import onnxruntime
    import tokenizers

    return [f"mlflow=={mlflow.__version__}", f"onnxruntime=={onnxruntime.__version__}",
            f"tokenizers=={tokenizers.__version__}", f"numpy=={np.__version__}", f"pandas=={pd.__version__}"]


def log_pyfunc(serving, artifacts: dict[str, str], example: pd.DataFrame):
    """Log the student as a models-from-code pyfunc in the active run; return its ModelInfo. ``serving`` is
    the task type's serving part: the code file, the model loaded locally, and the signature."""
    import mlflow

    with quiet_mlflow():
        output = serving.load_code_model(artifacts).predict(None, example)
        return mlflow.pyfunc.log_model(name="student", python_model=str(serving.MODEL_CODE), artifacts=artifacts,
                                       signature=serving.signature(example, output), input_example=example,
                                       pip_requirements=pip_requirements())
