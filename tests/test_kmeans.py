"""Spherical k-means: every backend recovers planted clusters; shared result definitions."""
import numpy as np
import pytest

from ssrl_lab.cluster.kmeans import KMeansResult, spherical_kmeans
from ssrl_lab.cluster.metrics import nmi


def _planted(n=3000, k=20, d=16, noise=0.15, seed=0):
    rng = np.random.default_rng(seed)
    c = rng.normal(size=(k, d))
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    y = rng.integers(0, k, n)
    return (c[y] + noise * rng.normal(size=(n, d))).astype(np.float32), y


@pytest.mark.parametrize("backend", ["faiss", "torch", "sklearn"])
def test_backends_recover_planted_clusters(backend):
    x, y = _planted()
    x_before = x.copy()
    r = spherical_kmeans(x * 3.0, 20, n_iter=20, seed=0, backend=backend)
    assert isinstance(r, KMeansResult) and r.backend == backend
    assert r.centroids.shape == (20, 16) and r.centroids.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(r.centroids, axis=1), 1.0, atol=1e-5)
    assert r.labels.shape == (3000,) and r.labels.dtype == np.int64
    assert nmi(r.labels, y) > 0.9
    # shared definitions: labels are the nearest normalised centroid, inertia = sum(1 - cos)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    sim = xn @ r.centroids.T
    np.testing.assert_array_equal(r.labels, sim.argmax(axis=1))
    assert r.inertia == pytest.approx(float(np.sum(1 - sim.max(axis=1))), rel=1e-4)
    assert r.n_empty == 20 - np.unique(r.labels).size
    assert r.seconds > 0
    np.testing.assert_array_equal(x, x_before)  # input untouched


@pytest.mark.parametrize("backend", ["faiss", "torch"])
def test_same_seed_same_result(backend):
    x, _ = _planted(n=1000, k=10)
    a = spherical_kmeans(x, 10, seed=3, backend=backend)
    b = spherical_kmeans(x, 10, seed=3, backend=backend)
    np.testing.assert_array_equal(a.labels, b.labels)
    np.testing.assert_allclose(a.centroids, b.centroids, atol=1e-6)


def test_torch_reseeds_empty_clusters():
    # two heavy point masses and two small clusters: random starts put several centroids on the
    # heavy masses; their duplicates go empty and are re-seeded on the farthest points
    rng = np.random.default_rng(0)
    e = np.eye(8)
    x = np.concatenate([np.tile(e[0], (100, 1)), np.tile(e[1], (100, 1)),
                        e[2] + 0.05 * rng.normal(size=(5, 8)), e[3] + 0.05 * rng.normal(size=(5, 8))])
    y = np.repeat([0, 1, 2, 3], [100, 100, 5, 5])
    r = spherical_kmeans(x, 4, backend="torch", init="random", seed=0)
    assert r.n_reseeded > 0
    assert r.n_empty == 0 and nmi(r.labels, y) == pytest.approx(1.0)
    # three distinct points cannot fill four clusters: one stays empty and is reported
    r3 = spherical_kmeans(np.tile(np.eye(3), (5, 1)), 4, backend="torch")
    assert r3.n_empty == 1 and r3.n_reseeded >= 1 and r3.inertia == pytest.approx(0.0, abs=1e-5)


def test_torch_n_redo_keeps_best():
    x, _ = _planted(n=800, k=12, noise=0.4)
    runs = [spherical_kmeans(x, 12, seed=s, backend="torch", n_iter=5) for s in (0, 1, 2)]
    best = spherical_kmeans(x, 12, seed=0, backend="torch", n_iter=5, n_redo=3)
    assert best.inertia == pytest.approx(min(r.inertia for r in runs), rel=1e-6)


def test_auto_backend_is_faiss_here():
    x, _ = _planted(n=500, k=5)
    assert spherical_kmeans(x, 5, backend="auto").backend == "faiss"


def test_auto_backend_prefers_torch_on_cuda_over_faiss_cpu(monkeypatch):
    import faiss
    import torch

    from ssrl_lab.cluster.kmeans import auto_backend

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert faiss.get_num_gpus() == 0  # faiss-cpu here
    assert auto_backend() == "torch"
    assert auto_backend("cuda:0") == "torch"
    assert auto_backend("cpu") == "faiss"  # the caller asked for the CPU: faiss-cpu is faster there
    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 1)
    assert auto_backend() == "faiss"  # faiss-gpu wins when present


@pytest.mark.parametrize(
    "x, k, kw, match",
    [
        (np.ones((10, 3)), 1, {}, "at least 2"),
        (np.eye(3), 4, {}, "cannot make 4 clusters from 3 points"),
        (np.array([[1.0, np.nan], [0.0, 1.0], [1.0, 1.0]]), 2, {}, "NaN or inf"),
        (np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), 2, {}, "all-zero"),
        (np.eye(3), 2, {"backend": "cuml"}, "unknown k-means backend"),
        (np.ones(5), 2, {}, "2-D"),
    ],
)
def test_errors(x, k, kw, match):
    with pytest.raises(ValueError, match=match):
        spherical_kmeans(x, k, **kw)
