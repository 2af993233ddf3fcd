"""Cost of the speaker-bootstrap confidence intervals at the demo's and the study's sizes.

The demo's test split has 40 speakers x 20 utterances: an 8,000-trial list and 319,600 pairs
(all pairs of 800 utterances); budget 1,000 replicates in under 5 s on the trial list and 60 s
on all pairs. The ``study`` SynthVox profile's has 200 speakers x 20 utterances: a 40,000-trial
list and 7,998,000 pairs; budget (issue 23) under 10 s and under 120 s, on the 2-core
development machine. ``--sizes study`` runs those. This prints, side by side in one run, the fast
path (:class:`ssrl_lab.eval.bootstrap._Blocked`: per speaker-group sufficient statistics at
about sqrt(N) block boundaries, one matrix product per chunk of replicates) and the dense
reference on a sample of replicates, and checks that they agree.

    python bench/bootstrap.py [--sizes demo|study] [--reps 1000] [--dense-reps 20]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

#: test-set sizes and the issues' budgets in seconds for 1,000 replicates
SIZES = {
    "demo": {"speakers": 40, "trials": 8000, "budget": {"trials": 5.0, "all_pairs": 60.0}},
    "study": {"speakers": 200, "trials": 40000, "budget": {"trials": 10.0, "all_pairs": 120.0}},
}


def demo_like(rng, n_spk=40, per_spk=20, n_trials=8000, noise=1.3):
    """Speaker-clustered embeddings scored on a trial list of ``n_trials`` and on all pairs."""
    spk = np.repeat(np.arange(n_spk), per_spk)
    centres = rng.normal(size=(n_spk, 64)) / 8
    emb = (centres[spk] + noise * rng.normal(size=(spk.size, 64)) / 8).astype(np.float32)  # EER about 6 %

    class Trials:
        enroll = rng.integers(0, spk.size, n_trials)
        test = (enroll + rng.integers(1, spk.size, n_trials)) % spk.size
        label = (spk[enroll] == spk[test]).astype(np.int8)

    return emb, spk, Trials


def main(argv=None) -> list[dict]:
    from ssrl_lab.eval.bootstrap import replicate_metrics
    from ssrl_lab.eval.evaluate import score_embeddings
    from ssrl_lab.eval.saved_scores import SavedScores

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=1000)
    ap.add_argument("--dense-reps", type=int, default=20, help="replicates of the dense reference (it is slow)")
    ap.add_argument("--sizes", choices=sorted(SIZES), default="demo", help="the test set's size and the budgets")
    ap.add_argument("--speakers", type=int, default=None, help="(default: the sizes' own)")
    ap.add_argument("--per-speaker", type=int, default=20)
    ap.add_argument("--trials", type=int, default=None, help="(default: the sizes' own)")
    args = ap.parse_args(argv)
    size = SIZES[args.sizes]
    args.speakers, args.trials = args.speakers or size["speakers"], args.trials or size["trials"]
    rng = np.random.default_rng(0)
    emb, spk, trials = demo_like(rng, args.speakers, args.per_speaker, args.trials)
    rows = []
    ev = score_embeddings(emb, trials, spk, return_scores=True)
    saved = SavedScores(None, ev["scores"], ev["labels"], ev["embeddings"], ev["speakers"], ev["trial_rows"])
    budget = size["budget"]
    print(f"| scores | n | EER % | {args.reps} replicates (s) | budget (s) | share of budget "
          f"| dense reference, per replicate (s) | fast / dense speed-up | max abs difference |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for on in ("trials", "all_pairs"):
        scores, tr, _ = saved.trial_list() if on == "trials" else saved.all_pairs()
        t0 = time.perf_counter()
        replicate_metrics([scores], tr, n_reps=args.reps, seed=1)
        t_fast = time.perf_counter() - t0
        t0 = time.perf_counter()
        dense = replicate_metrics([scores], tr, n_reps=args.dense_reps, seed=1, dense=True)
        t_dense = (time.perf_counter() - t0) / args.dense_reps
        check = replicate_metrics([scores], tr, n_reps=args.dense_reps, seed=1)
        diff = float(np.nanmax(np.abs(check - dense)))
        eer = ev["eer"] if on == "trials" else ev["eer_all_pairs"]
        print(f"| {on} | {len(tr)} | {eer:.2f} | {t_fast:.2f} | {budget[on]:.0f} | {t_fast / budget[on]:.3f} "
              f"| {t_dense:.4f} | {t_dense * args.reps / t_fast:.1f}x | {diff:.1e} |")
        rows.append({"on": on, "n": len(tr), "eer": eer, "seconds": t_fast, "max_abs_diff": diff})
    return rows


if __name__ == "__main__":
    main()
