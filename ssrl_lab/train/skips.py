"""Every training file a run skips, counted: per metrics line, in total, in ``skipped.tsv``.

One ledger per run (:attr:`RunDir.skips <ssrl_lab.train.run.RunDir>`), fed from two places:

* **up front**: :func:`open_training_corpus` (what the trainers call instead of ``open_corpus``)
  drops the training files that ``python -m ssrl_lab.data.check`` listed as bad, when the run
  has ``skip_bad=True``; without it, a listed file stops the run before it starts;
* **while training**: a dataset with ``skip_bad`` substitutes another utterance for an
  unreadable one and notes it (:meth:`~ssrl_lab.data.datasets._CropBase.take_skips`); the
  training loader (:func:`ssrl_lab.train.loader.make_loader`) carries those notes in each batch,
  from its worker processes to the trainer's, and hands them to the ledger of the running
  training (:func:`current`).

The run directory does the rest, without the trainers taking part: each ``log_metrics`` line
gets ``skipped`` (files skipped since the previous line, all ranks), ``skipped_total`` (distinct
files so far, up-front ones included) and ``skipped_by_reason``; ``results.json`` gets a
``skipped`` block; ``skipped.tsv`` lists every file (path, reason, detail, up front or while
training, where first seen, how often); checkpoints carry the ledger so a resumed run keeps its
counts. When the distinct skipped files exceed ``max_skip_fraction`` of the training table, the
run stops with :class:`SkipLimitExceeded` (a ``ConfigError``: exit status 2 from the CLIs) rather
than training on a silently shrunken corpus: up front, after a metrics line, or (one process)
at the batch that crosses the limit.

With several processes the per-rank notes are gathered in ``log_metrics`` and
``save_checkpoint``, which every rank calls.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..config import ConfigError
from ..utils.io import atomic_write_text
from . import distributed as dist

log = logging.getLogger("ssrl_lab.train.skips")

SKIPPED_FILE = "skipped.tsv"
COLUMNS = ("path", "reason", "detail", "when", "first_seen", "times")
DEFAULT_MAX_FRACTION = 0.01

_CURRENT: "SkipLedger | None" = None


class SkipLimitExceeded(ConfigError):
    """More training files were skipped than ``max_skip_fraction`` allows."""


def current() -> "SkipLedger | None":
    """The ledger of the training running in this process (set by :func:`open_training_corpus`)."""
    return _CURRENT


def record(entries: Iterable[tuple[str, str, str]]) -> None:
    """Note skipped files ``(path, reason, detail)`` in the current ledger (no-op without one)."""
    if _CURRENT is not None:
        _CURRENT.add(entries)


class SkipLedger:
    """Distinct skipped files of one run and the skips since the last metrics line."""

    def __init__(self, max_fraction: float = DEFAULT_MAX_FRACTION) -> None:
        self.max_fraction = float(max_fraction)
        self.n_total: int | None = None  # training files before anything was dropped; None = not training
        self.files: dict[str, dict] = {}
        self.pending: list[tuple[str, str, str]] = []  # this rank, not yet gathered
        self.unlogged: list[tuple[str, str, str]] = []  # all ranks, since the last metrics line
        self.list_path: str | None = None
        self.run_dir: Path | None = None  # where skipped.tsv goes when the limit stops the run

    @property
    def active(self) -> bool:
        return self.n_total is not None

    # -- feeding -----------------------------------------------------------------------------
    def begin(self, n_total: int, upfront: Iterable[Mapping[str, Any]] = (), list_path=None, run_dir=None) -> None:
        """Start counting for a training table of ``n_total`` files, ``upfront`` ones already dropped."""
        self.n_total = int(n_total)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.list_path = str(list_path) if list_path else None
        for e in upfront:
            self.files.setdefault(str(e["path"]), {"reason": str(e["reason"]), "detail": str(e.get("detail") or ""),
                                                   "when": "upfront", "first_seen": "data.check", "times": 0})

    def add(self, entries: Iterable[tuple[str, str, str]]) -> None:
        """Skips seen by this rank; with one process, stops at once when the limit is crossed."""
        new = [(str(p), str(r), str(d)) for p, r, d in entries]
        if not new:
            return
        self.pending.extend(new)
        if dist.world_size() == 1:
            self.gather()
            self.check_limit()

    def gather(self) -> None:
        """Merge every rank's pending skips (collective when distributed)."""
        if not self.active:
            return
        mine, self.pending = self.pending, []
        every = [e for part in dist.all_gather_object(mine) for e in part] if dist.world_size() > 1 else mine
        for path, reason, detail in every:
            f = self.files.get(path)
            if f is None:
                self.files[path] = {"reason": reason, "detail": detail, "when": "training", "first_seen": None,
                                    "times": 1}
            else:
                f["times"] += 1
        self.unlogged.extend(every)

    # -- reading -----------------------------------------------------------------------------
    @property
    def n_skipped(self) -> int:
        return len(self.files)

    @property
    def fraction(self) -> float:
        return self.n_skipped / self.n_total if self.n_total else 0.0

    def by_reason(self, entries=None) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in ([f["reason"] for f in self.files.values()] if entries is None else [e[1] for e in entries]):
            out[r] = out.get(r, 0) + 1
        return dict(sorted(out.items()))

    def annotate(self, record: Mapping[str, Any]) -> dict:
        """``record`` plus the skips since the previous line (gathers first)."""
        rec = dict(record)
        if not self.active:
            return rec
        self.gather()
        where = " ".join(str(rec[k]) for k in ("stage", "round", "epoch") if rec.get(k) is not None) or "training"
        for f in self.files.values():
            if f["first_seen"] is None:
                f["first_seen"] = where
        rec["skipped"] = len(self.unlogged)
        rec["skipped_total"] = self.n_skipped
        if self.unlogged:
            rec["skipped_by_reason"] = self.by_reason(self.unlogged)
        self.unlogged = []
        return rec

    def summary(self) -> dict:
        """The ``skipped`` block of results.json."""
        up = sum(1 for f in self.files.values() if f["when"] == "upfront")
        return {"files": self.n_skipped, "upfront": up, "during_training": self.n_skipped - up,
                "events": sum(f["times"] for f in self.files.values()), "of": self.n_total,
                "fraction": self.fraction, "by_reason": self.by_reason(), "max_skip_fraction": self.max_fraction,
                "list": SKIPPED_FILE, "bad_list": self.list_path}

    def check_limit(self) -> None:
        """Raise :class:`SkipLimitExceeded` (after writing skipped.tsv) when over the limit."""
        if self.active and self.n_total and self.fraction > self.max_fraction:
            if self.run_dir is not None:
                self.write_tsv(self.run_dir)
            reasons = ", ".join(f"{k} {v}" for k, v in self.by_reason().items())
            raise SkipLimitExceeded(
                f"{self.n_skipped} of {self.n_total} training files ({100 * self.fraction:.2f} %) were skipped "
                f"({reasons}), more than max_skip_fraction={self.max_fraction:g} allows; the run stops rather than "
                f"train on a shrunken corpus. The files are listed in {SKIPPED_FILE} in the run directory: fix or "
                "remove them (python -m ssrl_lab.data.check --corpus DIR finds them all at once), or raise "
                "max_skip_fraction to train without them.")

    def to_tsv(self) -> str:
        def cell(v) -> str:
            return "" if v is None else str(v).replace("\t", " ").replace("\n", " ")

        lines = ["\t".join(COLUMNS)]
        for p, f in sorted(self.files.items(), key=lambda kv: (kv[1]["when"] != "upfront", kv[0])):
            seen = f["first_seen"] or "in progress"  # met after the last metrics line
            lines.append("\t".join(cell(x) for x in (p, f["reason"], f["detail"], f["when"], seen, f["times"])))
        return "\n".join(lines) + "\n"

    def write_tsv(self, run_dir) -> Path | None:
        if not self.active or not dist.is_main():
            return None
        return atomic_write_text(Path(run_dir) / SKIPPED_FILE, self.to_tsv())

    # -- checkpoints -------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"files": {k: dict(v) for k, v in self.files.items()}, "unlogged": list(self.unlogged),
                "n_total": self.n_total}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Counts of a resumed run (up-front entries of this start are kept as well)."""
        files = {k: dict(v) for k, v in state.get("files", {}).items()}
        for k, v in self.files.items():
            files.setdefault(k, v)
        self.files = files
        self.unlogged = [tuple(e) for e in state.get("unlogged", [])]
        self.pending = []


def open_training_corpus(cfg, run):
    """``open_corpus(cfg.corpus)`` for training: the files ``ssrl_lab.data.check`` listed as bad
    are dropped from ``corpus.train`` (with ``cfg.skip_bad``) and counted in ``run.skips``, which
    becomes this process's current ledger; without ``skip_bad`` a listed training file is refused
    here, before anything trains. Raises :class:`SkipLimitExceeded` when the listed files alone
    exceed ``max_skip_fraction``."""
    global _CURRENT
    from ..data.check import listed_bad_training_files
    from ..data.corpus import open_corpus

    corpus = open_corpus(cfg.corpus)
    rows, entries, list_path = listed_bad_training_files(corpus)
    n_total = len(corpus.train)
    ledger = run.skips
    if len(rows) and not cfg.skip_bad:
        head = "; ".join(f"{e['path']} ({e['reason']})" for e in entries[:3])
        raise ConfigError(f"{len(rows)} training file(s) are listed as unusable in {list_path} by ssrl_lab.data.check, "
                          f"e.g. {head}{' ...' if len(rows) > 3 else ''}: pass skip_bad=True to train without them, "
                          "or fix them and run the check again")
    if len(rows):
        import numpy as np

        keep = np.ones(n_total, dtype=bool)
        keep[rows] = False
        corpus.train = corpus.train.subset(np.flatnonzero(keep))
        log.info("skipping %d training file(s) listed in %s up front (%d left)", len(rows), list_path, len(corpus.train))
    ledger.begin(n_total, entries, list_path, run.path)
    _CURRENT = ledger
    ledger.write_tsv(run.path)
    ledger.check_limit()
    return corpus
