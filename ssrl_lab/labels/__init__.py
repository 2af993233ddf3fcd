"""SSRL's label machinery: pseudo-label queue, noisy-label modelling, relabelling, history.

All pieces are vectorised torch over the N training utterances (tested at N = 1 M):

* :class:`~ssrl_lab.labels.queue.LabelQueue`: per-utterance queue, majority vote, agreement;
* :func:`~ssrl_lab.labels.noise.fit_clean_posterior`: GMM on log-loss -> p_clean;
  :func:`~ssrl_lab.labels.noise.loss_gate`, :func:`~ssrl_lab.labels.noise.weighted_loss`;
* :mod:`~ssrl_lab.labels.relabel`: masked argmax, empty-cluster masking, Sinkhorn balancing;
* :class:`~ssrl_lab.labels.history.EpochHistory`: ``history.npz``; clean/noisy split quality;
* :func:`~ssrl_lab.labels.epoch_end.epoch_end_update`: the whole epoch-end update.
"""
from ssrl_lab.labels.epoch_end import NOISE_MODELS, epoch_end_update
from ssrl_lab.labels.history import (
    EpochHistory,
    clean_split_quality,
    load_history,
    majority_true_label,
    p_clean_reliability,
)
from ssrl_lab.labels.noise import GMMFit, fit_clean_posterior, loss_gate, weighted_loss
from ssrl_lab.labels.queue import LabelQueue, mode_of_columns, mode_of_rows
from ssrl_lab.labels.relabel import (
    active_from_labels,
    cosine_scores,
    label_change_rate,
    masked_argmax,
    sinkhorn_assign,
    update_active,
)

__all__ = [
    "LabelQueue", "mode_of_rows", "mode_of_columns",
    "GMMFit", "fit_clean_posterior", "loss_gate", "weighted_loss",
    "masked_argmax", "active_from_labels", "update_active", "sinkhorn_assign", "cosine_scores",
    "label_change_rate",
    "EpochHistory", "load_history", "clean_split_quality", "majority_true_label", "p_clean_reliability",
    "epoch_end_update", "NOISE_MODELS",
]
