"""Cosine scoring, all-pairs scoring and AS-norm."""
import time
from types import SimpleNamespace

import numpy as np
import pytest

from ssrl_lab.eval.scoring import all_pairs, as_norm, cosine_trials, normalize, pair_count


def _emb(n=40, d=8, seed=0):
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


def test_cosine_trials_matches_definition():
    x = _emb()
    mean = x[:10].mean(axis=0)
    e, t = np.array([0, 3, 5, 7]), np.array([1, 3, 9, 2])
    got = cosine_trials(x, e, t, mean=mean)
    c = x - mean
    want = [c[a] @ c[b] / np.linalg.norm(c[a]) / np.linalg.norm(c[b]) for a, b in zip(e, t)]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert got.dtype == np.float32 and got[1] == pytest.approx(1.0)
    trials = SimpleNamespace(enroll=e, test=t, label=np.zeros(4, np.int8))
    np.testing.assert_array_equal(cosine_trials(x, trials, mean=mean), got)


def test_cosine_trials_errors():
    x = _emb(5)
    with pytest.raises(ValueError, match=r"test indices must lie in \[0, 5\)"):
        cosine_trials(x, [0], [5])
    with pytest.raises(ValueError, match="differ in length"):
        cosine_trials(x, [0, 1], [2])
    bad = x.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="row 3"):
        cosine_trials(bad, [0], [1])


def test_all_pairs_full_and_unknown_speakers():
    x = _emb(12)
    spk = np.array([0, 0, 1, 1, 2, 2, -1, 3, 3, 3, -1, 4])
    s, y, pi, pj = all_pairs(x, spk, return_pairs=True)
    assert not np.isin(np.r_[pi, pj], [6, 10]).any() and pi[0] == 0 and pj[-1] == 11
    keep = np.flatnonzero(spk != -1)
    xn = normalize(x[keep])
    i, j = np.triu_indices(keep.size, 1)
    assert s.shape == (pair_count(keep.size),) == (45,)
    np.testing.assert_allclose(s, np.sum(xn[i] * xn[j], axis=1), atol=1e-6)
    np.testing.assert_array_equal(y, spk[keep][i] == spk[keep][j])
    assert y.dtype == np.int8 and y.sum() == 1 + 1 + 1 + 3


def test_all_pairs_subsample_is_deterministic_subset():
    x = _emb(30)
    spk = np.arange(30) % 5
    s_full, y_full = all_pairs(x, spk)
    s1, y1, i1, j1 = all_pairs(x, spk, max_pairs=100, seed=7, return_pairs=True)
    s2, _ = all_pairs(x, spk, max_pairs=100, seed=7)
    s3, _ = all_pairs(x, spk, max_pairs=100, seed=8)
    assert s1.shape == (100,)
    np.testing.assert_array_equal(s1, s2)
    assert not np.array_equal(s1, s3)
    # every sampled pair is a real pair with its real score and label
    assert np.all(i1 < j1)
    lin = i1 * 30 - i1 * (i1 + 1) // 2 + (j1 - i1 - 1)  # row-major position in the full list
    assert np.all(np.diff(lin) > 0)  # row-major order, no repeats
    np.testing.assert_array_equal(y1, y_full[lin])
    np.testing.assert_allclose(s1, s_full[lin], atol=1e-6)
    s_big, _ = all_pairs(x, spk, max_pairs=10**6)
    np.testing.assert_array_equal(s_big, s_full)


def test_all_pairs_torch_device_matches_numpy():
    x = _emb(25)
    spk = np.arange(25) % 4
    s, y = all_pairs(x, spk)
    s_t, y_t = all_pairs(x, spk, device="cpu")
    np.testing.assert_allclose(s_t, s, atol=1e-6)
    np.testing.assert_array_equal(y_t, y)


def test_all_pairs_1500_is_fast():
    x = _emb(1500, 192)
    spk = np.arange(1500) % 50
    t = time.perf_counter()
    s, y = all_pairs(x, spk)
    assert time.perf_counter() - t < 2.0  # ~0.1 s on 2 cores; loose for shared machines
    assert s.size == 1_124_250 and y.sum() == 50 * pair_count(30)


def _brute_as_norm(s, e, t, cohort, k):
    def stats(v):
        sc = np.sort(normalize(cohort) @ (v / np.linalg.norm(v)))[::-1][:k]
        return sc.mean(), sc.std()

    me, se = stats(e)
    mt, st = stats(t)
    return 0.5 * ((s - me) / se + (s - mt) / st)


def test_as_norm_against_direct_computation():
    x = _emb(20, 8, seed=1)
    cohort = _emb(50, 8, seed=2)
    e, t = np.array([0, 1, 2, 3, 3]), np.array([4, 5, 6, 7, 0])
    s = cosine_trials(x, e, t)
    want = [_brute_as_norm(s[q], x[e[q]], x[t[q]], cohort, 10) for q in range(5)]
    per_trial = as_norm(s, x[e], x[t], cohort, top_k=10)
    by_index = as_norm(s, x, x, cohort, top_k=10, enroll_idx=e, test_idx=t)
    np.testing.assert_allclose(per_trial, want, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(by_index, per_trial, rtol=1e-5, atol=1e-5)
    capped = as_norm(s, x[e], x[t], cohort, top_k=1000)  # capped to the 50 cohort rows
    want_all = [_brute_as_norm(s[q], x[e[q]], x[t[q]], cohort, 50) for q in range(5)]
    np.testing.assert_allclose(capped, want_all, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="enroll_idx"):
        as_norm(s, x, x[t], cohort)
