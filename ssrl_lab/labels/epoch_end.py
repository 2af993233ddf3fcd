"""SSRL's epoch-end label update as one pure-tensor function (no model involved).

Order of operations (what keeps every invariant):

1. ``prev = queue.vote(active)`` (the labels used during the epoch that just ended);
2. if ``push``: ``queue.push(teacher_labels)`` (the teacher's masked argmax, so every pushed
   label is active);
3. ``labels, agreement = queue.vote_and_agreement(active)``: the vote counts only entries of
   active clusters, so the new labels are active;
4. ``active = active & has_members(labels)``: clusters without members are masked for good;
   no voted label is in a newly masked cluster (those have no members), so labels stay valid
   (a minimum cluster size above 1 would break this, which is why there is none here);
5. ``p_clean`` from the teacher's per-utterance loss: ``"gmm"`` (two-component GMM on log-loss,
   :func:`ssrl_lab.labels.noise.fit_clean_posterior`), ``"gate"`` (1 where loss < threshold) or
   ``"none"`` (all ones).

``teacher_loss`` is taken as the trainer collected it: the teacher's CE against the label in
use during the epoch (the paper's "per-utterance teacher CE against the voted label").
"""
from __future__ import annotations

from typing import Any

import torch

from ssrl_lab.labels.noise import GMMFit, fit_clean_posterior, loss_gate
from ssrl_lab.labels.queue import LabelQueue
from ssrl_lab.labels.relabel import label_change_rate, update_active

__all__ = ["epoch_end_update", "NOISE_MODELS"]

NOISE_MODELS = ("gmm", "none", "gate")


def epoch_end_update(
    queue: LabelQueue,
    teacher_labels: torch.Tensor,
    teacher_loss: torch.Tensor,
    active: torch.Tensor,
    *,
    push: bool = True,
    noise_model: str = "gmm",
    gate_threshold: float | None = None,
    clip_percentiles: tuple[float, float] = (0.1, 99.9),
    gmm_n_iter: int = 100,
) -> dict[str, Any]:
    """Push, vote, mask empty clusters and refresh p_clean after one epoch.

    Args:
        queue: the :class:`LabelQueue` (updated in place when ``push``).
        teacher_labels: ``(N,)`` teacher argmax labels collected during the epoch.
        teacher_loss: ``(N,)`` teacher CE per utterance.
        active: ``(K,)`` bool cluster mask before this update (not modified in place).
        push: False during the label-fixed epochs (the queue is left alone).
        noise_model: ``"gmm"``, ``"gate"`` (needs ``gate_threshold``) or ``"none"``.
        clip_percentiles, gmm_n_iter: passed to the GMM fit.

    Returns dict: ``labels`` (N,) int64 vote, ``p_clean`` (N,) float32, ``active`` (K,) bool,
    ``queue_agreement`` (N,) float32, ``changed`` (share of votes that changed), ``agreement``
    (mean), ``n_clusters`` (active clusters), ``frac_clean`` (share p_clean > 0.5), ``gmm``
    (:class:`GMMFit` or None), ``n_masked`` (clusters masked by this update).
    """
    if noise_model not in NOISE_MODELS:
        raise ValueError(f"epoch_end_update: noise_model must be one of {NOISE_MODELS}, got {noise_model!r}")
    if noise_model == "gate" and gate_threshold is None:
        raise ValueError("epoch_end_update: noise_model='gate' needs gate_threshold")
    if active.dtype != torch.bool or active.dim() != 1:
        raise ValueError("epoch_end_update: active must be a 1-D bool tensor")
    k = active.shape[0]
    n = queue.n
    if tuple(teacher_loss.shape) != (n,):
        raise ValueError(f"epoch_end_update: teacher_loss has shape {tuple(teacher_loss.shape)}, expected ({n},)")
    active = active.to(queue.device)
    prev = queue.vote(active)
    if push:
        tl = torch.as_tensor(teacher_labels)
        if tl.numel() and int(tl.max()) >= k:
            raise ValueError(f"epoch_end_update: teacher label {int(tl.max())} >= K={k}")
        queue.push(tl)
    labels, agreement = queue.vote_and_agreement(active)
    new_active = update_active(active, labels, k)
    n_masked = int(active.sum()) - int(new_active.sum())

    fit: GMMFit | None = None
    if noise_model == "gmm":
        p_clean, fit = fit_clean_posterior(teacher_loss, clip_percentiles=clip_percentiles, n_iter=gmm_n_iter)
    elif noise_model == "gate":
        p_clean = loss_gate(teacher_loss, float(gate_threshold))
    else:
        p_clean = torch.ones(n, dtype=torch.float32, device=teacher_loss.device)

    return {
        "labels": labels,
        "p_clean": p_clean,
        "active": new_active,
        "queue_agreement": agreement,
        "changed": label_change_rate(prev, labels),
        "agreement": float(agreement.mean()) if n else 1.0,
        "n_clusters": int(new_active.sum()),
        "frac_clean": float((p_clean > 0.5).float().mean()) if n else 1.0,
        "gmm": fit,
        "n_masked": n_masked,
    }
