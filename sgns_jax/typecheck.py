"""Config values checked against their fields' annotations, as the CLI's flags would parse them.

A config file's ``dim = "50"``, ``epochs = 1.5``, ``window = true`` or ``quiet = "no"`` is
refused, not coerced or taken as truthy: an int is a float, a bool is not an int, floats are
finite, and a tuple field takes a list of its items.
"""

from __future__ import annotations

import math
import types
import typing
from typing import Any

from sgns_jax.errors import ConfigError

_NAMES = {bool: "true or false", int: "an integer", float: "a finite number", str: "a string"}


def _alternatives(hint: Any) -> tuple:
    union = typing.get_origin(hint) in (typing.Union, types.UnionType)
    return typing.get_args(hint) if union else (hint,)


def is_tuple(hint: Any) -> bool:
    return any(typing.get_origin(a) is tuple for a in _alternatives(hint))


def _scalar_ok(value: Any, kind: Any) -> bool:
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is float:
        return (isinstance(value, (int, float)) and not isinstance(value, bool)
                and math.isfinite(value))
    return isinstance(value, kind)


def _describe(kind: Any) -> str:
    if typing.get_origin(kind) is tuple:
        return f"a list of {_describe(typing.get_args(kind)[0]).removeprefix('an ').removeprefix('a ')}s"
    return _NAMES.get(kind, getattr(kind, "__name__", str(kind)))


def check_type(label: str, value: Any, hint: Any) -> None:
    """Raise ``ConfigError`` unless ``value`` fits the annotation ``hint`` (a scalar type, a
    ``tuple[item, ...]``, or a union of them with None)."""
    kinds = _alternatives(hint)
    for kind in kinds:
        if kind is type(None):
            if value is None:
                return
        elif typing.get_origin(kind) is tuple:
            item = typing.get_args(kind)[0]
            if isinstance(value, tuple) and all(_scalar_ok(v, item) for v in value):
                return
        elif _scalar_ok(value, kind):
            return
    expected = " or ".join(_describe(k) for k in kinds if k is not type(None))
    none = " or none" if type(None) in kinds else ""
    raise ConfigError(f"{label} must be {expected}{none}, got {value!r}")
