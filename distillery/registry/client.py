"""Registry access: versions, aliases, the champion, tags, action runs, and ``connected``, the one way in.

``connected(root, name, lock_timeout_s, lock)`` points MLflow at the project's store and yields an
``MlflowClient`` under the per-model-name lock (``register.lock``: a file lock, or a PostgreSQL advisory
lock), with a tracking server lost mid-way mapped to ``TrackingUnavailable`` (exit code 3, retried by the
flow). The register stage and the commands use it.
"""
from __future__ import annotations

import contextlib
import getpass
import json
import os
import socket
import sys
from pathlib import Path
from typing import Iterator, Optional

from distillery.errors import RegistryError
from distillery.locking import registry_lock
from distillery.tracking import connect, experiment_id, quiet_mlflow
from distillery.tracking_errors import unavailable_as_transient

TAG = "distillery."  # prefix of every tag Distillery sets on runs and model versions
LABELS_TAG = TAG + "labels"  # the version's label names, as a JSON list
INPUTS_TAG = TAG + "inputs"  # the served model's input columns (its signature's), as a JSON list
INPUT_SPEC_TAG = TAG + "input_spec"  # what else its requests must be (an image model's shape), as JSON
# Written on a version before ``champion`` moves to it, deleted after the move is fully recorded: a prefix of a
# promotion never claims a move that did not happen (``previous_champion`` is written only after the alias).
MOVE_TAG = TAG + "champion_move"
ROLLED_BACK = TAG + "rolled_back_at"  # the rollback guard: the gate refuses this version until a manual promotion
ROLLBACK_REASON = TAG + "rollback_reason"  # the guard's reason: lifted with it (the rollback's MLflow run keeps it)


SHARED_STORES = ("http://", "https://", "postgresql", "mysql", "mssql", "databricks")  # stores teammates share


@contextlib.contextmanager
def connected(root: Path, name: str, lock_timeout_s: Optional[float], lock: str = "file") -> Iterator:
    """A connected ``MlflowClient`` under ``name``'s lock; its URI is ``tracking.tracking_uri(root)``.

    ``lock_timeout_s=None`` takes no lock: for read-only listings, which must not wait for a registration.
    ``lock`` is ``register.lock``: ``file``, or a PostgreSQL URL whose advisory lock spans machines."""
    from mlflow import MlflowClient

    uri = connect(root)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    if lock_timeout_s is not None and lock == "file" and uri.startswith(SHARED_STORES):
        print(f"registry: register.lock is `file`, which orders registrations on this machine only; with a shared "
              f"tracking server, set it to a postgresql:// URL so that teammates' registrations wait for each other",
              file=sys.stderr, flush=True)
    with unavailable_as_transient(uri, moves_champion=lock_timeout_s is not None):
        if lock_timeout_s is None:
            yield client
        else:
            with registry_lock(uri, name, lock_timeout_s, lock=lock):
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


def _tagged_list(version, key: str) -> Optional[list[str]]:
    """A version tag holding a JSON list, as strings; None when absent or not such a list."""
    try:
        value = json.loads(version.tags.get(key) or "null")
    except ValueError:
        return None
    return [str(item) for item in value] if isinstance(value, list) else None


def version_labels(client, name: str, version) -> Optional[list[str]]:
    """A version's label names: its ``distillery.labels`` tag, else its packaged ``classifier.json``; None if unknown."""
    recorded = _tagged_list(version, LABELS_TAG)
    if recorded is not None:
        return recorded
    try:  # registered before labels were tagged: read the served config the version carries
        import mlflow

        with quiet_mlflow():
            path = mlflow.artifacts.download_artifacts(f"models:/{name}/{version.version}/artifacts/classifier.json")
        labels = json.loads(Path(path).read_text(encoding="utf-8")).get("labels")
        return [str(label) for label in labels] if isinstance(labels, list) else None
    except Exception:  # unknown stays unknown: the gate then refuses to pass it silently
        return None


