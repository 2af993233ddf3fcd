"""Cosine scoring of speaker embeddings: trial lists, all test pairs and adaptive s-norm.

Embeddings are centred (optionally: subtract a mean such as the training-set mean), then
L2-normalised; a score is the dot product of two normalised embeddings. Inputs are numpy
float32 ``(N, D)`` arrays; ``device`` (a torch device string) moves the big matrix products to
torch (e.g. ``"cuda"``), the results come back as numpy.
"""
from __future__ import annotations

import numpy as np

__all__ = ["normalize", "cosine_trials", "all_pairs", "pair_count", "as_norm"]

_EPS = 1e-12


def normalize(emb, mean=None) -> np.ndarray:
    """A float32 copy of ``emb`` (N, D), minus ``mean`` (D,) when given, with unit-norm rows.

    A zero row stays zero (its scores are 0). Raises ValueError on non-finite values.
    """
    x = np.array(emb, dtype=np.float32, copy=True)
    if x.ndim != 2:
        raise ValueError(f"embeddings must be a 2-D (N, D) array, got shape {x.shape}")
    if not np.isfinite(x).all():
        rows = np.flatnonzero(~np.isfinite(x).all(axis=1))
        raise ValueError(f"{rows.size} embedding row(s) hold NaN or inf (first: row {int(rows[0])})")
    if mean is not None:
        m = np.asarray(mean, dtype=np.float32).reshape(-1)
        if m.shape[0] != x.shape[1]:
            raise ValueError(f"mean has {m.shape[0]} values, embeddings have {x.shape[1]} dimensions")
        x -= m
    x /= np.maximum(np.linalg.norm(x, axis=1, keepdims=True), _EPS)
    return x


def _rowwise_dot(x: np.ndarray, a: np.ndarray, b: np.ndarray, chunk: int = 1 << 20) -> np.ndarray:
    out = np.empty(a.shape[0], dtype=np.float32)
    for s in range(0, a.shape[0], chunk):
        e = s + chunk
        out[s:e] = np.einsum("ij,ij->i", x[a[s:e]], x[b[s:e]])
    return out


def cosine_trials(emb, enroll, test=None, mean=None) -> np.ndarray:
    """Cosine scores of trials: ``enroll``/``test`` are row indices into ``emb`` (N, D).

    ``enroll`` may also be a TrialList (anything with ``.enroll`` and ``.test``), then ``test``
    is left out. ``mean`` (D,) is subtracted before normalisation. Returns float32 (T,).
    """
    if test is None:
        if not (hasattr(enroll, "enroll") and hasattr(enroll, "test")):
            raise ValueError("cosine_trials: pass enroll and test indices, or a TrialList as enroll")
        enroll, test = enroll.enroll, enroll.test
    x = normalize(emb, mean)
    e = np.asarray(enroll, dtype=np.int64).reshape(-1)
    t = np.asarray(test, dtype=np.int64).reshape(-1)
    if e.shape != t.shape:
        raise ValueError(f"enroll ({e.size}) and test ({t.size}) index arrays differ in length")
    n = x.shape[0]
    for name, idx in (("enroll", e), ("test", t)):
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise ValueError(f"{name} indices must lie in [0, {n}); got range [{idx.min()}, {idx.max()}]")
    return _rowwise_dot(x, e, t)


def pair_count(n: int) -> int:
    """Number of unordered pairs of ``n`` items."""
    return n * (n - 1) // 2


