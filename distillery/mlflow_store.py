"""The project's own SQLite MLflow store follows the checkout: a copied or moved project rewrites the
absolute artifact paths MLflow stored (under the store lock, in one transaction), or refuses with one
line when the artifacts live somewhere it cannot vouch for."""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Optional

from distillery.tracking import DB_NAME, STORE_DIR, own_store_uri

# Columns of MLflow's SQL schema (3.x) that hold absolute artifact paths or file URIs.
_PATH_COLUMNS = (("experiments", "artifact_location"), ("runs", "artifact_uri"),
                 ("logged_models", "artifact_location"), ("model_versions", "storage_location"),
                 ("model_versions", "source"))


def _local_path(location: Optional[str]) -> Optional[Path]:
    if not location:
        return None
    if location.startswith("file://"):
        from urllib.parse import unquote, urlparse

        return Path(unquote(urlparse(location).path))
    return Path(location) if location.startswith("/") else None


def relocate_store(root: Path) -> Optional[Path]:
    """Keep the project's own store pointing into this checkout. MLflow records absolute artifact paths
    in ``mlflow.db``; a copied or moved checkout would keep writing artifacts into the old one (and fail
    once it is deleted). Paths under another checkout's ``mlruns/`` are rewritten to this one's, in one
    transaction under the store lock; return the old ``mlruns`` directory, or None if nothing moved.
    An experiment whose artifacts live anywhere else outside this project is refused with the fix."""
    import sqlite3

    from distillery.errors import ConfigError
    from distillery.locking import registry_lock

    here = (root / STORE_DIR).resolve()
    db_path = here / DB_NAME
    uri = own_store_uri(root)

    def foreign_dirs() -> dict[Path, str]:
        with contextlib.closing(sqlite3.connect(db_path)) as db:
            rows = db.execute("SELECT name, artifact_location FROM experiments").fetchall()
        found: dict[Path, str] = {}
        for name, location in rows:
            path = _local_path(location)
            if path is None or path == here or here in path.parents:
                continue
            if path.parent.name != STORE_DIR.name:  # not a project store's layout: not ours to rewrite
                raise ConfigError(f"MLflow experiment {name!r} in {db_path} keeps its artifacts in {path}, outside "
                                  f"this project ({root}); set register.experiment to a new name (its artifacts then "
                                  f"go to {here / 'artifacts'}), or point MLFLOW_TRACKING_URI at the store it "
                                  f"belongs to")
            found[path.parent] = name
        return found

    if not db_path.is_file() or not foreign_dirs():
        return None
    with registry_lock(uri, "_store", timeout_s=120):
        old_dirs = foreign_dirs()  # again, under the lock: another process may have done it meanwhile
        for old in old_dirs:
            if (old / "artifacts").is_dir() and not (here / "artifacts").is_dir():
                raise ConfigError(f"this project's MLflow store {db_path} was copied from {old} without its "
                                  f"artifacts; copy {old / 'artifacts'} to {here / 'artifacts'}, then run again")
        with contextlib.closing(sqlite3.connect(db_path)) as db, db:
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            for old in old_dirs:
                for before, after in ((old.as_uri(), here.as_uri()), (str(old), str(here))):
                    for table, column in _PATH_COLUMNS:
                        if table not in tables:
                            continue
                        db.execute(f"UPDATE {table} SET {column} = ? || substr({column}, ?) "
                                   f"WHERE {column} = ? OR substr({column}, 1, ?) = ?",
                                   (after, len(before) + 1, before, len(before) + 1, before + "/"))
    for old in old_dirs:
        logging.getLogger("distillery").warning("MLflow store moved: artifact paths under %s now point to %s",
                                                old, here)
    return next(iter(old_dirs), None)


