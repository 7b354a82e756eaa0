"""The served model's packaging, for any task type: pip requirements and ``log_model``. What the
model takes and returns, and its artifacts, come from the task type's ``serving`` part."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from distillery.tracking import quiet_mlflow


def pip_requirements(extra: tuple = ()) -> list[str]:
    """What every served model needs, pinned to this environment's versions, plus ``extra`` distributions."""
    from importlib.metadata import version

    import mlflow
    import onnxruntime
    import tokenizers

    return [f"mlflow=={mlflow.__version__}", f"onnxruntime=={onnxruntime.__version__}",
            f"tokenizers=={tokenizers.__version__}", f"numpy=={np.__version__}", f"pandas=={pd.__version__}",
            *(f"{name}=={version(name)}" for name in extra)]


def load_code_model(code: Path, class_name: str, artifacts: dict[str, str]):
    """The pyfunc class ``class_name`` from its code file, loaded against local artifacts (as MLflow would)."""
    import importlib.util
    from types import SimpleNamespace

    spec = importlib.util.spec_from_file_location(f"_distillery_served_{code.stem}", code)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model = getattr(module, class_name)()
    model.load_context(SimpleNamespace(artifacts=artifacts))
    return model


def signature(example: pd.DataFrame, output: pd.DataFrame):
    """The example's columns in, named and required; the answer's columns out.

    The input columns are typed ``any``, not ``string``: for a string column, MLflow's scoring server turns
    every value of an ``{"inputs": [...]}`` request into a string before the model sees it (null becomes
    "None", 1 becomes "1"). Typed ``any``, the values reach the served model as sent, and it refuses what is
    not a string with a 400."""
    from mlflow.models import ModelSignature, infer_signature
    from mlflow.types import ColSpec, Schema
    from mlflow.types.schema import AnyType

    inputs = Schema([ColSpec(AnyType(), column) for column in example.columns])
    return ModelSignature(inputs=inputs, outputs=infer_signature(example, output).outputs)


def log_pyfunc(serving, artifacts: dict[str, str], example: pd.DataFrame):
    """Log the student as a models-from-code pyfunc in the active run; return its ModelInfo. ``serving`` is
    the task type's serving part: its code file and the model loaded locally."""
    import mlflow

    with quiet_mlflow():
        output = serving.load_code_model(artifacts).predict(None, example)
        return mlflow.pyfunc.log_model(name="student", python_model=str(serving.MODEL_CODE), artifacts=artifacts,
                                       signature=signature(example, output), input_example=example,
                                       pip_requirements=pip_requirements(getattr(serving, "REQUIREMENTS", ())))
