"""``python -m distillery params --check``: the params file against every key and value, the keys ``dvc.yaml``'s
stages read, and the models' limits, in one line; then a warning when a flow run may lower the gate's bar."""
from __future__ import annotations

import sys

from distillery.errors import ConfigError, DistilleryError, TransientError

RISKY_OVERRIDES = ("register", "teacher", "student.model", "student.max_length")


def check_params_file(path: str) -> int:
    """Check the params file at ``path``: print one line (and a warning, when there is one) and return the exit
    code."""
    from distillery.config import load_params
    from distillery.model_limits import check_model_limits

    try:
        params = load_params(path)
        missing = missing_stage_params(path)
        if missing:
            raise ConfigError(f"{path}: dvc.yaml's stages read {len(missing)} key(s) it lacks (a params.yaml from "
                              f"before an upgrade?): {'; '.join(missing)}; add them (`python -m distillery params` "
                              "describes each), or DVC stops at the first stage that reads one")
        try:
            check_data_files(params)  # the local files first: a Hub id the cache lacks must not hide them
            try:
                check_model_limits(params)
                later = None
            except TransientError as exc:  # the Hub out of reach (exit 3): said after the gate's cell, so that a
                later = exc                # retry does not meet that error next
            check_gate_cell(params)
            if later is not None:
                raise later
        except DistilleryError as exc:
            raise type(exc)(f"{path}: {exc}") from None
    except DistilleryError as exc:
        print(f"distillery params: {exc.label}: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"{path}: every key is known and every value allowed")
    risky = [prefix for prefix in params.schedule.allowed_overrides
             if any(prefix == root or prefix.startswith(root + ".") or root.startswith(prefix + ".")
                    for root in RISKY_OVERRIDES)]
    if risky:  # allowed by the owner, or a params.yaml from before the narrower default
        print(f"{path}: warning: schedule.allowed_overrides lets whoever starts a flow run set {', '.join(risky)}: "
              "the gate's bar, the teacher it is measured against, or the weights that ship (the default list leaves "
              "out register, teacher, student.model and student.max_length)", file=sys.stderr)
    return 0


def missing_stage_params(params_path) -> list[str]:
    """The keys ``dvc.yaml`` (beside ``params_path``) has its stages read that ``params_path`` leaves out, each
    with the value to add (its built-in default): DVC stops a stage on a missing key only when it reaches that stage,
    after the stages before it ran (a params.yaml from before an upgrade of Distillery)."""
    import json
    from pathlib import Path

    from distillery.config import Params
    from distillery.config.loading import safe_load
    from distillery.tracked import load_dvc_yaml

    dvc_file = Path(params_path).resolve().parent / "dvc.yaml"
    if not dvc_file.is_file():
        return []
    stages = load_dvc_yaml(dvc_file).get("stages") or {}
    raw = safe_load(Path(params_path).read_text(encoding="utf-8")) or {}
    keys = [entry for stage in stages.values() if isinstance(stage, dict)
            for entry in stage.get("params") or [] if isinstance(entry, str)]
    defaults, missing = Params().flat(), []
    for key in dict.fromkeys(keys):
        node = raw
        for part in key.split("."):
            node = node.get(part, KeyError) if isinstance(node, dict) else KeyError
        if node is KeyError:
            default = defaults.get(key, {k[len(key) + 1:]: v for k, v in defaults.items() if k.startswith(key + ".")})
            missing.append(f"{key} (built-in default: {json.dumps(default)})")
    return missing


def check_data_files(params) -> None:
    """A local data file that is not there, or (text classification) one that is a folder, of a type ``prepare``
    cannot read, or whose header lacks a column ``data`` (or ``distill.transfer_set``) names, or one outside
    ``prepare``'s inputs in dvc.yaml: found here, before ``dvc repro`` removes ``data/prepared`` to run ``prepare``,
    which would say the same. Only the header is read, and a header this cannot read is left to ``prepare``."""
    from pathlib import Path

    from distillery.file_hints import column_hint
    from distillery.sources import SUFFIXES, shown_columns
    from distillery.tracked import require_tracked

    cfg, transfer = params.data, params.distill.transfer_set
    text = params.task == "text_classification"
    named = {f"data.files.{split}": value for split, value in cfg.files.items()} or {"data.source": cfg.source}
    columns_of = {key: cfg.named_columns() for key in named}
    if transfer.source not in ("none", "remainder") and transfer.max_rows != 0:
        named["distill.transfer_set.source"] = transfer.source
        wanted = {"distill.transfer_set.text_column": transfer.text_column or cfg.text_column}
        if cfg.text_pair_column:
            wanted["distill.transfer_set.text_pair_column"] = transfer.text_pair_column or cfg.text_pair_column
        columns_of["distill.transfer_set.source"] = wanted
    for key, value in named.items():
        if value.startswith("bundled:") and params.task == "question_answering":
            from distillery.task_types.question_answering.reading import NOT_A_QA_CORPUS

            raise ConfigError(f"{key}: {value} {NOT_A_QA_CORPUS}")
        if value.startswith(("bundled:", "hub:")):
            continue
        path = Path(value).expanduser()
        if not path.exists():  # neither bundled: nor hub:, so a local file or folder
            raise ConfigError(f"{key}: {value} does not exist (a Hub dataset is named hub:<id>)")
        if params.task == "question_answering":
            _check_qa_file(path, key, value)
        if not text:
            continue
        if path.is_dir():
            raise ConfigError(f"{key}: {value} is a directory; a text data source is one file "
                              f"({', '.join(SUFFIXES)})" + (", and files already split go in data.files: "
                                                            "{train: ..., test: ...}" if key == "data.source" else ""))
        if path.suffix.lower() not in SUFFIXES:
            raise ConfigError(f"{key}: {value} is of a type prepare cannot read ({path.suffix or 'no suffix'!r}); "
                              f"use one of {', '.join(SUFFIXES)}")
        _check_first_line(path, key, strict=cfg.encoding_errors == "strict")
        try:
            columns = _header(path)
        except ConfigError as exc:
            raise ConfigError(f"{key}: {exc}") from None
        for column_key, column in columns_of[key].items():
            if columns is not None and column not in columns:
                hint = column_hint(column, columns)
                raise ConfigError(f"{column_key} {column!r} is not a column of {value} (its columns are "
                                  f"{shown_columns(columns)})" + (f"; {hint}" if hint else ""))
    # a local input outside prepare's deps: prepare refuses it too, but only after DVC removed data/prepared
    require_tracked("prepare", {key: value for key, value in named.items()})
    # and a local model outside the training stages' deps: they refuse it after DVC removed models/teacher (a trial's
    # teacher.model outside models/pretrained passed this check and prepare, then failed in train_teacher)
    require_tracked("train_teacher", {"teacher.model": params.teacher.model})
    require_tracked("distill", {"teacher.model": params.teacher.model, "student.model": params.student.model})


def check_gate_cell(params) -> None:
    """``register``'s latency check reads the deployable student's p95 at batch 1 and ``student.max_length`` (or a
    longer length): a benchmark grid without that cell failed only there, after every model had trained and been
    timed (a trial). Checked after the models' limits, which may refuse the length itself."""
    from distillery.announce import NO_SEQUENCE

    sizes, lengths, length = params.benchmark.batch_sizes, params.benchmark.sequence_lengths, params.student.max_length
    if 1 not in sizes:
        raise ConfigError(f"benchmark.batch_sizes = {sizes} is not allowed; register's latency gate reads the "
                          "batch-1 cell; add 1")
    if params.task not in NO_SEQUENCE and max(lengths) < length:
        raise ConfigError(f"benchmark.sequence_lengths = {lengths} is not allowed; register's latency gate reads "
                          f"batch 1 at student.max_length ({length}) or longer; add {length}")


def _check_qa_file(path, key: str, value: str) -> None:
    """A question-answering source of a type ``prepare`` cannot read (a CSV, a folder), as ``prepare`` would say it."""
    from distillery.task_types.question_answering.columns import SUFFIXES
    from distillery.task_types.question_answering.reading import UNSUPPORTED

    if path.is_dir() or not path.name.lower().endswith(SUFFIXES):
        raise ConfigError(f"{key}: {value}: " + ("a directory; " if path.is_dir() else "") + UNSUPPORTED)


JSON_READ_LIMIT = 200_000_000  # bytes: a larger JSON array's columns are left to prepare (it reads it whole)


def _check_first_line(path, key: str, strict: bool) -> None:
    """A text file's first line that is not UTF-8: the line ``prepare`` would give (``text_files.decode``). Under
    ``encoding_errors: replace`` (not ``strict``) only a UTF-16 file, which ``prepare`` refuses either way."""
    from distillery.file_hints import not_text_hint
    from distillery.text_files import BOM, not_utf8

    if path.suffix.lower() in (".parquet", ".pq"):
        return
    with open(path, "rb") as handle:
        first = handle.readline(1_000_000)
    hint = not_text_hint(first)
    if hint:  # encoding_errors: replace does not help (a trial followed that advice to a garbled header)
        raise ConfigError(f"{key}: {path}: not UTF-8{hint}")
    if not strict:  # else a header not in UTF-8 reads as a missing column
        return
    bom = len(BOM) if first.startswith(BOM) else 0
    try:
        first[bom:].decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(first) - bom - 4:  # not a character cut by the read's end
            raise ConfigError(f"{key}: {not_utf8(path, 1, first[bom + exc.start], bom + exc.start)}") from None


def _json_keys(records) -> "list[str] | None":
    """The keys of the first 1,000 records, in order of appearance; None if one is not a mapping."""
    keys: dict = {}
    for record in records:
        if not isinstance(record, dict):
            return None
        keys.update(dict.fromkeys(map(str, record)))
    return list(keys) or None


def _header(path) -> "list[str] | None":
    """The column names of a CSV/TSV/JSON/JSON-lines/Parquet file from its first line, first records or schema, as
    ``prepare`` reads them (a JSON object is pandas' ``orient="columns"``: its keys); None when they cannot be read
    cheaply (an unreadable first line, a JSON file over ``JSON_READ_LIMIT``)."""
    import itertools
    import json

    suffix = path.suffix.lower()
    try:
        if suffix == ".json" and path.stat().st_size <= JSON_READ_LIMIT:
            with open(path, encoding="utf-8-sig", errors="replace") as handle:
                text = handle.read()
            try:
                data = json.loads(text)
            except json.JSONDecodeError as whole:  # JSON lines in a .json file, as prepare reads it then
                lines = (line for line in text.splitlines() if line.strip())
                try:
                    return _json_keys(json.loads(line) for line in itertools.islice(lines, 1000))
                except json.JSONDecodeError:
                    raise ConfigError(f"{path}: not valid JSON (line {whole.lineno}, column {whole.colno}: "
                                      f"{whole.msg}), nor JSON lines") from None
            if isinstance(data, list) and (not data or not all(isinstance(r, dict) for r in data[:1000])):
                raise ConfigError(f"{path}: " + ("holds no records" if not data else "is an array of arrays or "
                                                 "values, not of records") + "; a .json source must be an array of "
                                  "records, [{column: value, ...}, ...], or JSON lines: pandas writes it with "
                                  "to_json(path, orient='records')")
            if isinstance(data, list):
                return _json_keys(data[:1000])
            return [str(key) for key in data] if isinstance(data, dict) else None
        if suffix in (".parquet", ".pq"):
            import pyarrow.parquet

            return [str(name) for name in pyarrow.parquet.read_schema(path).names]
        if suffix in (".csv", ".tsv"):
            import pandas as pd

            return [str(c) for c in pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", nrows=0,
                                                encoding="utf-8-sig", encoding_errors="replace").columns]
        if suffix == ".jsonl":  # a record may leave out a key others hold: the keys of the first 1,000 records
            from distillery.text_files import json_line

            with open(path, encoding="utf-8-sig", errors="replace") as lines:
                records = [json_line(number, line) for number, line in
                           itertools.islice(((n, line) for n, line in enumerate(lines, 1) if line.strip()), 1000)]
            bad = next((record for record in records if isinstance(record, str)), None)
            if bad:  # prepare stops on it too; unsaid, it hid the columns from this check (a trial's typo passed)
                raise ConfigError(f"{path}: {bad}")
            return _json_keys(records)
    except ConfigError:
        raise
    except Exception:  # noqa: BLE001 - a header this cannot read is prepare's to name
        return None
    return None
