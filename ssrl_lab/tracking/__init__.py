"""Tracking: every metrics line of a run also goes to TensorBoard or MLflow (issue 24).

The back-end is the config field ``tracking`` that every trainer shares
(:class:`~ssrl_lab.train.train_config.TrainConfig`): ``"tensorboard"`` (the default; event files in
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

from typing import Any, Mapping

from .fields import DEFAULT, MODES, TrackingWarning, check_mode, flat_config, scalars

__all__ = ["DEFAULT", "MODES", "TrackingWarning", "check_mode", "flat_config", "scalars", "open_tracker"]


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
