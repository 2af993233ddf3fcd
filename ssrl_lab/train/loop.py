"""One training loop for every method; the methods are small plug-ins (:class:`Method`).

:class:`Loop` owns what no method decides: epochs and steps over one seeded, sharded loader per
epoch; the exact resume (at an epoch boundary, or mid-epoch from the ``partial`` record: the step
reached, the epoch's sums, the method's :meth:`Method.epoch_state` and every rank's RNG state,
restored right after the loader's iterator drew its seed, as in the straight run); stop signals
and ``stop_after_epoch``; flat checkpoints of the loop's fields plus :meth:`Method.state_dict`,
written only after :meth:`Method.check_finite`; the evaluation cadence; one metrics line and one
log line per epoch. A method's :meth:`Method.step` holds its algorithm, its loss guard and EMA
update. What each ``train(cfg)`` does around the loop is in :mod:`~ssrl_lab.train.harness`;
``docs/ARCHITECTURE.md`` describes the contract.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Sequence

import torch
from torch import nn

from . import distributed as dist
from .devices import rng_state, set_rng_state
from .guards import check_finite_modules
from .loader import make_loader, progress, skip_batches
from .run import RunDir
from .signals import interruptible

log = logging.getLogger("ssrl_lab.train.loop")


# -- the plug-in contract --------------------------------------------------------------------------
class Method:
    """A training method driven by :class:`Loop`. Hooks: :meth:`step` (one optimiser step; its
    ``n_sums`` numbers are summed over the epoch), :meth:`end_epoch` (reduce the sums, update the
    method's state, return the record's fields), :meth:`evaluate`, :meth:`begin_epoch` /
    :meth:`epoch_state` (accumulators besides the sums), :meth:`state_dict` / :meth:`load_state_dict`.

    :func:`ssrl_lab.train.harness.run` builds it as ``cls(cfg, corpus, run, device, progress,
    checkpoint)`` (``checkpoint``: the one to resume, else None: start afresh) and asks for
    :meth:`results` at the end. The constructor sets ``cfg`` (its :class:`~ssrl_lab.train.train_config.TrainConfig`), ``dataset``,
    ``per_rank`` (batch per rank), ``steps_per_epoch``, ``epochs``, ``loader_seed`` and
    ``modules`` (checked for NaN / inf before every checkpoint). Class attributes: ``stage`` (the
    metrics lines' stage), ``what`` (the name in messages), ``n_sums`` (numbers per step) and
    ``log_keys`` (record fields in the log line besides the loss).
    """

    stage: str = "train"
    what: str = "training"
    n_sums: int = 1
    log_keys: Sequence[str] = ()
    modules: Sequence[nn.Module | None] = ()

    def begin_epoch(self, epoch: int, partial: dict | None) -> None:
        """Reset the epoch's accumulators, or restore them from an interrupted epoch's ``partial``."""

    def epoch_state(self) -> dict:
        """The accumulators an interrupted epoch keeps in its ``partial`` record."""
        return {}

    def step(self, batch: dict, epoch: int, step: int, it: int) -> Sequence[float]:
        raise NotImplementedError

    def end_epoch(self, epoch: int, sums: torch.Tensor, n: int, seconds_steps: float) -> dict:
        """The epoch's record fields; a tensor among them is a histogram for the tracking sink
        (:mod:`ssrl_lab.tracking`; SSRL's ``p_clean``), not a metrics line field."""
        raise NotImplementedError

    def evaluate(self, epoch: int, is_last: bool) -> dict:
        """The evaluation fields of the epoch's record (called every ``eval_every`` epochs and last)."""
        return {}

    def state_dict(self) -> dict:
        raise NotImplementedError

    def load_state_dict(self, checkpoint: dict) -> None:
        raise NotImplementedError

    def results(self, last_eval: dict, seconds: float) -> dict:
        """results.json of a finished run (``last_eval``: the last :meth:`evaluate` fields)."""
        raise NotImplementedError

    def check_finite(self, where: str) -> None:
        """Raise :class:`~ssrl_lab.train.guards.TrainingDiverged` before a NaN / inf is checkpointed."""
        check_finite_modules(self.modules, where)


# -- the loop ----------------------------------------------------------------------------------------
class Loop:
    """Epochs of ``method`` into ``run``; :meth:`run` returns False when ``stop_after_epoch`` stopped
    it (tests, time-boxed sessions), True when every epoch is done. Afterwards ``last_eval`` holds
    the latest :meth:`Method.evaluate` fields (None if none) and :attr:`seconds` the run's seconds."""

    def __init__(self, method: Method, run: RunDir, *, progress: bool = True, stop_after_epoch: int | None = None,
                 ckpt_name: str = "checkpoint") -> None:
        self.method, self.run_dir, self.progress = method, run, progress
        self.stop_after_epoch, self.ckpt_name = stop_after_epoch, ckpt_name
        self.last_eval: dict | None = None
        self.seconds_before, self.t_run = 0.0, time.perf_counter()

    @property
    def seconds(self) -> float:
        """Training seconds so far, earlier attempts of a resumed run included."""
        return self.seconds_before + time.perf_counter() - self.t_run

    def run(self, checkpoint: dict | None = None) -> bool:
        m, start, partial = self.method, 0, None
        if checkpoint is not None:
            m.load_state_dict(checkpoint)
            start, self.seconds_before = int(checkpoint["epoch"]), float(checkpoint["seconds"])
            self.last_eval, partial = checkpoint.get("last_eval"), checkpoint.get("partial")
            if isinstance(self.last_eval, (list, tuple)):  # written before the loop: (eval, eval_student)
                self.last_eval = {"eval": self.last_eval[0], "eval_student": self.last_eval[1]}
            if len(checkpoint["rng"]) == dist.world_size() and partial is None:
                set_rng_state(checkpoint["rng"][dist.rank()])
            self.run_dir.truncate_metrics(int(checkpoint["n_metrics"]))
            log.info("%s: resumed %s at epoch %d%s", m.stage, self.run_dir.path, start,
                     f", step {partial['step']}" if partial else "")
        log.info("%s: %d utterances, %d steps/epoch, batch %d per rank (world %d)", m.stage, len(m.dataset),
                 m.steps_per_epoch, m.per_rank, dist.world_size())
        self.t_run = time.perf_counter()
        with interruptible() as stop:
            for epoch in range(start, m.epochs):
                if not self._epoch(epoch, partial, stop):
                    return False
                partial = None
        return True

    def _epoch(self, epoch: int, partial: dict | None, stop) -> bool:
        m, t0 = self.method, time.perf_counter()
        steps = m.steps_per_epoch
        loader = make_loader(m.dataset, m.per_rank, epoch, m.loader_seed, shuffle=True, drop_last=True,
                             num_workers=m.cfg.num_workers)
        first, n, sums, before = 0, 0, torch.zeros(m.n_sums, dtype=torch.float64), (0.0, 0.0)
        if partial is not None:  # resuming mid-epoch: the step reached and what the epoch had summed
            first, n, sums = int(partial["step"]), int(partial["n"]), partial["sums"].clone()
            before = (float(partial["epoch_seconds"]), float(partial["seconds_steps"]))
            loader = skip_batches(loader, first)
        m.begin_epoch(epoch, partial)
        batches = iter(progress(loader, self.progress, total=steps - first, desc=f"{m.stage} {epoch + 1}/{m.epochs}"))
        if partial is not None:  # after the loader iterator drew its seed, as in the straight run
            set_rng_state(partial["rng"][dist.rank()])
        t_steps = time.perf_counter()
        for step, batch in enumerate(batches, start=first):
            if step >= steps:
                break
            sums += torch.tensor(m.step(batch, epoch, step, epoch * steps + step), dtype=torch.float64)
            n += 1
            if stop.requested() and step + 1 < steps:
                now = time.perf_counter()
                self._save(epoch, {"step": step + 1, "n": n, "sums": sums.clone(), **m.epoch_state(),
                                   "epoch_seconds": before[0] + now - t0, "seconds_steps": before[1] + now - t_steps})
                raise stop.interrupted(self.run_dir.path, epoch + 1, step + 1)
        record = {"stage": m.stage, "epoch": epoch + 1,
                  **m.end_epoch(epoch, sums, n, before[1] + time.perf_counter() - t_steps)}
        hists = {k: record.pop(k) for k in [k for k, v in record.items() if isinstance(v, torch.Tensor)]}
        is_last, every = epoch + 1 == m.epochs, m.cfg.eval_every
        if is_last or (every and (epoch + 1) % every == 0):
            fields = m.evaluate(epoch, is_last)
            if fields:
                record.update(fields)
                self.last_eval = fields
        record["seconds"] = before[0] + time.perf_counter() - t0
        self.run_dir.log_metrics(record, hists)
        self._log(record)
        self._save(epoch + 1, None)
        if self.stop_after_epoch is not None and epoch + 1 >= self.stop_after_epoch and not is_last:
            return False
        if not is_last and stop.requested():
            raise stop.interrupted(self.run_dir.path, epoch + 1, 0)
        return True

    def _save(self, epochs_done: int, partial: dict | None) -> None:
        """Checkpoint after ``epochs_done`` epochs (and ``partial['step']`` steps of the next)."""
        m = self.method
        where = f"{m.what} after epoch {epochs_done}"
        if partial is not None:
            where += f", step {partial['step']} of epoch {epochs_done + 1}"
        m.check_finite(where)
        rng = dist.all_gather_object(rng_state())
        if partial is not None:
            partial["rng"] = rng
        step = epochs_done * m.steps_per_epoch + (partial["step"] if partial else 0)
        state: dict[str, Any] = {"epoch": epochs_done, "step": step, **m.state_dict(), "rng": rng,
                                 "seconds": self.seconds, "last_eval": self.last_eval, "config": m.cfg.to_dict(),
                                 "partial": partial}
        self.run_dir.save_checkpoint(state, name=self.ckpt_name)

    def _log(self, record: dict) -> None:
        if not dist.is_main():
            return
        m = self.method
        shown = [f"{k} {record[k]:.4g}" for k in ("loss", *m.log_keys) if isinstance(record.get(k), (int, float))]
        ev = record.get("eval") or {}
        log.info("%s epoch %d/%d %s%s", m.stage, record["epoch"], m.epochs, " ".join(shown),
                 f" EER {ev['eer']:.2f} %" if ev.get("eer") is not None else "")