def _pairs_from_linear(lin: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-major strict-upper-triangle position -> (i, j) with i < j."""
    i_idx = np.arange(n, dtype=np.int64)
    starts = i_idx * (2 * n - i_idx - 1) // 2  # first linear index of row i
    i = np.searchsorted(starts, lin, side="right") - 1
    j = lin - starts[i] + i + 1
    return i, j


def all_pairs(
    emb,
    speakers,
    mean=None,
    max_pairs: int | None = None,
    seed: int = 0,
    device=None,
    return_pairs: bool = False,
):
    """Scores and labels of every unordered pair of utterances (strict upper triangle).

    ``speakers`` (N,) integer codes; rows with code ``-1`` (unknown speaker) are left out.
    Pairs come in row-major order of the kept rows. With ``max_pairs`` smaller than the number
    of pairs, a deterministic (``seed``) uniform sample of pairs without replacement is scored,
    in the same order, without building the full matrix. ``device``: torch device for the
    matrix product (e.g. ``"cuda"``). Returns float32 scores and int8 labels (1 = same speaker);
    with ``return_pairs`` also the two int64 row-index arrays (rows of ``emb``) of each pair.
    """
    spk = np.asarray(speakers).reshape(-1)
    x = normalize(emb, mean)
    if spk.shape[0] != x.shape[0]:
        raise ValueError(f"speakers has {spk.shape[0]} entries, embeddings have {x.shape[0]} rows")
    keep = spk != -1
    rows = np.flatnonzero(keep)
    if not keep.all():
        x, spk = x[keep], spk[keep]

    def done(scores, i, j):
        labels = (spk[i] == spk[j]).astype(np.int8)
        return (scores, labels, rows[i], rows[j]) if return_pairs else (scores, labels)

    n = x.shape[0]
    m = pair_count(n)
    if m == 0:
        raise ValueError(f"all_pairs needs at least 2 utterances with known speakers, got {n}")
    if max_pairs is not None and max_pairs < 1:
        raise ValueError(f"max_pairs must be positive, got {max_pairs}")
    if max_pairs is not None and max_pairs < m:
        lin = np.sort(np.random.default_rng(seed).choice(m, size=max_pairs, replace=False))
        i, j = _pairs_from_linear(lin.astype(np.int64), n)
        return done(_rowwise_dot(x, i, j), i, j)
    if device is not None:
        import torch

        xt = torch.from_numpy(x).to(device)
        iu = torch.triu_indices(n, n, offset=1, device=xt.device)
        scores = (xt @ xt.T)[iu[0], iu[1]].cpu().numpy()
        iu = iu.cpu().numpy()
        return done(scores, iu[0], iu[1])
    sim = x @ x.T
    iu = np.triu_indices(n, k=1)
    scores = sim[iu]
    del sim
    return done(scores, iu[0], iu[1])


def _top_k_stats(x: np.ndarray, cohort: np.ndarray, top_k: int, device=None, chunk: int = 4096):
    """Mean and std of each row's ``top_k`` highest cohort scores."""
    mu = np.empty(x.shape[0], dtype=np.float64)
    sd = np.empty(x.shape[0], dtype=np.float64)
    if device is not None:
        import torch

        ct = torch.from_numpy(cohort).to(device)
    for s in range(0, x.shape[0], chunk):
        xs = x[s : s + chunk]
        if device is not None:
            top = torch.topk(torch.from_numpy(xs).to(device) @ ct.T, top_k, dim=1).values.double().cpu().numpy()
        else:
            sc = xs @ cohort.T
            top = np.partition(sc, sc.shape[1] - top_k, axis=1)[:, sc.shape[1] - top_k :].astype(np.float64)
        mu[s : s + chunk] = top.mean(axis=1)
        sd[s : s + chunk] = top.std(axis=1)
    return mu, np.maximum(sd, 1e-8)


def as_norm(
    scores,
    enroll_emb,
    test_emb,
    cohort_emb,
    top_k: int = 300,
    enroll_idx=None,
    test_idx=None,
    mean=None,
    device=None,
) -> np.ndarray:
    """Adaptive symmetric score normalisation (AS-norm).

    ``s' = ((s - mu_e) / sd_e + (s - mu_t) / sd_t) / 2`` where ``mu_e, sd_e`` are the mean and
    std of the ``top_k`` highest cosine scores of the enrollment embedding against the cohort
    (likewise for the test side). ``enroll_emb``/``test_emb`` are either one row per trial
    (aligned with ``scores``), or, with ``enroll_idx``/``test_idx`` given, tables of utterance
    embeddings that the index arrays point into (cheaper: statistics once per utterance).
    ``top_k`` is capped at the cohort size. Embeddings are centred with ``mean`` and
    L2-normalised, like :func:`cosine_trials`.
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    cohort = normalize(cohort_emb, mean)
    if top_k < 1:
        raise ValueError(f"top_k must be positive, got {top_k}")
    k = min(int(top_k), cohort.shape[0])
    stats = []
    for name, emb, idx in (("enroll", enroll_emb, enroll_idx), ("test", test_emb, test_idx)):
        x = normalize(emb, mean)
        if x.shape[1] != cohort.shape[1]:
            raise ValueError(f"{name} embeddings have {x.shape[1]} dims, cohort has {cohort.shape[1]}")
        mu, sd = _top_k_stats(x, cohort, k, device)
        if idx is not None:
            idx = np.asarray(idx, dtype=np.int64).reshape(-1)
            mu, sd = mu[idx], sd[idx]
        if mu.shape[0] != s.shape[0]:
            raise ValueError(f"{name}: {mu.shape[0]} rows for {s.shape[0]} scores (pass {name}_idx?)")
        stats.append((mu, sd))
    (mu_e, sd_e), (mu_t, sd_t) = stats
    return (0.5 * ((s - mu_e) / sd_e + (s - mu_t) / sd_t)).astype(np.float32)
