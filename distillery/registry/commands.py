"""The registry commands: ``models`` (list versions), ``promote <version> --reason ...`` and ``rollback``."""
from __future__ import annotations

import getpass
from pathlib import Path
from typing import Optional

from distillery.config import Params
from distillery.errors import RegistryError, TrackingUnavailable, connection_lost
from distillery.registry.client import (ROLLBACK_REASON, ROLLED_BACK, TAG, aliases, champion, connected,
                                        end_stale_runs, lift_rollback_guard, move_champion, record_action, recorder,
                                        recover, set_tags, version_inputs, versions)
from distillery.registry.notes import failed_checks, gate_warning, labels_changed, labels_note, restart_note
from distillery.registry.listing import no_store, list_models, models_table  # noqa: F401 (commands.list_models)
from distillery.registry.versions import stamp, version_input_spec, version_weights, weights_rolled_back
from distillery.tracking import experiment_id, quiet_mlflow, redact_uri, tracking_uri
from distillery.tracking_errors import lost_cause


def _recover(client, params: Params, root: Path) -> dict:
    """What a killed registration, promotion or rollback left: its runs KILLED, its alias move finished or undone."""
    name, uri = params.register.model_name, tracking_uri(root)
    end_stale_runs(client, experiment_id(params.register.experiment, root, uri), name)
    return recover(client, name, recorder(params.register.experiment, root, uri, name))


def _require_store(root: Path) -> None:
    uri = tracking_uri(root)
    if no_store(uri):
        raise RegistryError(f"no store at {redact_uri(uri)} (nothing registered yet, or a mistyped "
                            f"MLFLOW_TRACKING_URI); nothing was created")


def promote(params: Params, version: str, reason: str, root: Optional[Path] = None,
            other_inputs: bool = False, other_labels: bool = False) -> dict:
    """Manual override: make ``version`` the champion, recording who, when and why.

    A version whose input columns differ from the champion's (a QA model over a text classifier) would answer
    none of the requests sent to the served name: it is refused unless ``other_inputs`` says that is meant, and so
    is a version when either side's columns are unknown. One answering other labels (its clients read other
    ``prob_<label>`` columns) is refused unless ``other_labels`` says so."""
    root = (root or Path.cwd()).resolve()
    if not reason or not reason.strip():
        raise RegistryError("promote needs --reason: a manual override is recorded with its reason")
    name = params.register.model_name
    _require_store(root)
    with connected(root, name, params.register.lock_timeout_s, params.register.lock) as client:
        _recover(client, params, root)
        known = {str(v.version): v for v in versions(client, name)}
        if str(version) not in known:
            raise RegistryError(f"model {name!r} has no version {version!r} (versions: "
                                f"{', '.join(known) or 'none'}); see `distillery models`")
        current = aliases(client, name).get("champion")
        if current == str(version):
            if ROLLED_BACK in known[current].tags or \
                    weights_rolled_back(list(known.values()), version_weights(known[current]), current):
                # a champion whose weights carry the guard (its own, an older Distillery could leave one, or a
                # sibling's under other serving code): promoting it by hand lifts the guard, so the gate stops
                # refusing them
                set_tags(client, name, current, {TAG + "promoted": "manual", TAG + "promotion_reason": reason,
                                                 TAG + "promoted_at": stamp()})
                lift_rollback_guard(client, name, known[current])
                return {"model_name": name, "champion": current, "changed": False, "lifted_guard": True}
            return {"model_name": name, "champion": current, "changed": False}
        if current is not None and current in known and not other_inputs:
            theirs, ours = version_inputs(name, known[current]), version_inputs(name, known[str(version)])
            if theirs is None or ours is None:
                unknown = " and ".join(f"{who}'s" for who, cols in ((f"v{version}", ours), (f"champion v{current}",
                                                                                        theirs)) if cols is None)
                raise RegistryError(
                    f"cannot tell whether v{version} of {name!r} answers the requests sent to models:/{name}@champion: "
                    f"{unknown} input columns are unknown (no distillery.inputs tag, no signature); add "
                    f"--other-inputs to promote it anyway")
            if theirs != ours:
                raise RegistryError(
                    f"v{version} of {name!r} takes {ours}, champion v{current} takes {theirs}: the requests sent to "
                    f"models:/{name}@champion would not fit; add --other-inputs if the clients change with it")
            said = _narrowed(params, name, known[str(version)], known[current])
            if said:
                raise RegistryError(
                    f"v{version} of {name!r} takes {ours} as champion v{current} does, but {'; '.join(said)}: "
                    f"requests sent to models:/{name}@champion would be refused or read otherwise; add "
                    f"--other-inputs if the clients change with it")
        relabelled = labels_changed(client, name, known[str(version)], known.get(current) if current else None)
        if relabelled and not other_labels:
            changed = relabelled["labels_changed"]
            raise RegistryError(f"v{version} of {name!r} answers the labels {changed['to']}, champion v{current} "
                                f"{changed['from']}: the clients of models:/{name}@champion would read other "
                                "prob_<label> columns; add --other-labels if they change with it")
        _require_loadable(name, str(version))
        when = stamp()
        tags = {TAG + "promoted": "manual", TAG + "promotion_reason": reason, TAG + "promoted_at": when,
                TAG + "promoted_by": getpass.getuser()}
        # The intent first, then the alias, then these tags and the lifted rollback guard: see move_champion.
        run_id = move_champion(client, name, str(version), current, tags,
                               ("promote", {"version": version, "from": current or "none", "reason": reason}),
                               recorder(params.register.experiment, root, tracking_uri(root), name))
    return {"model_name": name, "champion": str(version), "previous": current, "changed": True, "run_id": run_id,
            "gate_failed": failed_checks(known[str(version)]), **relabelled}


