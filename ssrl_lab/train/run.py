"""The run directory: one folder per training run, everything a notebook reads afterwards.

Layout (``outputs/<run-name>/``)::

    config.json        the configuration as written (a different one is refused unless resuming)
    metrics.jsonl      one JSON line per epoch (or round)
    checkpoint.pt      the latest checkpoint (atomic); checkpoint.prev.pt the one before it
    embeddings/        *.npz with ``emb`` and ``utt_id``
    plots/             figures
    results.json       the final evaluation ({"system", "eer", "eer_all_pairs", ...})
    scores.npz         trial ``scores`` and ``labels`` of the final evaluation
    skipped.tsv        every training file skipped (up front or while training; see ssrl_lab.train.skips)

Only the main process (rank 0) writes; on other ranks every writer is a no-op, readers work.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .. import progress, tracking
from ..config import ConfigError, config_diff
from ..utils.io import append_jsonl, atomic_numpy_save, atomic_torch_save, atomic_write_json, read_jsonl
from . import distributed as dist
from .skips import DEFAULT_MAX_FRACTION, SkipLedger

log = logging.getLogger("ssrl_lab.train.run")

#: Test hook: seconds to sleep between writing a checkpoint's temporary file and renaming it,
#: so that tests can SIGKILL a run in the middle of a checkpoint write. Never set it otherwise.
SLOW_CHECKPOINT_ENV = "SSRL_LAB_TEST_SLOW_CHECKPOINT"


class RunDir:
    """A run directory bound to one configuration.

    ``RunDir(path, config_dict, resume=False)``: creates the directory and writes
    ``config.json``. An existing ``config.json`` that differs from ``config_dict`` raises
    :class:`ConfigError` naming the differing keys unless ``resume`` is true (then the new
    configuration replaces it and the differences are logged). Without ``resume`` an existing
    directory with the same config but training state (checkpoint/metrics) is refused too, so a
    finished run is never overwritten by accident.
    """

    def __init__(self, path, config_dict: Mapping[str, Any], resume: bool = False) -> None:
        self.path = Path(path)
        self.config = dict(config_dict)
        self.resume = bool(resume)
        self.writer = dist.is_main()
        self.skips = SkipLedger(float(self.config.get("max_skip_fraction", DEFAULT_MAX_FRACTION)))
        self.tracker = tracking.open_tracker(self.path, self.config, self.writer)  # ssrl_lab.tracking
        old_cfg = self.path / "config.json"
        if old_cfg.exists():
            try:
                old = json.loads(old_cfg.read_text(encoding="utf-8"))
            except json.JSONDecodeError as e:
                raise ConfigError(f"{old_cfg}: unreadable config ({e})") from None
            diff = config_diff(old, self.config)
            if diff and not resume:
                raise ConfigError(
                    f"run directory {self.path} holds a different configuration "
                    f"(differing keys: {', '.join(diff)}); choose another --run-dir or pass --resume"
                )
            if diff:
                log.warning("resuming %s with changed keys: %s", self.path, ", ".join(diff))
            if not resume and (self.has_checkpoint() or self.metrics_path.exists() or self.results_path.exists()):
                raise ConfigError(
                    f"run directory {self.path} already holds a run (checkpoint, metrics or results); "
                    "pass --resume to continue it or choose another --run-dir"
                )
        if self.writer:
            if self.path.exists():
                self.remove_stale_temporaries()
            (self.path / "embeddings").mkdir(parents=True, exist_ok=True)
            (self.path / "plots").mkdir(parents=True, exist_ok=True)
            atomic_write_json(self.path / "config.json", self.config)
            progress.begin(self.path, self.config, finished=self.resume and self.results_path.exists())
        dist.barrier()

    # -- paths ---------------------------------------------------------------------------
    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.jsonl"

    @property
    def results_path(self) -> Path:
        return self.path / "results.json"

    @property
    def checkpoint_path(self) -> Path:
        return self.path / "checkpoint.pt"

    @property
    def prev_checkpoint_path(self) -> Path:
        return self.path / "checkpoint.prev.pt"

    @property
    def embeddings_dir(self) -> Path:
        return self.path / "embeddings"

    @property
    def plots_dir(self) -> Path:
        return self.path / "plots"

    # -- metrics -------------------------------------------------------------------------
    def log_metrics(self, record: Mapping[str, Any], histograms: Mapping[str, Any] | None = None) -> None:
        """Append one line to metrics.jsonl (rank 0 writes; every rank calls it: the skip counts
        of all ranks are gathered here), with the training files skipped since the previous line;
        stops the run when the skips exceed ``max_skip_fraction`` (:mod:`ssrl_lab.train.skips`).
        The line (and ``histograms``, ``{name: array}``) also goes to the tracking sink."""
        rec = self.skips.annotate(record)
        if self.writer:
            append_jsonl(self.metrics_path, rec)
            progress.report(self.path, self.config, rec)  # a live line per epoch (ssrl_lab.progress)
            self.tracker.log(rec, histograms)
        if rec.get("skipped"):
            self.skips.write_tsv(self.path)
        self.skips.check_limit()

    def read_metrics(self) -> list[dict]:
        return read_jsonl(self.metrics_path)

    def truncate_metrics(self, n_lines: int) -> None:
        """Keep the first ``n_lines`` records (lines written after the checkpoint being resumed)."""
        if not self.writer:
            return
        self.tracker.reset()
        rows = self.read_metrics()
        if len(rows) == n_lines:
            return
        from ..utils.io import atomic_write_text

        atomic_write_text(self.metrics_path, "".join(json.dumps(r) + "\n" for r in rows[:n_lines]))

    # -- checkpoints ---------------------------------------------------------------------
    def has_checkpoint(self, name: str = "checkpoint") -> bool:
        return (self.path / f"{name}.pt").exists() or (self.path / f"{name}.prev.pt").exists()

    def save_checkpoint(self, state: Mapping[str, Any], name: str = "checkpoint") -> None:
        """Write ``<name>.pt`` atomically, keeping the previous one as ``<name>.prev.pt``.

        The state gets ``n_metrics`` (lines in metrics.jsonl at save time) so a resume can drop
        lines logged after it.
        """
        self.skips.gather()  # collective: every rank saves
        if self.writer:
            state = dict(state)
            state.setdefault("n_metrics", len(self.read_metrics()))
            if self.skips.active:
                state["skips"] = self.skips.state_dict()
            cur = self.path / f"{name}.pt"
            if cur.exists():
                os.replace(cur, self.path / f"{name}.prev.pt")
            slow = os.environ.get(SLOW_CHECKPOINT_ENV)
            if slow:
                _slow_torch_save(state, cur, float(slow))
            else:
                atomic_torch_save(state, cur)
        dist.barrier()

    def remove_stale_temporaries(self) -> list[Path]:
        """Delete temporary files left by a write that was killed (``.<file>.*.tmp``); returns them."""
        if not self.writer:
            return []
        stale = sorted(self.path.glob(".*.tmp"))
        for p in stale:
            log.warning("removing %s, left by an interrupted write", p.name)
            p.unlink(missing_ok=True)
        return stale

    def load_checkpoint(self, name: str = "checkpoint", map_location="cpu") -> dict | None:
        """The latest readable checkpoint (falling back to ``<name>.prev.pt``), or None; restores
        the skip counts saved with it."""
        ckpt = read_checkpoint(self.path, name, map_location)
        if ckpt is not None and ckpt.get("skips"):
            self.skips.load_state_dict(ckpt["skips"])
        return ckpt

    # -- results -------------------------------------------------------------------------
    def write_results(self, results: Mapping[str, Any], name: str = "results.json") -> None:
        """Write ``name`` (rank 0) with the run's ``skipped`` block when it trained on a corpus
        (added to ``results`` itself too, so that what a trainer returns equals the file)."""
        if self.skips.active:
            skipped = self.skips.summary()
            if isinstance(results, dict):
                results["skipped"] = skipped
            results = {**results, "skipped": skipped}
            self.skips.write_tsv(self.path)
        results = dict(results)
        if self.writer:
            atomic_write_json(self.path / name, results)
            if name == "results.json":
                self.tracker.finish(results)

    def read_results(self, name: str = "results.json") -> dict | None:
        p = self.path / name
        return json.loads(p.read_text(encoding="utf-8")) if p.exists() else None

    def write_scores(self, scores, labels, name: str = "scores.npz", **arrays) -> None:
        """``name`` with the trial ``scores`` and ``labels``, and any further named ``arrays``
        (the trainers add ``embeddings``, ``speakers`` and ``trial_rows``: see
        :func:`ssrl_lab.train.results.score_arrays`)."""
        if self.writer:
            atomic_numpy_save(self.path / name, scores=np.asarray(scores, np.float32), labels=np.asarray(labels, np.int8),
                              **{k: np.asarray(v) for k, v in arrays.items()})

    def write_embeddings(self, name: str, emb, utt_id) -> None:
        if self.writer:
            atomic_numpy_save(self.embeddings_dir / f"{name}.npz", emb=np.asarray(emb, np.float32), utt_id=np.asarray(utt_id))


def _slow_torch_save(state, path: Path, seconds: float) -> None:
    """``atomic_torch_save`` with a pause before the rename (the SLOW_CHECKPOINT_ENV test hook)."""
    import io
    import tempfile
    import time

    import torch

    buf = io.BytesIO()
    torch.save(state, buf)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "wb") as fh:
        fh.write(buf.getvalue()[: len(buf.getvalue()) // 2])  # half written: a kill now leaves a torn file
        fh.flush()
        time.sleep(seconds)
        fh.write(buf.getvalue()[len(buf.getvalue()) // 2:])
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_checkpoint(run_dir, name: str = "checkpoint", map_location="cpu") -> dict | None:
    """``<run_dir>/<name>.pt``, or ``<name>.prev.pt`` when the former is missing or torn; None if neither."""
    import torch

    run_dir = Path(run_dir)
    for p in (run_dir / f"{name}.pt", run_dir / f"{name}.prev.pt"):
        if p.exists():
            try:
                return torch.load(p, map_location=map_location, weights_only=False)
            except Exception as e:  # torn or corrupt file: fall back to the previous one
                log.warning("checkpoint %s is unreadable (%s); trying the previous one", p, e)
    return None
