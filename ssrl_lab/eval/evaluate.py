"""Evaluate a speaker model on a corpus: trial-list and all-pairs EER / minDCF, on the test split
and, when the corpus has one, on its dev split (keys prefixed ``dev_``).

EER values are percentages (5.0 means 5 %); minDCF values are normalised (c_miss = c_fa = 1).
Settings are chosen on the ``dev_`` metrics, never on the test ones.
"""
from __future__ import annotations

import logging
import time

import numpy as np

from .bootstrap import CI_LEVEL, METRICS, TrialSpeakers, bootstrap_ci
from .embed import extract_embeddings
from .metrics import verification_metrics
from .scoring import all_pairs as score_all_pairs
from .scoring import cosine_trials

__all__ = ["evaluate", "score_embeddings", "DEV_KEYS", "CI_KEYS", "SCORE_ARRAYS", "dev_cache_path"]

#: the metric keys :func:`evaluate` reports for the dev split (None when the corpus has no dev split,
#: the trial-list ones also when it has no dev trial list, the all-pairs ones when ``all_pairs`` is off)
DEV_KEYS = ("dev_eer", "dev_mindcf_0.01", "dev_mindcf_0.05", "dev_eer_all_pairs", "dev_mindcf_0.01_all_pairs",
            "dev_mindcf_0.05_all_pairs", "dev_n_trials", "dev_n_target", "dev_n_pairs", "dev_n_skipped_trials")

#: the 95 % speaker-bootstrap intervals (``[lo, hi]``) :func:`score_embeddings` adds with ``ci_reps``
#: (see :mod:`ssrl_lab.eval.bootstrap`), and how many replicates they rest on
CI_KEYS = ("eer_ci", "mindcf_0.01_ci", "mindcf_0.05_ci", "eer_all_pairs_ci", "mindcf_0.01_all_pairs_ci",
           "mindcf_0.05_all_pairs_ci", "ci_reps", "ci_level")
#: the arrays :func:`evaluate` returns with ``return_scores`` beside ``scores`` / ``labels``: the test
#: embeddings, their speaker codes and the (2, n) test-table rows of the scored trials, enough to
#: rescore the run later (paired comparisons on the trial list and on all pairs)
SCORE_ARRAYS = ("embeddings", "speakers", "trial_rows")

log = logging.getLogger("ssrl_lab.eval.evaluate")


def _ci_fields(scores, trials: TrialSpeakers | None, ci_reps: int, seed: int, suffix: str) -> dict:
    if trials is None:
        return {f"{m}{suffix}_ci": None for m in METRICS}
    ci = bootstrap_ci(scores, trials, n_reps=ci_reps, seed=seed)
    return {f"{m}{suffix}_ci": ci[m] for m in METRICS}