def _narrowed(params: Params, name: str, version, current, named: str = "the champion") -> list[str]:
    """What requests ``current`` answers that ``version`` would refuse or read otherwise, beyond their columns
    (an image model's size, channels, resizing and pixel range, a text model's own column names: the task's
    ``serving.narrowing``), from their
    ``distillery.input_spec`` tags, or their files for one registered before it; empty for other tasks."""
    from distillery.task_types.parts import task_part

    serving = task_part(params.task, "serving")
    if not hasattr(serving, "narrowing"):
        return []
    import tempfile

    with tempfile.TemporaryDirectory(prefix="distillery-promote-") as scratch:
        try:
            ours, theirs = (version_input_spec(v, name, serving, Path(scratch) / str(v.version))
                            for v in (version, current))
        except Exception as exc:
            raise RegistryError(f"cannot tell whether v{version.version} of {name!r} takes the requests champion "
                                f"v{current.version} takes ({type(exc).__name__}: {str(exc)[:200]}); add "
                                "--other-inputs to promote it anyway") from exc
    return serving.narrowing(ours, theirs, named)


def _require_loadable(name: str, version: str) -> None:
    """Refuse a version whose model files are not all there (its artifacts moved or deleted): as champion it would
    break every client of ``models:/<name>@champion``, and every later gate could not score it. The files are
    fetched into a temporary directory and checked against its MLmodel file; none of its code is run (a rollback
    must not depend on this machine being able to load an older model)."""
    import tempfile

    import mlflow
    import yaml

    try:
        with quiet_mlflow(), tempfile.TemporaryDirectory(prefix="distillery-check-") as tmp:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}", dst_path=tmp))
            flavor = (yaml.safe_load((local / "MLmodel").read_text(encoding="utf-8")) or {})["flavors"][
                "python_function"]
            needed = [item["path"] for item in (flavor.get("artifacts") or {}).values()]
            if flavor.get("model_code_path"):
                needed.append(Path(flavor["model_code_path"]).name)
            missing = [path for path in needed if not (local / path).is_file()]
            if missing:
                raise FileNotFoundError(f"{missing[0]} is missing")
            for path in needed:  # there, but whole? (a cut-short ONNX file was promoted, and the server died on it)
                _require_whole(local / path, path)
    except Exception as exc:  # noqa: BLE001 - whatever the store says, one line
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if connection_lost(exc):  # a trial killed the server mid-promote: v4 was called broken, exit 2
            raise TrackingUnavailable(f"the tracking server stopped answering while v{version}'s files were fetched "
                                      f"({lost_cause(str(exc))}); the champion was not moved: run it again when the "
                                      "server is back") from None
        raise RegistryError(f"v{version} of {name!r} cannot be loaded ({first[:200]}); making it champion would "
                            f"break models:/{name}@champion: choose another version (`distillery models`)") from None


def _require_whole(path: Path, name: str) -> None:
    """A served file that cannot be read as what it is: an ONNX model that is no protobuf (parsed, never run: its
    opset need not be this machine's), a JSON file that is not JSON."""
    import json

    try:
        if path.suffix == ".onnx":
            import onnx

            onnx.load_model(str(path), load_external_data=False)
        elif path.suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))
    except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError, UnicodeDecodeError, JSONDecodeError
        raise ValueError(f"{name} is damaged: it does not read as {path.suffix[1:].upper()} "
                         f"({type(exc).__name__}: {str(exc)[:120] or 'cut short?'})") from None


