"""Numerical guards shared by the trainers: non-finite losses / weights and DINO collapse.

A guard that trips raises :class:`TrainingDiverged` (a ``FloatingPointError``) naming the
epoch and step. Trainers check the loss before ``backward`` and the weights before every
checkpoint, so ``checkpoint.pt`` always holds the last good state: a checkpoint of NaN weights
is never written.

Test hook (tests only, documented here so nobody is surprised): the environment variable
``SSRL_LAB_TEST_NAN_STEP=<global step>`` makes :func:`check_loss` see a NaN loss at that global
step (``epoch * steps_per_epoch + step``), which exercises the NaN path end to end.
"""
from __future__ import annotations

import math
import os
from typing import Iterable

import torch
from torch import nn

from ..config import ConfigError

NAN_STEP_ENV = "SSRL_LAB_TEST_NAN_STEP"


class TrainingDiverged(FloatingPointError):
    """Training produced a non-finite loss / weights, or DINO collapsed; the last good checkpoint is kept."""


def check_loss(loss: torch.Tensor, what: str, epoch: int, step: int, global_step: int) -> None:
    """Raise :class:`TrainingDiverged` when ``loss`` is NaN / inf (``epoch`` 0-based, printed 1-based)."""
    value = float(loss.detach())
    hook = os.environ.get(NAN_STEP_ENV)
    if hook is not None and hook.strip() and int(hook) == global_step:
        value = float("nan")
    if not math.isfinite(value):
        raise TrainingDiverged(
            f"{what} loss is {value} at epoch {epoch + 1}, step {step} (global step {global_step}); "
            "stopping - checkpoint.pt keeps the last good epoch. Lower the learning rate or check the input.")


def check_finite_modules(modules: Iterable[nn.Module], where: str) -> None:
    """Raise :class:`TrainingDiverged` when a parameter or float buffer is NaN / inf (before checkpointing)."""
    for m in modules:
        if m is None:
            continue
        for name, t in list(m.named_parameters()) + list(m.named_buffers()):
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                raise TrainingDiverged(f"{where}: {name} holds NaN / inf values; the checkpoint was not written "
                                       "(checkpoint.pt keeps the last good epoch)")


def check_world(n_items: int, world: int, what: str = "training utterances") -> None:
    """Refuse more processes (GPUs) than items: each rank would get no data."""
    if world > n_items:
        raise ConfigError(f"world size {world} (processes / GPUs) is larger than the number of {what} "
                          f"({n_items}); use at most {n_items} processes")


class CollapseGuard:
    """Stops DINO when the teacher collapses for ``patience`` consecutive steps.

    Two collapse modes, judged from the teacher's sharpened, centred outputs of a step
    (:func:`ssrl_lab.train.dino.teacher_stats`):

    * **one-hot**: every sample picks the same prototype - the entropy of the batch-mean
      distribution falls under ``low`` nats (a healthy sharp teacher has a low per-sample
      entropy but spreads its argmaxes, so its entropy of the mean stays high);
    * **uniform**: every output is nearly uniform - the mean per-sample entropy exceeds
      ``high * log(n_prototypes)``.

    ``patience`` (steps) keeps the short dip of prototype use in early epochs noted in
    FEASIBILITY.md (55 -> 19 distinct argmaxes, never a single one) from tripping it.
    """

    def __init__(self, n_prototypes: int, low: float, high: float, patience: int) -> None:
        self.log_k = math.log(n_prototypes)
        self.low, self.high, self.patience = float(low), float(high), int(patience)
        self.count = 0

    def reason(self, entropy: float, entropy_of_mean: float) -> str | None:
        if entropy_of_mean < self.low:
            return (f"one prototype dominates: entropy of the mean teacher output {entropy_of_mean:.4f} "
                    f"< collapse_low={self.low} nats")
        if entropy > self.high * self.log_k:
            return (f"teacher outputs are uniform: mean entropy {entropy:.4f} > collapse_high={self.high} "
                    f"x log(n_prototypes)={self.log_k:.4f}")
        return None

    def update(self, entropy: float, entropy_of_mean: float, epoch: int, step: int) -> None:
        """Count a collapsed step (reset otherwise); raise :class:`TrainingDiverged` after ``patience``."""
        why = self.reason(entropy, entropy_of_mean)
        self.count = self.count + 1 if why else 0
        if why and self.count >= self.patience:
            raise TrainingDiverged(
                f"DINO collapsed at epoch {epoch + 1}, step {step} ({self.count} steps in a row): {why}. "
                "checkpoint.pt keeps the last good epoch; try a lower teacher temperature, a higher "
                "centre momentum or a lower learning rate (collapse_guard=false disables this check)")

    def state_dict(self) -> dict:
        return {"count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.count = int(state.get("count", 0))