def usable_rows(emb, speakers=None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``(ok_rows, safe embeddings, speakers)``: rows with non-finite embeddings (files skipped at
    extraction) are zeroed in ``safe`` and get speaker -1, so no trial or pair uses them."""
    emb = np.asarray(emb, dtype=np.float32)
    ok = np.isfinite(emb).all(axis=1)
    safe = np.where(ok[:, None], emb, 0.0).astype(np.float32)
    spk = None if speakers is None else np.where(ok, np.asarray(speakers, dtype=np.int64), -1)
    return ok, safe, spk


def _trial_speakers(row_a, row_b, speakers, labels) -> TrialSpeakers | None:
    """The trials' speakers for a bootstrap; None (logged) when some speaker is unknown."""
    if speakers is None:
        return None
    spk = np.asarray(speakers, np.int64)
    if (spk[row_a] < 0).any() or (spk[row_b] < 0).any() or len(row_a) == 0:
        log.warning("confidence intervals skipped: some trials have no speaker label")
        return None
    return TrialSpeakers.from_rows(row_a, row_b, spk, labels)


def score_embeddings(
    emb: np.ndarray,
    trials,
    speakers=None,
    all_pairs: bool = True,
    max_pairs: int | None = None,
    train_mean=None,
    return_scores: bool = False,
    seed: int = 0,
    ci_reps: int = 0,
) -> dict:
    """Metrics of given embeddings (rows of the test table) on ``trials`` and on all pairs.

    ``trials``: a TrialList (``label``, ``enroll``, ``test``; None: all pairs only, the trial-list
    metrics None). ``speakers``: (N,) int codes
    (-1 unknown) for the all-pairs metrics. Rows with non-finite embeddings (files skipped at
    extraction) are left out of both; ``n_skipped_trials`` counts the trials dropped.

    ``ci_reps`` > 0 adds :data:`CI_KEYS`: 95 % intervals from ``ci_reps`` replicates of a bootstrap
    over test speakers (``speakers`` needed; None for what cannot be computed). ``return_scores``
    adds the trial ``scores`` / ``labels`` and :data:`SCORE_ARRAYS`.
    """
    emb = np.asarray(emb, dtype=np.float32)
    ok_rows, safe, spk = usable_rows(emb, speakers)
    if trials is None:  # all pairs only (a dev split without a trial list)
        scores, labels = np.zeros(0, np.float32), np.zeros(0, np.int8)
        out = {"eer": None, "mindcf_0.01": None, "mindcf_0.05": None, "n_trials": 0, "n_target": 0,
               "n_skipped_trials": 0}
    else:
        enroll = np.asarray(trials.enroll, dtype=np.int64)
        test = np.asarray(trials.test, dtype=np.int64)
        label = np.asarray(trials.label).astype(np.int8)
        keep = ok_rows[enroll] & ok_rows[test]
        scores = cosine_trials(safe, enroll[keep], test[keep], mean=train_mean)
        labels = label[keep]
        m = verification_metrics(scores, labels)
        out = {"eer": m["eer"], "mindcf_0.01": m["mindcf_0.01"], "mindcf_0.05": m["mindcf_0.05"],
               "n_trials": m["n_trials"], "n_target": m["n_target"], "n_skipped_trials": int((~keep).sum())}
        rows = np.stack([enroll[keep], test[keep]])
        if ci_reps:
            out.update(_ci_fields(scores, _trial_speakers(rows[0], rows[1], speakers, labels), ci_reps, seed, ""))
    out.update({"eer_all_pairs": None, "mindcf_0.01_all_pairs": None, "mindcf_0.05_all_pairs": None,
                "n_pairs": 0})
    if all_pairs and spk is not None:
        if (spk >= 0).sum() >= 2:
            ps, pl, pi, pj = score_all_pairs(safe, spk, mean=train_mean, max_pairs=max_pairs, seed=seed,
                                             return_pairs=True)
            if 0 < pl.sum() < pl.size:
                pm = verification_metrics(ps, pl)
                out.update({"eer_all_pairs": pm["eer"], "mindcf_0.01_all_pairs": pm["mindcf_0.01"],
                            "mindcf_0.05_all_pairs": pm["mindcf_0.05"], "n_pairs": pm["n_trials"]})
                if ci_reps:
                    out.update(_ci_fields(ps, _trial_speakers(pi, pj, spk, pl), ci_reps, seed, "_all_pairs"))
            else:
                log.warning("all pairs hold a single class (%d pairs); all-pairs metrics skipped", pl.size)
    if ci_reps:
        for k in CI_KEYS[:6]:
            out.setdefault(k, None)
        out["ci_reps"], out["ci_level"] = int(ci_reps), CI_LEVEL
    if return_scores:
        out["scores"], out["labels"] = scores, labels
        out["embeddings"], out["trial_rows"] = emb, (rows if trials is not None else np.zeros((2, 0), np.int64))
        out["speakers"] = None if speakers is None else np.asarray(speakers, np.int64)
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
    ci_reps: int = 0,
) -> dict:
    """Embed ``corpus.test`` with ``model`` and score ``corpus.trials`` and all test pairs.

    Returns ``eer``, ``mindcf_0.01``, ``mindcf_0.05`` (trial list), ``eer_all_pairs``,
    ``mindcf_0.01_all_pairs``, ``mindcf_0.05_all_pairs`` (None when the test table has no
    speaker labels or ``all_pairs`` is False), ``n_trials``, ``n_target``, ``n_pairs``,
    ``n_skipped_trials``, ``seconds``; plus ``scores``/``labels`` (trial list) with
    ``return_scores`` (with :data:`SCORE_ARRAYS`). ``ci_reps`` > 0: the test split's 95 % intervals
    (:data:`CI_KEYS`, a bootstrap over test speakers). ``train_mean`` (D,) is subtracted from
    embeddings before cosine scoring.
    Extraction arguments go to :func:`extract_embeddings`.

    The same metrics on the corpus's dev split (``corpus.dev`` / ``corpus.dev_trials``), extracted
    and scored the same way, come under :data:`DEV_KEYS` (``dev_eer``, ``dev_eer_all_pairs``, ...);
    all None for a corpus without a dev split. ``seconds`` covers the whole evaluation (test and
    dev). Dev embeddings are cached beside ``cache_path`` (see :func:`dev_cache_path`).
    """
    t0 = time.perf_counter()
    extract = dict(device=device, batch_size=batch_size, chunk_s=chunk_s, max_len_s=max_len_s, cache_key=cache_key,
                   progress=progress, skip_bad=skip_bad, bucket_s=bucket_s)
    emb = extract_embeddings(model, corpus.test, cache_path=cache_path, **extract)
    out = score_embeddings(emb, corpus.trials, corpus.test.speaker_codes()[0], all_pairs=all_pairs, max_pairs=max_pairs, train_mean=train_mean,
                           return_scores=return_scores, seed=seed, ci_reps=ci_reps)
    out.update(dict.fromkeys(DEV_KEYS))
    dev, dev_trials = getattr(corpus, "dev", None), getattr(corpus, "dev_trials", None)
    if dev is not None and (dev_trials is not None or all_pairs):
        emb = extract_embeddings(model, dev, cache_path=dev_cache_path(cache_path), **extract)
        m = score_embeddings(emb, dev_trials, dev.speaker_codes()[0] if all_pairs else None, all_pairs=all_pairs,
                             max_pairs=max_pairs, train_mean=train_mean, seed=seed)
        out.update({f"dev_{k}": v for k, v in m.items()})
    out["seconds"] = time.perf_counter() - t0
    return out


def dev_cache_path(cache_path):
    """Where :func:`evaluate` caches dev embeddings: ``<stem>.dev<suffix>`` beside ``cache_path``."""
    if cache_path is None:
        return None
    from pathlib import Path

    p = Path(cache_path)
    return p.with_name(f"{p.stem}.dev{p.suffix}")
