"""Evaluate a speaker model on a corpus: trial-list and all-pairs EER / minDCF.

EER values are percentages (5.0 means 5 %); minDCF values are normalised (c_miss = c_fa = 1).
"""
from __future__ import annotations

import logging
import time

import numpy as np

from .embed import extract_embeddings
from .metrics import verification_metrics
from .scoring import all_pairs as score_all_pairs
from .scoring import cosine_trials

__all__ = ["evaluate", "score_embeddings"]

log = logging.getLogger("ssrl_lab.eval.evaluate")


def score_embeddings(
    emb: np.ndarray,
    trials,
    speakers=None,
    all_pairs: bool = True,
    max_pairs: int | None = None,
    train_mean=None,
    return_scores: bool = False,
    seed: int = 0,
) -> dict:
    """Metrics of given embeddings (rows of the test table) on ``trials`` and on all pairs.

    ``trials``: a TrialList (``label``, ``enroll``, ``test``). ``speakers``: (N,) int codes
    (-1 unknown) for the all-pairs metrics. Rows with non-finite embeddings (files skipped at
    extraction) are left out of both; ``n_skipped_trials`` counts the trials dropped.
    """
    emb = np.asarray(emb, dtype=np.float32)
    ok_rows = np.isfinite(emb).all(axis=1)
    enroll = np.asarray(trials.enroll, dtype=np.int64)
    test = np.asarray(trials.test, dtype=np.int64)
    label = np.asarray(trials.label).astype(np.int8)
    keep = ok_rows[enroll] & ok_rows[test]
    safe = np.where(ok_rows[:, None], emb, 0.0).astype(np.float32)
    scores = cosine_trials(safe, enroll[keep], test[keep], mean=train_mean)
    labels = label[keep]
    m = verification_metrics(scores, labels)
    out = {"eer": m["eer"], "mindcf_0.01": m["mindcf_0.01"], "mindcf_0.05": m["mindcf_0.05"],
           "n_trials": m["n_trials"], "n_target": m["n_target"], "n_skipped_trials": int((~keep).sum())}
    out.update({"eer_all_pairs": None, "mindcf_0.01_all_pairs": None, "mindcf_0.05_all_pairs": None,
                "n_pairs": 0})
    if all_pairs and speakers is not None:
        spk = np.where(ok_rows, np.asarray(speakers, dtype=np.int64), -1)
        if (spk >= 0).sum() >= 2:
            ps, pl = score_all_pairs(safe, spk, mean=train_mean, max_pairs=max_pairs, seed=seed)
            if 0 < pl.sum() < pl.size:
                pm = verification_metrics(ps, pl)
                out.update({"eer_all_pairs": pm["eer"], "mindcf_0.01_all_pairs": pm["mindcf_0.01"],
                            "mindcf_0.05_all_pairs": pm["mindcf_0.05"], "n_pairs": pm["n_trials"]})
            else:
                log.warning("all pairs hold a single class (%d pairs); all-pairs metrics skipped", pl.size)
    if return_scores:
        out["scores"], out["labels"] = scores, labels
    return out


def evaluate(
    model,
    corpus,
    device="cpu",
    cache_path=None,
    cache_key: str | None = None,
    all_pairs: bool = True,
    max_pairs: int | None = None,
    train_mean=None,
    return_scores: bool = False,
    batch_size: int = 32,
    chunk_s: float | None = None,
    max_len_s: float | None = None,
    progress: bool = False,
    skip_bad: bool = False,
    seed: int = 0,
    bucket_s: float | None = None,
) -> dict:
    """Embed ``corpus.test`` with ``model`` and score ``corpus.trials`` and all test pairs.

    Returns ``eer``, ``mindcf_0.01``, ``mindcf_0.05`` (trial list), ``eer_all_pairs``,
    ``mindcf_0.01_all_pairs``, ``mindcf_0.05_all_pairs`` (None when the test table has no
    speaker labels or ``all_pairs`` is False), ``n_trials``, ``n_target``, ``n_pairs``,
    ``n_skipped_trials``, ``seconds``; plus ``scores``/``labels`` (trial list) with
    ``return_scores``. ``train_mean`` (D,) is subtracted from embeddings before cosine scoring.
    Extraction arguments go to :func:`extract_embeddings`.
    """
    t0 = time.perf_counter()
    emb = extract_embeddings(model, corpus.test, device=device, batch_size=batch_size, chunk_s=chunk_s,
                             max_len_s=max_len_s, cache_path=cache_path, cache_key=cache_key,
                             progress=progress, skip_bad=skip_bad, bucket_s=bucket_s)
    speakers = corpus.test.speaker_codes()[0] if all_pairs else None
    out = score_embeddings(emb, corpus.trials, speakers, all_pairs=all_pairs, max_pairs=max_pairs,
                           train_mean=train_mean, return_scores=return_scores, seed=seed)
    out["seconds"] = time.perf_counter() - t0
    return out
