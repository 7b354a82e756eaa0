"""``python -m distillery profile <name>``: switch the project to another task by merging
``profiles/<name>.yaml`` over params.yaml.

A profile holds only the keys it changes (nested as in params.yaml); everything else stays as it
is. params.yaml is edited in place with a round-trip YAML writer, so its comments, its key order
and its flow-style lists survive, and it is replaced atomically only after the merged file has
passed the same validation as any params.yaml. Then ``dvc repro`` re-runs exactly the stages whose
params changed. ``profiles/tweets.yaml`` holds the default task's values of every key another
bundled profile sets, so ``profile tweets`` switches back; every other profile is applied over it, so one
profile switches to another directly (``profile mnist`` then ``profile qa``: the primer's
``distill.labelled_rows`` does not stay behind). (ruamel.yaml, the round-trip writer, comes with DVC.)
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any, Union

import yaml

from distillery.errors import ConfigError

PROFILES_DIR = Path("profiles")
BASE = "tweets"  # the default task's values of every key another profile sets; the others are applied over it


def available(profiles_dir: Union[str, Path] = PROFILES_DIR) -> list[str]:
    return sorted(p.stem for p in Path(profiles_dir).glob("*.yaml"))


def read_profile(name: str, profiles_dir: Union[str, Path] = PROFILES_DIR) -> dict:
    path = Path(profiles_dir) / f"{name}.yaml"
    if not name or "/" in name or not path.is_file():
        known = ", ".join(available(profiles_dir)) or "none"
        raise ConfigError(f"profile {name!r}: {path} not found; profiles: {known}")
    try:
        from distillery.config.loading import read_utf8, safe_load, yaml_error_line

        profile = safe_load(read_utf8(path))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {yaml_error_line(exc)}") from None
    if not isinstance(profile, dict) or not profile:
        raise ConfigError(f"{path}: a profile is a mapping of params.yaml keys to values")
    return profile


def _yaml_writer():
    from ruamel.yaml import YAML

    writer = YAML()
    writer.preserve_quotes = True
    writer.width = 4096  # never re-wrap a long commented line
    writer.representer.add_representer(
        type(None), lambda rep, _: rep.represent_scalar("tag:yaml.org,2002:null", "null"))
    writer.representer.add_representer(
        float, lambda rep, value: rep.represent_scalar("tag:yaml.org,2002:float", _float_text(value)))
    return writer


def _float_text(value: float) -> str:
    """A float as YAML 1.1 reads it back as a float: ``5e-05`` is a string to PyYAML, ``5.0e-05`` a float."""
    text = repr(value)
    mantissa, _, exponent = text.partition("e")
    return f"{mantissa}.0e{exponent}" if exponent and "." not in mantissa else text


def _styled(value: Any) -> Any:
    """A list written flow-style (``[a, b]``), as params.yaml writes its lists."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    if isinstance(value, list):
        seq = CommentedSeq([_styled(v) for v in value])
        seq.fa.set_flow_style()
        return seq
    if isinstance(value, dict):
        mapping = CommentedMap({k: _styled(v) for k, v in value.items()})
        mapping.fa.set_flow_style()
        return mapping
    return value


def _merge(node: Any, profile: dict, prefix: str, changed: dict) -> None:
    """Set each of ``profile``'s leaves in ``node``; a mapping merges into the mapping already there."""
    for key, value in profile.items():
        dotted = f"{prefix}{key}"
        current = node.get(key) if hasattr(node, "get") else None
        if isinstance(value, dict) and value and hasattr(current, "items"):
            _merge(current, value, dotted + ".", changed)
            continue
        if (value is None or value == {}) and hasattr(current, "items") and current and _is_section(dotted):
            raise ConfigError(f"{dotted} is an empty section in the profile: it would replace every {dotted} key of "
                              "params.yaml with the built-in defaults; list the keys it changes, or remove it")
        plain = current if not hasattr(current, "items") and not isinstance(current, list) else \
            yaml.safe_load(yaml.safe_dump(_plain(current)))
        absent = not hasattr(node, "get") or key not in node  # a key params.yaml leaves out: written, even as null
        if absent or plain != value:
            changed[dotted] = [plain, value]
            if isinstance(current, list) and isinstance(value, list) and hasattr(current, "fa") \
                    and not current.fa.flow_style():
                # a block list (`- 0` lines) is refilled in place: replaced by a new node, it took the line break
                # after the next key's value with it (`max_length: 256 config:`), and the file no longer read
                current[:] = [_styled(v) for v in value]
            else:
                node[key] = _styled(value)


