"""What every trainer's ``train(cfg)`` does around the :class:`~ssrl_lab.train.loop.Loop`:
check the config and open the run (:func:`open_run`, which also returns a finished run's results),
pick the checkpoint to resume (:func:`resume_checkpoint`) and write the results once every rank is
done (:func:`finish`).
"""
from __future__ import annotations

import logging

import torch

from ..config import check
from . import distributed as dist
from .devices import resolve_device
from .run import RunDir

log = logging.getLogger("ssrl_lab.train.harness")

#: how to give each field :func:`open_run` can require
_HOW = {"corpus": "--corpus DIR", "run_dir": "--run-dir DIR", "dino_run": "dino_run=outputs/.../dino"}

def open_run(cfg, resume: bool, *required: str) -> tuple[torch.device, RunDir, dict | None]:
    """Check that ``corpus``, ``run_dir`` and ``required`` are set, initialise torch.distributed
    (under torchrun), resolve the device and open the run directory. Returns ``(device, run,
    results)``: ``results`` are the stored ones of a finished run when resuming (return them), else None."""
    for name in ("corpus", "run_dir", *required):
        check(bool(getattr(cfg, name)), f"{type(cfg).__name__}.{name} is empty: give {_HOW[name]}")
    dist.init_distributed()
    device = resolve_device(cfg.device, cfg.cudnn_benchmark)
    run = RunDir(cfg.run_dir, cfg.to_dict(), resume=resume)
    done = run.read_results() if resume else None
    if done is not None:
        log.info("%s is finished; returning its results", run.path)
    return device, run, done


def resume_checkpoint(run: RunDir, resume: bool, name: str = "checkpoint") -> dict | None:
    """The checkpoint to resume from (None: start afresh). Resuming a run killed before its first
    checkpoint drops that attempt's metrics lines."""
    ckpt = run.load_checkpoint(name) if resume else None
    if resume and ckpt is None:
        run.truncate_metrics(0)
    return ckpt


def finish(run: RunDir, results: dict) -> dict:
    """Rank 0's results, written to results.json once every rank got here."""
    results = dist.broadcast_object(results)
    run.write_results(results)
    dist.barrier()
    return results


