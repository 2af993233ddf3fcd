"""Graceful interruption of training: SIGTERM / SIGINT stop a run at the next step boundary.

Every trainer runs its loop inside :func:`interruptible`::

    with interruptible() as stop:
        for step, batch in ...:
            ...one optimiser step...
            if stop.requested():          # all ranks agree (all-reduce) under torchrun
                run.save_checkpoint(state of this step)   # mid-epoch state, resumable exactly
                raise stop.interrupted(run.path, epoch, step)

The handlers only set a flag (nothing heavy runs inside a signal handler); the trainer saves a
checkpoint of the state after the step in progress and raises :class:`TrainingInterrupted`.
The CLI (:mod:`.cli`) turns it into exit status ``128 + signum`` (130 for SIGINT, 143 for
SIGTERM) with a message; in a notebook the exception's message is what the cell shows.
A second SIGINT while the first is pending raises ``KeyboardInterrupt`` at once (the usual
"press Ctrl-C twice" escape). The previous handlers are restored on exit.

Handlers can only be installed from the main thread (papermill kernels run cells there); in
another thread :func:`interruptible` installs nothing and ``requested()`` is always False.
"""
from __future__ import annotations

import contextlib
import logging
import signal
import threading
from pathlib import Path
from typing import Iterator

import torch

from . import distributed as dist

log = logging.getLogger("ssrl_lab.train.signals")

#: The signals that ask a run to stop cleanly.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class TrainingInterrupted(Exception):
    """A run stopped by SIGTERM / SIGINT after saving a checkpoint; ``exit_code`` = 128 + signum."""

    def __init__(self, signum: int, run_dir, epoch: int, step: int) -> None:
        self.signum = int(signum)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.epoch = int(epoch)
        self.step = int(step)
        name = signal.Signals(self.signum).name
        super().__init__(
            f"interrupted by {name} at epoch {self.epoch}, step {self.step}: checkpoint saved in "
            f"{self.run_dir}; continue with --resume (train(cfg, resume=True))")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class StopFlag:
    """Set by the signal handlers; :meth:`requested` is checked by trainers at step boundaries."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def set(self, signum: int) -> None:
        self.signum = int(signum)

    def local(self) -> bool:
        return self.signum is not None

    def requested(self) -> bool:
        """True when a stop was asked on any rank (a collective call under torchrun: call it on every rank)."""
        if dist.world_size() > 1 and dist.is_initialized():
            t = torch.tensor([float(self.signum or 0)], dtype=torch.float64)
            if torch.distributed.get_backend() == "nccl":
                t = t.cuda()
            torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
            if t.item() > 0 and self.signum is None:
                self.signum = int(t.item())
        return self.signum is not None

    def interrupted(self, run_dir, epoch: int, step: int) -> TrainingInterrupted:
        return TrainingInterrupted(self.signum or signal.SIGTERM, run_dir, epoch, step)


@contextlib.contextmanager
def interruptible() -> Iterator[StopFlag]:
    """Install SIGTERM / SIGINT handlers that set the yielded :class:`StopFlag`; restore on exit."""
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):  # noqa: ARG001 - signal handler signature
        if signum == signal.SIGINT and flag.signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: stop now
        if flag.signum is None:
            log.warning("received %s: stopping at the next step boundary (saving a checkpoint)",
                        signal.Signals(signum).name)
        flag.set(signum)

    previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    for s in STOP_SIGNALS:
        signal.signal(s, handler)
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)
