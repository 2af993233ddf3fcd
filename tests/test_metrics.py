"""Verification metrics: hand-computed cases, sklearn and brute-force references, properties."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_curve

from ssrl_lab.eval.metrics import det_curve, eer, error_curve, min_dcf, verification_metrics


def test_perfect_and_inverted():
    s = np.array([0.1, 0.2, 0.3, 0.8, 0.9])
    y = np.array([0, 0, 0, 1, 1])
    assert eer(s, y) == 0.0
    assert min_dcf(s, y, 0.01) == 0.0
    assert eer(-s, y) == 1.0
    assert verification_metrics(-s, y)["eer"] == pytest.approx(100.0)


def test_hand_computed_interpolation():
    # sorted: .1 n, .3 t, .5 n, .7 t, .9 t -> (FNR, FPR): (0,1) (0,.5) (1/3,.5) (1/3,0) ...
    # crossing between (1/3, 1/2) and (1/3, 0): FPR interpolated to 1/3
    s = np.array([0.5, 0.9, 0.1, 0.7, 0.3])
    y = np.array([0, 1, 0, 1, 1])
    assert eer(s, y) == pytest.approx(1 / 3)
    # p = 0.5: normalised DCF = FNR + FPR, minimum 1/3 at (1/3, 0)
    assert min_dcf(s, y, 0.5) == pytest.approx(1 / 3)
    # p = 0.01: DCF = (.01 FNR + .99 FPR) / .01; the best point is (1/3, 0) -> 1/3
    assert min_dcf(s, y, 0.01) == pytest.approx(1 / 3)


def test_ties_are_grouped():
    y = np.array([1, 0, 1, 0, 0, 1])
    s = np.zeros(6)
    assert eer(s, y) == pytest.approx(0.5)
    c = error_curve(s, y)
    assert c.fnr.tolist() == [0.0, 1.0] and c.fpr.tolist() == [1.0, 0.0]
    # order of tied trials does not matter
    s2 = np.array([1.0, 1.0, 0.0, 0.0, 2.0, 2.0])
    y2 = np.array([1, 0, 1, 0, 0, 1])
    assert eer(s2, y2) == eer(s2[::-1], y2[::-1])


def _sklearn_eer(s, y):
    fpr, tpr, _ = roc_curve(y, s)
    fnr = 1 - tpr
    i = np.nanargmin(np.abs(fnr - fpr))
    return (fnr[i] + fpr[i]) / 2


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_sklearn_roc(seed):
    rng = np.random.default_rng(seed)
    y = rng.random(4000) < 0.3
    s = rng.normal(size=y.size) + 1.2 * y
    assert eer(s, y) == pytest.approx(_sklearn_eer(s, y), abs=1e-3)


def _brute_min_dcf(s, y, p):
    best = np.inf
    for t in np.r_[np.unique(s), np.inf]:
        fnr = np.mean(s[y == 1] < t)
        fpr = np.mean(s[y == 0] >= t)
        best = min(best, p * fnr + (1 - p) * fpr)
    return best / min(p, 1 - p)


@pytest.mark.parametrize("p", [0.01, 0.05, 0.5])
def test_min_dcf_brute_force(p):
    rng = np.random.default_rng(3)
    y = (rng.random(600) < 0.2).astype(int)
    s = np.round(rng.normal(size=y.size) + y, 1)  # rounding makes many ties
    assert min_dcf(s, y, p) == pytest.approx(_brute_min_dcf(s, y, p))


def test_det_curve_and_subsample():
    rng = np.random.default_rng(4)
    y = rng.random(1000) < 0.5
    s = rng.normal(size=1000) + y
    fpr, fnr, thr = det_curve(s, y)
    assert fpr.size == fnr.size == thr.size == 1001
    assert np.all(np.diff(fpr) <= 0) and np.all(np.diff(fnr) >= 0) and thr[-1] == np.inf
    f2, n2, t2 = det_curve(s, y, max_points=50)
    assert f2.size == 50 and f2[0] == 1.0 and n2[-1] == 1.0


def test_verification_metrics_keys():
    rng = np.random.default_rng(5)
    y = rng.random(500) < 0.4
    s = rng.normal(size=500) + 2 * y
    m = verification_metrics(s, y)
    assert set(m) == {"eer", "mindcf_0.01", "mindcf_0.05", "n_trials", "n_target"}
    assert m["eer"] == pytest.approx(100 * eer(s, y))
    assert m["n_trials"] == 500 and m["n_target"] == int(y.sum())


@pytest.mark.parametrize(
    "scores, labels, match",
    [
        ([], [], "empty"),
        ([0.1, 0.2], [1, 1], "only one class"),
        ([0.1, 0.2], [0, 0], "only one class"),
        ([0.1, np.nan], [0, 1], "NaN"),
        ([0.1, 0.2], [0, 2], "0/1"),
        ([0.1, 0.2, 0.3], [0, 1], "differ in length"),
    ],
)
def test_errors(scores, labels, match):
    with pytest.raises(ValueError, match=match):
        eer(np.asarray(scores, dtype=float), np.asarray(labels))


trial_sets = st.integers(min_value=0, max_value=2**31 - 1).flatmap(
    lambda seed: st.tuples(st.just(seed), st.integers(2, 200), st.floats(0.05, 0.95))
)


def _draw(seed, n, frac):
    rng = np.random.default_rng(seed)
    y = rng.random(n) < frac
    y[0], y[1] = True, False
    s = np.round(rng.normal(size=n) + rng.uniform(0, 2) * y, 2)
    return s, y


@settings(max_examples=60, deadline=None)
@given(trial_sets)
def test_invariant_under_increasing_transform(t):
    s, y = _draw(*t)
    for f in (lambda v: 3 * v + 7, lambda v: np.exp(v), lambda v: np.arctan(v) ** 3):
        assert eer(f(s), y) == pytest.approx(eer(s, y), abs=1e-12)
        assert min_dcf(f(s), y, 0.05) == pytest.approx(min_dcf(s, y, 0.05), abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(trial_sets)
def test_bounded_and_symmetric(t):
    s, y = _draw(*t)
    e = eer(s, y)
    assert 0.0 <= e <= 1.0
    for p in (0.01, 0.05, 0.5):
        assert 0.0 <= min_dcf(s, y, p) <= 1.0 + 1e-12
    assert eer(-s, ~y) == pytest.approx(e, abs=1e-12)
