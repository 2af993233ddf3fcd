"""Cluster-quality metrics computed from a sparse contingency table.

``pred`` holds cluster ids, ``true`` class ids (any integers). Only non-empty clusters and
classes appear (ids are compacted with ``np.unique``), so 8,000 clusters over 6,000 speakers
cost memory in proportion to the number of non-zero cells, not 48 M.

* ``nmi``: mutual information normalised by the arithmetic mean of the two entropies (the
  default of ``sklearn.metrics.normalized_mutual_info_score``); 1.0 when both sides hold a
  single group.
* ``purity``: share of items in their cluster's majority class; ``inverse_purity``: share of
  items in their class's majority cluster.
* ``hungarian_accuracy``: share of items on the best one-to-one matching of clusters to
  classes (unmatched clusters count as errors).
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

__all__ = ["contingency", "nmi", "purity", "inverse_purity", "hungarian_accuracy", "cluster_sizes",
           "cluster_report"]


def _pair(pred, true) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pred).reshape(-1)
    t = np.asarray(true).reshape(-1)
    if p.shape != t.shape:
        raise ValueError(f"pred ({p.size}) and true ({t.size}) differ in length")
    if p.size == 0:
        raise ValueError("no items to compare: pred and true are empty")
    return p, t


def contingency(pred, true, return_ids: bool = False):
    """Sparse CSR ``(n_clusters, n_classes)`` int64 counts over the non-empty clusters/classes.

    With ``return_ids`` also returns the cluster ids (rows) and class ids (columns).
    """
    p, t = _pair(pred, true)
    pid, pi = np.unique(p, return_inverse=True)
    tid, ti = np.unique(t, return_inverse=True)
    m = sp.coo_matrix((np.ones(p.size, dtype=np.int64), (pi.reshape(-1), ti.reshape(-1))),
                      shape=(pid.size, tid.size)).tocsr()
    m.sum_duplicates()
    return (m, pid, tid) if return_ids else m


def _entropy(counts: np.ndarray, n: int) -> float:
    q = counts[counts > 0] / n
    return float(-(q * np.log(q)).sum())


def _nmi(c: sp.csr_matrix) -> float:
    n = int(c.sum())
    if c.shape[0] == 1 and c.shape[1] == 1:
        return 1.0
    a = np.asarray(c.sum(axis=1)).reshape(-1).astype(np.float64)
    b = np.asarray(c.sum(axis=0)).reshape(-1).astype(np.float64)
    coo = c.tocoo()
    nij = coo.data.astype(np.float64)
    mi = float(np.sum(nij / n * (np.log(nij) + np.log(n) - np.log(a[coo.row]) - np.log(b[coo.col]))))
    mi = max(mi, 0.0)
    h = 0.5 * (_entropy(a, n) + _entropy(b, n))
    return float(mi / max(h, np.finfo(np.float64).eps))


def nmi(pred, true) -> float:
    """Normalised mutual information (arithmetic mean of entropies), in [0, 1]."""
    return _nmi(contingency(pred, true))


def _purity(c: sp.csr_matrix, axis: int) -> float:
    return float(c.max(axis=axis).sum() / c.sum())


def purity(pred, true) -> float:
    """Share of items belonging to the majority class of their cluster."""
    return _purity(contingency(pred, true), axis=1)


def inverse_purity(pred, true) -> float:
    """Share of items belonging to the majority cluster of their class."""
    return _purity(contingency(pred, true), axis=0)


def _matching_weight(c: sp.csr_matrix, method: str, max_dense_cells: int) -> int:
    if method == "auto":
        method = "dense" if c.shape[0] * c.shape[1] <= max_dense_cells else "sparse"
    if method == "dense":
        from scipy.optimize import linear_sum_assignment

        d = c.toarray()
        r, k = linear_sum_assignment(d, maximize=True)
        return int(d[r, k].sum())
    if method != "sparse":
        raise ValueError(f"unknown matching method {method!r}; choose auto, dense or sparse")
    from scipy.sparse.csgraph import min_weight_full_bipartite_matching

    # Every cluster also gets a private dummy class of tiny weight, so a full matching of the
    # clusters always exists; the dummies add less than 1 in total and counts are integers, so
    # the real part of the optimum is the optimum of the original (not necessarily full) problem.
    r = c.shape[0]
    eps = 0.5 / (r + 1)
    dummy = sp.identity(r, dtype=np.float64, format="csr") * eps
    g = sp.hstack([c.astype(np.float64), dummy], format="csr")
    rows, cols = min_weight_full_bipartite_matching(g, maximize=True)
    real = cols < c.shape[1]
    return int(round(c[rows[real], cols[real]].sum()))


def hungarian_accuracy(pred, true, method: str = "auto", max_dense_cells: int = 4_000_000) -> float:
    """Accuracy under the best one-to-one cluster-to-class matching.

    ``method``: ``"dense"`` (``linear_sum_assignment`` on the dense non-empty table),
    ``"sparse"`` (``min_weight_full_bipartite_matching`` on the sparse table) or ``"auto"``
    (dense up to ``max_dense_cells`` cells).
    """
    c = contingency(pred, true)
    return _matching_weight(c, method, max_dense_cells) / float(c.sum())


def cluster_sizes(pred, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Histogram of cluster sizes: ``(sizes, n_clusters_of_that_size)``, sizes ascending.

    Cluster ids are ``pred`` values; with ``k`` (ids in ``[0, k)``) empty clusters appear as
    size 0.
    """
    p = np.asarray(pred).reshape(-1)
    if k is not None:
        if p.size and (p.min() < 0 or p.max() >= k):
            raise ValueError(f"cluster ids must lie in [0, {k}); got range [{p.min()}, {p.max()}]")
        per = np.bincount(p.astype(np.int64), minlength=k)
    else:
        per = np.unique(p, return_counts=True)[1]
    return np.unique(per, return_counts=True)


def cluster_report(pred, true, method: str = "auto") -> dict:
    """NMI, purity, inverse purity, Hungarian accuracy (fractions) and counts.

    Items whose true label is ``-1`` (unknown) are ignored.
    """
    p, t = _pair(pred, true)
    keep = t != -1
    p, t = p[keep], t[keep]
    if p.size == 0:
        raise ValueError("cluster_report: every true label is -1 (unknown)")
    c = contingency(p, t)
    return {
        "nmi": _nmi(c),
        "purity": _purity(c, axis=1),
        "inverse_purity": _purity(c, axis=0),
        "accuracy": _matching_weight(c, method, 4_000_000) / float(p.size),
        "n_clusters": int(c.shape[0]),
        "n_classes": int(c.shape[1]),
        "n_items": int(p.size),
    }
