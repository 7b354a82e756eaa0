"""Registry access: versions, aliases, the champion, tags, action runs, and ``connected``, the one way in.

``connected(root, name, lock_timeout_s)`` points MLflow at the project's store and yields an
``MlflowClient`` under the per-model-name lock, with a tracking server lost mid-way mapped to
``TrackingUnavailable`` (exit code 3, retried by the flow). The register stage and the commands use it.
"""
from __future__ import annotations

import contextlib
import getpass
import json
from pathlib import Path
from typing import Iterator, Optional

import pandas as pd

from distillery.locking import registry_lock
from distillery.tracking import connect, experiment_id, quiet_mlflow, unavailable_as_transient

TAG = "distillery."  # prefix of every tag Distillery sets on runs and model versions
LABELS_TAG = TAG + "labels"  # the version's label names, as a JSON list


@contextlib.contextmanager
def connected(root: Path, name: str, lock_timeout_s: Optional[float]) -> Iterator:
    """A connected ``MlflowClient`` under ``name``'s lock; its URI is ``tracking.tracking_uri(root)``.

    ``lock_timeout_s=None`` takes no lock: for read-only listings, which must not wait for a registration."""
    from mlflow import MlflowClient

    uri = connect(root)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    with unavailable_as_transient(uri):
        if lock_timeout_s is None:
            yield client
        else:
            with registry_lock(uri, name, lock_timeout_s):
                yield client


def _not_found(exc) -> bool:
    """Only a missing model means "nothing there"; any other error must stop the registration."""
    return getattr(exc, "error_code", "") == "RESOURCE_DOES_NOT_EXIST"


def versions(client, name: str) -> list:
    from mlflow.exceptions import MlflowException

    try:
        found = client.search_model_versions(f"name='{name}'")
    except MlflowException as exc:
        if _not_found(exc):
            return []
        raise
    return sorted(found, key=lambda v: int(v.version))


def aliases(client, name: str) -> dict[str, str]:
    from mlflow.exceptions import MlflowException

    try:
        return {alias: str(version) for alias, version in client.get_registered_model(name).aliases.items()}
    except MlflowException as exc:
        if _not_found(exc):
            return {}
        raise


def champion(client, name: str):
    """The model version the ``champion`` alias points at, or None."""
    version = aliases(client, name).get("champion")
    return client.get_model_version(name, version) if version else None


def version_labels(client, name: str, version) -> Optional[list[str]]:
    """A version's label names: its ``distillery.labels`` tag, else its packaged ``classifier.json``; None if unknown."""
    recorded = version.tags.get(LABELS_TAG)
    if recorded:
        try:
            labels = json.loads(recorded)
            if isinstance(labels, list):
                return [str(label) for label in labels]
        except ValueError:
            pass
    try:  # registered before labels were tagged: read the served config the version carries
        import mlflow

        with quiet_mlflow():
            path = mlflow.artifacts.download_artifacts(f"models:/{name}/{version.version}/artifacts/classifier.json")
        labels = json.loads(Path(path).read_text(encoding="utf-8")).get("labels")
        return [str(label) for label in labels] if isinstance(labels, list) else None
    except Exception:  # unknown stays unknown: the gate then refuses to pass it silently
        return None


def champion_figures(name: str, version, test: pd.DataFrame, labels: list[str], test_sha: str, score) -> dict:
    """The champion's metrics on the current test split: its recorded ones if the split is the same, else
    re-scored through its served model with ``score(predict, frame, labels)`` (the task type's)."""
    tags = version.tags
    if tags.get(TAG + "test_sha256") == test_sha and TAG + "test_accuracy" in tags:
        return {"version": str(version.version), "accuracy": float(tags[TAG + "test_accuracy"]),
                "macro_f1": float(tags[TAG + "test_macro_f1"]), "rescored": False}
    import mlflow

    with quiet_mlflow():
        model = mlflow.pyfunc.load_model(f"models:/{name}/{version.version}")
        figures = score(model.predict, test, labels)
    return {"version": str(version.version), **figures, "rescored": True}


def set_tags(client, name: str, version: str, tags: dict) -> None:
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, str(value))


def record_action(experiment: str, root: Path, uri: str, action: str, tags: dict) -> str:
    """A small MLflow run per manual registry action, so promotions and rollbacks have a history."""
    import mlflow

    exp = experiment_id(experiment, root, uri)
    with mlflow.start_run(experiment_id=exp, run_name=f"{action} v{tags.get('version')}") as run:
        mlflow.set_tags({TAG + "kind": "registry-action", TAG + "action": action, TAG + "user": getpass.getuser(),
                         **{TAG + k: str(v) for k, v in tags.items()}})
    return run.info.run_id


def apply_decision(client, decision: dict) -> None:
    """The only place a pipeline moves an alias; the last registry call of a registration."""
    name, version = decision["model_name"], decision["version"]
    if decision["decision"] == "promoted":
        if decision["champion_before"] is not None:
            client.set_model_version_tag(name, version, TAG + "previous_champion", decision["champion_before"])
        client.set_registered_model_alias(name, "champion", version)
    elif decision["decision"] == "rejected":
        client.set_registered_model_alias(name, "challenger", version)
    if decision["alias"] == "champion" and aliases(client, name).get("challenger") == version:
        client.delete_registered_model_alias(name, "challenger")
