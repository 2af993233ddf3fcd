"""What a tracking sink records: the back-end names, the warning a failing one gives, a metrics
line's scalars and a config's flat parameters (shared by :mod:`.tracker` and both sinks)."""
from __future__ import annotations

import json
import math
import numbers
from typing import Any, Mapping

#: the values of the config field ``tracking``
MODES = ("tensorboard", "mlflow", "none")
#: the default of every trainer's config
DEFAULT = "tensorboard"


class TrackingWarning(UserWarning):
    """A tracking back-end failed (server down, disk full); the run goes on without it."""


def check_mode(mode: Any) -> str:
    """``mode`` when it is one of :data:`MODES`, else :class:`~ssrl_lab.config.ConfigError`."""
    from ..config import ConfigError

    if mode not in MODES:
        raise ConfigError(f"tracking must be one of {', '.join(repr(m) for m in MODES)}, got {mode!r}")
    return mode


def scalars(record: Mapping[str, Any], prefix: str = "", sep: str = "/") -> dict[str, float]:
    """Every finite number of ``record`` (nested dicts flattened with ``sep``), as floats."""
    out: dict[str, float] = {}
    for k, v in record.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(scalars(v, key + sep, sep))
        elif isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(float(v)):
            out[key] = float(v)
    return out


def flat_config(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"encoder": {"channels": 32}} -> {"encoder.channels": 32}``; lists and None become JSON text."""
    out: dict[str, Any] = {}
    for k, v in config.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(flat_config(v, key + "."))
        elif isinstance(v, (bool, int, float, str)):
            out[key] = v
        else:
            out[key] = json.dumps(v, default=str)
    return out
