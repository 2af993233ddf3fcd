"""Confidence intervals for EER and minDCF: a bootstrap that resamples test *speakers*.

Trials share speakers (every trial of a speaker moves with that speaker's voice), so resampling
trials as if independent gives intervals that are too narrow. Each replicate draws the test
speakers with replacement (``S`` draws among ``S`` speakers, counts ``c``) and weights every
trial by how many times its speakers were drawn:

* a target trial of speaker ``s`` counts ``c[s]`` times;
* a non-target trial between speakers ``a`` and ``b`` counts ``c[a] * c[b]`` times.

The replicate's EER and minDCF are then the weighted versions of :mod:`ssrl_lab.eval.metrics`
(same operating points, same tie grouping, same interpolation: with all weights 1 they equal
:func:`~ssrl_lab.eval.metrics.verification_metrics` exactly). The interval is the percentile
interval of the replicates.

How it stays fast: each score set is sorted once; a replicate is then two cumulative sums of
its weight vector in that order, evaluated in chunks of replicates as one (R, N) array. On this
machine (2 cores) 1,000 replicates take about 1 s on the demo's 8,000-trial list and a few
seconds on its 319,600 all-pairs scores (``bench/bootstrap.py`` measures both).

* :func:`bootstrap_ci`: the interval of one system's metrics;
* :func:`paired_difference`: two systems scored on the same trials, the same replicates for
  both: the interval of their difference;
* :func:`seed_mean_ci`: the interval of a system's mean over seeds (speakers and seeds resampled);
* :func:`compare`: a claim across seeds ("A better than B"): every replicate resamples the
  speakers (shared by all runs) *and* each system's seeds, and the claim reads ``better``,
  ``worse`` or ``not separable`` from the interval of the mean difference.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

__all__ = ["CI_REPS", "CI_LEVEL", "METRICS", "TrialSpeakers", "replicate_metrics", "bootstrap_ci",
           "paired_difference", "compare", "seed_mean_ci", "outcome"]

#: replicates and level of every interval the workbench records
CI_REPS = 1000
CI_LEVEL = 0.95
#: the metrics of a replicate, in this order (EER in percent, minDCF normalised)
METRICS = ("eer", "mindcf_0.01", "mindcf_0.05")
_P_TARGETS = (0.01, 0.05)


@dataclass(frozen=True)
class TrialSpeakers:
    """The speakers of each trial: ``a`` (enrolment side) and ``b`` (test side), int codes
    ``0 .. n_speakers - 1``, the 0/1 ``labels``, and each trial's speaker ``group`` (its speaker
    for a target trial, its unordered pair of speakers for a non-target one): ``group_a``,
    ``group_b`` and ``group_is_target`` describe the groups."""

    a: np.ndarray
    b: np.ndarray
    labels: np.ndarray
    n_speakers: int
    group: np.ndarray
    group_a: np.ndarray
    group_b: np.ndarray

    @property
    def group_is_target(self) -> np.ndarray:
        return self.group_a == self.group_b

    @property
    def n_groups(self) -> int:
        return int(self.group_a.size)

    @classmethod
    def from_codes(cls, spk_a, spk_b, labels) -> "TrialSpeakers":
        a, b = np.asarray(spk_a, np.int64), np.asarray(spk_b, np.int64)
        y = np.asarray(labels).astype(bool)
        if not (a.shape == b.shape == y.shape) or a.ndim != 1:
            raise ValueError(f"speaker codes and labels must be 1-D of one length, got {a.shape}, {b.shape}, {y.shape}")
        if a.size == 0:
            raise ValueError("no trials to bootstrap")
        if (a < 0).any() or (b < 0).any():
            raise ValueError("every trial needs known speakers (codes >= 0) for a speaker bootstrap")
        if (y & (a != b)).any() or (~y & (a == b)).any():
            raise ValueError("labels disagree with the speakers: a target trial must have one speaker on both sides "
                             "and a non-target trial two")
        uniq, inv = np.unique(np.concatenate([a, b]), return_inverse=True)
        S = int(uniq.size)
        a, b = inv[: a.size], inv[a.size:]
        keys, group = np.unique(np.minimum(a, b) * S + np.maximum(a, b), return_inverse=True)
        return cls(a, b, y, S, group.astype(np.int64), keys // S, keys % S)

    @classmethod
    def from_rows(cls, row_a, row_b, speakers, labels) -> "TrialSpeakers":
        """From the two table rows of each trial and the table's speaker codes."""
        spk = np.asarray(speakers, np.int64)
        return cls.from_codes(spk[np.asarray(row_a, np.int64)], spk[np.asarray(row_b, np.int64)], labels)

    def __len__(self) -> int:
        return int(self.a.size)