def rollback(params: Params, reason: str, root: Optional[Path] = None) -> dict:
    """Move ``champion`` back to the version it replaced."""
    root = (root or Path.cwd()).resolve()
    if not reason or not reason.strip():
        raise RegistryError("rollback needs --reason: the champion's move is recorded with its reason")
    name = params.register.model_name
    _require_store(root)
    with connected(root, name, params.register.lock_timeout_s, params.register.lock) as client:
        done = _recover(client, params, root).get("finished_rollback")
        if done:  # this command's own earlier attempt, killed between the guard and the alias move
            return {"model_name": name, "champion": done["to"], "previous": done["from"], "run_id": None,
                    "finished_interrupted": True}
        current = champion(client, name)
        if current is None:
            raise RegistryError(f"model {name!r} has no champion to roll back")
        current_version = str(current.version)
        previous = current.tags.get(TAG + "previous_champion")
        if not previous:
            raise RegistryError(f"champion v{current_version} of {name!r} replaced no earlier champion; "
                                f"use `distillery promote <version> --reason ...` to choose one")
        known = {str(v.version): v for v in versions(client, name)}
        if previous not in known:
            raise RegistryError(f"previous champion v{previous} of {name!r} no longer exists; "
                                f"use `distillery promote <version> --reason ...`")
        guarded = weights_rolled_back(list(known.values()), version_weights(known[previous]), previous)
        if guarded:
            # A second rollback once went back to the version the first one rolled back, and `recover` then took
            # that guarded champion for a rollback killed half-way: every command flipped the champion. The guard
            # belongs to the weights: a version of the rolled-back model under other serving code is refused too.
            raise RegistryError(f"previous champion v{previous} of {name!r} was itself rolled back, or a version of "
                                f"its weights was (at {guarded}); choose a version with `distillery promote "
                                f"<version> --reason ...`")
        _require_loadable(name, previous)
        when = stamp()
        # The guard before the alias move, so the rolled-back version can never lose it while not champion; a
        # champion carrying the guard is a rollback killed half-way, which ``recover`` finishes.
        set_tags(client, name, current_version, {ROLLBACK_REASON: reason})
        client.set_model_version_tag(name, current_version, ROLLED_BACK, when)
        if aliases(client, name).get("challenger") == previous:
            client.delete_registered_model_alias(name, "challenger")  # never champion and challenger at once
        client.set_registered_model_alias(name, "champion", previous)
        run_id = record_action(params.register.experiment, root, tracking_uri(root), "rollback",
                               {"version": previous, "from": current_version, "reason": reason}, name)
        # never refused (a rollback is the way back), but said: a promote --other-inputs is being undone
        before, after = version_inputs(name, current), version_inputs(name, known[previous])
        narrowed = []
        if before is not None and before == after:  # the same columns, but the same requests?
            try:
                narrowed = _narrowed(params, name, known[previous], current, f"v{current_version}")
            except RegistryError:
                pass  # unknown: a rollback is never refused, and is not warned of on a guess
    result = {"model_name": name, "champion": previous, "previous": current_version, "run_id": run_id,
              "gate_failed": failed_checks(known[previous]), **labels_changed(client, name, known[previous], current)}
    if before is not None and after is not None and before != after:
        result["inputs_changed"] = {"from": before, "to": after}
    if narrowed:
        result["requests_changed"] = narrowed
    return result


def run_command(command: str, params_path: str, version: Optional[str], reason: str,
                other_inputs: bool = False, other_labels: bool = False) -> str:
    """``models``, ``promote <version> --reason ...`` or ``rollback``; return what to print."""
    from distillery.config import load_params

    params = load_params(params_path)
    if command == "models":
        return models_table(list_models(params))
    if command == "promote":
        if version is None:
            raise RegistryError("promote needs a version: distillery promote <version> --reason '...'")
        result = promote(params, version, reason, other_inputs=other_inputs, other_labels=other_labels)
        if not result["changed"]:
            return f"{result['model_name']} v{result['champion']} is already the champion; " + (
                "its rollback guard is lifted, so the gate no longer refuses it" if result.get("lifted_guard")
                else "nothing changed")
        return (f"{result['model_name']}: champion v{result['previous'] or '-'} -> v{result['champion']} "
                f"(manual promotion recorded in MLflow run {result['run_id']})" + labels_note(result)
                + gate_warning(result) + restart_note(result))
    result = rollback(params, reason)
    if result.get("finished_interrupted"):
        return (f"{result['model_name']}: finished an interrupted rollback v{result['previous']} -> "
                f"v{result['champion']}")
    changed = result.get("inputs_changed")
    return (f"{result['model_name']}: champion rolled back v{result['previous']} -> v{result['champion']} "
            f"(recorded in MLflow run {result['run_id']})"
            + (f"\nnote: v{result['champion']} takes {changed['to']}, not {changed['from']}: the clients of "
               f"models:/{result['model_name']}@champion must change back" if changed else "")
            + (f"\nnote: v{result['champion']} takes other requests: {'; '.join(result['requests_changed'])}; the "
               f"clients of models:/{result['model_name']}@champion must change back"
               if result.get("requests_changed") else "")
            + labels_note(result) + gate_warning(result) + restart_note(result))
