"""Spherical k-means (cosine k-means) with faiss, torch or scikit-learn backends.

The input rows are L2-normalised (on a copy); centroids are the L2-normalised means of their
members, and every point goes to the centroid of highest cosine similarity.

Backends:

* ``"faiss"``: ``faiss.Kmeans(spherical=True)`` (on GPU when faiss has GPUs), then one exact
  assignment against the final centroids. faiss trains on at most 256 points per centroid
  (a random subsample beyond that) and starts from random points.
* ``"torch"``: Lloyd iterations on ``device`` (default: CUDA if available, else CPU) with the
  assignment done by chunked matrix products (memory bounded); k-means++ initialisation on a
  seeded subsample (``init="random"`` picks random distinct points). A cluster that becomes
  empty is re-seeded with the point farthest (lowest cosine) from its own centroid; the
  re-seeds are counted in ``n_reseeded``. Stops early when no label changes. On CUDA the
  centroid sums use atomic adds, so two runs with one seed can differ in the last bits (and, rarely,
  in a near-tied label); on the CPU a seed gives identical results.
* ``"sklearn"``: ``sklearn.cluster.KMeans`` (Euclidean, k-means++) on the normalised rows,
  centroids normalised afterwards (used by the benchmark for comparison).
* ``"auto"``: faiss when it sees a GPU (faiss-gpu); else torch on CUDA when CUDA is available
  (and ``device`` is not a CPU); else faiss on the CPU when importable; else torch on the CPU.
  Measured on one H100 server (bench/RESULTS.md): at N = 1 M, d = 192, K = 8,000 the torch
  backend on the GPU ran 5 iterations in 3.3 s against 97 s for faiss-cpu on its 16 cores, so a
  GPU server without faiss-gpu must not fall back to faiss-cpu.

Every backend reports the same quantities, computed the same way after training: ``labels``
(the final assignment to the normalised centroids), ``inertia = sum_i (1 - cos(x_i,
c_label_i))`` (half the sum of squared distances between unit vectors) and ``n_empty`` (clusters
with no point in that final assignment).
"""
from __future__ import annotations

import dataclasses
import logging
import time

import numpy as np

__all__ = ["KMeansResult", "spherical_kmeans", "assign", "auto_backend", "BACKENDS"]

log = logging.getLogger("ssrl_lab.cluster.kmeans")

BACKENDS = ("auto", "faiss", "torch", "sklearn")


@dataclasses.dataclass
class KMeansResult:
    centroids: np.ndarray  # (k, d) float32, unit rows
    labels: np.ndarray  # (N,) int64
    inertia: float  # sum over points of 1 - cos(point, its centroid)
    n_empty: int  # clusters without a point in the final assignment
    backend: str
    seconds: float
    n_reseeded: int = 0  # torch backend: empty clusters re-seeded during the iterations
    n_iter: int = 0  # iterations run (torch may stop early)


def _normalize(x) -> np.ndarray:
    x = np.array(x, dtype=np.float32, copy=True, order="C")
    if x.ndim != 2:
        raise ValueError(f"k-means input must be 2-D (N, d), got shape {x.shape}")
    if not np.isfinite(x).all():
        rows = np.flatnonzero(~np.isfinite(x).all(axis=1))
        raise ValueError(f"k-means input has {rows.size} row(s) with NaN or inf (first: row {int(rows[0])})")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if (norms == 0).any():
        raise ValueError(f"k-means input has {int((norms == 0).sum())} all-zero row(s) (first: row "
                         f"{int(np.flatnonzero(norms[:, 0] == 0)[0])}); cannot normalise")
    x /= norms
    return x