class _Dense:
    """The reference replicate metrics: every operating point of one score set for every weight
    row (O(R N) memory and time). :class:`_Blocked` gives the same numbers faster; tests hold the
    two equal."""

    def __init__(self, scores, trials: "TrialSpeakers"):
        s = _checked_scores(scores, trials)
        self.order = np.argsort(s, kind="stable")
        ss = s[self.order]
        self.target = trials.labels[self.order]
        self.ends = np.flatnonzero(np.r_[ss[1:] != ss[:-1], True])

    def metrics(self, w: np.ndarray) -> np.ndarray:
        """(R, 3) EER % and minDCFs for the weight rows ``w`` (R, N) in the original trial order."""
        w = w[:, self.order]
        tar = np.cumsum(np.where(self.target, w, 0.0), axis=1)[:, self.ends]
        non = np.cumsum(np.where(self.target, 0.0, w), axis=1)[:, self.ends]
        n_t, n_n = tar[:, -1:], non[:, -1:]
        out = np.full((w.shape[0], len(METRICS)), np.nan)
        ok = (n_t[:, 0] > 0) & (n_n[:, 0] > 0)
        if not ok.any():
            return out
        tar, non, n_t, n_n = tar[ok], non[ok], n_t[ok], n_n[ok]
        fnr = np.concatenate([np.zeros_like(n_t), tar / n_t], axis=1)
        fpr = np.concatenate([np.ones_like(n_n), (n_n - non) / n_n], axis=1)
        i = np.argmax(fnr - fpr >= 0, axis=1)
        r = np.arange(i.size)
        out[ok, 0] = _eer_between(fnr[r, i - 1], fpr[r, i - 1], fnr[r, i], fpr[r, i])
        for k, pt in enumerate(_P_TARGETS):
            out[ok, 1 + k] = (pt * fnr + (1 - pt) * fpr).min(axis=1) / min(pt, 1 - pt)
        return out


def _checked_scores(scores, trials: "TrialSpeakers") -> np.ndarray:
    s = np.asarray(scores, np.float64)
    if s.shape != trials.labels.shape:
        raise ValueError(f"{s.size} scores for {trials.labels.size} trials")
    if not np.isfinite(s).all():
        raise ValueError("scores hold NaN or infinite values")
    return s


def _eer_between(fnr0, fpr0, fnr1, fpr1) -> np.ndarray:
    """EER % interpolated between the point before the crossing (d < 0) and the first at or past
    it (d >= 0), as :func:`ssrl_lab.eval.metrics.eer` does."""
    d0, d1 = fnr0 - fpr0, fnr1 - fpr1
    t = np.where(d1 == 0, 1.0, d0 / np.where(d0 == d1, -1.0, d0 - d1))
    eer = 0.5 * (fnr0 + t * (fnr1 - fnr0) + fpr0 + t * (fpr1 - fpr0))
    return 100.0 * np.where(d1 == 0, fnr1, eer)


