"""Noisy-label modelling: a two-component GMM on the teacher's log-loss, and loss gating.

SSRL judges every pseudo label by the teacher's cross-entropy against it. Clean labels give
small losses, wrong ones large losses; on the log scale the two populations are roughly
Gaussian. :func:`fit_clean_posterior` fits a 1-D two-component GMM by EM (torch, float64,
vectorised over all N utterances) and returns each utterance's posterior of belonging to the
low-loss ("clean") component. The student's loss is then :func:`weighted_loss`
``sum(p_i * CE_i) / sum(p_i)``.

Two recipes (``recipe=``):

* ``"authors"`` (default; the authors' ``update_clean_label_probability``, which calls
  scikit-learn's ``GaussianMixture(2, max_iter=500, tol=1e-5)``): ``x = log(loss + 1e-12)``;
  clip bounds ``lo = max(p_low(x), floor)`` (``floor`` -20 in SSRL) and ``hi = p_high(x)``;
  the GMM is FITTED on the values inside ``[lo, hi]`` only, and the posterior is evaluated at
  every value clipped to ``[lo, hi]``. EM as scikit-learn runs it: M step variances plus
  ``reg_covar = 1e-6``, stop when the mean log-likelihood changes by less than ``tol``. The
  posterior is the plain Gaussian one. scikit-learn starts EM from a k-means initialisation
  with an unseeded random state, so the authors' fit is not reproducible; ours starts from a
  fixed point (means at the 25th and 75th percentiles of the fitted values, both variances
  their variance, equal weights): scikit-learn given that start (``weights_init``,
  ``means_init``, ``precisions_init``) gives the same p_clean (tests/test_ssrl_replay.py).
* ``"monotone"`` (this workbench's earlier recipe): ``x = log(max(loss, eps))`` clipped to the
  percentiles (the clipped values take part in the fit), a variance floor of
  ``1e-6 + 1e-3 * var(x)`` instead of ``reg_covar``, and monotone tails: a plain Gaussian
  posterior hands BOTH tails to the wider component, so with a wider noisy component the very
  lowest losses would be judged noisy; the posterior is therefore evaluated at x clamped to
  ``[mean_clean, mean_noisy]``.

Fallback (documented, never NaN): fewer than 10 finite losses or zero spread (all losses equal)
give ``p_clean = 1`` for everyone (plain unweighted training) and a logged warning. Non-finite
entries are excluded from the fit: ``+inf`` losses are placed at the upper clip (judged noisy by
the fitted model), ``NaN`` losses get ``p_clean = 1`` (no information, same as the fallback);
both are counted in a warning.

:func:`loss_gate` is the hard alternative (loss-gated learning, Tao et al. 2022): weight 1 where
the loss is under a threshold, else 0.
"""
from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any

import numpy as np
import torch

__all__ = ["GMMFit", "RECIPES", "fit_clean_posterior", "loss_gate", "weighted_loss", "percentiles"]

log = logging.getLogger("ssrl_lab.labels.noise")

MIN_SAMPLES = 10