def version_inputs(name: str, version) -> Optional[list[str]]:
    """A version's input columns: its ``distillery.inputs`` tag, else its registered signature's; None if unknown.

    A model with other inputs (a question-answering model over a text classifier, pairs over single texts)
    cannot answer the requests sent to the name it would be served under."""
    recorded = _tagged_list(version, INPUTS_TAG)
    if recorded is not None:
        return recorded
    try:  # registered before the inputs were tagged: the signature the version was logged with
        import mlflow

        with quiet_mlflow():
            signature = mlflow.models.get_model_info(f"models:/{name}/{version.version}").signature
        if signature is None:
            return None
        if not signature.inputs.has_input_names():  # an early single-text model: one unnamed column of strings,
            # served as the text (it answers {"text": ...} requests)
            return ["text"] if len(signature.inputs.inputs) == 1 else None
        return [str(column) for column in signature.inputs.input_names()]
    except Exception:  # unknown stays unknown: the gate then refuses to pass it silently
        return None


def set_tags(client, name: str, version: str, tags: dict) -> None:
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, str(value))


def run_tags(name: str) -> dict[str, str]:
    """Tags every Distillery run carries from its creation, so a run a killed process left RUNNING can be found."""
    return {TAG + "model_name": name, TAG + "pid": str(os.getpid()), TAG + "host": socket.gethostname()}


def _alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def end_stale_runs(client, exp_id: str, name: str) -> list[str]:
    """Mark KILLED the runs that killed processes left RUNNING: every RUNNING run of ``name`` (the caller holds
    its lock, so no live registration of it has one), and any Distillery run whose process on this host is gone."""
    import mlflow

    active = mlflow.active_run()
    host, stale = socket.gethostname(), []
    for run in client.search_runs([exp_id], filter_string="attributes.status = 'RUNNING'", max_results=1000):
        tags = run.data.tags
        if active is not None and run.info.run_id == active.info.run_id:
            continue
        mine = tags.get(TAG + "model_name") == name
        gone = tags.get(TAG + "host") == host and TAG + "pid" in tags and not _alive(tags[TAG + "pid"])
        if mine or gone:
            client.set_terminated(run.info.run_id, "KILLED")
            stale.append(run.info.run_id)
    return stale


def record_action(experiment: str, root: Path, uri: str, action: str, tags: dict, name: str = "") -> str:
    """A small MLflow run per manual registry action, so promotions and rollbacks have a history."""
    import mlflow

    exp = experiment_id(experiment, root, uri)
    all_tags = {**run_tags(name), TAG + "kind": "registry-action", TAG + "action": action,
                TAG + "user": getpass.getuser(), **{TAG + k: str(v) for k, v in tags.items()}}
    with mlflow.start_run(experiment_id=exp, run_name=f"{action} v{tags.get('version')}", tags=all_tags) as run:
        pass
    return run.info.run_id


def recorder(experiment: str, root: Path, uri: str, name: str):
    """``record(action, tags) -> run id`` for ``move_champion``/``recover``: the action's history run."""
    return lambda action, tags: record_action(experiment, root, uri, action, tags, name)


def move_champion(client, name: str, version: str, previous: Optional[str], tags: Optional[dict] = None,
                  action: Optional[tuple[str, dict]] = None, record=None) -> Optional[str]:
    """Make ``version`` the champion so that every prefix of the writes is a consistent state:

    1. the intent (``MOVE_TAG``, JSON: previous champion, tags to write, action to record) on the version;
    2. ``challenger`` removed if it names the version (never champion and challenger at once);
    3. the ``champion`` alias;
    4. ``finish_move``: ``previous_champion`` and the other tags, the rollback guard lifted, the action recorded,
       the intent deleted. ``recover`` finishes 4 after a kill, or drops an intent whose alias never moved."""
    intent = {"previous": previous or "", "tags": {k: str(v) for k, v in (tags or {}).items()},
              "action": action[0] if action else None, "action_tags": {k: str(v) for k, v in (action or ("", {}))[1].items()}}
    client.set_model_version_tag(name, version, MOVE_TAG, json.dumps(intent))
    if aliases(client, name).get("challenger") == version:
        client.delete_registered_model_alias(name, "challenger")
    client.set_registered_model_alias(name, "champion", version)
    return finish_move(client, name, client.get_model_version(name, version), record)


