"""The checks of a config file: fields carry their rules (``opt``: bounds, choices, a doc
line, next to the default), and :func:`build` walks a TOML table and a dataclass together, so
that an unknown key, a value of the wrong type or an out-of-range value is one
:class:`~robustlab.errors.ConfigError` naming the file and the dotted key;
:func:`validate_names` checks the names that need the registries. (The dataclasses are in
config.py.)"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import field
from typing import TYPE_CHECKING, Any

from .errors import ConfigError

if TYPE_CHECKING:
    from .config import Config


def opt(default: Any, *, lo: float | None = None, hi: float | None = None,
        lo_open: bool = False, choices: tuple | None = None, doc: str = "") -> Any:
    """A dataclass field with validation rules; ``lo_open`` makes the lower bound strict."""
    meta = {"lo": lo, "hi": hi, "lo_open": lo_open, "choices": choices, "doc": doc}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return field(default=default, metadata=meta)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp``; ints are accepted where floats are."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _coerce(value, arg, where)
            except ConfigError:
                pass
        raise ConfigError(f"{where}: expected {tp}, got {value!r}")
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if tp is list or origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return list(value)
    raise ConfigError(f"{where}: unsupported type {_type_name(tp)}")  # pragma: no cover


def _check_range(value: Any, meta: dict, where: str) -> None:
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(str, choices))}")
    lo, hi = meta.get("lo"), meta.get("hi")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if lo is not None and (value < lo or (meta.get("lo_open") and value == lo)):
            op = ">" if meta.get("lo_open") else ">="
            raise ConfigError(f"{where}: must be {op} {lo}, got {value}")
        if hi is not None and value > hi:
            raise ConfigError(f"{where}: must be <= {hi}, got {value}")


def build(cls: type, table: dict, where: str) -> Any:
    """Build dataclass ``cls`` from a TOML table, checking every key."""
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: expected a table, got {table!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(table) - set(fields))
    if unknown:
        prefix = f"{where}." if where and not where.endswith(":") else where
        raise ConfigError(f"{prefix}{unknown[0]}: unknown key (known keys: "
                          f"{', '.join(sorted(fields))})")
    kwargs = {}
    for name, value in table.items():
        key = f"{where}.{name}" if where and not where.endswith(":") else f"{where}{name}"
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            kwargs[name] = build(tp, value, key)
            continue
        value = _coerce(value, tp, key)
        _check_range(value, fields[name].metadata, key)
        kwargs[name] = value
    return cls(**kwargs)


def validate_names(cfg: Config, source: str) -> None:
    """Checks that need the registries: dataset, model and objective names, ε ranges."""
    from .errors import UserError

    checks = [
        ("data.name", lambda: _check_dataset(cfg.data.name)),
        ("model.arch", lambda: _check_arch(cfg.model.arch)),
        ("train.objective", lambda: _check_objective(cfg.train.objective)),
        ("eval.attacks", lambda: _check_attacks(cfg.eval.attacks)),
    ]
    for key, check in checks:
        try:
            check()
        except UserError as e:
            raise ConfigError(f"{source}: {key}: {e}") from None
    for key, sec in (("train.attack", cfg.train.attack), ("eval.attack", cfg.eval.attack)):
        if sec.norm == "linf" and sec.eps > 1:
            raise ConfigError(f"{source}: {key}.eps: an linf eps above 1 leaves the [0, 1] "
                              f"pixel range, got {sec.eps}")


def _check_dataset(name: str) -> None:
    from . import data

    data.get_spec(name)


def _check_arch(name: str) -> None:
    from . import models

    models.resolve(name)


def _check_objective(name: str) -> None:
    from .training import objectives

    objectives.get_objective(name)


def _check_attacks(names: list) -> None:
    from .attacks import registry
    from .attacks.autoattack import VERSIONS
    from .errors import UserError

    for n in names:
        n = str(n)
        if n.startswith("autoattack-"):
            if n.split("-", 1)[1] not in VERSIONS[:-1]:
                raise UserError(f"unknown suite {n!r}; known: "
                                + ", ".join(f"autoattack-{v}" for v in VERSIONS[:-1]))
            continue
        registry.get_attack_class(n)
