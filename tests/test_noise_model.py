"""GMM clean posterior, loss gate and weighted loss."""
import logging
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from ssrl_lab.labels.noise import fit_clean_posterior, loss_gate, percentiles, weighted_loss


def _mixture(n_clean=4000, n_noisy=1000, seed=0):
    rng = np.random.default_rng(seed)
    # log-normal losses: clean log-loss ~ N(-2, 0.5^2), noisy ~ N(1.5, 0.6^2)
    clean = np.exp(rng.normal(-2.0, 0.5, n_clean))
    noisy = np.exp(rng.normal(1.5, 0.6, n_noisy))
    loss = np.concatenate([clean, noisy])
    is_clean = np.concatenate([np.ones(n_clean, bool), np.zeros(n_noisy, bool)])
    perm = rng.permutation(loss.size)
    return loss[perm], is_clean[perm]


def test_gmm_separates_two_lognormal_populations():
    loss, is_clean = _mixture()
    p, fit = fit_clean_posterior(torch.from_numpy(loss).float())
    assert p.dtype == torch.float32 and p.shape == (loss.size,)
    assert torch.isfinite(p).all() and (p >= 0).all() and (p <= 1).all()
    pn = p.numpy()
    assert roc_auc_score(is_clean, pn) > 0.99
    assert ((pn > 0.5) == is_clean).mean() > 0.97
    assert fit.means[0] == pytest.approx(-2.0, abs=0.1)
    assert fit.means[1] == pytest.approx(1.5, abs=0.1)
    assert math.sqrt(fit.variances[0]) == pytest.approx(0.5, abs=0.08)
    assert math.sqrt(fit.variances[1]) == pytest.approx(0.6, abs=0.08)
    assert fit.weights[0] == pytest.approx(0.8, abs=0.03)
    assert fit.converged and not fit.fallback
    assert fit.clip_low < -3.0 and fit.clip_high > 2.5
    # component densities integrate to the weights
    xs = np.linspace(-8, 8, 4001)
    mass = fit.pdf(xs).sum(0) * (xs[1] - xs[0])
    assert mass == pytest.approx(fit.weights, abs=1e-3)
    assert fit.as_array().shape == (3, 2)
    # the numpy posterior agrees with the tensor one
    assert np.allclose(fit.posterior_clean(np.log(loss[:50])), pn[:50], atol=1e-4)


def test_gmm_accepts_numpy_and_is_deterministic():
    loss, _ = _mixture(seed=1)
    p1, f1 = fit_clean_posterior(loss)
    p2, f2 = fit_clean_posterior(torch.from_numpy(loss))
    assert torch.equal(p1, p2) and np.array_equal(f1.means, f2.means)


@pytest.mark.parametrize("loss", [
    np.full(1000, 0.7),          # all equal
    np.array([0.1, 2.0, 0.3]),   # N < 10
    np.array([]),                # empty
    np.full(50, np.nan),         # nothing finite
])
def test_degenerate_inputs_fall_back_to_ones(loss, caplog):
    with caplog.at_level(logging.WARNING, logger="ssrl_lab.labels.noise"):
        p, fit = fit_clean_posterior(loss)
    assert p.shape == (loss.size,)
    assert torch.all(p == 1.0)
    assert fit.fallback and not fit.converged
    assert np.isfinite(fit.as_array()).all() and np.isfinite([fit.clip_low, fit.clip_high]).all()
    assert "falling back" in caplog.text


def test_some_non_finite_losses_never_give_nan(caplog):
    loss, is_clean = _mixture(seed=2)
    loss[:3] = np.nan
    loss[3:6] = np.inf
    loss[6:9] = 0.0  # floored at eps (log -27.6); 0.06 % of the data, inside the clip percentile
    with caplog.at_level(logging.WARNING, logger="ssrl_lab.labels.noise"):
        p, fit = fit_clean_posterior(loss)
    assert torch.isfinite(p).all()
    assert torch.all(p[:3] == 1.0)
    assert torch.all(p[3:6] < 0.01)  # +inf: judged at the upper clip -> noisy
    assert torch.all(p[6:9] > 0.99)
    assert "3 NaN and 3 infinite" in caplog.text
    assert roc_auc_score(is_clean[9:], p[9:].numpy()) > 0.99
    assert fit.clip_low > -10  # the zeros were clipped away


def test_posterior_is_monotone_in_the_tails():
    # wide noisy component: a plain Gaussian posterior would call the lowest losses noisy
    rng = np.random.default_rng(4)
    x = np.concatenate([rng.normal(-2, 0.3, 3000), rng.normal(1, 1.5, 1000)])
    p, fit = fit_clean_posterior(np.exp(x), recipe="monotone")
    order = np.argsort(x)
    pn = p.numpy()
    assert pn[order[:20]].min() > 0.98 and pn[order[:20]].min() >= pn.max() - 1e-6
    assert pn[order[-20:]].max() < 0.01 and pn[order[-20:]].max() <= pn.min() + 1e-6
    grid = np.linspace(fit.clip_low, fit.clip_high, 200)
    post = fit.posterior_clean(grid)
    assert np.all(np.diff(post) <= 1e-12)


def test_percentiles_match_numpy():
    x = np.random.default_rng(3).normal(size=1001)
    got = percentiles(torch.sort(torch.from_numpy(x)).values, [0.1, 25, 50, 99.9])
    assert np.allclose(got, np.percentile(x, [0.1, 25, 50, 99.9]))


def test_loss_gate():
    w = loss_gate(torch.tensor([0.5, 1.0, 3.0, float("nan")]), 1.0)
    assert w.tolist() == [1.0, 0.0, 0.0, 0.0] and w.dtype == torch.float32


def test_weighted_loss_value_and_gradients():
    l = torch.tensor([1.0, 2.0, 4.0], requires_grad=True)
    w = torch.tensor([1.0, 0.5, 0.0])
    out = weighted_loss(l, w)
    assert out.item() == pytest.approx((1.0 + 1.0) / 1.5)
    out.backward()
    assert l.grad.tolist() == pytest.approx([1 / 1.5, 0.5 / 1.5, 0.0])


def test_weighted_loss_all_zero_weights_is_safe():
    l = torch.tensor([1.0, float("inf")], requires_grad=True)
    out = weighted_loss(l, torch.zeros(2))
    assert out.item() == 0.0
    out.backward()
    assert torch.equal(l.grad, torch.zeros(2))
    with pytest.raises(ValueError, match="shape"):
        weighted_loss(torch.ones(3), torch.ones(2))
