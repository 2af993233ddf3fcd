"""The teacher's space over training: its embeddings of the training set at evaluation epochs.

DINO and SSRL call :func:`save_teacher_snapshot` at each evaluation epoch (and at the last).
It embeds the training table (at most ``max_utterances`` rows, a fixed seeded subset, the same
at every epoch) in fixed ``chunk_s``-second chunks, averaged per utterance
(:func:`ssrl_lab.eval.embed.extract_embeddings`), and writes
``<run>/embeddings/snapshots/teacher_e<epoch:04d>.npz`` (``emb``, ``utt_id``, ``fingerprint``).
``05_explore`` maps these files, so that moving its epoch slider shows the space changing.

Training results do not depend on it: iterating a DataLoader draws a seed from torch's global
generator, so every generator state (python, numpy, torch, CUDA) is saved before and restored
after the extraction; the subset comes from its own ``numpy`` generator.

A snapshot file that already holds the same model (fingerprint of its parameters, the rows and
the settings), as after a resumed run, is not recomputed. Every rank calls it (extraction is
sharded and gathered); rank 0 writes.
"""
from __future__ import annotations

import dataclasses
import logging
import re
import time
from pathlib import Path

import numpy as np
from torch import nn

from ..config import Config, check

log = logging.getLogger("ssrl_lab.train.snapshots")

SNAPSHOT_DIR = Path("embeddings") / "snapshots"
_NAME = re.compile(r"^(?P<model>[a-z_]+)_e(?P<epoch>\d+)\.npz$")


@dataclasses.dataclass
class SnapshotConfig(Config):
    """``enabled``: save the teacher's training-set embeddings at evaluation epochs.
    ``max_utterances``: cap on the rows embedded (a fixed random subset beyond it; 0 = no cap).
    ``chunk_s``: length of the fixed chunks each utterance is cut into (their embeddings are
    averaged). ``batch_size``: chunks per forward pass. ``seed``: of the subset."""

    enabled: bool = True
    max_utterances: int = 20000
    chunk_s: float = 4.0
    batch_size: int = 64
    seed: int = 0

    def validate(self) -> None:
        check(self.max_utterances >= 0, f"snapshots.max_utterances must be >= 0 (0 = no cap), got {self.max_utterances}")
        check(self.chunk_s > 0, f"snapshots.chunk_s must be positive seconds, got {self.chunk_s}")
        check(self.batch_size >= 1, f"snapshots.batch_size must be >= 1, got {self.batch_size}")


def snapshot_rows(n: int, cap: int, seed: int = 0) -> np.ndarray:
    """Sorted table rows to embed: all ``n`` when ``cap`` is 0 or >= n, else ``cap`` seeded ones."""
    if cap <= 0 or n <= cap:
        return np.arange(n, dtype=np.int64)
    return np.sort(np.random.default_rng(seed).choice(n, size=cap, replace=False)).astype(np.int64)


def snapshot_path(run_dir, epoch: int, model: str = "teacher") -> Path:
    return Path(run_dir) / SNAPSHOT_DIR / f"{model}_e{int(epoch):04d}.npz"


def list_snapshots(run_dir, model: str = "teacher") -> dict[int, Path]:
    """``{epoch: path}`` of the run's snapshot files of ``model``, sorted by epoch."""
    d = Path(run_dir) / SNAPSHOT_DIR
    found = {}
    if d.is_dir():
        for p in d.glob("*.npz"):
            m = _NAME.match(p.name)
            if m and m["model"] == model:
                found[int(m["epoch"])] = p
    return dict(sorted(found.items()))


def save_teacher_snapshot(model: nn.Module, table, run_dir, epoch: int, cfg: SnapshotConfig, device,
                          skip_bad: bool = False, model_name: str = "teacher") -> dict | None:
    """Embed ``table`` (capped) with ``model`` into the run's snapshot for ``epoch``.

    Returns ``{"n_utterances"}`` for the metrics line, or None when disabled. Every
    RNG state is the same after the call as before it.
    """
    if not cfg.enabled:
        return None
    from ..eval.embed import extract_embeddings
    from .devices import rng_state, set_rng_state

    t0 = time.perf_counter()
    rows = snapshot_rows(len(table), cfg.max_utterances, cfg.seed)
    sub = table if rows.size == len(table) else table.subset(rows)
    path = snapshot_path(run_dir, epoch, model_name)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = rng_state()
    try:
        extract_embeddings(model, sub, device=device, batch_size=cfg.batch_size, chunk_s=cfg.chunk_s,
                           cache_path=path, progress=False, skip_bad=skip_bad)
    finally:
        set_rng_state(state)
    seconds = time.perf_counter() - t0
    log.info("%s snapshot of epoch %d: %d utterances in %.1f s -> %s", model_name, epoch, rows.size, seconds, path)
    # the wall time goes to the log only: metrics lines keep wall-clock figures in top-level
    # seconds* keys, which resume comparisons leave out
    return {"n_utterances": int(rows.size)}
