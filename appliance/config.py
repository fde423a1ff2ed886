"""Typed, frozen configuration read from TOML.

A config schema is a tree of frozen dataclasses. Every field has a default, so an
empty file is a valid config. Constraints live in field metadata (see
:func:`setting`). :func:`load` rejects unknown keys and bad values with a
:class:`~appliance.errors.ConfigError` that names the file, the dotted key and
what is allowed, e.g.::

    /etc/wallmesh/unit.toml: key 'video.fps': expected an integer from 1 to 60, got 120
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from appliance.errors import ConfigError

T = TypeVar("T")


def setting(
    default: Any,
    *,
    help: str = "",
    choices: tuple[Any, ...] | None = None,
    min: float | None = None,
    max: float | None = None,
    pattern: str | None = None,
) -> Any:
    """A dataclass field with a default and the constraints :func:`load` enforces."""
    meta = {"help": help, "choices": choices, "min": min, "max": max, "pattern": pattern}
    if isinstance(default, (list, dict)):
        frozen = tuple(default) if isinstance(default, list) else default
        return dataclasses.field(default_factory=lambda: frozen, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def section(cls: type[T]) -> Any:
    """A nested section field whose default is the section with all defaults."""
    return dataclasses.field(default_factory=cls)


def load(schema: type[T], path: str | Path | None, overrides: Mapping[str, Any] | None = None) -> T:
    """Read ``path`` (``None``: defaults only), apply ``overrides`` on top, validate, build."""
    where = str(path) if path is not None else None
    data: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError:
            raise ConfigError(where, None, "file not found") from None
        except PermissionError:
            raise ConfigError(where, None, "permission denied reading the file") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(where, None, f"not valid TOML: {exc}") from exc
    if overrides:
        data = merge(data, overrides)
    return build(schema, data, where)


def loads(schema: type[T], text: str, where: str = "<string>") -> T:
    """Like :func:`load` for TOML text already in memory (tests, boot-partition files)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(where, None, f"not valid TOML: {exc}") from exc
    return build(schema, data, where)


def merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """Deep-merge two TOML tables; values in ``top`` win."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def build(schema: type[T], data: Mapping[str, Any], where: str | None, prefix: str = "") -> T:
    """Validate a TOML table against a dataclass schema and construct it."""
    if not isinstance(data, Mapping):
        raise ConfigError(where, prefix.rstrip(".") or None, f"expected a table, got {_show(data)}")
    hints = typing.get_type_hints(schema)
    fields = {f.name: f for f in dataclasses.fields(schema)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        allowed = ", ".join(sorted(fields))
        raise ConfigError(where, prefix + unknown[0], f"unknown key; allowed here: {allowed}")
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        key = prefix + name
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = build(hint, value, where, key + ".")  # type: ignore[arg-type]
        else:
            kwargs[name] = _check(hint, fields[name].metadata, value, where, key)
    return schema(**kwargs)


def describe(schema: type, prefix: str = "") -> list[tuple[str, Any, str]]:
    """Every key of a schema as (dotted key, default, help), for docs and ``--help``."""
    rows: list[tuple[str, Any, str]] = []
    hints = typing.get_type_hints(schema)
    for f in dataclasses.fields(schema):
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            rows.extend(describe(hint, prefix + f.name + "."))  # type: ignore[arg-type]
        else:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[operator]  # a schema field has a default or a factory
            rows.append((prefix + f.name, default, f.metadata.get("help", "")))
    return rows


def _check(hint: Any, meta: Mapping[str, Any], value: Any, where: str | None, key: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        if value is None:
            return None
        return _check(inner[0], meta, value, where, key)
    if origin is tuple:
        elem = args[0] if args else Any
        if not isinstance(value, list):
            raise ConfigError(where, key, f"expected a list, got {_show(value)}")
        return tuple(_check(elem, meta, v, where, f"{key}[{i}]") for i, v in enumerate(value))
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(where, key, f"expected true or false, got {_show(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(where, key, f"expected {_range('an integer', meta)}, got {_show(value)}")
        _bounds(meta, value, where, key, "an integer")
    elif hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(where, key, f"expected {_range('a number', meta)}, got {_show(value)}")
        value = float(value)
        _bounds(meta, value, where, key, "a number")
    elif hint is str:
        if not isinstance(value, str):
            raise ConfigError(where, key, f"expected a string, got {_show(value)}")
        pattern = meta.get("pattern")
        if pattern and not re.fullmatch(pattern, value):
            raise ConfigError(where, key, f"expected a string matching {pattern}, got {_show(value)}")
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        raise ConfigError(where, key, f"expected one of {allowed}, got {_show(value)}")
    return value


def _bounds(meta: Mapping[str, Any], value: float, where: str | None, key: str, what: str) -> None:
    lo, hi = meta.get("min"), meta.get("max")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise ConfigError(where, key, f"expected {_range(what, meta)}, got {_show(value)}")


def _range(what: str, meta: Mapping[str, Any]) -> str:
    lo, hi = meta.get("min"), meta.get("max")
    if lo is not None and hi is not None:
        return f"{what} from {lo} to {hi}"
    if lo is not None:
        return f"{what} of at least {lo}"
    if hi is not None:
        return f"{what} of at most {hi}"
    return what


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
