"""Evaluation: verification metrics, cosine scoring, embedding extraction, ``evaluate``.

Note: ``ssrl_lab.eval.evaluate`` is the function (imported here eagerly, so the name is never
the submodule of the same name).
"""
from .embed import extract_embeddings
from .evaluate import evaluate, score_embeddings
from .metrics import det_curve, eer, error_curve, min_dcf, verification_metrics
from .scoring import all_pairs, as_norm, cosine_trials, normalize

__all__ = ["det_curve", "eer", "error_curve", "min_dcf", "verification_metrics", "all_pairs", "as_norm",
           "cosine_trials", "normalize", "extract_embeddings", "evaluate", "score_embeddings"]
