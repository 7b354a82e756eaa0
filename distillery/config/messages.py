"""pydantic's ValidationError as the one line a user reads: the dotted key, the value, what is allowed.

    data.foo                -> unknown key data.foo; allowed keys: source, hub_config, ...
    distill.alpha: null     -> distill.alpha: a value is required, got null (the default is 0.5)
    teacher.train.epochs: x -> teacher.train.epochs: expected a number, got 'x'
    distill.alpha: 1.5      -> distill.alpha = 1.5 is not allowed; it must be in [0, 1]

What is allowed comes from the field itself: its ``allowed(...)`` text, else its ``Literal`` choices,
its bounds (``ge``, ``gt``, ``le``, ``lt``) or its pattern.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, Optional, Union

import annotated_types
from pydantic import ValidationError
from pydantic.fields import FieldInfo

_TYPE_ERRORS = {"int_type", "float_type", "string_type", "bool_type", "dict_type", "list_type", "dataclass_type",
                "dataclass_exact_type", "model_type", "int_from_float"}


def first_error(exc: ValidationError, root: type, prefix: str, raw: Any) -> str:
    """The first of ``exc``'s errors, for the section class ``root`` found at dotted ``prefix`` ('' = top)."""
    return message(exc.errors(include_url=False)[0], root, prefix, raw)


def _fields(cls: Any) -> Optional[dict[str, FieldInfo]]:
    return getattr(cls, "__pydantic_fields__", None) if isinstance(cls, type) else None


def _strip_optional(annotation: Any) -> tuple[Any, bool]:
    """``(inner type, whether null is allowed)``."""
    if typing.get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        nullable = len(args) < len(typing.get_args(annotation))
        return (args[0] if len(args) == 1 else Union[tuple(args)]), nullable
    return annotation, False


def _resolve(root: type, loc: tuple) -> tuple[type, list[str], Optional[FieldInfo], tuple]:
    """Walk ``loc`` through the section classes: (owner class, key path, field or None, rest of ``loc``)."""
    owner, path = root, []
    for i, part in enumerate(loc):
        fields = _fields(owner)
        if fields is None or part not in fields:
            return owner, path, None, tuple(loc[i:])
        path.append(part)
        inner, _ = _strip_optional(fields[part].annotation)
        if not dataclasses.is_dataclass(inner) or i == len(loc) - 1:
            return owner, path, fields[part], tuple(loc[i + 1:])
        owner = inner
    return owner, path, None, ()


def _lookup(raw: Any, path: list) -> Any:
    for part in path:
        if not isinstance(raw, dict) or part not in raw:
            raise KeyError(part)
        raw = raw[part]
    return raw


def _what(annotation: Any) -> Optional[str]:
    inner = typing.get_origin(annotation) or annotation
    if dataclasses.is_dataclass(inner) or inner is dict:
        return "a mapping"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string", list: "a list"}.get(inner)


def _bound(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def allowed_text(info: Optional[FieldInfo], fallback: str) -> str:
    """What the field allows, in words."""
    if info is None:
        return fallback
    extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
    if extra.get("allowed"):
        return str(extra["allowed"])
    inner, nullable = _strip_optional(info.annotation)
    if typing.get_origin(inner) is Literal:
        return "allowed: " + ", ".join(map(str, typing.get_args(inner))) + (", null" if nullable else "")
    low = high = None
    for item in info.metadata:
        if isinstance(item, (annotated_types.Ge, annotated_types.Gt)):
            low = ("[", item.ge) if isinstance(item, annotated_types.Ge) else ("(", item.gt)
        elif isinstance(item, (annotated_types.Le, annotated_types.Lt)):
            high = ("]", item.le) if isinstance(item, annotated_types.Le) else (")", item.lt)
        elif getattr(item, "pattern", None):
            return f"it must match {item.pattern}"
    if low and high:
        return f"it must be in {low[0]}{_bound(low[1])}, {_bound(high[1])}{high[0]}"
    if low:
        return f"it must be {'>=' if low[0] == '[' else '>'} {_bound(low[1])}"
    if high:
        return f"it must be {'<=' if high[0] == ']' else '<'} {_bound(high[1])}"
    return fallback


def unknown_key(owner: type, key: str) -> str:
    return f"unknown key {key}; allowed keys: {', '.join(f.name for f in dataclasses.fields(owner))}"


def message(error: dict, root: type, prefix: str, raw: Any) -> str:
    """One line for one pydantic error dict."""
    kind, ctx = error["type"], error.get("ctx") or {}
    owner, path, info, rest = _resolve(root, tuple(error["loc"]))
    if info is None and kind != "not_allowed":  # a key the section does not have, or the section itself is wrong
        if rest and isinstance(rest[0], int):  # positional arguments beyond the fields
            count = len(dataclasses.fields(owner))
            return f"{prefix or owner.__name__}: {rest[0] + 1} values given, there are {count} keys"
        if rest:
            return unknown_key(owner, ".".join([prefix, *path, str(rest[0])] if prefix else [*path, str(rest[0])]))
        return f"{prefix or 'params'}: expected a mapping, got {error['input']!r}"
    inner, nullable = _strip_optional(info.annotation) if info else (None, False)
    element = typing.get_origin(inner) is dict and bool(rest) and isinstance(rest[0], str)
    if element:  # name the split or stage, not only the mapping
        path, rest = [*path, rest[0]], rest[1:]
    if kind == "not_allowed" and "field" in ctx:
        path = [*path, *ctx["field"].split(".")]
    key = ".".join([prefix, *path] if prefix else path)
    if kind == "not_allowed" and "field" in ctx:
        value = ctx["value"]
    else:
        try:
            value = _lookup(raw, path)
        except KeyError:
            value = error["input"]
    if inner is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)  # as it is stored
    if kind == "not_allowed":
        return f"{key} = {value!r} is not allowed; {ctx['allowed']}"
    if value is None and not rest and not nullable and not element:
        return f"{key}: a value is required, got null (the default is {info.get_default(call_default_factory=True)!r})"
    what = f"a {inner.__name__}" if dataclasses.is_dataclass(inner) and isinstance(value, dict) else _what(inner)
    if kind == "finite_number":  # .inf, .nan (allow_inf_nan=False)
        return f"{key} = {value!r} is not allowed; it must be a finite number"
    if kind in _TYPE_ERRORS and not rest and not element and what:
        return f"{key}: expected {what}{' or null' if nullable else ''}, got {value!r}"
    return f"{key} = {value!r} is not allowed; {allowed_text(info, error['msg'])}"