def assign(x: np.ndarray, centroids: np.ndarray, chunk: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centroid by cosine for unit rows ``x``: ``(labels int64, best cosine float32)``."""
    k = centroids.shape[0]
    chunk = chunk or max(1, (1 << 25) // max(k, 1))
    labels = np.empty(x.shape[0], dtype=np.int64)
    best = np.empty(x.shape[0], dtype=np.float32)
    for s in range(0, x.shape[0], chunk):
        sim = x[s : s + chunk] @ centroids.T
        labels[s : s + chunk] = sim.argmax(axis=1)
        best[s : s + chunk] = sim[np.arange(sim.shape[0]), labels[s : s + chunk]]
    return labels, best


def _finish(x, centroids, backend, t0, n_reseeded=0, n_iter=0, assigned=None) -> KMeansResult:
    """The common report. ``assigned``: ``(labels, best cosine)`` already computed against these
    normalised centroids (the torch backend does the final assignment on its own device)."""
    c = np.asarray(centroids, dtype=np.float32)
    c = c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)
    labels, best = assigned if assigned is not None else assign(x, c)
    counts = np.bincount(labels, minlength=c.shape[0])
    return KMeansResult(c, labels, float(np.sum(1.0 - best.astype(np.float64))), int((counts == 0).sum()),
                        backend, time.perf_counter() - t0, n_reseeded, n_iter)


def _faiss(x, k, n_iter, seed, n_redo, verbose):
    import faiss

    gpu = faiss.get_num_gpus() > 0
    km = faiss.Kmeans(x.shape[1], k, niter=n_iter, spherical=True, seed=seed, gpu=gpu, nredo=n_redo,
                      verbose=verbose)
    km.train(x)
    return km.centroids


def _kmeanspp(x, k: int, gen, device, max_sample: int):
    """k-means++ seeding (cosine distance 1 - cos) on a seeded subsample of at most max_sample rows."""
    import torch

    n = x.shape[0]
    if n > max_sample:
        x = x[torch.randperm(n, generator=gen, device="cpu")[:max_sample].to(device)]
        n = max_sample
    first = int(torch.randint(n, (1,), generator=gen))
    cent = torch.empty(k, x.shape[1], dtype=x.dtype, device=device)
    cent[0] = x[first]
    dist = (1.0 - x @ cent[0]).clamp_min_(0)
    for j in range(1, k):
        total = float(dist.sum())
        if total <= 0:  # every sampled point already coincides with a centre
            idx = int(torch.randint(n, (1,), generator=gen))
        else:
            u = float(torch.rand(1, generator=gen, dtype=torch.float64)) * total
            idx = int(torch.searchsorted(torch.cumsum(dist.double(), 0), torch.tensor([u], dtype=torch.float64,
                                                                                     device=dist.device)))
            idx = min(idx, n - 1)
        cent[j] = x[idx]
        torch.minimum(dist, (1.0 - x @ cent[j]).clamp_min_(0), out=dist)
    return cent


def _assign_blocks(x, cent, chunk: int, labels, best):
    """Nearest centroid of every row of ``x`` in blocks of ``chunk`` rows, written into ``labels``
    and ``best`` (cosine) in place; returns how many labels changed, as a device tensor (one host
    synchronisation per call at most, when the caller reads it)."""
    changed = labels.new_zeros(())
    for s in range(0, x.shape[0], chunk):
        b, lab = (x[s : s + chunk] @ cent.T).max(dim=1)
        changed += (lab != labels[s : s + chunk]).sum()
        labels[s : s + chunk] = lab
        best[s : s + chunk] = b
    return changed


def _torch(x_np, k, n_iter, seed, device, init, verbose):
    import torch

    dev = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
    x = torch.from_numpy(x_np).to(dev)
    n, d = x.shape
    gen = torch.Generator(device="cpu").manual_seed(int(seed))
    if init == "k-means++":
        cent = _kmeanspp(x, k, gen, dev, max_sample=max(20 * k, 10000))
    else:
        cent = x[torch.randperm(n, generator=gen)[:k].to(dev)].clone()
    chunk = max(1, (1 << 26) // k)  # rows per assignment block: at most 64 M similarities
    labels = torch.full((n,), -1, dtype=torch.long, device=dev)
    best = torch.empty(n, dtype=x.dtype, device=dev)
    n_reseeded = 0
    it = 0
    for it in range(1, n_iter + 1):
        changed = int(_assign_blocks(x, cent, chunk, labels, best))
        sums = torch.zeros(k, d, dtype=x.dtype, device=dev).index_add_(0, labels, x)
        counts = torch.bincount(labels, minlength=k)
        empty = torch.nonzero(counts == 0).flatten()
        if empty.numel():
            far = torch.topk(best, empty.numel(), largest=False).indices
            sums[empty] = x[far]
            n_reseeded += empty.numel()
        cent = sums / sums.norm(dim=1, keepdim=True).clamp_min(1e-12)
        if verbose:
            log.info("torch k-means iter %d: %d labels changed, %d empty, mean cos %.4f", it, changed,
                     empty.numel(), float(best.mean()))
        if changed == 0 and not empty.numel():
            break
    # the final assignment against the returned centroids, on the same device (on a GPU this
    # saves an N x K matrix product on the CPU)
    _assign_blocks(x, cent, chunk, labels, best)
    return cent.cpu().numpy(), n_reseeded, it, (labels.cpu().numpy(), best.float().cpu().numpy())


def _sklearn(x, k, n_iter, seed, n_redo):
    from sklearn.cluster import KMeans

    km = KMeans(n_clusters=k, init="k-means++", n_init=n_redo, max_iter=n_iter, random_state=seed,
                algorithm="lloyd", tol=0.0)
    km.fit(x)
    return km.cluster_centers_


def auto_backend(device=None) -> str:
    """The backend ``"auto"`` resolves to (see the module doc): faiss-gpu, torch on CUDA, faiss
    on the CPU, torch on the CPU, in that order of preference."""
    try:
        import faiss
    except ImportError:
        faiss = None
    if faiss is not None and faiss.get_num_gpus() > 0:
        return "faiss"
    import torch

    on_cpu = device is not None and torch.device(device).type == "cpu"
    if torch.cuda.is_available() and not on_cpu:
        return "torch"
    return "faiss" if faiss is not None else "torch"


def spherical_kmeans(
    x,
    k: int,
    n_iter: int = 20,
    seed: int = 0,
    backend: str = "auto",
    device=None,
    n_redo: int = 1,
    verbose: bool = False,
    init: str = "k-means++",
) -> KMeansResult:
    """Cluster the rows of ``x`` (N, d) into ``k`` clusters by cosine similarity.

    ``n_redo`` runs (seeds ``seed, seed+1, ...``) keep the lowest inertia. ``device``: torch
    backend only. ``init``: torch backend only (``"k-means++"`` or ``"random"``). Raises
    ValueError for ``k < 2``, ``k > N``, non-finite or all-zero rows, an unknown backend.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown k-means backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if init not in ("k-means++", "random"):
        raise ValueError(f"unknown init {init!r}; choose 'k-means++' or 'random'")
    if n_iter < 1 or n_redo < 1:
        raise ValueError(f"n_iter and n_redo must be positive, got {n_iter} and {n_redo}")
    xn = _normalize(x)
    n = xn.shape[0]
    k = int(k)
    if k < 2:
        raise ValueError(f"k must be at least 2, got {k}")
    if k > n:
        raise ValueError(f"cannot make {k} clusters from {n} points")
    if backend == "auto":
        backend = auto_backend(device)
    if backend == "torch":
        import torch  # noqa: F401  (imported before the clock starts)
    t0 = time.perf_counter()
    if backend == "faiss":
        return _finish(xn, _faiss(xn, k, n_iter, seed, n_redo, verbose), "faiss", t0, n_iter=n_iter)
    if backend == "sklearn":
        return _finish(xn, _sklearn(xn, k, n_iter, seed, n_redo), "sklearn", t0, n_iter=n_iter)
    best = None
    for r in range(n_redo):
        t1 = time.perf_counter()
        cent, n_reseeded, it, assigned = _torch(xn, k, n_iter, seed + r, device, init, verbose)
        res = _finish(xn, cent, "torch", t1, n_reseeded, it, assigned)
        if best is None or res.inertia < best.inertia:
            best = res
    best.seconds = time.perf_counter() - t0
    return best
