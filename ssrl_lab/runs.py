"""Reading run directories (what the trainers write; see docs/ARCHITECTURE.md).

A run directory holds ``config.json``, ``metrics.jsonl``, ``results.json``, ``scores.npz``,
``embeddings/*.npz`` and, for SSRL, ``history.npz``. :class:`Run` reads them lazily;
:func:`list_runs` finds runs under a folder (``outputs/`` by default); :func:`series` pulls one
metric over epochs out of ``metrics.jsonl`` (dotted keys reach into nested dicts: ``eval.eer``).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from .utils.io import read_jsonl

HISTORY_KEYS = ("labels", "p_clean", "loss", "queue_agreement", "true", "utt_id", "gmm", "clip")


class RunError(FileNotFoundError):
    """A run directory, or a file expected in it, is missing or unreadable."""


def get(record: dict, key: str, default: Any = None) -> Any:
    """``get({"eval": {"eer": 5}}, "eval.eer") -> 5``; ``default`` when any part is missing."""
    cur: Any = record
    for part in key.split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, dict) and key in cur:  # a flat key that itself contains dots
            return cur[key]
        else:
            return default
    return cur


def series(metrics: Iterable[dict], key: str, stage: str | None = None, x: str = "epoch") -> tuple[np.ndarray, np.ndarray]:
    """``(x values, y values)`` of records that have a finite numeric ``key`` (and ``stage``).

    ``x`` names the abscissa key (``epoch``; ``round`` for the iterative baseline); records
    lacking it use their position in the file.
    """
    xs, ys = [], []
    for i, rec in enumerate(metrics):
        if stage is not None and rec.get("stage") != stage:
            continue
        v = get(rec, key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            continue
        xv = get(rec, x)
        xs.append(float(xv) if isinstance(xv, (int, float)) else float(i))
        ys.append(float(v))
    return np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64)


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise RunError(f"{path}: unreadable ({e})") from None


@dataclass
class Run:
    """One run directory; every accessor reads its file on demand (metrics are re-read each time)."""

    path: Path
    _cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path)

    # -- identity -----------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.path.name

    @property
    def system(self) -> str:
        """``results["system"]`` when finished, else the config's ``system``/``method``, else the folder name."""
        res = self.results
        if res and res.get("system"):
            return str(res["system"])
        cfg = self.config
        for k in ("system", "method"):
            if cfg.get(k):
                return str(cfg[k])
        return self.name

    @property
    def finished(self) -> bool:
        return (self.path / "results.json").exists()

    # -- files --------------------------------------------------------------------------
    @property
    def config(self) -> dict:
        p = self.path / "config.json"
        if not p.exists():
            return {}
        try:
            return json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise RunError(f"{p}: not valid JSON ({e})") from None

    @property
    def metrics(self) -> list[dict]:
        return read_jsonl(self.path / "metrics.jsonl")

    @property
    def results(self) -> dict | None:
        p = self.path / "results.json"
        if not p.exists():
            return None
        try:
            return json.loads(p.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise RunError(f"{p}: not valid JSON ({e})") from None

    def scores(self, name: str = "scores.npz") -> tuple[np.ndarray, np.ndarray] | None:
        """Trial ``(scores, labels)`` of the final evaluation, or None before it exists."""
        p = self.path / name
        if not p.exists():
            return None
        z = _load_npz(p)
        if "scores" not in z or "labels" not in z:
            raise RunError(f"{p}: expected arrays 'scores' and 'labels', found {sorted(z)}")
        return z["scores"].astype(np.float64), z["labels"].astype(np.int8)

    def history(self) -> dict[str, np.ndarray] | None:
        """SSRL's per-utterance history (``history.npz``), or None when the run has none."""
        p = self.path / "history.npz"
        if not p.exists():
            return None
        mtime = p.stat().st_mtime_ns
        cached = self._cache.get("history")
        if cached is None or cached[0] != mtime:
            h = _load_npz(p)
            missing = [k for k in ("labels", "utt_id") if k not in h]
            if missing:
                raise RunError(f"{p}: missing arrays {missing}; found {sorted(h)}")
            self._cache["history"] = (mtime, h)
        return self._cache["history"][1]

    def embedding_names(self) -> list[str]:
        d = self.path / "embeddings"
        return sorted(p.stem for p in d.glob("*.npz")) if d.is_dir() else []

    def embeddings(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(emb (N, D) float32, utt_id (N,))`` from ``embeddings/<name>.npz``."""
        p = self.path / "embeddings" / f"{name}.npz"
        if not p.exists():
            raise RunError(f"{p} does not exist; available: {', '.join(self.embedding_names()) or 'none'}")
        z = _load_npz(p)
        if "emb" not in z or "utt_id" not in z:
            raise RunError(f"{p}: expected arrays 'emb' and 'utt_id', found {sorted(z)}")
        return z["emb"].astype(np.float32), z["utt_id"].astype(str)

    def snapshots(self, model: str = "teacher") -> dict[int, Path]:
        """``{epoch: path}`` of the teacher snapshots (``embeddings/snapshots/``; see
        :mod:`ssrl_lab.train.snapshots`), sorted by epoch."""
        from .train.snapshots import list_snapshots

        return list_snapshots(self.path, model)

    def history_epochs(self) -> np.ndarray:
        """Epoch number of each ``history.npz`` row (empty when the run has no history)."""
        h = self.history()
        if h is None:
            return np.zeros(0, dtype=np.int64)
        n = np.asarray(h["labels"]).shape[0]
        if "epoch" in h and np.asarray(h["epoch"]).shape == (n,):
            return np.asarray(h["epoch"], dtype=np.int64)
        return np.arange(n, dtype=np.int64)

    def history_aligned(self, utt_id, epoch: int | None = None) -> dict[str, Any] | None:
        """The history of ``epoch`` aligned with ``utt_id`` (an embedding file's rows), or None
        when the run has no history.

        The row used is the last history epoch <= ``epoch`` (the first one when none is; the
        last one when ``epoch`` is None); ``"epoch"`` says which. Arrays, one value per entry of
        ``utt_id``: ``labels``, ``true`` (int64, -1 where the utterance is not in the history),
        ``p_clean``, ``queue_agreement``, ``loss`` (float64, NaN there), ``column`` (the
        history column, -1 there).
        """
        h = self.history()
        if h is None:
            return None
        ep = self.history_epochs()
        if ep.size == 0:
            return None
        if epoch is None:
            row = ep.size - 1
        else:
            at_or_before = np.flatnonzero(ep <= int(epoch))
            row = int(at_or_before[-1]) if at_or_before.size else 0
        utt = np.asarray(utt_id).astype(str)
        pos = {u: i for i, u in enumerate(np.asarray(h["utt_id"]).astype(str))}
        col = np.array([pos.get(u, -1) for u in utt], dtype=np.int64)
        ok = col >= 0
        out: dict[str, Any] = {"epoch": int(ep[row]), "row": row, "column": col}
        for key, fill, dtype in (("labels", -1, np.int64), ("true", -1, np.int64), ("p_clean", np.nan, np.float64),
                                 ("queue_agreement", np.nan, np.float64), ("loss", np.nan, np.float64)):
            vals = np.full(utt.shape[0], fill, dtype=dtype)
            if key in h:
                src = np.asarray(h[key])
                src = src if src.ndim == 1 else src[row]
                vals[ok] = src[col[ok]].astype(dtype)
            out[key] = vals
        return out

    def series(self, key: str, stage: str | None = None, x: str = "epoch") -> tuple[np.ndarray, np.ndarray]:
        return series(self.metrics, key, stage=stage, x=x)

    def plots(self) -> list[Path]:
        d = self.path / "plots"
        return sorted(d.glob("*.html")) if d.is_dir() else []


def is_run_dir(path) -> bool:
    p = Path(path)
    return p.is_dir() and ((p / "config.json").exists() or (p / "results.json").exists())


def open_run(path) -> Run:
    """A :class:`Run` for ``path``; raises :class:`RunError` when it is not a run directory."""
    p = Path(path)
    if not p.is_dir():
        raise RunError(f"run directory {p} does not exist")
    if not is_run_dir(p):
        raise RunError(f"{p} is not a run directory (no config.json or results.json)")
    return Run(p)


def list_runs(root="outputs", max_depth: int = 4) -> list[Run]:
    """Every run directory under ``root`` (itself included), sorted by path, at most ``max_depth`` deep."""
    root = Path(root)
    found: list[Run] = []

    def walk(d: Path, depth: int) -> None:
        if is_run_dir(d):
            found.append(Run(d))
        if depth >= max_depth:
            return
        try:
            children = sorted(c for c in d.iterdir() if c.is_dir() and not c.name.startswith("."))
        except OSError:
            return
        for c in children:
            if c.name in ("plots", "embeddings"):
                continue
            walk(c, depth + 1)

    if root.is_dir():
        walk(root, 0)
    return found
