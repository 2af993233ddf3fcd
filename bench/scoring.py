"""Timing of the scoring path: EER + minDCF on 1 M trials, all pairs of 1,500 x 192 embeddings.

    python bench/scoring.py [--trials 1000000] [--utts 1500] [--dim 192] [--repeat 3]
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np


def best_of(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=1_000_000)
    ap.add_argument("--utts", type=int, default=1_500)
    ap.add_argument("--dim", type=int, default=192)
    ap.add_argument("--speakers", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)

    from ssrl_lab.eval.metrics import eer, min_dcf, verification_metrics
    from ssrl_lab.eval.scoring import all_pairs, cosine_trials

    rng = np.random.default_rng(0)
    print(f"{os.cpu_count()} cpus, load average {os.getloadavg()[0]:.1f}; best of {args.repeat}")
    y = rng.random(args.trials) < 0.05
    s = (rng.normal(size=args.trials) + 2.0 * y).astype(np.float32)
    t, e = best_of(lambda: eer(s, y), args.repeat)
    print(f"eer on {args.trials:,} trials: {t:.3f} s (EER {100 * e:.2f} %)")
    t, _ = best_of(lambda: min_dcf(s, y, 0.01), args.repeat)
    print(f"min_dcf on {args.trials:,} trials: {t:.3f} s")
    t, m = best_of(lambda: verification_metrics(s, y), args.repeat)
    print(f"verification_metrics (EER + 2 minDCF, one sort): {t:.3f} s -> "
          f"EER {m['eer']:.2f} %, minDCF 0.01 {m['mindcf_0.01']:.4f}, 0.05 {m['mindcf_0.05']:.4f}")

    spk = np.arange(args.utts) % args.speakers
    centres = rng.normal(size=(args.speakers, args.dim))
    emb = (centres[spk] + 1.5 * rng.normal(size=(args.utts, args.dim))).astype(np.float32)
    t, (ps, pl) = best_of(lambda: all_pairs(emb, spk), args.repeat)
    print(f"all_pairs on {args.utts:,} x {args.dim}: {t:.3f} s -> {ps.size:,} pairs ({int(pl.sum()):,} target)")
    t, m = best_of(lambda: verification_metrics(ps, pl), args.repeat)
    print(f"metrics on all {ps.size:,} pairs: {t:.3f} s -> EER {m['eer']:.2f} %")
    t, (ps2, _) = best_of(lambda: all_pairs(emb, spk, max_pairs=200_000), args.repeat)
    print(f"all_pairs with max_pairs=200,000: {t:.3f} s")
    idx = rng.integers(0, args.utts, size=(2, args.trials))
    t, _ = best_of(lambda: cosine_trials(emb, idx[0], idx[1]), args.repeat)
    print(f"cosine_trials, {args.trials:,} trials over {args.utts:,} embeddings: {t:.3f} s")


if __name__ == "__main__":
    main()
