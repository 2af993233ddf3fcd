"""Statistical power of a paired comparison: the smallest EER difference a test set can resolve.

A claim "A better than B" is read from the interval of the mean difference over seeds (a paired
bootstrap over test speakers and seeds, :func:`ssrl_lab.eval.bootstrap.compare`). Before that
reading means anything, a reader needs to know how large a true difference would have to be for
the study to see it: the **minimal detectable difference** (MDD) at 80 % power with a 5 %
two-sided test,

    MDD = (z_{1 - alpha/2} + z_{power}) * SE,      SE^2 = V_speakers(S) + (s_a^2 + s_b^2) / k,

where

* ``V_speakers(S)`` is the variance of the seed-mean difference over test sets of ``S`` speakers,
  estimated with the *same* speaker bootstrap the intervals use (both systems resampled
  together, so it is paired). For a test set of ``S`` speakers other than the ``S0`` the scores
  have, every replicate draws ``S`` speakers from the ``S0`` (the m-out-of-n bootstrap,
  :func:`~ssrl_lab.eval.bootstrap.replicate_metrics` ``n_draws``): a 40-speaker study's power is
  read off a 200-speaker test set directly, and a 200-speaker one projected from 40 speakers
  (``extrapolated`` says so; the projection assumes the 40 represent the population);
* ``s_a``, ``s_b`` are each system's standard deviation of the metric over its seeds (test set
  fixed), and ``k`` the number of seeds per system in the planned comparison. With one seed per
  system the seed term is unknown: pass ``seed_sd`` or read ``mdd_speakers_only`` (a lower bound).

A true difference equal to the MDD is found (interval excluding 0) in about 80 % of studies;
smaller ones mostly come out "not separable". Tested on synthetic scores whose true difference is
known (``tests/test_power.py``): the predicted SE matches the spread over independent test sets,
and the predicted power matches how often a difference is detected.
"""
from __future__ import annotations

import math
from statistics import NormalDist
from typing import Sequence

import numpy as np

from .bootstrap import CI_REPS, METRICS, TrialSpeakers, replicate_metrics

__all__ = ["z_sum", "detectable_difference", "detectable_difference_runs", "power_at"]


def z_sum(alpha: float = 0.05, power: float = 0.8) -> float:
    """``z_{1 - alpha/2} + z_{power}`` (2.80 for 5 % two-sided and 80 % power)."""
    if not 0 < alpha < 1 or not 0 < power < 1:
        raise ValueError(f"alpha and power must lie in (0, 1), got {alpha}, {power}")
    nd = NormalDist()
    return nd.inv_cdf(1 - alpha / 2) + nd.inv_cdf(power)


def power_at(diff: float, se: float, alpha: float = 0.05) -> float:
    """The probability that a two-sided test at ``alpha`` detects a true difference ``diff`` when
    the estimate's standard error is ``se`` (normal approximation)."""
    if se <= 0:
        raise ValueError(f"se must be positive, got {se}")
    nd, z = NormalDist(), NormalDist().inv_cdf(1 - alpha / 2)
    return nd.cdf(abs(diff) / se - z) + nd.cdf(-abs(diff) / se - z)


def _seed_sd(values: Sequence[float]) -> float | None:
    v = [float(x) for x in values if x is not None and math.isfinite(float(x))]
    return float(np.std(v, ddof=1)) if len(v) > 1 else None


def detectable_difference(runs_a: Sequence, runs_b: Sequence, trials: TrialSpeakers, n_speakers: int | None = None,
                          n_seeds: int | None = None, metric: str = "eer", alpha: float = 0.05, power: float = 0.8,
                          seed_sd: float | None = None, n_reps: int = CI_REPS, seed: int = 0) -> dict:
    """The minimal detectable difference of ``metric`` between systems A and B (one score set per
    seed on the same ``trials``) for a paired comparison at ``n_speakers`` test speakers (default:
    the trials' own) and ``n_seeds`` seeds per system (default: the fewer of the two given).

    ``seed_sd`` replaces the seed standard deviation measured from the runs (needed when a system
    has a single run). Returns ``{"metric", "n_speakers", "n_speakers_observed", "extrapolated",
    "n_seeds", "se_speakers", "seed_sd_a", "seed_sd_b", "se_seeds", "se", "mdd",
    "mdd_speakers_only", "z", "alpha", "power", "n_reps", "diff"}`` (``mdd`` and ``se`` are None
    when the seed term is unknown; ``diff`` is the observed mean difference A - B)."""
    if not runs_a or not runs_b:
        raise ValueError("detectable_difference needs at least one run per system")
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    s0 = trials.n_speakers
    S = int(n_speakers or s0)
    k = int(n_seeds or min(len(runs_a), len(runs_b)))
    if k < 1:
        raise ValueError(f"n_seeds must be >= 1, got {k}")
    m = METRICS.index(metric)
    sets = list(runs_a) + list(runs_b)
    reps = replicate_metrics(sets, trials, n_reps, seed, n_draws=S)[:, :, m]  # (n_a + n_b, R)
    na = len(runs_a)
    d = reps[:na].mean(axis=0) - reps[na:].mean(axis=0)
    d = d[np.isfinite(d)]
    if d.size < 2:
        raise ValueError("too few usable bootstrap replicates for a standard error")
    se_spk = float(np.std(d, ddof=1))
    from .metrics import verification_metrics

    point = [verification_metrics(s, trials.labels)[metric] for s in sets]
    sd_a, sd_b = _seed_sd(point[:na]), _seed_sd(point[na:])
    if seed_sd is not None:
        sd_a = sd_b = float(seed_sd)
    se_seeds = math.sqrt((sd_a ** 2 + sd_b ** 2) / k) if sd_a is not None and sd_b is not None else None
    se = math.sqrt(se_spk ** 2 + se_seeds ** 2) if se_seeds is not None else None
    z = z_sum(alpha, power)
    return {"metric": metric, "n_speakers": S, "n_speakers_observed": s0, "extrapolated": S > s0, "n_seeds": k,
            "se_speakers": se_spk, "seed_sd_a": sd_a, "seed_sd_b": sd_b, "se_seeds": se_seeds, "se": se,
            "mdd": z * se if se is not None else None, "mdd_speakers_only": z * se_spk, "z": z, "alpha": alpha,
            "power": power, "n_reps": int(d.size), "diff": float(np.mean(point[:na]) - np.mean(point[na:]))}


def detectable_difference_runs(files_a: Sequence, files_b: Sequence, on: str = "trials", **kw) -> dict:
    """:func:`detectable_difference` from saved scores (``scores*.npz``, one per seed), on the
    trial list (``on="trials"``) or on all test pairs (``"all_pairs"``); adds ``on``."""
    from .saved_scores import score_sets

    sets, trials = score_sets(list(files_a) + list(files_b), on)
    na = len(files_a)
    return {**detectable_difference(sets[:na], sets[na:], trials, **kw), "on": on}
