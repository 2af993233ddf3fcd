"""Speaker-bootstrap confidence intervals (ssrl_lab.eval.bootstrap)."""
import math

import numpy as np
import pytest

from ssrl_lab.eval.bootstrap import TrialSpeakers, bootstrap_ci, compare, outcome, paired_difference, replicate_metrics
from ssrl_lab.eval.metrics import verification_metrics


def _trials(rng, n_spk=30, per_spk=8, n_trials=3000):
    spk = np.repeat(np.arange(n_spk), per_spk)
    a = rng.integers(0, spk.size, n_trials)
    b = rng.integers(0, spk.size, n_trials)
    keep = a != b
    a, b = a[keep], b[keep]
    return spk, a, b, spk[a] == spk[b]


@pytest.mark.parametrize("decimals", [None, 1, 2])
def test_blocked_replicates_equal_the_dense_reference(decimals):
    """The fast path (group weights, blocks) gives the reference's numbers, ties included."""
    rng = np.random.default_rng(0)
    spk, a, b, y = _trials(rng)
    tr = TrialSpeakers.from_rows(a, b, spk, y)
    s = rng.normal(size=y.size) + 1.5 * y
    if decimals is not None:
        s = np.round(s, decimals)
    fast = replicate_metrics([s], tr, n_reps=60, seed=4)
    ref = replicate_metrics([s], tr, n_reps=60, seed=4, dense=True)
    np.testing.assert_allclose(fast, ref, rtol=0, atol=1e-9)


def test_unit_weights_give_the_point_metrics():
    from ssrl_lab.eval.bootstrap import _Blocked, _Dense

    rng = np.random.default_rng(1)
    spk, a, b, y = _trials(rng)
    tr = TrialSpeakers.from_rows(a, b, spk, y)
    s = np.round(rng.normal(size=y.size) + y, 2)
    m = verification_metrics(s, y)
    want = [m["eer"], m["mindcf_0.01"], m["mindcf_0.05"]]
    np.testing.assert_allclose(_Dense(s, tr).metrics(np.ones((1, y.size)))[0], want, atol=1e-12)
    np.testing.assert_allclose(_Blocked(s, tr).metrics(np.ones((1, tr.n_groups)))[0], want, atol=1e-12)


def _population_draw(rng, n_spk=40, mu=2.0, tau=0.8, per_spk_target=10, n_nontarget=400):
    """Scores with speaker effects: target ``mu + u_s + e``, non-target ``v_a + v_b + e``, so that
    both marginals have variance ``1 + tau^2`` and the population EER is
    ``Phi(-mu / (2 sqrt(1 + tau^2)))``."""
    u = rng.normal(0, tau, n_spk)
    v = rng.normal(0, tau / math.sqrt(2), n_spk)
    ta = np.repeat(np.arange(n_spk), per_spk_target)
    ts = mu + u[ta] + rng.normal(size=ta.size)
    na = rng.integers(0, n_spk, n_nontarget)
    nb = (na + rng.integers(1, n_spk, n_nontarget)) % n_spk
    ns = v[na] + v[nb] + rng.normal(size=n_nontarget)
    return (np.r_[ts, ns], np.r_[ta, na], np.r_[ta, nb], np.r_[np.ones(ta.size, bool), np.zeros(n_nontarget, bool)])


def test_speaker_bootstrap_covers_the_true_eer_about_95_percent_of_the_time():
    mu, tau = 2.0, 0.8
    true_eer = 100 * 0.5 * math.erfc(mu / (2 * math.sqrt(1 + tau ** 2)) / math.sqrt(2))
    rng = np.random.default_rng(7)
    covered, widths = 0, []
    draws = 150
    for k in range(draws):
        s, sa, sb, y = _population_draw(rng, mu=mu, tau=tau)
        ci = bootstrap_ci(s, TrialSpeakers.from_codes(sa, sb, y), n_reps=300, seed=k)["eer"]
        covered += ci[0] <= true_eer <= ci[1]
        widths.append(ci[1] - ci[0])
    rate = covered / draws
    assert 0.88 <= rate <= 0.995, f"coverage {rate:.3f} of the true EER {true_eer:.2f} %"
    assert 0 < np.mean(widths) < 20


def test_paired_difference_and_claims():
    rng = np.random.default_rng(3)
    spk, a, b, y = _trials(rng, n_spk=40, per_spk=10, n_trials=6000)
    tr = TrialSpeakers.from_rows(a, b, spk, y)
    base = rng.normal(size=y.size)
    good = [base + 3.0 * y + 0.3 * rng.normal(size=y.size) for _ in range(3)]
    bad = [base + 1.5 * y + 0.3 * rng.normal(size=y.size) for _ in range(3)]
    same = paired_difference(good[0], good[0], tr, n_reps=200)
    assert same["eer"] == [0.0, 0.0]
    d = paired_difference(good[0], bad[0], tr, n_reps=200)
    assert d["eer"][1] < 0
    c = compare(good, bad, tr, n_reps=300)
    assert c["outcome"] == "better" and c["diff"] < 0 and c["ci"][0] <= c["diff"] <= c["ci"][1]
    assert compare(bad, good, tr, n_reps=300)["outcome"] == "worse"
    twins = compare(good[:2], good[1:], tr, n_reps=300)  # runs of one system: no claim either way
    assert twins["outcome"] == "not separable"
    assert outcome([None, None]) == "not separable" and outcome([-2.0, 1.0]) == "not separable"


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="labels disagree"):
        TrialSpeakers.from_codes([0, 1], [0, 2], [0, 0])
    with pytest.raises(ValueError, match="known speakers"):
        TrialSpeakers.from_codes([-1, 1], [0, 2], [0, 0])
    tr = TrialSpeakers.from_codes([0, 1, 0], [0, 2, 1], [1, 0, 0])
    with pytest.raises(ValueError, match="scores for"):
        bootstrap_ci([0.1, 0.2], tr, n_reps=10)
    with pytest.raises(ValueError, match="NaN"):
        bootstrap_ci([0.1, np.nan, 0.3], tr, n_reps=10)
    with pytest.raises(ValueError, match="n_reps"):
        bootstrap_ci([0.1, 0.2, 0.3], tr, n_reps=0)
