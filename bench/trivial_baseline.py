"""Calibration check for SynthVox: how far does a mean spectrum get?

Each test utterance becomes its mean log-Mel vector (80 bands, 25 ms / 10 ms, Kaldi fbank) or
its mean MFCC vector (30 coefficients); trials are scored by cosine similarity. A corpus that this
solves cannot tell self-supervised methods apart, so at the default difficulty the EER must be at
least 15 %. For the other end (the corpus must stay learnable), ``--lda`` also trains a
supervised LDA on the training speakers' mean+std log-Mel vectors and scores the test trials in the
LDA space: a trained model should do much better than the raw mean.

    python bench/trivial_baseline.py [--corpus data/synthvox-demo] [--difficulty 1.0] [--no-lda]

Builds the corpus (demo profile) with :func:`ssrl_lab.data.synthvox.build_synthvox` when missing.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio

from ssrl_lab.data.synthvox import build_synthvox
from ssrl_lab.data.table import UtteranceTable

try:  # the project's metric when it exists
    from ssrl_lab.eval.metrics import eer as _project_eer
except ImportError:  # pragma: no cover - depends on build order
    _project_eer = None


def eer(scores: np.ndarray, labels: np.ndarray) -> float:
    """Equal error rate (fraction), sorting based, interpolated where FNR crosses FPR."""
    if _project_eer is not None:
        return float(_project_eer(scores, labels))
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels).astype(bool)
    n_t, n_n = labels.sum(), (~labels).sum()
    if n_t == 0 or n_n == 0:
        raise ValueError(f"EER needs targets and non-targets (got {n_t} and {n_n})")
    order = np.argsort(scores, kind="mergesort")
    lab = labels[order]
    # threshold just above the k lowest scores: those are rejected
    fnr = np.concatenate([[0.0], np.cumsum(lab) / n_t])
    fpr = np.concatenate([[1.0], 1.0 - np.cumsum(~lab) / n_n])
    i = int(np.nonzero(fnr >= fpr)[0][0])
    if i == 0:
        return 0.0
    d0, d1 = fpr[i - 1] - fnr[i - 1], fpr[i] - fnr[i]
    w = d0 / (d0 - d1) if d0 != d1 else 0.0
    return float(fnr[i - 1] + w * (fnr[i] - fnr[i - 1]))


def features(paths: list[str]) -> dict[str, np.ndarray]:
    """Per-utterance mean / std log-Mel (80) and mean MFCC (30: orthonormal DCT-II of the log-Mel,
    which commutes with the mean over frames)."""
    from scipy.fft import dct

    mean_mel, std_mel = [], []
    for p in paths:
        wave, sr = sf.read(p, dtype="float32")
        x = torch.from_numpy(wave).unsqueeze(0) * 32768.0
        fb = torchaudio.compliance.kaldi.fbank(x, num_mel_bins=80, frame_length=25, frame_shift=10, dither=0.0,
                                               sample_frequency=sr)
        mean_mel.append(fb.mean(0).numpy())
        std_mel.append(fb.std(0).numpy())
    mel = np.stack(mean_mel).astype(np.float64)
    return {"mel": mel, "mel_std": np.stack(std_mel), "mfcc": dct(mel, type=2, norm="ortho", axis=1)[:, :30]}


def _unit(x: np.ndarray) -> np.ndarray:
    return x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-12)


def score(emb: np.ndarray, trials: list[tuple[int, int, int]], speakers: np.ndarray) -> tuple[float, float]:
    """EER % on the trial list and on all test pairs (cosine)."""
    e = _unit(emb)
    lab = np.array([t[0] for t in trials])
    s = np.einsum("ij,ij->i", e[[t[1] for t in trials]], e[[t[2] for t in trials]])
    iu = np.triu_indices(len(e), k=1)
    sims = (e @ e.T)[iu]
    same = speakers[iu[0]] == speakers[iu[1]]
    return 100 * eer(s, lab), 100 * eer(sims, same)


def read_trials(path: Path, table: UtteranceTable) -> list[tuple[int, int, int]]:
    idx = table.lookup()
    out = []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        parts = line.split()
        if len(parts) != 3:
            raise ValueError(f"{path}:{n}: expected 'label enroll test', got {line!r}")
        out.append((int(parts[0]), idx[parts[1]], idx[parts[2]]))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", default="data/synthvox-demo")
    ap.add_argument("--profile", default="demo", help="profile used when the corpus must be built")
    ap.add_argument("--difficulty", type=float, default=1.0, help="difficulty used when the corpus must be built")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-lda", action="store_true", help="skip the supervised LDA check")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)  # one utterance at a time: more threads only contend

    root = Path(args.corpus)
    if not (root / "build.json").exists():
        t0 = time.time()
        build_synthvox(root, args.profile, seed=args.seed, difficulty=args.difficulty)
        print(f"built {root} in {time.time() - t0:.1f} s")
    info = json.loads((root / "build.json").read_text())
    test = UtteranceTable.load(root / "test.tsv")
    trials = read_trials(root / "trials.txt", test)
    codes, _ = test.speaker_codes()
    t0 = time.time()
    f_test = features(test.path)
    results = {"corpus": str(root), "profile": info.get("profile"), "difficulty": info.get("difficulty"),
               "n_trials": len(trials), "n_test": len(test)}
    for name in ("mel", "mfcc"):
        e_t, e_a = score(f_test[name], trials, codes)
        results[f"mean_{name}"] = {"eer": round(e_t, 2), "eer_all_pairs": round(e_a, 2)}
        print(f"mean {name:4s} cosine: EER {e_t:5.2f} % on {len(trials)} trials, {e_a:5.2f} % on all pairs")
    if not args.no_lda:
        from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

        train = UtteranceTable.load(root / "train.tsv")
        f_train = features(train.path)
        tr_codes, _ = train.speaker_codes()
        x_tr = np.hstack([f_train["mel"], f_train["mel_std"]])
        x_te = np.hstack([f_test["mel"], f_test["mel_std"]])
        mu = x_tr.mean(0)
        lda = LinearDiscriminantAnalysis(n_components=min(100, len(set(tr_codes)) - 1, x_tr.shape[1]))
        lda.fit(x_tr - mu, tr_codes)
        e_t, e_a = score(lda.transform(x_te - mu), trials, codes)
        results["lda_mel_supervised"] = {"eer": round(e_t, 2), "eer_all_pairs": round(e_a, 2)}
        print(f"LDA on mean+std log-Mel (trained on train speakers): EER {e_t:5.2f} % trials, {e_a:5.2f} % all pairs")
    results["seconds"] = round(time.time() - t0, 1)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