class _Blocked:
    """Replicate metrics of one score set from speaker-group weights, exact but without touching
    every trial per replicate.

    A trial's weight depends only on its speaker group (its speaker for a target trial, its pair
    of speakers for a non-target one). The sorted trials are cut into blocks of about sqrt(N)
    operating points; the cumulative counts of each group at the block boundaries make the
    weighted FNR / FPR at every boundary one matrix product per chunk of replicates. Only the
    block holding the EER crossing, and the blocks whose lower bound on the DCF beats the best
    boundary, are then evaluated point by point."""

    def __init__(self, scores, trials: "TrialSpeakers"):
        s = _checked_scores(scores, trials)
        order = np.argsort(s, kind="stable")
        ss = s[order]
        self.target = trials.labels[order]
        self.group = trials.group[order]
        n = ss.size
        ends = np.flatnonzero(np.r_[ss[1:] != ss[:-1], True])
        self.is_end = np.zeros(n, bool)
        self.is_end[ends] = True
        step = max(1, int(np.sqrt(ends.size)))
        bounds = ends[step - 1::step]
        if bounds[-1] != n - 1:
            bounds = np.r_[bounds, n - 1]
        self.start = np.r_[0, bounds[:-1] + 1]  # block j holds the trials start[j] .. bounds[j]
        self.stop = bounds + 1
        self.width = int((self.stop - self.start).max())
        block = np.repeat(np.arange(bounds.size), self.stop - self.start)
        G, B = trials.n_groups, bounds.size
        hist = np.bincount(self.group * B + block, minlength=G * B).reshape(G, B)
        cum = np.concatenate([np.zeros((G, 1)), np.cumsum(hist, axis=1)], axis=1)  # (G, B + 1) at boundaries
        self.cum_t = cum[trials.group_is_target]  # (S_t, B + 1)
        self.cum_n = cum[~trials.group_is_target]
        self.group_is_target = trials.group_is_target
        # positions of a block's trials, padded to the widest block (the pad repeats the last trial, masked)
        self.pos = np.minimum(self.start[:, None] + np.arange(self.width), n - 1)  # (B, width)
        self.inside = (self.start[:, None] + np.arange(self.width)) < self.stop[:, None]

    def _block_points(self, wg: np.ndarray, rows: np.ndarray, blocks: np.ndarray, tar0, non0):
        """Cumulative target / non-target weights at every trial of block ``blocks[k]`` for the
        group-weight row ``wg[rows[k]]``, starting from the boundary values ``tar0`` / ``non0``."""
        pos = self.pos[blocks]
        w = wg[rows[:, None], self.group[pos]] * self.inside[blocks]
        t = self.target[pos]
        tar = tar0[:, None] + np.cumsum(np.where(t, w, 0.0), axis=1)
        non = non0[:, None] + np.cumsum(np.where(t, 0.0, w), axis=1)
        return tar, non, self.is_end[pos] & self.inside[blocks]

    def metrics(self, wg: np.ndarray) -> np.ndarray:
        """(R, 3) EER % and minDCFs for the group-weight rows ``wg`` (R, G)."""
        T = wg[:, self.group_is_target] @ self.cum_t  # (R, B + 1) cumulative target weight at boundaries
        N = wg[:, ~self.group_is_target] @ self.cum_n
        out = np.full((wg.shape[0], len(METRICS)), np.nan)
        n_t, n_n = T[:, -1], N[:, -1]
        ok = np.flatnonzero((n_t > 0) & (n_n > 0))
        if ok.size == 0:
            return out
        T, N, n_t, n_n = T[ok], N[ok], n_t[ok], n_n[ok]
        fnr_b, fpr_b = T / n_t[:, None], 1.0 - N / n_n[:, None]
        # EER: the block whose end is the first boundary at or past the crossing
        j = np.argmax(fnr_b - fpr_b >= 0, axis=1)  # >= 1 (boundary 0 is the point before every trial)
        r = np.arange(ok.size)
        tar, non, valid = self._block_points(wg, ok, j - 1, T[r, j - 1], N[r, j - 1])
        fnr, fpr = tar / n_t[:, None], 1.0 - non / n_n[:, None]
        hit = valid & (fnr - fpr >= 0)
        i = np.argmax(hit, axis=1)  # the block's last trial is an end at or past the crossing: always found
        last = np.where(valid, np.arange(self.width), -1)
        prev = np.maximum.accumulate(last, axis=1)
        p = np.where(i > 0, prev[r, np.maximum(i - 1, 0)], -1)  # the point before: an end inside, or the boundary
        fnr0 = np.where(p >= 0, fnr[r, np.maximum(p, 0)], fnr_b[r, j - 1])
        fpr0 = np.where(p >= 0, fpr[r, np.maximum(p, 0)], fpr_b[r, j - 1])
        out[ok, 0] = _eer_between(fnr0, fpr0, fnr[r, i], fpr[r, i])
        # minDCF: boundaries, then the blocks whose lower bound p * FNR(start) + (1 - p) * FPR(end) beats them
        for k, pt in enumerate(_P_TARGETS):
            dcf_b = pt * fnr_b + (1 - pt) * fpr_b
            best = dcf_b.min(axis=1)
            lower = pt * fnr_b[:, :-1] + (1 - pt) * fpr_b[:, 1:]
            rr, bb = np.nonzero(lower < best[:, None])
            for lo in range(0, rr.size, 4096):
                rs, bs = rr[lo:lo + 4096], bb[lo:lo + 4096]
                tar, non, valid = self._block_points(wg, ok[rs], bs, T[rs, bs], N[rs, bs])
                dcf = pt * tar / n_t[rs, None] + (1 - pt) * (1.0 - non / n_n[rs, None])
                np.minimum.at(best, rs, np.where(valid, dcf, np.inf).min(axis=1))
            out[ok, 1 + k] = best / min(pt, 1 - pt)
        return out


