"""Cluster metrics against sklearn and hand-computed values; both matching paths agree."""
import itertools

import numpy as np
import pytest
from sklearn.metrics import normalized_mutual_info_score

from ssrl_lab.cluster.metrics import (
    cluster_report,
    cluster_sizes,
    contingency,
    hungarian_accuracy,
    inverse_purity,
    nmi,
    purity,
)

PRED = np.array([5, 5, 5, 9, 9, 2, 2, 2])
TRUE = np.array([0, 0, 1, 1, 1, 1, 3, 3])


def test_contingency_is_compact_and_sparse():
    c, pid, tid = contingency(PRED, TRUE, return_ids=True)
    assert c.format == "csr" and c.shape == (3, 3)
    assert pid.tolist() == [2, 5, 9] and tid.tolist() == [0, 1, 3]
    np.testing.assert_array_equal(c.toarray(), [[0, 1, 2], [2, 1, 0], [0, 2, 0]])


def test_hand_computed_values():
    # clusters: {0,0,1} {1,1} {1,3,3}; classes: 0:{5,5} 1:{5,9,9,2} 3:{2,2}
    assert purity(PRED, TRUE) == pytest.approx((2 + 2 + 2) / 8)
    assert inverse_purity(PRED, TRUE) == pytest.approx((2 + 2 + 2) / 8)
    # best one-to-one: 5->0 (2), 9->1 (2), 2->3 (2)
    assert hungarian_accuracy(PRED, TRUE) == pytest.approx(6 / 8)
    assert nmi(PRED, PRED * 7 + 1) == pytest.approx(1.0)
    assert nmi([0, 0, 1, 1], [0, 1, 0, 1]) == pytest.approx(0.0, abs=1e-12)
    assert nmi([3, 3, 3], [1, 1, 1]) == 1.0


@pytest.mark.parametrize("seed", range(4))
def test_nmi_matches_sklearn(seed):
    rng = np.random.default_rng(seed)
    true = rng.integers(0, 25, 1500)
    pred = np.where(rng.random(1500) < 0.6, true * 3 + 1, rng.integers(0, 60, 1500))
    assert nmi(pred, true) == pytest.approx(normalized_mutual_info_score(true, pred), abs=1e-10)


def _brute_accuracy(pred, true):
    c = contingency(pred, true).toarray()
    r, k = c.shape
    best = 0
    if r <= k:
        for perm in itertools.permutations(range(k), r):
            best = max(best, sum(c[i, perm[i]] for i in range(r)))
    else:
        for perm in itertools.permutations(range(r), k):
            best = max(best, sum(c[perm[j], j] for j in range(k)))
    return best / len(pred)


@pytest.mark.parametrize("seed, n_pred, n_true", [(0, 6, 4), (1, 4, 6), (2, 5, 5), (3, 7, 3)])
def test_dense_and_sparse_matching_agree_with_brute_force(seed, n_pred, n_true):
    rng = np.random.default_rng(seed)
    true = rng.integers(0, n_true, 60)
    pred = np.where(rng.random(60) < 0.5, true % n_pred, rng.integers(0, n_pred, 60))
    want = _brute_accuracy(pred, true)
    assert hungarian_accuracy(pred, true, method="dense") == pytest.approx(want)
    assert hungarian_accuracy(pred, true, method="sparse") == pytest.approx(want)


def test_sparse_matching_without_a_full_real_matching():
    # two clusters only ever hold class 0: no matching covers every cluster with real edges
    pred = np.array([0, 0, 1, 1, 2, 2, 2])
    true = np.array([0, 0, 0, 0, 1, 1, 2])
    assert hungarian_accuracy(pred, true, method="sparse") == pytest.approx(4 / 7)
    assert hungarian_accuracy(pred, true, method="dense") == pytest.approx(4 / 7)


def test_large_sparse_path_runs():
    rng = np.random.default_rng(0)
    true = rng.integers(0, 3000, 40000)
    pred = np.where(rng.random(40000) < 0.8, true, rng.integers(0, 4000, 40000))
    acc = hungarian_accuracy(pred, true, method="auto", max_dense_cells=1000)  # forces sparse
    assert 0.8 <= acc <= 0.85


def test_cluster_sizes():
    sizes, counts = cluster_sizes([0, 0, 0, 2, 2, 5])
    assert sizes.tolist() == [1, 2, 3] and counts.tolist() == [1, 1, 1]
    sizes, counts = cluster_sizes([0, 0, 0, 2, 2, 5], k=7)
    assert sizes.tolist() == [0, 1, 2, 3] and counts.tolist() == [4, 1, 1, 1]
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        cluster_sizes([0, 3], k=3)


def test_cluster_report_ignores_unknown():
    pred = np.r_[PRED, [7, 7, 8]]
    true = np.r_[TRUE, [-1, -1, -1]]
    r = cluster_report(pred, true)
    assert r == {
        "nmi": pytest.approx(normalized_mutual_info_score(TRUE, PRED)),
        "purity": pytest.approx(0.75),
        "inverse_purity": pytest.approx(0.75),
        "accuracy": pytest.approx(0.75),
        "n_clusters": 3,
        "n_classes": 3,
        "n_items": 8,
    }
    with pytest.raises(ValueError, match="-1"):
        cluster_report([0, 1], [-1, -1])
    with pytest.raises(ValueError, match="differ in length"):
        cluster_report([0, 1], [0])
