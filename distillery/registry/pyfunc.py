"""The served model's packaging, for any task type: pip requirements and ``log_model``. What the
model takes and returns, and its artifacts, come from the task type's ``serving`` part."""
from __future__ import annotations

import json
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


def request_slices(sizes, max_rows: int, max_characters: int) -> list[slice]:
    """Consecutive slices of rows whose ``sizes`` (characters) make calls the served model takes: at most
    ``max_rows`` rows and ``max_characters`` characters each (a row alone over it gets a slice of its own, which
    the model refuses by name)."""
    slices, start, total = [], 0, 0
    for row, size in enumerate(sizes):
        if row > start and (row - start >= max_rows or total + int(size) > max_characters):
            slices.append(slice(start, row))
            start, total = row, 0
        total += int(size)
    if len(sizes) > start:
        slices.append(slice(start, len(sizes)))
    return slices


# settings of the served model that bound a request, not the model: changing them is not a new model
SERVING_LIMITS = ("max_rows", "text_characters", "max_characters", "batch_size", "threads", "source_columns")
# keys older Distillery versions did not write into the served config, newest first, with the value their readers
# assume (None: any value; the key is new with no older meaning)
ADDED_KEYS = ((("source_columns", None),), (("text_characters", None), ("max_characters", None)),
              (("truncation_side", "right"),),
              (("pixel_min", None),), (("max_rows", None),))


def model_hashes(artifacts: dict[str, str], code: tuple = (), scratch: Path = None) -> list[str]:
    """The identity of the served model's weights, then the hashes older versions of Distillery registered the same
    weights under.

    The identity covers the model's files (the ONNX model, the tokenizer) and its config without the serving limits
    (``SERVING_LIMITS``) or code artifacts (``code``: QA's ``postprocess``): a new request cap or newer serving
    code serves the same weights. Older versions hashed every artifact file as written then; those hashes are
    rebuilt from today's config by leaving out the keys added since (``ADDED_KEYS``), so a model registered before an
    upgrade is still recognised (a rolled-back one stays down under newer code)."""
    import json
    import tempfile

    from distillery.files import sha256_files

    config_path = Path(artifacts["config"])
    config = json.loads(config_path.read_text(encoding="utf-8"))
    files = [path for key, path in artifacts.items() if key != "config" and key not in code]
    canonical = {k: v for k, v in config.items() if k not in SERVING_LIMITS}
    hashes = [sha256_files(files, extra=json.dumps(canonical, sort_keys=True)), sha256_files(list(artifacts.values()))]
    with tempfile.TemporaryDirectory(dir=scratch, prefix="distillery-hash-") as tmp:
        older = dict(config)
        for added in ADDED_KEYS:
            for key, assumed in added:
                if key in older and (assumed is None or older[key] == assumed):
                    del older[key]
            path = Path(tmp) / config_path.name
            path.write_text(json.dumps(older, indent=2) + "\n", encoding="utf-8")  # as files.write_json writes it
            hashes.append(sha256_files([path if key == "config" else value for key, value in artifacts.items()]))
    return list(dict.fromkeys(hashes))


# Run by a fresh interpreter: loads the served model as MLflow's scoring server does (the code file and its
# artifacts, no Distillery import), answers the rows once, and reports its peak resident memory.
_SERVED_PROCESS = """
import importlib.util, json, resource, sys, types
import pandas as pd


def peak_mb():
    # VmHWM: this process's own high-water mark. ru_maxrss is not: Linux carries it across exec, so a child
    # of a large parent reports the parent's size.
    try:
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


code, class_name, artifacts, rows = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]
spec = importlib.util.spec_from_file_location("served_model", code)
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
imports = peak_mb()
model = getattr(module, class_name)()
model.load_context(types.SimpleNamespace(artifacts=artifacts))
answer = model.predict(None, pd.read_pickle(rows))
print(json.dumps({"peak_memory_mb": peak_mb(), "after_imports_mb": imports, "rows": len(answer),
                  "torch_imported": "torch" in sys.modules,
                  "distillery_imported": any(m.split(".")[0] == "distillery" for m in sys.modules)}))
"""


def served_process_memory(code: Path, class_name: str, artifacts: dict[str, str], rows: pd.DataFrame,
                          timeout: float = 300.0) -> dict:
    """Peak resident memory (MB) of a fresh Python process that loads the served model from its code file and
    artifacts and answers ``rows`` in one call, as ``mlflow models serve`` does, without the HTTP server
    (``mlflow models serve`` adds its web framework); ``after_imports_mb``: the peak once the code file is
    imported, before the model loads (MLflow's own imports are most of it). A failure is recorded, never raised: it is a
    measurement; the gate has already scored the model through MLflow."""
    import json
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory(prefix="distillery-served-") as tmp:
        path = Path(tmp) / "rows.pkl"
        rows.to_pickle(path)
        try:
            done = subprocess.run([sys.executable, "-c", _SERVED_PROCESS, str(code), class_name, json.dumps(artifacts),
                                   str(path)], capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"error": f"no answer within {timeout:g}s"}
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["exit code %d" % done.returncode])[-1]
        return {"error": last[:300]}
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "batch": int(len(rows))}


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


def signature(example: pd.DataFrame, output: pd.DataFrame, optional: tuple = ()):
    """The example's columns in, named and required, then the ``optional`` ones (the data's own names of the
    served columns: MLflow hands the model only the columns its signature names); the answer's columns out. With
    ``optional`` names the example's are optional too: a request in either set of names is answered (MLflow
    refused one in the data's names alone, missing the served ones), and one in neither is refused by the model.

    The input columns are typed ``any``, not ``string``: for a string column, MLflow's scoring server turns
    every value of an ``{"inputs": [...]}`` request into a string before the model sees it (null becomes
    "None", 1 becomes "1"). Typed ``any``, the values reach the served model as sent, and it refuses what is
    not a string with a 400."""
    from mlflow.models import ModelSignature, infer_signature
    from mlflow.types import ColSpec, Schema
    from mlflow.types.schema import AnyType

    either = any(column not in example for column in optional)
    inputs = Schema([ColSpec(AnyType(), column, required=not either) for column in example.columns] +
                    [ColSpec(AnyType(), column, required=False) for column in optional if column not in example])
    return ModelSignature(inputs=inputs, outputs=infer_signature(example, output).outputs)


def log_pyfunc(serving, artifacts: dict[str, str], example: pd.DataFrame):
    """Log the student as a models-from-code pyfunc in the active run; return its ModelInfo. ``serving`` is
    the task type's serving part: its code file and the model loaded locally."""
    import mlflow

    with quiet_mlflow():
        output = serving.load_code_model(artifacts).predict(None, example)
        config = json.loads(Path(artifacts["config"]).read_text(encoding="utf-8"))
        optional = tuple((config.get("source_columns") or {}).values())
        return mlflow.pyfunc.log_model(name="student", python_model=str(serving.MODEL_CODE), artifacts=artifacts,
                                       signature=signature(example, output, optional), input_example=example,
                                       pip_requirements=pip_requirements(getattr(serving, "REQUIREMENTS", ())))
