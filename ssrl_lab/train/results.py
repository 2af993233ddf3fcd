"""What a run evaluates and keeps: the evaluation with the config's extraction settings, the
results.json fields (:data:`RESULT_KEYS`), the metrics-line summary and the scores files."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from . import distributed as dist
from .run import RunDir


def evaluate_model(model: nn.Module, corpus, cfg, device: torch.device, progress: bool = False,
                   return_scores: bool = False, all_pairs: bool = True, ci: bool | None = None) -> dict:
    """ssrl_lab.eval.evaluate with the config's extraction settings (call on every rank).

    ``ci`` (default: with ``return_scores``, i.e. the evaluations whose results a run keeps):
    the test split's 95 % speaker-bootstrap intervals (``CI_REPS`` replicates)."""
    from ..eval.bootstrap import CI_REPS
    from ..eval.evaluate import evaluate

    ci = return_scores if ci is None else ci
    return evaluate(model, corpus, device=device, all_pairs=all_pairs, return_scores=return_scores,
                    batch_size=cfg.eval_batch_size, chunk_s=cfg.eval_chunk_s, max_len_s=cfg.eval_max_len_s,
                    bucket_s=cfg.eval_bucket_s,
                    progress=progress and dist.is_main(), skip_bad=cfg.skip_bad, seed=cfg.seed,
                    ci_reps=CI_REPS if ci else 0)


def evaluate_final(net: nn.Module, corpus, cfg, device: torch.device, run: RunDir, progress: bool = False,
                   scores: Sequence[str] = ("scores.npz",)) -> dict:
    """Evaluate the model a run keeps (intervals included) and write its scores to each of ``scores``."""
    ev = evaluate_model(net, corpus, cfg, device, progress=progress, return_scores=True)
    for name in scores:
        run.write_scores(ev["scores"], ev["labels"], name, **score_arrays(ev))
    return ev


#: the metric keys of results.json: the test split's, then the same prefixed ``dev_`` (the dev
#: split's; None when the corpus has no dev split), then the test split's confidence intervals
RESULT_KEYS = ("eer", "eer_all_pairs", "mindcf_0.01", "mindcf_0.05", "mindcf_0.01_all_pairs", "mindcf_0.05_all_pairs",
               "n_trials", "n_pairs")
RESULT_KEYS = RESULT_KEYS + tuple(f"dev_{k}" for k in RESULT_KEYS) + (
    "eer_ci", "mindcf_0.01_ci", "mindcf_0.05_ci", "eer_all_pairs_ci", "mindcf_0.01_all_pairs_ci",
    "mindcf_0.05_all_pairs_ci", "ci_reps", "ci_level")


def result_fields(ev: dict) -> dict:
    """The results.json fields of an evaluation dict (:data:`RESULT_KEYS`)."""
    return {k: ev.get(k) for k in RESULT_KEYS}


def eval_summary(ev: dict) -> dict:
    """The JSON-ready part of an evaluation (scores and the other arrays dropped)."""
    from ..eval.evaluate import SCORE_ARRAYS

    return {k: v for k, v in ev.items() if k not in ("scores", "labels", *SCORE_ARRAYS)}


def score_arrays(ev: dict) -> dict:
    """What ``RunDir.write_scores`` keeps beside the trial scores: the test embeddings, their
    speaker codes and the trials' table rows (when the evaluation returned them)."""
    from ..eval.evaluate import SCORE_ARRAYS

    return {k: ev[k] for k in SCORE_ARRAYS if ev.get(k) is not None}
