"""Step parameters from configuration mappings: one typed, checked conversion for every step.

Every step keeps its settings in a frozen dataclass whose annotations say what each key holds.
:func:`params_from_dict` turns a YAML/JSON mapping into that dataclass: unknown keys, and values
of the wrong kind (text for a number, 2.5 for an integer, "yes" for true/false, a list of the
wrong length), raise one :class:`~tiltflow.errors.ConfigError` naming the section and the key.
Range checks stay in each dataclass's ``__post_init__``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from tiltflow.errors import ConfigError

T = TypeVar("T")


def coerce(tp: Any, value: Any) -> Any:
    """``value`` converted to the annotated type ``tp`` (bool, int, float, str, X | None, tuples)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        return coerce(next(a for a in args if a is not type(None)), value)
    if origin is tuple:
        if isinstance(value, (str, bytes)) or not isinstance(value, Iterable):
            raise TypeError("expected a list")
        items = list(value)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(args[0], v) for v in items)
        if len(items) != len(args):
            raise TypeError(f"expected a list of {len(args)} values")
        return tuple(coerce(a, v) for a, v in zip(args, items))
    if tp is bool:
        if not isinstance(value, bool):
            raise TypeError("expected true/false")
        return value
    if tp is int:
        if isinstance(value, bool) or not float(value).is_integer():
            raise TypeError("expected an integer")
        return int(value)
    if tp is float:
        if isinstance(value, bool) or value is None:
            raise TypeError("expected a number")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise TypeError("expected text")
        return value
    raise TypeError(f"unsupported parameter type {tp!r}")


def params_from_dict(cls: type[T], d: Mapping[str, Any] | None, section: str) -> T:
    """Build the dataclass ``cls`` from a config mapping (``None`` = all defaults)."""
    if d is None:
        d = {}
    if not isinstance(d, Mapping):
        raise ConfigError(f"{section} parameters must be a mapping, got {type(d).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    unknown = sorted(set(d) - set(names))
    if unknown:
        raise ConfigError(f"unknown {section} option(s) {unknown}; known: {sorted(names)}")
    kwargs: dict[str, Any] = {}
    for key, value in d.items():
        try:
            kwargs[key] = coerce(hints[key], value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"invalid value for {section}.{key}: {value!r} ({exc})") from None
    return cls(**kwargs)
