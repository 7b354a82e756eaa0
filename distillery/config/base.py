"""What every params.yaml section shares: the pydantic dataclass decorator and the one-line errors.

A section is a frozen pydantic dataclass: a real ``dataclasses`` dataclass (``asdict``, ``fields``,
``replace`` and keyword construction work as usual) whose fields carry their own defaults,
descriptions and checks. Building one with a bad value raises ``ConfigError`` with one line naming
the dotted key, the value and what is allowed (see ``distillery.config.messages``).
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Optional

from pydantic import ConfigDict, ValidationError
from pydantic.dataclasses import dataclass
from pydantic_core import PydanticCustomError

from distillery.errors import ConfigError

SPLITS = ("train", "validation", "test")
SEED_MAX = 2**32 - 1  # numpy's and scikit-learn's seeds are unsigned 32-bit integers

# strict: no silent str -> int or bool -> int coercion (an int is still accepted where a float is expected).
CONFIG = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)  # .inf, .nan: refused


def allowed(text: str) -> dict:
    """``Field(json_schema_extra=allowed("..."))``: what an error says is allowed, where bounds or choices do not."""
    return {"allowed": text}


def not_allowed(allowed_text: str, field: Optional[str] = None, value: Any = None) -> PydanticCustomError:
    """The error a validator raises: ``<key>[.field] = <value> is not allowed; <allowed_text>``.

    ``field`` (dotted, relative to the section the validator belongs to) and ``value`` are for validators
    on a whole section; a field validator names neither.
    """
    context: dict = {"allowed": allowed_text}
    if field is not None:
        context.update(field=field, value=value)
    return PydanticCustomError("not_allowed", "{allowed}", context)


def section(key: str) -> Callable[[type], type]:
    """Make ``cls`` the frozen, strict pydantic dataclass of the params.yaml section at dotted ``key``.

    Construction (``DataConfig(source=...)``, ``dataclasses.replace``) raises ``ConfigError`` naming keys
    under ``key``; ``build`` names them under another key (``TrainConfig`` is both teacher.train and distill.train).
    """
    def decorate(cls: type) -> type:
        cls = dataclass(frozen=True, config=CONFIG)(cls)
        validated_init = cls.__init__

        def init_as(self: Any, key: str, /, *args: Any, **kwargs: Any) -> None:
            try:
                validated_init(self, *args, **kwargs)
            except ValidationError as exc:
                from distillery.config.messages import first_error

                raise ConfigError(first_error(exc, type(self), key, kwargs)) from None

        @functools.wraps(validated_init)
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            init_as(self, key, *args, **kwargs)

        cls.__init__ = __init__
        cls.__init_as__ = init_as
        return cls

    return decorate


def build(cls: type, key: str, values: dict) -> Any:
    """``cls(**values)``, its errors naming keys under dotted ``key``. Nested sections in ``values`` must be built."""
    obj = object.__new__(cls)
    cls.__init_as__(obj, key, **values)
    return obj
