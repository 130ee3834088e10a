"""Config = nested dataclasses loaded from YAML, with ``--set a.b=c`` overrides.

Rules (nanoGPT's dataclass config, dinov2's default + override merge):
- every field has a default in its dataclass; a YAML file overrides only what changes;
- an unknown key is an error that names the closest valid key (a typo like ViTPose's
  ``decay_multi`` must not be silently ignored);
- values are checked against the field's type (int, float, bool, str, tuples/lists of those,
  ``X | None``, nested dataclasses);
- each module receives only its own section (``cfg.data.augment``), never the whole config.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from cmpose.errors import ConfigError

T = TypeVar("T")
_FLOAT_TEXT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def _closest(key: str, options: list[str]) -> str:
    match = difflib.get_close_matches(key, options, n=1, cutoff=0.0)
    return f"; did you mean '{match[0]}'?" if match else ""


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check/convert one YAML value to the annotated type ``tp``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping for section {tp.__name__}, got {value!r}")
        return from_dict(tp, value, where)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
            items = [_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True))]
        else:
            item_tp = args[0] if args else Any
            items = [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _FLOAT_TEXT.match(value.strip()):
            # yaml.safe_load follows YAML 1.1, which reads "1e-3" (no dot) as a string.
            return float(value)
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    if typing.get_origin(tp) is typing.Literal:
        # Compare types too: True == 1 must not pass for Literal[0, 1].
        if any(value == a and type(value) is type(a) for a in typing.get_args(tp)):
            return value
        raise ConfigError(f"{where}: expected one of {list(typing.get_args(tp))}, got {value!r}")
    raise ConfigError(f"{where}: unsupported field type {tp!r}")


def from_dict(cls: type[T], data: dict, where: str = "") -> T:
    """Build dataclass ``cls`` from a mapping; unknown keys and wrong types are ``ConfigError``."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in fields:
            raise ConfigError(f"unknown config key '{path}'{_closest(str(key), list(fields))}")
        kwargs[key] = _coerce(value, hints[key], path)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where or cls.__name__}: {err}") from None


def to_dict(cfg: Any) -> dict:
    """Plain nested dict (tuples as lists) for YAML dumps and checkpoints."""

    def plain(v: Any) -> Any:
        if isinstance(v, (tuple, list)):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(dataclasses.asdict(cfg))


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``a.b=c`` strings to a nested mapping (values parsed as YAML: 3, 0.5, true, [1, 2])."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as err:
            raise ConfigError(f"--set {key}: cannot parse value {raw!r}: {err}") from None
        node: Any = data
        parts = key.strip().split(".")
        for part in parts[:-1]:
            if isinstance(node, list):
                node = _list_item(node, part, key)
            else:
                node = node.setdefault(part, {})
            if not isinstance(node, (dict, list)):
                raise ConfigError(f"--set {key}: '{part}' is not a section")
        if isinstance(node, list):
            node[_list_index(node, parts[-1], key)] = value
        else:
            node[parts[-1]] = value
    return data


def _list_index(items: list, part: str, key: str) -> int:
    """A list entry is addressed by its 0-based index (``stages.1.lr=1e-4``)."""
    if not part.lstrip("-").isdigit() or not -len(items) <= int(part) < len(items):
        raise ConfigError(f"--set {key}: '{part}' is not an index of a list of {len(items)} entries")
    return int(part)


def _list_item(items: list, part: str, key: str) -> Any:
    return items[_list_index(items, part, key)]


def load_config(cls: type[T], path: Path | None = None, overrides: list[str] | None = None) -> T:
    """Defaults of ``cls`` <- YAML file ``path`` <- ``overrides``; every key is checked."""
    data: dict = {}
    if path is not None:
        try:
            with open(path, encoding="utf-8") as f:
                data = yaml.safe_load(f) or {}
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML: {err}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
    data = apply_overrides(data, list(overrides or []))
    try:
        return from_dict(cls, data)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}" if path else str(err)) from None
