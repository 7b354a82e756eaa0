"""Reading params.yaml: safe YAML, each section built (validated) from the inside out, errors as one line."""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any, Union

import yaml

from distillery.config.base import build
from distillery.config.messages import unknown_key
from distillery.config.operations import ScheduleConfig
from distillery.config.params import Params
from distillery.errors import ConfigError


class _Yaml12:
    """PyYAML's safe loader, but ``1e-3`` is a float, as YAML 1.2 (and DVC's ``-S``) read it, not a string,
    and a key given twice in one mapping is an error (PyYAML keeps the last silently; DVC refuses the file)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    if key in seen:  # also two equal keys on one line: {layers: [0], layers: [1]}
                        raise yaml.constructor.ConstructorError(
                            None, None, f"duplicate key {key!r} (first given on line {seen[key] + 1}); keep one",
                            key_node.start_mark)
                    seen[key] = key_node.start_mark.line
                except TypeError:  # an unhashable key: the base class reports it
                    continue
        return super().construct_mapping(node, deep=deep)


class YamlLoader(_Yaml12, yaml.SafeLoader):
    __doc__ = _Yaml12.__doc__


# The same reading through libyaml when PyYAML was built with it (its wheels are): params.yaml in a tenth of the
# time. A file it refuses is read again by YamlLoader, whose error messages the one-line errors quote.
_FastLoader = type("_FastLoader", (_Yaml12, getattr(yaml, "CSafeLoader", yaml.SafeLoader)), {})


def _construct_int(loader: yaml.SafeLoader, node: yaml.Node) -> int:
    text = loader.construct_scalar(node)
    if text.startswith(("0o", "0x")):
        return int(text[2:], 8 if text[1] == "o" else 16)
    return int(text.replace("_", ""), 10)  # 20_000, as PyYAML read it


for _loader in (YamlLoader, _FastLoader):
    _loader.add_implicit_resolver(
        "tag:yaml.org,2002:float",
        re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
        list("-+0123456789."))
    # Booleans and integers as YAML 1.2 (and DVC, which writes `dvc exp run -S` values) read them: only true and
    # false are booleans, so `labels: [yes, no]` stays two labels (YAML 1.1 made them True and False); 010 is ten,
    # not octal eight, and 2:30 is text, not sexagesimal 150.
    _loader.yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers
                if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:int")]
        for first, resolvers in _loader.yaml_implicit_resolvers.items()}
    _loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                                  list("tTfF"))
    _loader.add_implicit_resolver("tag:yaml.org,2002:int",
                                  re.compile(r"^(?:[-+]?[0-9][0-9_]*|0o[0-7]+|0x[0-9a-fA-F]+)$"), list("-+0123456789"))
    _loader.add_constructor("tag:yaml.org,2002:int", _construct_int)


def safe_load(text: str) -> Any:
    """``yaml.safe_load`` with :class:`YamlLoader` (through libyaml where PyYAML has it; an error is
    YamlLoader's own)."""
    try:
        return yaml.load(text, Loader=_FastLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError:
        return yaml.load(text, Loader=YamlLoader)  # noqa: S506 - a SafeLoader subclass


def read_utf8(path: Path) -> str:
    """The text of a YAML file; ``ConfigError`` naming the file and line when it is not UTF-8."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ConfigError(f"{path}: line {line} is not valid UTF-8 (byte {data[exc.start]:#04x}); save the file as "
                          "UTF-8") from None


def _read_yaml(path: Path) -> Any:
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found (run from the project root or pass --params)")
    try:
        return safe_load(read_utf8(path)) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {yaml_error_line(exc)}") from None


def yaml_error_line(exc: yaml.YAMLError) -> str:
    """PyYAML's error on one line: where, what, and the context it was in (its message quotes the file)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None)
    if mark is None or problem is None:
        return " ".join(str(exc).split())
    context = getattr(exc, "context", None)
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}" + (f" ({context})" if context else "")


def _build_tree(cls: type, raw: Any, key: str) -> Any:
    """Section ``cls`` at dotted ``key`` from a YAML mapping: nested sections first, then ``cls`` itself.

    A section left empty in YAML (``distill:`` with nothing under it) reads as null and means all defaults.
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{key or 'params'}: expected a mapping, got {raw!r}")
    fields = cls.__pydantic_fields__
    for name in raw:
        if name not in fields:
            raise ConfigError(unknown_key(cls, f"{key}.{name}" if key else str(name)))
    values = {}
    for name, value in raw.items():
        sub = fields[name].annotation
        nested = isinstance(sub, type) and dataclasses.is_dataclass(sub)
        values[name] = _build_tree(sub, value, f"{key}.{name}" if key else name) if nested else value
    return build(cls, key, values)


def _load(cls: type, raw: Any, key: str, path: Path) -> Any:
    try:
        return _build_tree(cls, raw, key)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def load_params(path: Union[str, Path] = "params.yaml") -> Params:
    """Read and validate params.yaml. Safe YAML only: no tags that run code."""
    path = Path(path)
    return _load(Params, _read_yaml(path), "", path)


def load_schedule(path: Union[str, Path] = "params.yaml") -> ScheduleConfig:
    """Only the ``schedule`` section: the flow reads it without failing on a bad key a stage will report."""
    path = Path(path)
    raw = _read_yaml(path)
    return _load(ScheduleConfig, raw.get("schedule") if isinstance(raw, dict) else None, "schedule", path)


def validate(params: Params) -> Params:
    """Check a ``Params`` assembled in code once more, as a whole, as if it had been read from params.yaml.

    Building a section already validates it (``Params(...)``, ``dataclasses.replace``); this re-runs every
    check from the values. Returns ``params`` unchanged.
    """
    _build_tree(Params, dataclasses.asdict(params), "")
    return params