def _is_section(dotted: str) -> bool:
    """Is ``dotted`` a section of params.yaml (``distill``, ``distill.train``), not a key whose value is a mapping
    (``data.max_samples``, where ``{}`` means no caps)?"""
    import dataclasses
    import typing

    from distillery.config import Params

    owner: Any = Params
    for part in dotted.split("."):
        fields = {f.name: f for f in dataclasses.fields(owner)} if dataclasses.is_dataclass(owner) else {}
        if part not in fields:
            return False
        annotation = fields[part].type
        hints = typing.get_type_hints(owner)
        annotation = hints.get(part, annotation)
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        owner = args[0] if typing.get_origin(annotation) is typing.Union and len(args) == 1 else annotation
    return dataclasses.is_dataclass(owner)


def _over(base: dict, profile: dict) -> dict:
    """``profile`` merged over ``base``, mapping by mapping."""
    merged = dict(base)
    for key, value in profile.items():
        merged[key] = _over(base[key], value) if isinstance(value, dict) and value and \
            isinstance(base.get(key), dict) else value
    return merged


def _plain(value: Any) -> Any:
    if hasattr(value, "items"):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    for kind in (bool, int, float, str):  # ruamel's ScalarInt, ScalarFloat... as plain values (safe_dump refuses them)
        if isinstance(value, kind):
            return kind(value)
    return value


def apply_profile(name: str, params_path: Union[str, Path] = "params.yaml",
                  profiles_dir: Union[str, Path] = PROFILES_DIR) -> dict:
    """Merge ``profiles/<name>.yaml`` over ``params_path``; return ``{"profile", "changed": {key: [old, new]}}``."""
    from distillery.config import load_params
    from distillery.config.loading import read_utf8, safe_load

    params_path = Path(params_path)
    profile = read_profile(name, profiles_dir)
    if name != BASE and (Path(profiles_dir) / f"{BASE}.yaml").is_file():
        profile = _over(read_profile(BASE, profiles_dir), profile)
    if not params_path.is_file():
        raise ConfigError(f"{params_path}: params file not found (run from the project root or pass --params)")
    writer = _yaml_writer()
    text = read_utf8(params_path)
    document = writer.load(text)
    expected = _over(safe_load(text), profile)  # what the rewritten file must read back as
    changed: dict = {}
    try:
        _merge(document, profile, "", changed)
    except ConfigError as exc:
        raise ConfigError(f"profile {name} ({Path(profiles_dir) / f'{name}.yaml'}): {exc}") from None
    if not changed:  # not even rewritten: the writer would still re-indent a list or two
        load_params(params_path)
        return {"profile": name, "params": str(params_path), "changed": changed}
    buffer = io.StringIO()
    writer.dump(document, buffer)
    try:
        wrong = safe_load(buffer.getvalue()) != expected
    except yaml.YAMLError:
        wrong = True
    if wrong:  # the writer's fault, not the file's: say so, and leave the file as it was
        raise ConfigError(f"profile {name}: rewriting {params_path} with its comments kept went wrong (the result "
                          f"does not read back as the merged keys); {params_path} is unchanged: set the profile's "
                          f"keys by hand ({Path(profiles_dir) / f'{name}.yaml'})")
    scratch = params_path.with_name(f".{params_path.stem}.profile.tmp-{os.getpid()}.yaml")
    scratch.write_text(buffer.getvalue(), encoding="utf-8")
    try:
        load_params(scratch)  # the merged file must be a valid params file before it replaces the old one
    except ConfigError as exc:
        scratch.unlink(missing_ok=True)
        raise ConfigError(f"profile {name} ({Path(profiles_dir) / f'{name}.yaml'}): "
                          f"{str(exc).replace(str(scratch), str(params_path))}") from None
    os.replace(scratch, params_path)
    return {"profile": name, "params": str(params_path), "changed": changed}


def summary(result: dict) -> str:
    changed = result["changed"]
    if not changed:
        return f"{result['params']} already has every value of profile {result['profile']}; nothing changed"
    lines = [f"  {key}: {old!r} -> {new!r}" for key, (old, new) in changed.items()]
    return (f"{result['params']}: profile {result['profile']} applied, {len(changed)} key(s) changed:\n"
            + "\n".join(lines) + "\nrun `dvc repro` (or the flow) to bring the pipeline up to date")
