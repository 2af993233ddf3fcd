"""Tracking: every metrics line of a run also goes to TensorBoard or MLflow (issue 24).

The back-end is the config field ``tracking`` that every trainer shares
(:class:`~ssrl_lab.train.context.TrainConfig`): ``"tensorboard"`` (the default; event files in
``<run_dir>/tb/``, :mod:`.tensorboard_sink`), ``"mlflow"`` (one MLflow run per run directory,
:mod:`.mlflow_sink`) or ``"none"``. It is not part of a run's identity: a run directory written
with another value (or before the field existed) still resumes and counts as finished.

The run directory (:class:`~ssrl_lab.train.run.RunDir`) is the only caller, through the
:class:`~.tracker.Tracker` it opens: each ``log_metrics`` line goes to the sink at step = the line's
position in ``metrics.jsonl`` (0-based), and ``results.json`` closes it. Only rank 0 tracks.
A failing back-end warns once (:class:`TrackingWarning`) and training goes on; ``metrics.jsonl``
always has every line. A scalar is every finite number in the line, nested keys joined with ``/``
(``eval/eer``, ``clean_split/label_accuracy``); lists, strings and booleans are left out.
"""
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


def open_tracker(run_dir, config: Mapping[str, Any], writer: bool = True):
    """The :class:`~.tracker.Tracker` of a run directory: its back-end is ``config["tracking"]``
    (``"none"`` when the key is absent, as in configs written before the field existed)."""
    from .tracker import Tracker

    mode = check_mode(config.get("tracking", "none"))
    if not writer or mode == "none":
        return Tracker(None, run_dir)
    if mode == "tensorboard":
        from .tensorboard_sink import TensorBoardSink

        return Tracker(TensorBoardSink(run_dir, config), run_dir)
    from .mlflow_sink import MLflowSink

    return Tracker(MLflowSink(run_dir, config), run_dir)
