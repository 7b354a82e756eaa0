"""``python -m distillery params``: every params.yaml key with its default and description, from the sections."""
from __future__ import annotations

import dataclasses
from typing import Any, Iterator

import yaml

from distillery.config.messages import allowed_text
from distillery.config.params import Params


def _yaml(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10_000).strip()
    return text[:-len("...")].strip() if text.endswith("\n...") else text


def _leaves(cls: type, prefix: str = "") -> Iterator[tuple[str, Any, str]]:
    """(dotted key, default, description) of every leaf; a section yields a ``# key: description`` header first."""
    for name, info in cls.__pydantic_fields__.items():
        key = f"{prefix}{name}"
        default = info.get_default(call_default_factory=True)
        text = info.description or ""
        if dataclasses.is_dataclass(default):
            yield f"# {key}", None, text
            yield from _leaves(type(default), key + ".")
        else:
            rule = allowed_text(info, "")
            yield key, default, f"{text} ({rule})" if rule and rule not in text else text


def describe_params(params_path=None) -> str:
    """Every key, dotted, with its default and description: ``key: default`` then the indented description.

    With ``params_path`` (a params file that loads), a key whose value there is not its default says so:
    ``student.layers: [0, 5]  (params.yaml: [0])``. Deleting that line from the file gives the default."""
    current: dict = {}
    rates: dict = {}  # what learning_rate: auto means for the file's models
    if params_path is not None:
        from distillery.config import load_params, train_settings
        from distillery.errors import ConfigError

        try:
            loaded = load_params(params_path)
        except ConfigError:
            loaded = None
        if loaded is not None:
            current = _flat(dataclasses.asdict(loaded))
            rates = {f"{which}.train.learning_rate": train_settings(loaded, which).learning_rate
                     for which in ("teacher", "distill") if current[f"{which}.train.learning_rate"] == "auto"}
    lines = ["Every params.yaml key, its default and what it does. Sections are read as a whole by the stages "
             "named; a key left out of params.yaml takes its default" +
             (f" (a key {params_path} sets otherwise shows its value there)" if current else "") + "."]
    for key, default, text in _leaves(Params):
        if key.startswith("#"):
            lines += ["", f"{key}: {text}"]
        else:
            there = current.get(key, default)
            mark = f"  ({params_path}: {_yaml(there)})" if current and there != default else \
                f"  (auto: {rates[key]:g} for {params_path}'s models)" if key in rates else ""
            lines += [f"{key}: {_yaml(default)}{mark}", f"    {text}"]
    return "\n".join(lines)


def _flat(tree: dict, prefix: str = "") -> dict:
    """A nested section dict as ``{dotted key: value}`` (leaves only; a dict-valued key stays one leaf)."""
    out = {}
    for name, value in tree.items():
        key = f"{prefix}{name}"
        if isinstance(value, dict) and key in _SECTIONS:
            out.update(_flat(value, key + "."))
        else:
            out[key] = value
    return out


_SECTIONS = {key[2:] for key, _, _ in _leaves(Params) if key.startswith("#")}
