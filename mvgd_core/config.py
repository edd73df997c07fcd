"""Typed configs: frozen dataclasses built from YAML or dicts, with errors that name the bad key.

Usage:
    cfg = load_config(TrainConfig, "training/configs/default.yaml")
    cfg = from_dict(ModelConfig, {"num_latents": 256}, where="model")
    d = to_dict(cfg)  # plain dict, for checkpoints
"""
from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")
# A decimal number in a string. YAML 1.1 (PyYAML) reads "1e-4" (no dot) as a string, so
# `--set optim.lr=1e-4` and `lr: 1e-4` would otherwise be refused for a float field.
_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")


class ConfigError(ValueError):
    """A config value is missing, unknown or of the wrong type; the message names the key."""


def load_config(cls: type[T], path: str | Path, overrides: dict | None = None) -> T:
    """Read YAML at `path` into dataclass `cls`; `overrides` (nested dict) win over the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    if overrides:
        data = merge(data, overrides)
    return from_dict(cls, data, where=str(path))


def merge(base: dict, update: dict) -> dict:
    """Recursive dict merge; values in `update` win."""
    out = dict(base)
    for k, v in update.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def from_dict(cls: type[T], data: dict | None, where: str = "config") -> T:
    """Build dataclass `cls` from a dict, checking keys and types recursively."""
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping for {cls.__name__}, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown} for {cls.__name__}; valid keys: {sorted(fields)}")
    kwargs = {}
    for name, f in fields.items():
        key = f"{where}.{name}"
        if name in data:
            kwargs[name] = _coerce(hints[name], data[name], key)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{key}: required key is missing")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def to_dict(cfg: Any) -> dict:
    """Plain nested dict of a config dataclass (tuples become lists, YAML-friendly)."""
    def plain(v):
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v
    return plain(dataclasses.asdict(cfg))


def _coerce(tp, value, key: str):
    """value read from YAML as type tp (dataclass fields' annotations); ConfigError naming key."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return _coerce_union(args, value, key)
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{key}: expected one of {list(args)}, got {value!r}")
        return value
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where=key)
    if origin in (tuple, list):
        return _coerce_sequence(origin, args, value, key)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__}")
        return dict(value)
    return _coerce_scalar(tp, value, key)


def _coerce_union(args: tuple, value, key: str):
    """The first of a Union's types (None where allowed) that takes value; else the first error."""
    if value is None and type(None) in args:
        return None
    errors = []
    for arg in (a for a in args if a is not type(None)):
        try:
            return _coerce(arg, value, key)
        except ConfigError as exc:
            errors.append(str(exc))
    raise ConfigError(errors[0] if errors else f"{key}: bad value {value!r}")


def _coerce_sequence(origin, args: tuple, value, key: str):
    """A list or tuple: fixed-length tuples item by item, the rest with their one item type."""
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{key}: expected a list, got {type(value).__name__} {value!r}")
    if origin is tuple and args and args[-1] is not Ellipsis:
        if len(value) != len(args):
            raise ConfigError(f"{key}: expected {len(args)} items, got {len(value)}")
        return tuple(_coerce(a, v, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    item = args[0] if args else Any
    seq = [_coerce(item, v, f"{key}[{i}]") for i, v in enumerate(value)]
    return tuple(seq) if origin is tuple else seq


def _coerce_scalar(tp, value, key: str):
    """float (numeric strings too, never NaN), int, bool and str strictly (a bool is no number); other types as they are."""
    if tp is float:
        if isinstance(value, str) and _NUMBER.match(value.strip()):
            value = float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {type(value).__name__} {value!r}")
        if math.isnan(value):  # NaN compares false with every bound, so later checks would pass it
            raise ConfigError(f"{key}: NaN is not a valid value")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {type(value).__name__} {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true/false, got {type(value).__name__} {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {type(value).__name__} {value!r}")
        return value
    return value


_BOOL_TEXT = {"true": True, "false": False}


def settings_from_text(cls: type[T], text: str, base: T | None = None, exclude: tuple[str, ...] = ("enabled",)) -> T:
    """'key=value[,key=value]' over the int / float / bool (true, false) / str fields of dataclass `cls` (not `exclude`) ->
    `base` (default: cls()) with them replaced, for command lines that compare settings
    (training/tune_refine.py, training/tune_fusion.py, benchmarks/bench_refine.py). ValueError
    naming the fields when malformed; the dataclass's own checks run on the result."""
    types = {f.name: f.type for f in dataclasses.fields(cls) if f.name not in exclude}
    kw = {}
    for part in text.split(","):
        key, sep, value = part.partition("=")
        if not sep or key not in types:
            raise ValueError(f"{cls.__name__} settings {text!r}: expected key=value over {sorted(types)}")
        if types[key] in (str, "str"):
            kw[key] = value
        elif types[key] in (bool, "bool"):
            if value.lower() not in _BOOL_TEXT:
                raise ValueError(f"{cls.__name__} settings {text!r}: {key} must be true or false, got {value!r}")
            kw[key] = _BOOL_TEXT[value.lower()]
        else:
            kw[key] = int(value) if types[key] in (int, "int") else float(value)
    return dataclasses.replace(base if base is not None else cls(), **kw)


def settings_arg(cls: type[T]):
    """An argparse `type=` for a "--<name>-settings KEY=VALUE[,...]" flag over `cls`'s fields: the
    empty text gives cls(), a malformed one is the parser's usual error naming the fields."""
    import argparse

    def parse(text: str) -> T:
        try:
            return settings_from_text(cls, text) if text else cls()
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from exc

    parse.__name__ = f"{cls.__name__} settings"  # argparse names the type in "invalid ... value"
    return parse