@dataclasses.dataclass
class GMMFit:
    """A fitted 1-D two-component GMM on clipped log-loss. Component 0 is the clean one.

    Attributes:
        weights, means, variances: ``(2,)`` float64 arrays, ordered by mean (index 0 = low loss).
        clip_low, clip_high: the clip bounds in log-loss units.
        converged: whether EM stopped on ``tol`` before ``n_iter`` iterations.
        n_iter: EM iterations run.
        log_likelihood: mean log-likelihood per sample at the end.
        fallback: True when the fit was skipped (degenerate input; p_clean = 1).
        monotone: the posterior clamps x to the two means (recipe "monotone").
    """

    weights: np.ndarray
    means: np.ndarray
    variances: np.ndarray
    clip_low: float
    clip_high: float
    converged: bool
    n_iter: int
    log_likelihood: float = 0.0
    fallback: bool = False
    monotone: bool = False

    def pdf(self, x: Any) -> np.ndarray:
        """``(len(x), 2)`` weighted component densities at log-loss values ``x`` (for plots).

        Column 0 is the clean component; ``pdf(x).sum(1)`` is the mixture density.
        """
        x = np.asarray(x, dtype=np.float64).reshape(-1, 1)
        var = np.maximum(self.variances, 1e-300)
        dens = np.exp(-0.5 * (x - self.means) ** 2 / var) / np.sqrt(2 * np.pi * var)
        return dens * self.weights

    def posterior_clean(self, log_loss: Any) -> np.ndarray:
        """Posterior of the clean component at log-loss values (clipped like the fit)."""
        x = np.clip(np.asarray(log_loss, dtype=np.float64), self.clip_low, self.clip_high)
        if self.monotone:
            x = np.clip(x, self.means[0], self.means[1])  # monotone tails, as in fit_clean_posterior
        d = self.pdf(x)
        tot = d.sum(1)
        return np.where(tot > 0, d[:, 0] / np.where(tot > 0, tot, 1.0), 1.0)

    def as_array(self) -> np.ndarray:
        """``(3, 2)`` float32: rows weights, means, variances (the history file's ``gmm``)."""
        return np.stack([self.weights, self.means, self.variances]).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (for metrics.jsonl)."""
        return {
            "weights": [float(v) for v in self.weights],
            "means": [float(v) for v in self.means],
            "variances": [float(v) for v in self.variances],
            "clip": [float(self.clip_low), float(self.clip_high)],
            "converged": bool(self.converged),
            "n_iter": int(self.n_iter),
            "fallback": bool(self.fallback),
        }


def percentiles(sorted_x: torch.Tensor, qs: list[float]) -> list[float]:
    """Linear-interpolation percentiles (``qs`` in 0..100) of an already sorted 1-D tensor.

    Same convention as ``numpy.percentile(..., method="linear")``; works past the size limit
    of ``torch.quantile``.
    """
    n = sorted_x.shape[0]
    out = []
    for q in qs:
        pos = (n - 1) * q / 100.0
        lo = int(math.floor(pos))
        hi = min(lo + 1, n - 1)
        frac = pos - lo
        a, b = float(sorted_x[lo]), float(sorted_x[hi])
        out.append(a + (b - a) * frac)  # exact when a == b (numpy's lerp), so ties stay inside the clip
    return out


def _fallback(n: int, device, x_finite: torch.Tensor, reason: str) -> tuple[torch.Tensor, GMMFit]:
    log.warning("fit_clean_posterior: %s; falling back to p_clean = 1 for all %d samples", reason, n)
    if x_finite.numel():
        m = float(x_finite.mean())
        v = float(x_finite.var(unbiased=False)) if x_finite.numel() > 1 else 0.0
        lo, hi = float(x_finite.min()), float(x_finite.max())
    else:
        m, v, lo, hi = 0.0, 0.0, 0.0, 0.0
    v = max(v, 1e-6)
    fit = GMMFit(
        weights=np.array([1.0, 0.0]), means=np.array([m, m]), variances=np.array([v, v]),
        clip_low=lo, clip_high=hi, converged=False, n_iter=0, log_likelihood=0.0, fallback=True,
    )
    return torch.ones(n, dtype=torch.float32, device=device), fit


def _log_odds_coeffs(w0: float, means: list[float], var: list[float]) -> tuple[float, float, float]:
    """``(a, b, c)`` with ``log(w0 N(x|m0,v0)) - log((1-w0) N(x|m1,v1)) = a x^2 + b x + c``."""
    (m0, m1), (v0, v1) = means, var
    w0 = min(max(w0, 1e-300), 1 - 1e-16)
    a = 0.5 / v1 - 0.5 / v0
    b = m0 / v0 - m1 / v1
    c = math.log(w0) - math.log1p(-w0) - 0.5 * math.log(v0 / v1) - 0.5 * m0 * m0 / v0 + 0.5 * m1 * m1 / v1
    return a, b, c


RECIPES = ("authors", "monotone")
#: scikit-learn's GaussianMixture defaults the authors rely on (reg_covar) and pass (max_iter, tol)
AUTHORS_REG_COVAR, AUTHORS_MAX_ITER, AUTHORS_TOL = 1e-6, 500, 1e-5


def fit_clean_posterior(
    loss: Any,
    clip_percentiles: tuple[float, float] = (0.1, 99.9),
    n_iter: int | None = None,
    tol: float | None = None,
    eps: float = 1e-12,
    recipe: str = "authors",
    floor: float | None = None,
) -> tuple[torch.Tensor, GMMFit]:
    """Fit the two-component GMM on log-loss; return ``(p_clean (N,) float32, GMMFit)``.

    Args:
        loss: ``(N,)`` per-utterance losses (tensor on any device, or array-like).
        clip_percentiles: lower / upper percentile (0..100) of the log-loss to clip to.
        n_iter: maximum EM iterations (None: 500 for "authors", 100 for "monotone").
        tol: stop when the mean log-likelihood per sample changes by less than this
            (None: 1e-5 for "authors", 1e-6 for "monotone").
        eps: "authors": added to the loss before the log; "monotone": the loss's floor.
        recipe: ``"authors"`` or ``"monotone"`` (module docstring).
        floor: lower bound of the lower clip in log-loss units (the authors' -20), or None.

    ``p_clean`` is on the input's device (CPU for arrays). See the module docstring for the
    recipes and the degenerate-input fallback.
    """
    lo_q, hi_q = clip_percentiles
    if not 0.0 <= lo_q < hi_q <= 100.0:
        raise ValueError(f"fit_clean_posterior: clip_percentiles must satisfy 0 <= low < high <= 100, got {clip_percentiles}")
    if recipe not in RECIPES:
        raise ValueError(f"fit_clean_posterior: recipe must be one of {RECIPES}, got {recipe!r}")
    authors = recipe == "authors"
    n_iter = (AUTHORS_MAX_ITER if authors else 100) if n_iter is None else n_iter
    tol = (AUTHORS_TOL if authors else 1e-6) if tol is None else tol
    if n_iter < 1:
        raise ValueError(f"fit_clean_posterior: n_iter must be >= 1, got {n_iter}")
    t = loss if isinstance(loss, torch.Tensor) else torch.as_tensor(np.asarray(loss))
    if t.dim() != 1:
        raise ValueError(f"fit_clean_posterior: loss must be 1-D (N,), got shape {tuple(t.shape)}")
    device = t.device
    n = t.shape[0]
    t64 = t.detach().to(torch.float64)
    x_all = torch.log(t64 + eps) if authors else torch.log(t64.clamp_min(eps))  # NaN stays NaN, +inf stays +inf
    nan_mask = torch.isnan(x_all)
    inf_mask = torch.isinf(x_all)
    finite = ~(nan_mask | inf_mask)
    x_fin = x_all[finite]
    n_fin = x_fin.shape[0]
    if n_fin < MIN_SAMPLES:
        return _fallback(n, device, x_fin, f"only {n_fin} finite losses (need >= {MIN_SAMPLES})")
    n_nan, n_inf = int(nan_mask.sum()), int(inf_mask.sum())
    if n_nan or n_inf:
        log.warning(
            "fit_clean_posterior: %d NaN and %d infinite losses excluded from the fit "
            "(NaN -> p_clean 1, +inf -> posterior at the upper clip)", n_nan, n_inf,
        )

    xs = torch.sort(x_fin).values
    c_lo, c_hi = percentiles(xs, [lo_q, hi_q])
    if floor is not None:
        c_lo = max(c_lo, float(floor))
    if not c_hi > c_lo:
        return _fallback(n, device, x_fin, "all losses are (nearly) equal between the clip percentiles")
    if authors:  # fit on the values inside the clip range (sorted, so the percentiles are direct)
        x = xs[(xs >= c_lo) & (xs <= c_hi)]
        if x.shape[0] < MIN_SAMPLES:
            return _fallback(n, device, x_fin, f"only {x.shape[0]} losses inside the clip range")
        q25, q75 = percentiles(x, [25.0, 75.0])
    else:
        x = x_fin.clamp(c_lo, c_hi)
        q25, q75 = percentiles(xs, [25.0, 75.0])
    total_var = float(x.var(unbiased=False))
    if not total_var > 0:
        return _fallback(n, device, x_fin, "zero variance after clipping")
    var_floor = 1e-6 + 1e-3 * total_var
    if not q75 > q25:  # more than half the mass in one value: spread the start over the clip range
        q25, q75 = c_lo + 0.25 * (c_hi - c_lo), c_lo + 0.75 * (c_hi - c_lo)

    # EM for two components through the log-odds d(x) = log w0 N0(x) - log w1 N1(x), a quadratic
    # in x: an E step is one polynomial, a sigmoid and one (N,) @ (N, 3) product (float64).
    # Work on centred x so the second moments do not cancel.
    shift = float(x.mean())
    xc = x - shift
    # columns 1, x, x^2: one matrix-vector product gives all three responsibility moments
    moments = torch.stack([torch.ones_like(xc), xc, xc * xc], dim=1)
    n_all, s1_all, s2_all = (float(v) for v in moments.sum(0))
    means = [q25 - shift, q75 - shift]
    var = [total_var, total_var]
    w0 = 0.5
    prev_ll = -math.inf
    converged = False
    it = 0
    ll = 0.0
    for it in range(1, n_iter + 1):
        a, b, c = _log_odds_coeffs(w0, means, var)
        d = torch.mul(xc, a).add_(b).mul_(xc).add_(c)  # (a x + b) x + c, in place
        # mean log-likelihood: mean log(w1 N1(x)) (from the moments) + mean softplus(d)
        m1, v1 = means[1], var[1]
        mean_l1 = math.log(1 - w0) - 0.5 * math.log(2 * math.pi * v1) - (s2_all - 2 * m1 * s1_all + n_all * m1 * m1) / (2 * v1 * n_all)
        ll = mean_l1 + float(torch.nn.functional.softplus(d).mean())
        # M step from the responsibilities of component 0 (component 1 gets the rest)
        n0, t1, t2 = (float(v) for v in torch.sigmoid_(d) @ moments)
        n0 = min(max(n0, 1e-10), n_all - 1e-10)
        n1 = n_all - n0
        means = [t1 / n0, (s1_all - t1) / n1]
        v0, v1 = t2 / n0 - means[0] ** 2, (s2_all - t2) / n1 - means[1] ** 2
        if authors:
            var = [max(v0, 0.0) + AUTHORS_REG_COVAR, max(v1, 0.0) + AUTHORS_REG_COVAR]
        else:
            var = [max(v0, var_floor), max(v1, var_floor)]
        w0 = n0 / n_all
        if abs(ll - prev_ll) < tol:
            converged = True
            break
        prev_ll = ll

    weights = [w0, 1 - w0]
    if means[0] > means[1]:  # component 0 = the low-loss (clean) one
        means, var, weights = means[::-1], var[::-1], weights[::-1]
    means_abs = [means[0] + shift, means[1] + shift]

    # posterior for every input (finite ones clipped; +inf -> upper clip; NaN -> 1)
    x_eval = torch.where(finite, x_all, torch.full_like(x_all, c_hi)).clamp(c_lo, c_hi)
    if not authors:
        x_eval = x_eval.clamp(means_abs[0], means_abs[1])  # monotone tails (module docstring)
    x_eval = x_eval - shift
    a, b, c = _log_odds_coeffs(weights[0], means, var)
    post = torch.sigmoid((a * x_eval + b) * x_eval + c)
    post = torch.where(nan_mask, torch.ones_like(post), post)
    post = torch.nan_to_num(post, nan=1.0).clamp(0.0, 1.0)
    fit = GMMFit(
        weights=np.array(weights), means=np.array(means_abs), variances=np.array(var),
        clip_low=c_lo, clip_high=c_hi, converged=converged, n_iter=it, log_likelihood=ll, fallback=False,
        monotone=not authors,
    )
    return post.to(torch.float32), fit


def loss_gate(loss: Any, threshold: float) -> torch.Tensor:
    """Loss-gated learning weights: 1.0 where ``loss < threshold`` else 0.0 (NaN -> 0)."""
    t = loss if isinstance(loss, torch.Tensor) else torch.as_tensor(np.asarray(loss))
    return (t.detach() < threshold).to(torch.float32)


def weighted_loss(per_sample_loss: torch.Tensor, weights: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """``sum(w * l) / max(sum(w), eps)``: the SSRL student loss with soft clean weights.

    The weights are constants (detached). Samples with weight 0 contribute neither value nor
    gradient, even if their loss is inf/NaN. When all weights are 0 the result is a zero that
    is still connected to the graph (``backward`` works and gives zero gradients), so a batch
    of all-noisy samples is a no-op step rather than a crash.
    """
    if per_sample_loss.shape != weights.shape:
        raise ValueError(
            f"weighted_loss: per_sample_loss {tuple(per_sample_loss.shape)} and weights "
            f"{tuple(weights.shape)} differ in shape"
        )
    w = weights.detach().to(per_sample_loss.dtype)
    contrib = torch.where(w > 0, w * per_sample_loss, torch.zeros_like(per_sample_loss))
    return contrib.sum() / w.sum().clamp_min(eps)
