"""The tracker a run directory holds: steps, lazy opening and warn-once failure around a sink."""
from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping

from ..utils.io import read_jsonl
from .fields import TrackingWarning, scalars

log = logging.getLogger("ssrl_lab.tracking")


class Sink:
    """A tracking back-end. ``open(first_step)`` starts (or resumes) it; ``log`` gets one line's
    scalars (and histograms: ``{name: array}``); ``finish`` the final results; ``close`` ends it."""

    name = "none"

    def open(self, first_step: int) -> None:
        pass

    def log(self, step: int, values: dict[str, float], histograms: Mapping[str, Any]) -> None:
        pass

    def finish(self, step: int, results: Mapping[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass


class Tracker:
    """What :class:`~ssrl_lab.train.run.RunDir` calls. The step of a line is its position in
    ``metrics.jsonl`` (counted once when the sink opens, so a resumed run continues where its kept
    lines end); :meth:`reset` after the file was truncated (resume) reopens the sink there. The
    first failure of the sink warns once (:class:`TrackingWarning`) and drops it: training goes on."""

    def __init__(self, sink: Sink | None, run_dir) -> None:
        self.sink, self.path = sink, Path(run_dir)
        self.step: int | None = None  # the step of the last line logged; None: not open
        self.failed: str | None = None

    @property
    def active(self) -> bool:
        return self.sink is not None

    def _lines(self) -> int:
        return len(read_jsonl(self.path / "metrics.jsonl"))

    def _guard(self, what: str, fn: Callable[[], None]) -> None:
        if self.sink is None:
            return
        try:
            fn()
        except Exception as e:  # any back-end failure: the run must not stop for it
            self.failed = f"{type(e).__name__}: {e}"
            warnings.warn(f"tracking with {self.sink.name} failed while {what} ({self.failed}); the run goes on "
                          f"without it and {self.path / 'metrics.jsonl'} keeps every line", TrackingWarning,
                          stacklevel=3)
            log.debug("tracking failure", exc_info=True)
            sink, self.sink = self.sink, None
            try:
                sink.close()
            except Exception:  # already failing: nothing more to say
                pass

    def _open(self, first_step: int) -> None:
        self.sink.open(first_step)

    def log(self, record: Mapping[str, Any], histograms: Mapping[str, Any] | None = None) -> None:
        """Send the line just appended to ``metrics.jsonl``."""
        if self.sink is None:
            return
        if self.step is None:
            step = self._lines() - 1
            self._guard("opening", lambda: self._open(step))
        else:
            step = self.step + 1
        self.step = step
        self._guard(f"logging step {step}", lambda: self.sink.log(step, scalars(record), dict(histograms or {})))

    def reset(self) -> None:
        """``metrics.jsonl`` was cut back (a resume): the next line reopens the sink at its step."""
        if self.sink is not None and self.step is not None:
            self._guard("closing", self.sink.close)
        self.step = None

    def finish(self, results: Mapping[str, Any]) -> None:
        """The run's final results (``results.json`` was just written): hparams, artifacts, close."""
        if self.sink is None:
            return
        if self.step is None:
            step = max(self._lines() - 1, 0)
            self._guard("opening", lambda: self._open(step + 1))
            self.step = step
        self._guard("finishing", lambda: self.sink.finish(self.step, results))
        self._guard("closing", self.sink.close)
        self.sink = None