def finish_move(client, name: str, version, record=None) -> Optional[str]:
    """Step 4 of ``move_champion`` on a version that is the champion and carries the intent; the action run's id."""
    intent = json.loads(version.tags[MOVE_TAG])
    number = str(version.version)
    if intent["previous"]:
        client.set_model_version_tag(name, number, TAG + "previous_champion", intent["previous"])
    elif TAG + "previous_champion" in version.tags:
        client.delete_model_version_tag(name, number, TAG + "previous_champion")
    set_tags(client, name, number, intent["tags"])
    lift_rollback_guard(client, name, version)  # only now that the alias has moved
    run_id = record(intent["action"], intent["action_tags"]) if record is not None and intent.get("action") else None
    client.delete_model_version_tag(name, number, MOVE_TAG)
    return run_id


def recover(client, name: str, record=None) -> dict:
    """Finish or undo what a killed ``register``/``promote``/``rollback`` left; run first, under the lock.

    - a champion with a move intent: the move happened, so it is finished (``finish_move``);
    - any other version with a move intent: the alias never moved, so the intent is dropped;
    - a champion carrying the rollback guard whose ``previous_champion`` does not: a rollback was killed after the
      guard and before the alias move, so the alias is moved back to it (``rollback`` never moves to a guarded
      version, so a guarded target means no rollback of this kind was under way: nothing is moved);
    - a version whose gate is ``pending``: its gate tags may be a mix of two runs, so it becomes ``interrupted``
      (registering the same model again re-gates it)."""
    done: dict = {}
    current = aliases(client, name).get("champion")
    for version in versions(client, name):
        number = str(version.version)
        if MOVE_TAG in version.tags:
            if number == current:
                finish_move(client, name, version, record)
                done["finished_move"] = number
            else:
                client.delete_model_version_tag(name, number, MOVE_TAG)
                done.setdefault("dropped_moves", []).append(number)
        if version.tags.get(TAG + "gate") == "pending":
            client.set_model_version_tag(name, number, TAG + "gate", "interrupted")
            done.setdefault("interrupted_gates", []).append(number)
    now = champion(client, name)
    if now is not None and ROLLED_BACK in now.tags and now.tags.get(TAG + "previous_champion"):
        target = now.tags[TAG + "previous_champion"]
        known = {str(v.version): v for v in versions(client, name)}
        from distillery.registry.versions import version_weights, weights_rolled_back  # it imports this module

        if target in known and not weights_rolled_back(list(known.values()), version_weights(known[target]), target):
            if aliases(client, name).get("challenger") == target:
                client.delete_registered_model_alias(name, "challenger")
            client.set_registered_model_alias(name, "champion", target)
            done["finished_rollback"] = {"from": str(now.version), "to": target}
    return done


NOT_PROMOTED = "passed, not promoted (register.promote is false)"  # the decision: the gate passed, the alias stayed


def _named(version: Optional[str]) -> str:
    return f"v{version}" if version else "none"


def apply_decision(client, decision: dict) -> None:
    """The only place a pipeline moves an alias; the last registry call of a registration."""
    name, version = decision["model_name"], decision["version"]
    if decision["decision"] == "promoted":
        now = aliases(client, name).get("champion")
        if now != decision["champion_before"]:  # another machine's registration, under another lock, moved it
            raise RegistryError(
                f"the champion of {name!r} moved from {_named(decision['champion_before'])} to {_named(now)} while v"
                f"{version} was gated against the first; nothing was moved: run register again to gate it against "
                f"the new champion (register.lock `file` orders registrations on one machine only)")
        move_champion(client, name, version, decision.get("rollback_to", decision["champion_before"]))
    elif decision["decision"] in ("rejected", NOT_PROMOTED):
        client.set_registered_model_alias(name, "challenger", version)
    elif decision["alias"] == "champion" and aliases(client, name).get("challenger") == version:
        client.delete_registered_model_alias(name, "challenger")  # a state older versions of Distillery could leave


def lift_rollback_guard(client, name: str, version) -> None:
    """Delete a version's rollback guard and its reason, when it has them: a stale reason on a champion promoted
    back by hand read as if it were rolled back (trial DD)."""
    for tag in (ROLLED_BACK, ROLLBACK_REASON):
        if tag in version.tags:
            client.delete_model_version_tag(name, str(version.version), tag)
