"""Validated dataclass configurations.

Every configuration in ssrl-lab is a dataclass deriving from :class:`Config`:

* values are checked in :meth:`Config.validate` (called on construction and after every
  :meth:`Config.replace`), so an out-of-range value fails before anything runs;
* :meth:`Config.from_dict` refuses unknown keys and names the valid ones;
* nested configurations are plain fields whose type is another ``Config``;
* :meth:`Config.to_dict` gives a JSON-ready dict (what a run directory stores), and
  :func:`config_diff` the dotted keys in which two such dicts differ.
"""
from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any, Iterable, Mapping


class ConfigError(ValueError):
    """A configuration value is unknown, of the wrong type or out of range."""


def check(condition: bool, message: str) -> None:
    """Raise :class:`ConfigError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise ConfigError(message)


def _resolved_types(cls) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:  # pragma: no cover - forward refs that cannot resolve
        return {f.name: f.type for f in dataclasses.fields(cls)}


def _coerce(name: str, value: Any, tp: Any) -> Any:
    """Coerce JSON-ish ``value`` to the annotated type ``tp`` or raise ConfigError."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(name, value, a)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(f"{name}: {value!r} matches none of {args} ({'; '.join(errors)})")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{name}: {value!r} is not one of {list(args)}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{name}: expected a sequence, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{name}: expected {len(args)} values, got {len(value)}")
            return tuple(_coerce(f"{name}[{i}]", v, a) for i, (v, a) in enumerate(zip(value, args)))
        inner = args[0] if args else Any
        out = [_coerce(f"{name}[{i}]", v, inner) for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{name}: expected a mapping, got {value!r}")
        return dict(value)
    if isinstance(tp, type) and issubclass(tp, Config):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{name}: expected a mapping for {tp.__name__}, got {value!r}")
        return tp.from_dict(value, _prefix=f"{name}.")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{name}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{name}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{name}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{name}: expected a string, got {value!r}")
        return value
    return value


@dataclasses.dataclass
class Config:
    """Base class: subclass as a dataclass and override :meth:`validate`."""

    def __post_init__(self) -> None:
        types = _resolved_types(type(self))
        for f in dataclasses.fields(self):
            setattr(self, f.name, _coerce(f.name, getattr(self, f.name), types[f.name]))
        self.validate()

    def validate(self) -> None:  # pragma: no cover - default has nothing to check
        """Raise :class:`ConfigError` when a value is out of range."""

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None = None, _prefix: str = "", **overrides):
        """Build from a mapping; unknown keys are refused with the list of valid ones."""
        data = dict(data or {})
        data.update(overrides)
        cls._refuse_unknown(data, _prefix)
        return cls(**data)

    @classmethod
    def _refuse_unknown(cls, keys, prefix: str = "") -> None:
        """ConfigError naming the keys that are not fields, and the valid ones."""
        valid = cls.field_names()
        unknown = sorted(k for k in keys if k not in valid)
        if unknown:
            raise ConfigError(
                f"unknown parameter(s) {', '.join(prefix + k for k in unknown)} for {cls.__name__}; "
                f"valid: {', '.join(valid)}"
            )

    def to_dict(self) -> dict[str, Any]:
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, Config):
                v = v.to_dict()
            elif isinstance(v, tuple):
                v = list(v)
            out[f.name] = v
        return out

    def replace(self, **overrides):
        """A validated copy with ``overrides`` applied; nested configs accept dicts.

        ``cfg.replace(encoder={"channels": 64})`` updates one field of a nested config.
        """
        data = self.to_dict()
        self._refuse_unknown(overrides)
        for k, v in overrides.items():
            cur = getattr(self, k)
            if isinstance(cur, Config) and isinstance(v, Mapping):
                data[k] = cur.replace(**v).to_dict()
            elif isinstance(v, Config):
                data[k] = v.to_dict()
            else:
                data[k] = v
        return type(self).from_dict(data)


# -- comparing configurations (a run directory refuses a different one) -------------------------
#: Config keys that may differ between a run directory and a new call without refusing it
#: (where the files live, and where its metrics are tracked, is not part of what the run computes).
IGNORED_KEYS = ("run_dir", "tracking")


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}} -> {"a.b": 1}``; lists are kept whole."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def config_diff(old: Mapping[str, Any], new: Mapping[str, Any], ignore: Iterable[str] = IGNORED_KEYS) -> list[str]:
    """Dotted keys whose values differ (or exist on one side only), sorted."""
    a = flatten(json.loads(json.dumps(old, default=str)))
    b = flatten(json.loads(json.dumps(new, default=str)))
    ign = set(ignore)
    return sorted(k for k in set(a) | set(b) if k not in ign and a.get(k, "<absent>") != b.get(k, "<absent>"))
