"""What every trainer's ``train(cfg)`` does around the :class:`~ssrl_lab.train.loop.Loop`:
check the config and open the run (:func:`open_run`, which also returns a finished run's results),
pick the checkpoint to resume (:func:`resume_checkpoint`), size the batches and epochs
(:func:`batch_per_rank`, :func:`epoch_steps`), prepare the models (:func:`prepare_models`:
``torch.compile``, SyncBatchNorm, DDP), evaluate the model a run keeps (:func:`evaluate_final`)
and write the results once every rank is done (:func:`finish`).
"""
from __future__ import annotations

import logging
from typing import Sequence

import torch
from torch import nn

from ..config import check
from . import distributed as dist
from .context import compile_encoders, resolve_device, steps_per_epoch, sync_bn_enabled, wrap_ddp
from .ema import unwrap
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


def evaluate_final(net: nn.Module, corpus, cfg, device: torch.device, run: RunDir, progress: bool = False,
                   scores: Sequence[str] = ("scores.npz",)) -> dict:
    """Evaluate the model a run keeps (intervals included) and write its scores to each of ``scores``."""
    from .context import evaluate_model, score_arrays

    ev = evaluate_model(net, corpus, cfg, device, progress=progress, return_scores=True)
    for name in scores:
        run.write_scores(ev["scores"], ev["labels"], name, **score_arrays(ev))
    return ev


def batch_per_rank(cfg) -> int:
    """``cfg.batch_size`` (global) split over the ranks; refused when it does not divide."""
    world = dist.world_size()
    check(cfg.batch_size % world == 0, f"batch_size={cfg.batch_size} must be divisible by the world size {world}")
    return cfg.batch_size // world


def epoch_steps(cfg, n_items: int, per_rank: int) -> int:
    """Optimiser steps per epoch (``drop_last``), capped by ``cfg.max_steps_per_epoch``."""
    steps = steps_per_epoch(n_items, per_rank)
    check(steps >= 1, f"the training table ({n_items} utterances) is smaller than one batch ({cfg.batch_size})")
    return min(steps, cfg.max_steps_per_epoch) if cfg.max_steps_per_epoch else steps


def prepare_models(cfg, device: torch.device, student: nn.Module, teacher: nn.Module | None = None, *,
                   sync_teacher: bool = False) -> tuple[nn.Module, nn.Module, nn.Module | None]:
    """``torch.compile`` the encoders (``cfg.compile``), convert to SyncBatchNorm when several CUDA
    ranks train (the teacher too with ``sync_teacher``: DINO's teacher runs in train mode) and
    wrap the student in DDP. Returns ``(student as called, student module, teacher)``."""
    sync_bn = sync_bn_enabled(cfg, device)
    if sync_bn and sync_teacher and teacher is not None:
        teacher = nn.SyncBatchNorm.convert_sync_batchnorm(teacher)
    compile_encoders(cfg, *(m for m in (student, teacher) if m is not None))
    wrapped = wrap_ddp(student, device, sync_bn)
    return wrapped, unwrap(wrapped), teacher
