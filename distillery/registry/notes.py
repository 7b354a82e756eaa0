"""The lines under a promotion or rollback: the checks the new champion failed at its registration, a change of
labels the clients see, and the served processes that keep the old one."""
from __future__ import annotations

from distillery.registry.client import TAG, version_labels


def failed_checks(version) -> list[str]:
    """The gate checks ``version`` failed when it was last gated ("name: detail"), from its tags; empty when it
    passed, or was never gated (registered before the tags were written)."""
    if version.tags.get(TAG + "gate") != "failed":
        return []
    prefix = TAG + "gate."
    return [f"{key[len(prefix):]}: {value[len('fail: '):]}" for key, value in sorted(version.tags.items())
            if key.startswith(prefix) and not key.startswith(prefix + "failed.") and value.startswith("fail: ")]


def gate_warning(result: dict) -> str:
    """The line under a promotion or rollback to a version that failed its gate: allowed (it is the override), never
    silent."""
    failed = result.get("gate_failed") or []
    if not failed:
        return ""
    return (f"\nwarning: v{result['champion']} failed the last gate recorded on it, on "
            f"{len(failed)} check{'s' if len(failed) > 1 else ''}: " + "; ".join(failed))


def labels_changed(client, name: str, new, old) -> dict:
    """``{"labels_changed": {"from": [...], "to": [...]}}`` when ``new`` answers other labels than ``old`` (the
    champion it replaces), else empty: said under the move, since clients reading ``prob_<label>`` see it."""
    if old is None:
        return {}
    ours, theirs = version_labels(client, name, new), version_labels(client, name, old)
    if ours is None or theirs is None or ours == theirs:
        return {}
    return {"labels_changed": {"from": theirs, "to": ours}}


def labels_note(result: dict) -> str:
    """The line under a move to a version of other labels than the champion it replaced."""
    changed = result.get("labels_changed")
    if not changed:
        return ""
    lost = [label for label in changed["from"] if label not in changed["to"]]
    gained = [label for label in changed["to"] if label not in changed["from"]]
    what = "; ".join(part for part in (f"no longer {lost}" if lost else "", f"newly {gained}" if gained else "",
                                       "the same labels in another order" if not lost and not gained else "") if part)
    return (f"\nnote: v{result['champion']} answers the labels {changed['to']}, v{result['previous']} answered "
            f"{changed['from']} ({what}): the clients of models:/{result['model_name']}@champion read other "
            "prob_<label> columns")


def restart_note(result: dict) -> str:
    """A server started before the move keeps answering with the version it loaded."""
    return (f"\nnote: a running `mlflow models serve -m models:/{result['model_name']}@champion` keeps the version it "
            f"loaded at its start: restart it to serve v{result['champion']}")
