"""Per-utterance SSRL history (``history.npz``) and the quality of the clean/noisy split.

:class:`EpochHistory` accumulates, epoch by epoch, each utterance's label in use, p_clean, teacher
loss and queue agreement, the GMM parameters, and per-epoch aggregates. The file layout follows
docs/ARCHITECTURE.md (``labels (E, M) int32``, ``p_clean (E, M) float16``, ``loss (E, M)
float32``, ``queue_agreement (E, M) float16``, ``true (M,) int64``, ``utt_id (M,)``, ``gmm (E, 3, 2)
float32``, ``clip (E, 2)``, ``epoch (E,)``) with these additions:

* ``index (M,) int64``: which table rows the M columns are. For N <= 200,000 all rows are kept
  (M = N, ``index = arange(N)``); beyond that a fixed, seeded random subset of ``max_utterances``
  rows is kept, because 1 M utterances x 100 epochs would not fit (about 12 B per cell). ``true``
  and ``utt_id`` are aligned with the columns. ``n_total`` holds N.
* ``agg_<name> (E,)``: aggregates over ALL N utterances every epoch, whatever the subset:
  ``n_clusters`` (distinct labels), ``frac_clean`` (p_clean > 0.5), ``mean_p_clean``,
  ``mean_agreement``, ``mean_loss`` (finite losses), ``change_rate`` (vs the previous appended
  epoch; 0 for the first), and where true labels are known ``label_accuracy``,
  ``precision_noisy``, ``recall_noisy``, ``precision_clean``, ``recall_clean``, ``f1_noisy``
  (see :func:`clean_split_quality`).
* ``last_labels (N,) int32``: the newest full label vector, so a loaded history can continue.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ssrl_lab.labels.noise import GMMFit
from ssrl_lab.utils.io import atomic_numpy_save

__all__ = ["EpochHistory", "load_history", "clean_split_quality", "p_clean_reliability", "majority_true_label",
           "FULL_HISTORY_MAX"]

FULL_HISTORY_MAX = 200_000
AGG_KEYS = (
    "n_clusters", "frac_clean", "mean_p_clean", "mean_agreement", "mean_loss", "change_rate",
    "label_accuracy", "precision_noisy", "recall_noisy", "precision_clean", "recall_clean", "f1_noisy",
)


def _np(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _t(x: Any) -> torch.Tensor:
    return x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))


def majority_true_label(pseudo: Any, true: Any) -> torch.Tensor:
    """For every row, the majority true label of its pseudo cluster (``(N,)`` int64).

    Rows with an unknown true label (< 0) are ignored when counting and get -1. Ties between
    true labels inside a cluster go to the smallest true label. One sort of the (cluster, true)
    pairs and two scatter reductions; no (K, T) contingency table.
    """
    pseudo = _t(pseudo).to(torch.int64)
    true = _t(true).to(pseudo.device, torch.int64)
    if pseudo.shape != true.shape or pseudo.dim() != 1:
        raise ValueError(f"majority_true_label: pseudo {tuple(pseudo.shape)} and true {tuple(true.shape)} must be equal 1-D shapes")
    if pseudo.numel() and int(pseudo.min()) < 0:
        raise ValueError(f"majority_true_label: pseudo labels must be >= 0, found {int(pseudo.min())}")
    out = torch.full_like(pseudo, -1)
    known = true >= 0
    if not bool(known.any()):
        return out
    p, t = pseudo[known], true[known]
    n_t = int(t.max()) + 1
    pairs, counts = torch.unique(p * n_t + t, return_counts=True)  # the only sort
    cl, tl = pairs // n_t, pairs % n_t
    n_cl = int(pseudo.max()) + 1
    dev = pseudo.device
    best = torch.zeros(n_cl, dtype=counts.dtype, device=dev).scatter_reduce(0, cl, counts, "amax")
    cand = torch.where(counts == best[cl], tl, torch.full_like(tl, n_t))  # ties -> smallest label
    winner = torch.full((n_cl,), n_t, dtype=torch.int64, device=dev).scatter_reduce(0, cl, cand, "amin")
    has = torch.zeros(n_cl, dtype=torch.bool, device=dev)
    has[cl] = True
    winner = torch.where(has, winner, torch.full_like(winner, -1))
    return winner[pseudo]


def clean_split_quality(p_clean: Any, pseudo: Any, true: Any, threshold: float = 0.5) -> dict[str, float]:
    """How well p_clean separates wrong pseudo labels from right ones.

    A pseudo label is "right" when the row's true speaker is the majority true speaker of its
    pseudo cluster (majority-per-cluster mapping, :func:`majority_true_label`; not Hungarian:
    with K > #speakers several clusters may map to one speaker, which is what over-clustering
    intends). Predicted noisy = ``p_clean <= threshold``. Rows with unknown true labels (< 0)
    are left out. Undefined ratios (empty denominators) are 0.0; the counts say when.

    Returns dict: precision_noisy, recall_noisy, precision_clean, recall_clean, f1_noisy,
    label_accuracy (share of right labels), n (rows scored), n_wrong, n_pred_noisy.
    """
    pseudo_t = _t(pseudo)
    dev = pseudo_t.device
    p, true_t = _t(p_clean).to(dev, torch.float32), _t(true).to(dev)
    if not (p.shape == pseudo_t.shape == true_t.shape) or p.dim() != 1:
        raise ValueError(
            f"clean_split_quality: p_clean {tuple(p.shape)}, pseudo {tuple(pseudo_t.shape)}, "
            f"true {tuple(true_t.shape)} must be equal 1-D shapes"
        )
    maj = majority_true_label(pseudo_t, true_t)
    known = true_t.to(torch.int64) >= 0
    right = (maj == true_t.to(torch.int64)) & known
    wrong = known & ~right
    pred_noisy = (p <= threshold) & known
    pred_clean = (p > threshold) & known

    def ratio(a: torch.Tensor, b: torch.Tensor) -> float:
        nb = int(b.sum())
        return float(int(a.sum()) / nb) if nb else 0.0

    prec_n = ratio(pred_noisy & wrong, pred_noisy)
    rec_n = ratio(pred_noisy & wrong, wrong)
    f1 = 2 * prec_n * rec_n / (prec_n + rec_n) if prec_n + rec_n > 0 else 0.0
    return {
        "precision_noisy": prec_n,
        "recall_noisy": rec_n,
        "precision_clean": ratio(pred_clean & right, pred_clean),
        "recall_clean": ratio(pred_clean & right, right),
        "f1_noisy": f1,
        "label_accuracy": ratio(right, known),
        "n": int(known.sum()),
        "n_wrong": int(wrong.sum()),
        "n_pred_noisy": int(pred_noisy.sum()),
    }


def p_clean_reliability(p_clean: Any, pseudo: Any, true: Any, n_bins: int = 10) -> dict[str, Any]:
    """The calibration of p_clean as a probability that the pseudo label is right (a reliability
    curve): rows binned by p_clean into ``n_bins`` equal-width bins of [0, 1] (1.0 in the last),
    and per bin the row count, the mean p_clean and the share of right labels ("right" as in
    :func:`clean_split_quality`: the cluster's majority true speaker is the row's own). A
    calibrated p_clean has share right = mean p_clean in every bin. Rows with unknown true labels
    are left out; empty bins hold None.

    Returns dict: ``edges`` (n_bins + 1), ``n``, ``mean_p``, ``share_right`` (per bin), ``ece``
    (expected calibration error: the count-weighted mean of |share right - mean p|; None when no
    row is scored)."""
    if n_bins < 1:
        raise ValueError(f"p_clean_reliability: n_bins must be >= 1, got {n_bins}")
    pseudo_t = _t(pseudo)
    p, true_t = _t(p_clean).to(pseudo_t.device, torch.float64), _t(true).to(pseudo_t.device, torch.int64)
    if not (p.shape == pseudo_t.shape == true_t.shape) or p.dim() != 1:
        raise ValueError(f"p_clean_reliability: p_clean {tuple(p.shape)}, pseudo {tuple(pseudo_t.shape)}, "
                         f"true {tuple(true_t.shape)} must be equal 1-D shapes")
    if p.numel() and not bool(((p >= 0) & (p <= 1)).all()):
        raise ValueError("p_clean_reliability: p_clean must lie in [0, 1] (NaN is not a probability)")
    known = true_t >= 0
    right = (majority_true_label(pseudo_t, true_t) == true_t) & known
    p, right = p[known], right[known].to(torch.float64)
    b = (p * n_bins).to(torch.int64).clamp_(0, n_bins - 1)
    n = torch.bincount(b, minlength=n_bins)
    sum_p = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, b.cpu(), p.cpu())
    sum_r = torch.zeros(n_bins, dtype=torch.float64).index_add_(0, b.cpu(), right.cpu())
    n_l = [int(x) for x in n.cpu()]
    mean_p = [float(sp / c) if c else None for sp, c in zip(sum_p.tolist(), n_l)]
    share = [float(sr / c) if c else None for sr, c in zip(sum_r.tolist(), n_l)]
    total = sum(n_l)
    ece = (sum(c * abs(r - m) for c, r, m in zip(n_l, share, mean_p) if c) / total) if total else None
    return {"edges": [i / n_bins for i in range(n_bins + 1)], "n": n_l, "mean_p": mean_p, "share_right": share,
            "ece": ece}


class EpochHistory:
    """Accumulates SSRL's per-utterance history; :meth:`save` writes ``history.npz`` atomically.

    Args:
        n: number of training utterances N.
        true: ``(N,)`` true speaker codes (-1 unknown) or None.
        utt_id: ``(N,)`` utterance ids (strings) or None (row numbers are stored instead).
        utterance_subset: None (all rows when N <= 200,000, else a seeded random subset of
            ``max_utterances``), an int M (random subset of M rows), or explicit row indices.
        max_utterances: subset size used when ``utterance_subset`` is None and N is large.
        seed: seed of the random subset.
    """

    def __init__(
        self,
        n: int,
        true: Any = None,
        utt_id: Sequence[str] | None = None,
        utterance_subset: Any = None,
        max_utterances: int = FULL_HISTORY_MAX,
        seed: int = 0,
    ) -> None:
        if n < 1:
            raise ValueError(f"EpochHistory: n must be >= 1, got {n}")
        self.n = int(n)
        if utterance_subset is None:
            index = np.arange(n) if n <= max_utterances else self._random_subset(n, max_utterances, seed)
        elif isinstance(utterance_subset, (int, np.integer)):
            if not 1 <= utterance_subset:
                raise ValueError(f"EpochHistory: utterance_subset must be >= 1, got {utterance_subset}")
            index = np.arange(n) if utterance_subset >= n else self._random_subset(n, int(utterance_subset), seed)
        else:
            index = np.unique(np.asarray(utterance_subset, dtype=np.int64))
            if index.size == 0 or index[0] < 0 or index[-1] >= n:
                raise ValueError(f"EpochHistory: utterance_subset indices must lie in [0, {n})")
        self.index = index.astype(np.int64)
        self._index_t = torch.from_numpy(self.index)
        if true is not None:
            true_np = _np(true).astype(np.int64)
            if true_np.shape != (n,):
                raise ValueError(f"EpochHistory: true has shape {true_np.shape}, expected ({n},)")
            self.true_full: np.ndarray | None = true_np
        else:
            self.true_full = None
        if utt_id is not None:
            ids = np.asarray(utt_id).astype(str)
            if ids.shape != (n,):
                raise ValueError(f"EpochHistory: utt_id has shape {ids.shape}, expected ({n},)")
        else:
            ids = np.arange(n).astype(str)
        self.utt_id = ids[self.index]
        self.epochs: list[int] = []
        self._labels: list[np.ndarray] = []
        self._p_clean: list[np.ndarray] = []
        self._loss: list[np.ndarray] = []
        self._agreement: list[np.ndarray] = []
        self._gmm: list[np.ndarray] = []
        self._clip: list[np.ndarray] = []
        self.aggregates: dict[str, list[float]] = {k: [] for k in AGG_KEYS}
        self._last_labels: np.ndarray | None = None

    @staticmethod
    def _random_subset(n: int, m: int, seed: int) -> np.ndarray:
        return np.sort(np.random.default_rng(seed).choice(n, size=m, replace=False))

    def __len__(self) -> int:
        return len(self.epochs)

    @property
    def subset_size(self) -> int:
        return int(self.index.shape[0])

    def _cols(self, x: Any, name: str) -> torch.Tensor:
        t = _t(x).detach()
        if t.shape != (self.n,):
            raise ValueError(f"EpochHistory.append: {name} has shape {tuple(t.shape)}, expected ({self.n},)")
        t = t.cpu()
        return t if self.subset_size == self.n else t[self._index_t]

    def append(
        self,
        epoch: int,
        labels: Any,
        p_clean: Any,
        loss: Any,
        agreement: Any,
        gmm_fit: GMMFit | None = None,
    ) -> dict[str, float]:
        """Record one epoch (all arrays ``(N,)``); returns the aggregates over all N."""
        lab_t = _t(labels).detach().cpu().to(torch.int64)
        if lab_t.shape != (self.n,):
            raise ValueError(f"EpochHistory.append: labels have shape {tuple(lab_t.shape)}, expected ({self.n},)")
        p_t = _t(p_clean).detach().cpu().to(torch.float32)
        loss_t = _t(loss).detach().cpu().to(torch.float32)
        agr_t = _t(agreement).detach().cpu().to(torch.float32)
        sub_lab = self._cols(lab_t, "labels")
        self._labels.append(sub_lab.to(torch.int32).numpy())
        self._p_clean.append(self._cols(p_t, "p_clean").numpy().astype(np.float16))
        self._loss.append(self._cols(loss_t, "loss").numpy().astype(np.float32))
        self._agreement.append(self._cols(agr_t, "agreement").numpy().astype(np.float16))
        if gmm_fit is not None:
            self._gmm.append(gmm_fit.as_array())
            self._clip.append(np.array([gmm_fit.clip_low, gmm_fit.clip_high], dtype=np.float32))
        else:
            self._gmm.append(np.full((3, 2), np.nan, dtype=np.float32))
            self._clip.append(np.full(2, np.nan, dtype=np.float32))
        self.epochs.append(int(epoch))

        finite = torch.isfinite(loss_t)
        agg: dict[str, float] = {
            "n_clusters": float((torch.bincount(lab_t) > 0).sum()) if self.n else 0.0,
            "frac_clean": float((p_t > 0.5).float().mean()),
            "mean_p_clean": float(p_t.mean()),
            "mean_agreement": float(agr_t.mean()),
            "mean_loss": float(loss_t[finite].mean()) if bool(finite.any()) else math.nan,
            "change_rate": 0.0 if self._last_labels is None
            else float((torch.from_numpy(self._last_labels).to(torch.int64) != lab_t).float().mean()),
        }
        if self.true_full is not None and bool((torch.from_numpy(self.true_full) >= 0).any()):
            q = clean_split_quality(p_t, lab_t, torch.from_numpy(self.true_full))
            agg.update({k: q[k] for k in ("label_accuracy", "precision_noisy", "recall_noisy",
                                          "precision_clean", "recall_clean", "f1_noisy")})
        for k in AGG_KEYS:
            self.aggregates[k].append(float(agg.get(k, math.nan)))
        self._last_labels = lab_t.to(torch.int32).numpy()
        return agg

    def arrays(self) -> dict[str, np.ndarray]:
        """Everything :meth:`save` writes, as numpy arrays."""
        m = self.subset_size
        e = len(self.epochs)

        def stack(lst, dtype, shape):
            return np.stack(lst).astype(dtype, copy=False) if lst else np.zeros((0, *shape), dtype=dtype)

        out = {
            "labels": stack(self._labels, np.int32, (m,)),
            "p_clean": stack(self._p_clean, np.float16, (m,)),
            "loss": stack(self._loss, np.float32, (m,)),
            "queue_agreement": stack(self._agreement, np.float16, (m,)),
            "true": self.true_full[self.index] if self.true_full is not None else np.full(m, -1, dtype=np.int64),
            "utt_id": self.utt_id,
            "index": self.index,
            "n_total": np.array(self.n, dtype=np.int64),
            "gmm": stack(self._gmm, np.float32, (3, 2)),
            "clip": stack(self._clip, np.float32, (2,)),
            "epoch": np.asarray(self.epochs, dtype=np.int64).reshape(e),
            "last_labels": self._last_labels if self._last_labels is not None else np.zeros(0, dtype=np.int32),
            "true_full": self.true_full if self.true_full is not None else np.zeros(0, dtype=np.int64),
        }
        for k, v in self.aggregates.items():
            out[f"agg_{k}"] = np.asarray(v, dtype=np.float64).reshape(e)
        return out

    def save(self, path: str | Path) -> Path:
        """Write ``history.npz`` atomically (via :func:`ssrl_lab.utils.io.atomic_numpy_save`)."""
        return atomic_numpy_save(path, **self.arrays())

    @classmethod
    def load(cls, path: str | Path) -> "EpochHistory":
        """Rebuild a history from a saved file so that training can resume appending."""
        d = load_history(path)
        n = int(d["n_total"])
        h = cls.__new__(cls)
        h.n = n
        h.index = d["index"].astype(np.int64)
        h._index_t = torch.from_numpy(h.index)
        h.true_full = d["true_full"] if d["true_full"].size == n else None
        h.utt_id = d["utt_id"]
        h.epochs = [int(e) for e in d["epoch"]]
        h._labels = list(d["labels"])
        h._p_clean = list(d["p_clean"])
        h._loss = list(d["loss"])
        h._agreement = list(d["queue_agreement"])
        h._gmm = list(d["gmm"])
        h._clip = list(d["clip"])
        h.aggregates = {k: [float(v) for v in d.get(f"agg_{k}", np.full(len(h.epochs), np.nan))] for k in AGG_KEYS}
        h._last_labels = d["last_labels"] if d["last_labels"].size == n else None
        return h

    def truncate(self, n_epochs: int) -> None:
        """Keep only the first ``n_epochs`` records (resuming from an earlier checkpoint).

        The change rate of the next append is then measured against the kept last epoch only
        when that epoch covers all rows; otherwise the next change rate is 0.
        """
        if n_epochs < len(self.epochs):
            for lst in (self.epochs, self._labels, self._p_clean, self._loss, self._agreement, self._gmm, self._clip):
                del lst[n_epochs:]
            for v in self.aggregates.values():
                del v[n_epochs:]
            full = self.subset_size == self.n and self._labels
            self._last_labels = self._labels[-1].copy() if full else None


def load_history(path: str | Path) -> dict[str, np.ndarray]:
    """Read ``history.npz`` into a dict of numpy arrays (no pickle)."""
    with np.load(Path(path), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}
