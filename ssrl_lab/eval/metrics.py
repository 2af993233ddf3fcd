"""Speaker-verification metrics: EER, normalised minDCF and the DET curve.

Everything is computed from one sort of the scores. The operating points are the thresholds
``accept if score >= t`` for every distinct score ``t`` plus ``t = +inf``; equal scores form one
group, so a tie never splits (no metric depends on the order of tied trials).

At point ``i`` (thresholds ``u_0 < u_1 < ... < u_{U-1}`` the distinct scores, ``u_U = +inf``):

* ``FNR_i`` = share of target trials with ``score < u_i`` (missed),
* ``FPR_i`` = share of non-target trials with ``score >= u_i`` (falsely accepted).

``FNR`` rises from 0 to 1 and ``FPR`` falls from 1 to 0. The EER is read at the crossing of the
two, interpolated linearly between the two neighbouring operating points.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["Curve", "error_curve", "eer", "min_dcf", "det_curve", "verification_metrics"]


class Curve(NamedTuple):
    """Operating points of a detector (see the module docstring)."""

    fnr: np.ndarray  # (U + 1,) float64, non-decreasing, 0 .. 1
    fpr: np.ndarray  # (U + 1,) float64, non-increasing, 1 .. 0
    thresholds: np.ndarray  # (U + 1,) float64: accept if score >= threshold; last is +inf
    n_target: int
    n_nontarget: int


def _check(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores)
    y = np.asarray(labels)
    if s.ndim != 1 or y.ndim != 1:
        raise ValueError(f"scores and labels must be 1-D, got shapes {s.shape} and {y.shape}")
    if s.shape != y.shape:
        raise ValueError(f"scores ({s.shape[0]}) and labels ({y.shape[0]}) differ in length")
    if s.size == 0:
        raise ValueError("no trials: scores and labels are empty")
    if not np.issubdtype(s.dtype, np.number) or np.iscomplexobj(s):
        raise ValueError(f"scores must be real numbers, got dtype {s.dtype}")
    bad = ~np.isfinite(s)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{int(bad.sum())} score(s) are NaN or infinite (first at trial {i}: {s[i]})")
    if y.dtype != bool:
        if not np.isin(y, (0, 1)).all():
            vals = np.unique(y)[:5]
            raise ValueError(f"labels must be 0/1 or boolean, got values such as {vals.tolist()}")
        y = y.astype(bool)
    n_t = int(y.sum())
    if n_t == 0 or n_t == y.size:
        which = "non-target" if n_t == y.size else "target"
        raise ValueError(f"labels hold only one class: no {which} trials among {y.size}")
    return s.astype(np.float64, copy=False), y


def error_curve(scores, labels) -> Curve:
    """FNR and FPR at every distinct threshold (one sort; ties grouped)."""
    s, y = _check(scores, labels)
    order = np.argsort(s, kind="stable")
    s = s[order]
    y = y[order]
    n_t = int(y.sum())
    n_n = y.size - n_t
    tar_cum = np.cumsum(y, dtype=np.int64)  # targets with score <= s[i]
    non_cum = np.arange(1, y.size + 1, dtype=np.int64) - tar_cum
    # the last index of each group of equal scores
    ends = np.flatnonzero(np.r_[s[1:] != s[:-1], True])
    fnr = np.concatenate(([0.0], tar_cum[ends] / n_t))
    fpr = np.concatenate(([1.0], (n_n - non_cum[ends]) / n_n))
    thresholds = np.concatenate((s[ends], [np.inf]))
    return Curve(fnr, fpr, thresholds, n_t, n_n)


def _eer_from_curve(c: Curve) -> float:
    d = c.fnr - c.fpr  # -1 at the first point, +1 at the last, non-decreasing
    i = int(np.argmax(d >= 0))  # first point at or past the crossing (i >= 1)
    if d[i] == 0:
        return float(c.fnr[i])
    d0, d1 = d[i - 1], d[i]
    t = d0 / (d0 - d1)  # in (0, 1)
    fnr = c.fnr[i - 1] + t * (c.fnr[i] - c.fnr[i - 1])
    fpr = c.fpr[i - 1] + t * (c.fpr[i] - c.fpr[i - 1])
    return float(0.5 * (fnr + fpr))  # equal up to rounding


def _min_dcf_from_curve(c: Curve, p_target: float, c_miss: float, c_fa: float) -> float:
    if not 0.0 < p_target < 1.0:
        raise ValueError(f"p_target must lie in (0, 1), got {p_target}")
    if c_miss <= 0 or c_fa <= 0:
        raise ValueError(f"c_miss and c_fa must be positive, got {c_miss} and {c_fa}")
    dcf = c_miss * p_target * c.fnr + c_fa * (1.0 - p_target) * c.fpr
    return float(dcf.min() / min(c_miss * p_target, c_fa * (1.0 - p_target)))


def eer(scores, labels) -> float:
    """Equal error rate as a fraction (0.05 = 5 %), interpolated at the FNR = FPR crossing.

    ``labels``: 1/True for target trials. Raises ValueError on empty input, a single class or
    non-finite scores.
    """
    return _eer_from_curve(error_curve(scores, labels))


def min_dcf(scores, labels, p_target: float, c_miss: float = 1.0, c_fa: float = 1.0) -> float:
    """Normalised minimum detection cost over all thresholds.

    ``min_t (c_miss p FNR(t) + c_fa (1-p) FPR(t)) / min(c_miss p, c_fa (1-p))``; lies in [0, 1].
    """
    return _min_dcf_from_curve(error_curve(scores, labels), p_target, c_miss, c_fa)


def det_curve(scores, labels, max_points: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fpr, fnr, thresholds)`` at every distinct threshold (accept if ``score >= threshold``).

    ``max_points`` subsamples evenly (both ends kept) for plotting.
    """
    c = error_curve(scores, labels)
    fpr, fnr, thr = c.fpr, c.fnr, c.thresholds
    if max_points is not None:
        if max_points < 2:
            raise ValueError(f"max_points must be at least 2, got {max_points}")
        if fpr.size > max_points:
            idx = np.unique(np.linspace(0, fpr.size - 1, max_points).round().astype(np.int64))
            fpr, fnr, thr = fpr[idx], fnr[idx], thr[idx]
    return fpr, fnr, thr


def verification_metrics(scores, labels, p_targets=(0.01, 0.05)) -> dict:
    """``{"eer": percent, "mindcf_<p>": ..., "n_trials", "n_target"}`` from one sort."""
    c = error_curve(scores, labels)
    out = {"eer": 100.0 * _eer_from_curve(c)}
    for p in p_targets:
        out[f"mindcf_{p:g}"] = _min_dcf_from_curve(c, p, 1.0, 1.0)
    out["n_trials"] = c.n_target + c.n_nontarget
    out["n_target"] = c.n_target
    return out