def _group_weights(counts: np.ndarray, trials: "TrialSpeakers") -> np.ndarray:
    """(R, G) weight of each speaker group: c[s] for a speaker's targets, c[a] c[b] for a pair."""
    ca, cb = counts[:, trials.group_a], counts[:, trials.group_b]
    return np.where(trials.group_is_target, ca, ca * cb)


def replicate_metrics(score_sets: Sequence, trials: TrialSpeakers, n_reps: int = CI_REPS, seed: int = 0,
                      max_cells: int = 1 << 22, dense: bool = False, n_draws: int | None = None) -> np.ndarray:
    """(n_sets, n_reps, 3) metrics (:data:`METRICS`) of every score set under the *same* speaker
    resamplings (so differences between sets are paired). Replicates whose draw left no target
    or no non-target trial are NaN. ``dense`` uses the reference implementation (slow; tests).
    ``max_cells`` bounds the arrays held at once. ``n_draws``: speakers drawn per replicate
    (default: as many as the trials have, the ordinary bootstrap; fewer or more is the
    m-out-of-n bootstrap, a test set of ``n_draws`` speakers from the same population, which
    :mod:`ssrl_lab.eval.power` uses)."""
    if n_reps < 1:
        raise ValueError(f"n_reps must be >= 1, got {n_reps}")
    if n_draws is not None and n_draws < 2:
        raise ValueError(f"n_draws must be >= 2 speakers, got {n_draws}")
    impl = _Dense if dense else _Blocked
    sets = [impl(s, trials) for s in score_sets]
    rng = np.random.default_rng(seed)
    out = np.empty((len(sets), n_reps, len(METRICS)))
    per_rep = len(trials) if dense else max(trials.n_groups, max(st.width for st in sets) * 4)
    chunk = max(1, min(n_reps, max_cells // max(1, per_rep)))
    S = trials.n_speakers
    for lo in range(0, n_reps, chunk):
        hi = min(n_reps, lo + chunk)
        counts = rng.multinomial(n_draws or S, np.full(S, 1.0 / S), size=hi - lo).astype(np.float64)
        wg = _group_weights(counts, trials)
        w = wg[:, trials.group] if dense else wg
        for k, st in enumerate(sets):
            out[k, lo:hi] = st.metrics(w)
    return out


def _interval(values: np.ndarray, level: float) -> list[float | None]:
    v = values[np.isfinite(values)]
    if v.size == 0:
        return [None, None]
    q = 100 * (1 - level) / 2
    lo, hi = np.percentile(v, [q, 100 - q])
    return [float(lo), float(hi)]


def bootstrap_ci(scores, trials: TrialSpeakers, n_reps: int = CI_REPS, level: float = CI_LEVEL,
                 seed: int = 0) -> dict:
    """``{"eer": [lo, hi], "mindcf_0.01": [lo, hi], "mindcf_0.05": [lo, hi], "n_reps", "level",
    "n_speakers"}``: the speaker-bootstrap percentile intervals of one score set."""
    reps = replicate_metrics([scores], trials, n_reps, seed)[0]
    out: dict = {m: _interval(reps[:, k], level) for k, m in enumerate(METRICS)}
    out.update(n_reps=int(np.isfinite(reps[:, 0]).sum()), level=level, n_speakers=trials.n_speakers)
    return out


def paired_difference(scores_a, scores_b, trials: TrialSpeakers, n_reps: int = CI_REPS, level: float = CI_LEVEL,
                      seed: int = 0) -> dict:
    """The interval of ``metric(a) - metric(b)`` for two systems scored on the same trials (same
    order), every replicate applied to both: ``{"eer": [lo, hi], ..., "n_reps", "level"}``."""
    reps = replicate_metrics([scores_a, scores_b], trials, n_reps, seed)
    diff = reps[0] - reps[1]
    out: dict = {m: _interval(diff[:, k], level) for k, m in enumerate(METRICS)}
    out.update(n_reps=int(np.isfinite(diff[:, 0]).sum()), level=level)
    return out


def outcome(interval: Sequence[float | None]) -> str:
    """``better`` when the interval of A - B lies below 0 (A's error is lower), ``worse`` above
    0, else ``not separable`` (also when it could not be computed)."""
    lo, hi = interval
    if lo is None or hi is None:
        return "not separable"
    return "better" if hi < 0 else "worse" if lo > 0 else "not separable"


def compare(runs_a: Sequence, runs_b: Sequence, trials: TrialSpeakers, metric: str = "eer", n_reps: int = CI_REPS,
            level: float = CI_LEVEL, seed: int = 0) -> dict:
    """"A better than B" across seeds: ``runs_a`` and ``runs_b`` are score sets (one per seed) on
    the same trials. Each replicate resamples the test speakers (shared by every run) and, per
    system independently, its seeds with replacement; the statistic is mean over A's drawn seeds
    minus mean over B's. Returns ``{"diff": point estimate (all seeds, all speakers), "ci": [lo,
    hi], "outcome": better | worse | not separable, "n_seeds": [n_a, n_b], "metric", ...}``.

    With few seeds the seed resampling understates the seed variance (a bootstrap of n draws has
    (n - 1) / n of the variance): the interval is, if anything, optimistic; say so with it."""
    if not runs_a or not runs_b:
        raise ValueError("compare needs at least one run per system")
    k = METRICS.index(metric)
    sets = list(runs_a) + list(runs_b)
    reps = replicate_metrics(sets, trials, n_reps, seed)[:, :, k]  # (n_a + n_b, R)
    na, nb = len(runs_a), len(runs_b)
    rng = np.random.default_rng(seed + 1)
    ia = rng.integers(0, na, size=(n_reps, na))
    ib = rng.integers(0, nb, size=(n_reps, nb)) + na
    r = np.arange(n_reps)[:, None]
    diff = reps[ia, r].mean(axis=1) - reps[ib, r].mean(axis=1)
    from .metrics import verification_metrics

    point = [verification_metrics(s, trials.labels)[metric] for s in sets]
    est = float(np.mean(point[:na]) - np.mean(point[na:]))
    ci = _interval(diff, level)
    return {"metric": metric, "diff": est, "ci": ci, "outcome": outcome(ci), "n_seeds": [na, nb],
            "a": [float(x) for x in point[:na]], "b": [float(x) for x in point[na:]],
            "n_reps": int(np.isfinite(diff).sum()), "level": level}


def seed_mean_ci(runs: Sequence, trials: TrialSpeakers, metric: str = "eer", n_reps: int = CI_REPS,
                 level: float = CI_LEVEL, seed: int = 0) -> list[float | None]:
    """The interval of one system's mean ``metric`` over its seeds (one score set per seed on the
    same trials): every replicate resamples the test speakers and the seeds (see :func:`compare`
    on what few seeds mean for it)."""
    if not runs:
        raise ValueError("seed_mean_ci needs at least one run")
    k = METRICS.index(metric)
    reps = replicate_metrics(list(runs), trials, n_reps, seed)[:, :, k]
    idx = np.random.default_rng(seed + 1).integers(0, len(runs), size=(n_reps, len(runs)))
    return _interval(reps[idx, np.arange(n_reps)[:, None]].mean(axis=1), level)
