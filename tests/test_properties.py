"""Property-based tests (hypothesis) for the label queue vote and the cluster metrics.

(EER / minDCF properties - invariance to increasing transforms, bounds, symmetric cases - live
in tests/test_metrics.py.) Example counts are small so that the file runs in seconds.
"""
from __future__ import annotations

import statistics
from collections import Counter

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ssrl_lab.cluster.metrics import cluster_report, hungarian_accuracy, inverse_purity, nmi, purity
from ssrl_lab.labels.queue import LabelQueue

FAST = settings(max_examples=40, deadline=None)


@st.composite
def queue_rows(draw, max_n=12, max_len=6, max_label=5):
    """An ``(N, L)`` int matrix: each row a queue in push order (oldest first)."""
    n = draw(st.integers(1, max_n))
    length = draw(st.integers(1, max_len))
    flat = draw(st.lists(st.integers(0, max_label), min_size=n * length, max_size=n * length))
    return np.asarray(flat, dtype=np.int64).reshape(n, length)


def _queue(rows: np.ndarray, tie_break: str) -> LabelQueue:
    """A full queue whose entries are ``rows`` (seeded with the first column, then pushes)."""
    n, length = rows.shape
    q = LabelQueue(n, length, torch.as_tensor(rows[:, 0]), seed_copies=1, tie_break=tie_break)
    for j in range(1, length):
        q.push(torch.as_tensor(rows[:, j]))
    assert np.array_equal(q.entries.numpy(), rows)
    return q


def _expected(row: list[int], tie_break: str) -> int:
    counts = Counter(row)
    top = max(counts.values())
    tied = [lab for lab in counts if counts[lab] == top]
    if tie_break == "oldest":
        return statistics.mode(row)
    if tie_break == "smallest":
        return min(tied)
    return max(tied, key=lambda lab: max(i for i, x in enumerate(row) if x == lab))  # recent


@pytest.mark.parametrize("tie_break", ["oldest", "recent", "smallest"])
@FAST
@given(rows=queue_rows())
def test_vote_is_a_most_frequent_entry_with_its_tie_break(tie_break, rows):
    vote = _queue(rows, tie_break).vote().numpy()
    for r, v in zip(rows.tolist(), vote.tolist()):
        assert v in r  # always one of the row's entries
        assert r.count(v) == max(Counter(r).values())  # a most frequent one
        assert v == _expected(r, tie_break)  # the documented tie-break


@pytest.mark.parametrize("tie_break", ["oldest", "recent", "smallest"])
@FAST
@given(rows=queue_rows(), data=st.data())
def test_vote_commutes_with_row_permutation(tie_break, rows, data):
    perm = np.asarray(data.draw(st.permutations(range(len(rows)))), dtype=np.int64)
    vote = _queue(rows, tie_break).vote().numpy()
    assert np.array_equal(_queue(rows[perm], tie_break).vote().numpy(), vote[perm])


@pytest.mark.parametrize("tie_break", ["oldest", "recent"])
@FAST
@given(rows=queue_rows(), data=st.data())
def test_position_based_votes_commute_with_relabelling(tie_break, rows, data):
    mapping = np.asarray(data.draw(st.permutations(range(6))), dtype=np.int64)
    vote = _queue(rows, tie_break).vote().numpy()
    assert np.array_equal(_queue(mapping[rows], tie_break).vote().numpy(), mapping[vote])


@FAST
@given(rows=queue_rows())
def test_agreement_is_the_share_of_the_vote(rows):
    q = _queue(rows, "oldest")
    vote, agree = q.vote().numpy(), q.agreement().numpy()
    expected = (rows == vote[:, None]).mean(1)
    assert np.allclose(agree, expected) and ((agree > 0) & (agree <= 1)).all()


# -- cluster metrics ------------------------------------------------------------------------------
@st.composite
def labellings(draw, max_n=40, max_k=6):
    n = draw(st.integers(1, max_n))
    pred = draw(st.lists(st.integers(0, max_k - 1), min_size=n, max_size=n))
    true = draw(st.lists(st.integers(0, max_k - 1), min_size=n, max_size=n))
    return np.asarray(pred), np.asarray(true)


KEYS = ("nmi", "purity", "inverse_purity", "accuracy")


@FAST
@given(pt=labellings())
def test_cluster_metrics_are_fractions(pt):
    rep = cluster_report(*pt)
    for k in KEYS:
        assert 0.0 <= rep[k] <= 1.0 + 1e-12, k


@FAST
@given(pt=labellings(), data=st.data())
def test_cluster_metrics_ignore_label_names(pt, data):
    pred, true = pt
    mp = np.asarray(data.draw(st.permutations(range(6))))
    mt = np.asarray(data.draw(st.permutations(range(6)))) + 100  # any ids, not only 0..k-1
    a, b = cluster_report(pred, true), cluster_report(mp[pred], mt[true])
    for k in KEYS:
        assert a[k] == pytest.approx(b[k], abs=1e-12), k


@FAST
@given(pt=labellings())
def test_cluster_metrics_symmetries(pt):
    pred, true = pt
    assert nmi(pred, true) == pytest.approx(nmi(true, pred), abs=1e-12)
    assert purity(pred, true) == pytest.approx(inverse_purity(true, pred), abs=1e-12)
    assert hungarian_accuracy(pred, true) == pytest.approx(hungarian_accuracy(true, pred), abs=1e-12)
    # accuracy (a one-to-one matching) never beats purity (many-to-one)
    assert hungarian_accuracy(pred, true) <= purity(pred, true) + 1e-12


@FAST
@given(true=st.lists(st.integers(0, 5), min_size=2, max_size=40).filter(lambda t: len(set(t)) >= 2), data=st.data())
def test_a_perfect_clustering_scores_one(true, data):
    true = np.asarray(true)
    mp = np.asarray(data.draw(st.permutations(range(6))))
    rep = cluster_report(mp[true], true)  # the same partition under other names
    for k in KEYS:
        assert rep[k] == pytest.approx(1.0), k
