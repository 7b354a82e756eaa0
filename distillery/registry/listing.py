"""``python -m distillery models``: every registered version with its test figures, gate result and aliases."""
from __future__ import annotations

import time
from typing import Optional
from pathlib import Path

from distillery.config import Params
from distillery.registry.client import TAG, aliases, connected, versions
from distillery.tracking import redact_uri, sqlite_path, tracking_uri


def no_store(uri: str) -> bool:
    """A SQLite store whose file is not there: a mistyped ``MLFLOW_TRACKING_URI``, or no run registered yet.
    The registry commands create nothing there (connecting would make an empty store)."""
    path = sqlite_path(uri)
    return path is not None and not path.is_file()


def list_models(params: Params, root: Optional[Path] = None) -> dict:
    """Every registered version with its key metrics, gate result and aliases."""
    root = (root or Path.cwd()).resolve()
    name = params.register.model_name
    uri = tracking_uri(root)
    if no_store(uri):
        return {"model_name": name, "tracking_uri": redact_uri(uri), "store": "missing", "versions": []}
    by_version: dict[str, list[str]] = {}
    with connected(root, name, lock_timeout_s=None) as client:  # a listing never waits for a registration
        found = versions(client, name)
        for alias, version in aliases(client, name).items():
            by_version.setdefault(version, []).append(alias)
    rows = []
    for v in found:
        t = v.tags
        rows.append({"version": str(v.version), "aliases": sorted(by_version.get(str(v.version), [])),
                     "created": time.strftime("%Y-%m-%d %H:%M", time.localtime(v.creation_timestamp / 1000)),
                     "metrics": _test_metrics(t),
                     "retention": t.get(TAG + "retention"), "p95_ms": t.get(TAG + "p95_ms"),
                     "size_mb": t.get(TAG + "size_mb"),
                     "gate": ", ".join(filter(None, (
                         t.get(TAG + "gate"), "promoted by hand" if t.get(TAG + "promoted") == "manual" else "",
                         f"rolled back {t[TAG + 'rolled_back_at']}" if TAG + "rolled_back_at" in t else ""))) or None,
                     # which test split its figures are on: versions of one split compare, of two do not
                     "test_split": (t.get(TAG + "test_sha256") or "")[:8] or None,
                     "previous_champion": t.get(TAG + "previous_champion"), "run_id": v.run_id})
    return {"model_name": name, "tracking_uri": redact_uri(uri), "versions": rows}


def _test_metrics(tags: dict) -> dict:
    """A version's test-split scores, as its task scores them (``accuracy``, ``macro_f1``; ``f1``,
    ``exact_match``), the gate's metric first: ``{name: value}`` from its ``test_<metric>`` tags."""
    names = [key[len(TAG + "test_"):] for key in tags if key.startswith(TAG + "test_") and key != TAG + "test_sha256"]
    primary = [key[len(TAG + "teacher_"):] for key in tags if key.startswith(TAG + "teacher_")]
    return {name: tags[TAG + "test_" + name] for name in sorted(names, key=lambda n: (n not in primary, n))}


def models_table(listing: dict) -> str:
    from distillery.reports import megabytes

    def cell(value, fmt) -> str:
        """``value`` as a number in ``fmt`` (a format spec, or a function of the number); "-" when it is none."""
        try:
            return fmt(float(value)) if callable(fmt) else format(float(value), fmt)
        except (TypeError, ValueError):
            return "-"

    metrics = list(dict.fromkeys(name for row in listing["versions"] for name in row["metrics"])) or ["accuracy"]
    lines = [f"registered model {listing['model_name']} in {listing['tracking_uri']}", "",
             f"| version | aliases | created | {' | '.join(metrics)} | retention | p95 ms | MB | gate | test split |",
             f"|---|---|---|{'---:|' * len(metrics)}---:|---:|---:|---|---|"]
    for row in listing["versions"]:
        scores = " | ".join(cell(row["metrics"].get(name), ".4f") for name in metrics)
        lines.append(f"| {row['version']} | {', '.join(row['aliases']) or '-'} | {row['created']} | {scores} | "
                     f"{cell(row['retention'], '.4f')} | {cell(row['p95_ms'], '.2f')} | "
                     f"{cell(row['size_mb'], megabytes)} "
                     f"| {row['gate'] or '-'} | {row.get('test_split') or '-'} |")
    if listing.get("store") == "missing":
        lines.append("| (no store there: nothing registered yet, or a mistyped MLFLOW_TRACKING_URI) |"
                     + " |" * (len(metrics) + 8))
    elif not listing["versions"]:
        lines.append(f"| (no versions of {listing['model_name']} in this store: run the pipeline, or check "
                     "register.model_name) |" + " |" * (len(metrics) + 8))
    return "\n".join(lines)
