"""Spherical k-means backends side by side: faiss vs torch vs scikit-learn.

Synthetic clustered data: ``k`` random unit centres in ``d`` dimensions, every point a centre
plus Gaussian noise (noise norm about ``--noise`` times the centre's), L2-normalised. Every
backend runs ``--iters`` iterations from one start; inertia is the same quantity for all
(sum of 1 - cos to the assigned normalised centroid), NMI is against the true centres.

    python bench/kmeans.py                      # N=100,000, d=192, K=1,000, 20 iterations
    python bench/kmeans.py --n 20000 --k 200 --backends faiss,torch

OpenMP threads wait passively (``OMP_WAIT_POLICY=PASSIVE`` unless already set): on a shared,
busy machine spinning OpenMP workers made faiss several times slower.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before faiss / torch start OpenMP

import argparse  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402


def synthetic(n: int, d: int, k: int, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(k, d)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    y = rng.integers(0, k, n)
    x = centres[y] + (noise / np.sqrt(d)) * rng.normal(size=(n, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), y


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--d", type=int, default=192)
    ap.add_argument("--k", type=int, default=1_000)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--faiss-iters", type=int, default=None,
                    help="iterations for faiss only (default --iters); faiss-cpu at K = 8,000 over 1 M points "
                         "takes ~20 s per iteration on a 16-core server, so the GPU check runs it for a few")
    ap.add_argument("--noise", type=float, default=1.0, help="noise norm relative to the unit centre")
    ap.add_argument("--backends", default="faiss,torch,sklearn")
    ap.add_argument("--device", default=None, help="torch backend device (default: cuda if available)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="CPU threads for faiss and torch")
    args = ap.parse_args(argv)

    import faiss
    import torch

    if args.threads:
        faiss.omp_set_num_threads(args.threads)
        torch.set_num_threads(args.threads)

    from ssrl_lab.cluster.kmeans import spherical_kmeans
    from ssrl_lab.cluster.metrics import nmi

    x, y = synthetic(args.n, args.d, args.k, args.noise, args.seed)
    print(f"data: N={args.n:,} d={args.d} K={args.k} noise={args.noise} iters={args.iters}; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus, torch threads "
          f"{torch.get_num_threads()}, cuda={torch.cuda.is_available()}, load average "
          f"{os.getloadavg()[0]:.1f}, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}")
    # warm-up (library start-up costs are not k-means)
    for b in args.backends.split(","):
        spherical_kmeans(x[:2000], 10, n_iter=2, backend=b, device=args.device)
    rows = {}
    for b in args.backends.split(","):
        t = time.perf_counter()
        iters = args.faiss_iters if (b == "faiss" and args.faiss_iters) else args.iters
        r = spherical_kmeans(x, args.k, n_iter=iters, seed=args.seed, backend=b, device=args.device)
        wall = time.perf_counter() - t
        rows[b] = (wall, r.inertia, nmi(r.labels, y), r.n_empty, r.n_reseeded, r.n_iter)
        print(f"  done {b}: {wall:.2f} s (load average {os.getloadavg()[0]:.1f})", flush=True)
    print(f"\n{'backend':8s} {'seconds':>8s} {'inertia':>10s} {'mean 1-cos':>10s} {'NMI':>7s} "
          f"{'empty':>5s} {'reseeded':>8s} {'iters':>5s} {'s/iter':>7s} {'x faiss time':>12s} {'x faiss s/iter':>14s}")
    base = rows.get("faiss")
    for b, (sec, inert, score, empty, reseed, it) in rows.items():
        # seconds per iteration: the whole call (seeding and the final assignment included) / iterations
        per = sec / max(it, 1)
        ratio = f"{sec / base[0]:.3f}" if base else "-"
        ratio_it = f"{per / (base[0] / max(base[5], 1)):.3f}" if base else "-"
        print(f"{b:8s} {sec:8.2f} {inert:10.1f} {inert / args.n:10.4f} {score:7.4f} {empty:5d} {reseed:8d} "
              f"{it:5d} {per:7.2f} {ratio:>12s} {ratio_it:>14s}")


if __name__ == "__main__":
    main()
