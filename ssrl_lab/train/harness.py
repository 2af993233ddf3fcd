"""One way into a run: every method's ``train(cfg)`` is :func:`run` (open the run, build the
method, run it, write the results), so the preamble and the epilogue are written once, here, and
read in the order they happen.

* A method that is one :class:`~ssrl_lab.train.loop.Method` (DINO, SSRL) gets its ``train`` from
  :func:`trainer`: :func:`run` builds it (with the checkpoint to resume, or afresh), seeds every
  rank and drives it through the :class:`~ssrl_lab.train.loop.Loop`.
* A trainer that is not one loop (the supervised bound, the iterative rounds, the random
  encoder) hands :func:`run` a *job*, ``job(cfg, corpus, run, device, resume=, progress=, stop=)``
  returning the results (None when stopped early).

``docs/ARCHITECTURE.md`` lists the modules a run visits from here to its first step.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

import torch

from ..config import check
from . import distributed as dist
from .devices import resolve_device, seed_everything
from .loop import Loop, Method
from .run import RunDir

log = logging.getLogger("ssrl_lab.train.harness")

#: how to give each field :func:`open_run` can require
_HOW = {"corpus": "--corpus DIR", "run_dir": "--run-dir DIR", "dino_run": "dino_run=outputs/.../dino"}


def trainer(method: type[Method], *, required: tuple[str, ...] = (), doc: str = "") -> Callable[..., dict | None]:
    """The ``train(cfg, *, resume=False, progress=True, stop_after_epoch=None)`` of ``method``:
    :func:`run` with it (``required``: config fields that must be set besides corpus and run_dir)."""

    def train(cfg, *, resume: bool = False, progress: bool = True, stop_after_epoch: int | None = None) -> dict | None:
        return run(cfg, method, resume=resume, progress=progress, stop=stop_after_epoch, required=required)

    train.__doc__ = doc or trainer.__doc__
    train.__module__, train.__qualname__ = method.__module__, "train"
    return train


def run(cfg, work: type[Method] | Callable[..., dict | None], *, resume: bool = False, progress: bool = True,
        stop: Any = None, required: tuple[str, ...] = (), training_corpus: bool = True) -> dict | None:
    """Open the run (:func:`open_run`; a finished run's stored results are returned when
    resuming), open its corpus (the training corpus with its skip ledger, or with
    ``training_corpus=False`` the corpus as it is), do ``work`` and write its results
    (:func:`finish`). ``work`` is a :class:`~ssrl_lab.train.loop.Method` subclass (driven by
    :func:`run_method`; ``stop`` = ``stop_after_epoch``) or a job (module docstring). Returns the
    results, or None when ``stop`` stopped the run early."""
    device, run_dir, done = open_run(cfg, resume, *required)
    if done is not None:
        return done
    if training_corpus:
        from .skips import open_training_corpus

        corpus = open_training_corpus(cfg, run_dir)  # drops check-listed bad files; counts skips
    else:
        from ..data.corpus import open_corpus

        corpus = open_corpus(cfg.corpus)
    if isinstance(work, type) and issubclass(work, Method):
        results = run_method(work, cfg, corpus, run_dir, device, resume=resume, progress=progress, stop=stop)
    else:
        results = work(cfg, corpus, run_dir, device, resume=resume, progress=progress, stop=stop)
    return None if results is None else finish(run_dir, results)


def run_method(method_cls: type[Method], cfg, corpus, run_dir: RunDir, device: torch.device, *, resume: bool,
               progress: bool, stop: int | None) -> dict | None:
    """Build ``method_cls`` (from the checkpoint to resume, or afresh), seed each rank differently
    (its loader workers and augmentation draws), run the loop; the method's results, or None when
    ``stop`` (``stop_after_epoch``) stopped it."""
    checkpoint = resume_checkpoint(run_dir, resume)
    method = method_cls(cfg, corpus, run_dir, device, progress, checkpoint)
    seed_everything(cfg.seed + 1000 * dist.rank())
    loop = Loop(method, run_dir, progress=progress, stop_after_epoch=stop)
    if not loop.run(checkpoint):
        return None
    return method.results(loop.last_eval, loop.seconds)


def open_run(cfg, resume: bool, *required: str) -> tuple[torch.device, RunDir, dict | None]:
    """Check that ``corpus``, ``run_dir`` and ``required`` are set, initialise torch.distributed
    (under torchrun), resolve the device and open the run directory. Returns ``(device, run,
    results)``: ``results`` are the stored ones of a finished run when resuming (return them), else None."""
    for name in ("corpus", "run_dir", *required):
        check(bool(getattr(cfg, name)), f"{type(cfg).__name__}.{name} is empty: give {_HOW[name]}")
    dist.init_distributed()
    device = resolve_device(cfg.device, cfg.cudnn_benchmark)
    run_dir = RunDir(cfg.run_dir, cfg.to_dict(), resume=resume)
    done = run_dir.read_results() if resume else None
    if done is not None:
        log.info("%s is finished; returning its results", run_dir.path)
    return device, run_dir, done


def resume_checkpoint(run_dir: RunDir, resume: bool, name: str = "checkpoint") -> dict | None:
    """The checkpoint to resume from (None: start afresh). Resuming a run killed before its first
    checkpoint drops that attempt's metrics lines."""
    ckpt = run_dir.load_checkpoint(name) if resume else None
    if resume and ckpt is None:
        run_dir.truncate_metrics(0)
    return ckpt


def finish(run_dir: RunDir, results: dict) -> dict:
    """Rank 0's results, written to results.json once every rank got here."""
    results = dist.broadcast_object(results)
    run_dir.write_results(results)
    dist.barrier()
    return results
