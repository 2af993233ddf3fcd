"""The training batches of one epoch on this rank: the sharded sampler, collation, the loader
(carrying the dataset's skip notes) and how many steps an epoch has.

* :class:`ShardedSampler` - DistributedSampler-style: a per-epoch permutation seeded by
  ``(seed, epoch)``, padded to a multiple of the world size, rank ``r`` takes every
  ``world``-th index. With one process it is a seeded shuffle.
* :func:`make_loader` - a DataLoader for one epoch (``dataset.set_epoch`` and
  ``sampler.set_epoch`` called), batches collated by :func:`collate`; :func:`skip_batches` the
  same epoch without its first batches (a mid-epoch resume).
* :func:`batch_per_rank`, :func:`steps_per_epoch`, :func:`epoch_steps` - the batch and epoch sizes.
* :func:`progress` - tqdm on the main process when ``enabled``, a plain iterator otherwise.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from ..config import check
from . import distributed as dist


class ShardedSampler(Sampler[int]):
    """Per-epoch seeded shuffle, sharded over ranks (DistributedSampler semantics).

    ``drop_last``: drop the tail so every rank gets the same number of indices without
    padding; otherwise the permutation is padded by wrapping.
    """

    def __init__(self, n: int, shuffle: bool = True, seed: int = 0, drop_last: bool = False,
                 rank: int | None = None, world: int | None = None) -> None:
        self.n = int(n)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.drop_last = drop_last
        self.rank = dist.rank() if rank is None else rank
        self.world = dist.world_size() if world is None else world
        self.epoch = 0
        if self.drop_last:
            self.per_rank = self.n // self.world
        else:
            self.per_rank = math.ceil(self.n / self.world)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def indices(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.seed * 100003 + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        total = self.per_rank * self.world
        if total > len(order):
            order = (order * math.ceil(total / max(len(order), 1)))[:total]
        order = order[:total]
        return order[self.rank:total:self.world]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices())

    def __len__(self) -> int:
        return self.per_rank


def collate(items: list[dict]) -> dict:
    """Stack a list of dataset items: tensors stacked, lists of tensors stacked per position."""
    out: dict[str, Any] = {}
    for key in items[0]:
        vals = [it[key] for it in items]
        v0 = vals[0]
        if isinstance(v0, torch.Tensor):
            out[key] = torch.stack(vals)
        elif isinstance(v0, (list, tuple)) and v0 and isinstance(v0[0], torch.Tensor):
            out[key] = [torch.stack([v[i] for v in vals]) for i in range(len(v0))]
        elif isinstance(v0, (int, np.integer)):
            out[key] = torch.as_tensor(np.asarray(vals, dtype=np.int64))
        elif isinstance(v0, (float, np.floating)):
            out[key] = torch.as_tensor(np.asarray(vals, dtype=np.float32))
        else:
            out[key] = vals
    return out


SKIPS_KEY = "_skipped"


class _CollateNotingSkips:
    """:func:`collate`, plus the files the dataset skipped while making the batch's items (it runs
    where the items are made, in a worker process or this one)."""

    def __init__(self, dataset) -> None:
        self.dataset = dataset

    def __call__(self, items: list[dict]) -> dict:
        batch = collate(items)
        take = getattr(self.dataset, "take_skips", None)
        notes = take() if take is not None else None
        if notes:
            batch[SKIPS_KEY] = notes
        return batch


class SkipCountingLoader(DataLoader):
    """A DataLoader that hands the skip notes of each batch to the running training's ledger
    (:func:`ssrl_lab.train.skips.record`) and removes them from the batch."""

    def __iter__(self):
        from .skips import record

        for batch in super().__iter__():
            notes = batch.pop(SKIPS_KEY, None) if isinstance(batch, dict) else None
            if notes:
                record(notes)
            yield batch


def make_loader(dataset, batch_size: int, epoch: int, seed: int, shuffle: bool = True,
                drop_last: bool = True, num_workers: int = 0) -> DataLoader:
    """A DataLoader for one epoch of ``dataset`` on this rank (``batch_size`` per rank).

    The dataset's ``set_epoch`` (if any) and the sampler's are called with ``epoch``, so item
    randomness and order depend only on ``(seed, epoch, index)``. Workers are not persistent:
    a new loader per epoch carries the epoch into forked workers.
    """
    if hasattr(dataset, "set_epoch"):
        dataset.set_epoch(epoch)
    sampler = ShardedSampler(len(dataset), shuffle=shuffle, seed=seed, drop_last=drop_last)
    sampler.set_epoch(epoch)
    return SkipCountingLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                              collate_fn=_CollateNotingSkips(dataset), drop_last=drop_last,
                              pin_memory=torch.cuda.is_available(), persistent_workers=False)


def skip_batches(loader: DataLoader, n: int) -> DataLoader:
    """The same epoch's loader without its first ``n`` batches (resuming mid-epoch).

    The batches keep the order of ``loader`` (same sampler permutation); the skipped ones are
    never loaded. ``n <= 0`` returns ``loader`` itself.
    """
    if n <= 0:
        return loader
    batches = list(loader.batch_sampler)[n:]
    return SkipCountingLoader(loader.dataset, batch_sampler=batches, num_workers=loader.num_workers,
                              collate_fn=loader.collate_fn, pin_memory=loader.pin_memory, persistent_workers=False)


def steps_per_epoch(n_items: int, batch_size: int, drop_last: bool = True) -> int:
    """Optimiser steps per epoch on every rank for ``n_items`` sharded over the world."""
    per_rank = n_items // dist.world_size() if drop_last else math.ceil(n_items / dist.world_size())
    steps = per_rank // batch_size if drop_last else math.ceil(per_rank / batch_size)
    return max(int(steps), 0)


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


def progress(iterable: Iterable, enabled: bool, **kw):
    """tqdm over ``iterable`` on the main process when ``enabled``; the iterable otherwise."""
    if not enabled or not dist.is_main():
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, dynamic_ncols=True, leave=False, **kw)
