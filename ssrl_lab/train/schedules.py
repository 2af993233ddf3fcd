"""Per-step schedules: learning rate, weight decay, EMA momentum, teacher temperature.

Every schedule is a pure function of the global step, so resuming a run needs nothing but the
step counter. Schedules are built once as numpy arrays of length ``epochs * steps_per_epoch``
(the way DINO does it) and indexed by the global step; indexing past the end returns the last
value.
"""
from __future__ import annotations

import math

import numpy as np


class Schedule:
    """A precomputed per-step schedule; ``sched[step]`` clamps ``step`` into range."""

    def __init__(self, values) -> None:
        self.values = np.asarray(values, dtype=np.float64)
        if self.values.ndim != 1 or self.values.size == 0:
            raise ValueError("a schedule needs at least one step")

    def __getitem__(self, step: int) -> float:
        step = int(step)
        if step < 0:
            raise IndexError(f"schedule step {step} is negative")
        return float(self.values[min(step, self.values.size - 1)])

    def __len__(self) -> int:
        return int(self.values.size)


def cosine_schedule(base: float, final: float, epochs: int, steps_per_epoch: int,
                    warmup_epochs: float = 0.0, warmup_start: float = 0.0) -> Schedule:
    """Linear warm-up from ``warmup_start`` to ``base`` over ``warmup_epochs``, then cosine to ``final``.

    The warm-up reaches ``base`` exactly at its last step + 1, i.e. the first post-warm-up step
    uses ``base``; the last step of training uses ``final``.
    """
    if epochs <= 0 or steps_per_epoch <= 0:
        raise ValueError(f"cosine_schedule: epochs={epochs} and steps_per_epoch={steps_per_epoch} must be > 0")
    total = int(epochs * steps_per_epoch)
    n_warm = min(int(round(warmup_epochs * steps_per_epoch)), total)
    warm = np.linspace(warmup_start, base, n_warm, endpoint=False) if n_warm else np.zeros(0)
    n_rest = total - n_warm
    if n_rest == 1:
        rest = np.array([base])
    else:
        t = np.arange(n_rest) / max(n_rest - 1, 1)
        rest = final + 0.5 * (base - final) * (1.0 + np.cos(math.pi * t))
    return Schedule(np.concatenate([warm, rest]))


def linear_schedule(start: float, end: float, epochs: int, steps_per_epoch: int) -> Schedule:
    """Straight line from ``start`` (step 0) to ``end`` (last step)."""
    total = int(epochs * steps_per_epoch)
    if total <= 0:
        raise ValueError("linear_schedule: epochs * steps_per_epoch must be > 0")
    return Schedule(np.linspace(start, end, total) if total > 1 else np.array([start]))


def momentum_schedule(start: float, end: float, epochs: int, steps_per_epoch: int,
                      kind: str = "cosine") -> Schedule:
    """EMA momentum rising from ``start`` to ``end``: ``"cosine"`` (DINO) or ``"linear"`` (SSRL paper)."""
    if kind == "cosine":
        return _cos_rise(start, end, epochs, steps_per_epoch)
    if kind == "linear":
        return linear_schedule(start, end, epochs, steps_per_epoch)
    if kind == "constant":
        return Schedule(np.full(int(epochs * steps_per_epoch), start))
    raise ValueError(f"momentum_schedule: kind {kind!r} is not one of cosine, linear, constant")


def _cos_rise(start: float, end: float, epochs: int, steps_per_epoch: int) -> Schedule:
    """Half-cosine from ``start`` to ``end`` (flat at both ends)."""
    total = int(epochs * steps_per_epoch)
    t = np.arange(total) / max(total - 1, 1)
    return Schedule(end - (end - start) * 0.5 * (1.0 + np.cos(math.pi * t)))


def warmup_constant_schedule(warmup_value: float, value: float, warmup_epochs: int, epochs: int,
                             steps_per_epoch: int) -> Schedule:
    """Linear ramp from ``warmup_value`` to ``value`` over ``warmup_epochs``, then constant.

    DINO's teacher-temperature warm-up.
    """
    total = int(epochs * steps_per_epoch)
    n_warm = min(int(warmup_epochs * steps_per_epoch), total)
    warm = np.linspace(warmup_value, value, n_warm) if n_warm else np.zeros(0)
    return Schedule(np.concatenate([warm, np.full(total - n_warm, value)]))
