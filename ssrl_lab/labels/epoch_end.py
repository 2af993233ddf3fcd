"""SSRL's epoch-end label update as one pure-tensor function (no model involved).

Order of operations (what keeps every invariant):

1. ``prev = queue.vote(...)`` (the labels used during the epoch that just ended);
2. if ``push``: ``queue.push(teacher_labels)`` (the teacher's masked argmax, so every pushed
   label is active when pushed);
3. ``labels, agreement = queue.vote_and_agreement(...)``;
4. the active clusters, by ``masking``:

   * ``"recompute"`` (the authors'): the vote counts every queue entry, and when the labels in
     use are updated the active set is recomputed as the clusters holding at least one label in
     use (``original_labels - set(labels)`` removed). A cluster whose members all left can come
     back when an old queue entry of it wins a vote again. In-use labels are always active.
   * ``"permanent"``: the vote counts only entries of active clusters, and ``active = active &
     has_members(labels)``: a masked cluster never comes back; no voted label is in a newly
     masked cluster (those have no members), so labels stay valid.

5. ``p_clean`` from the teacher's per-utterance loss: ``"gmm"`` (two-component GMM on log-loss,
   :func:`ssrl_lab.labels.noise.fit_clean_posterior`, recipe ``gmm_recipe``), ``"gate"`` (1
   where loss < threshold) or ``"none"`` (all ones).

``teacher_loss`` is taken as the trainer collected it: the teacher's CE against the label in
use during the epoch (the paper's "per-utterance teacher CE against the voted label").

Options the SSRL trainer uses (all default to the plain behaviour above):

* ``labels_in_use`` + ``update_labels=False`` (the label-fixed epochs that already collect
  teacher labels): the queue is pushed but the labels in use stay as given; clusters without
  members of those labels are still masked.
* ``visited`` (``(N,)`` bool): rows the epoch did not visit (``drop_last`` leaves up to one
  global batch out) push their label in use instead of a teacher label, are left out of the
  GMM fit and keep ``prev_p_clean``.
* ``log_floor``: the authors clip the log-loss below at ``max(p0.1, log_floor)`` (-20); recipe
  "authors" passes it to the GMM as its ``floor``, recipe "monotone" floors the losses at
  ``exp(log_floor)`` before the log.
"""
from __future__ import annotations

import math
from typing import Any

import torch

from ssrl_lab.labels.noise import GMMFit, fit_clean_posterior, loss_gate
from ssrl_lab.labels.queue import LabelQueue
from ssrl_lab.labels.relabel import active_from_labels, label_change_rate, update_active

__all__ = ["epoch_end_update", "NOISE_MODELS", "MASKINGS"]

NOISE_MODELS = ("gmm", "none", "gate")
MASKINGS = ("recompute", "permanent")


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
    gmm_n_iter: int | None = None,
    labels_in_use: torch.Tensor | None = None,
    update_labels: bool = True,
    visited: torch.Tensor | None = None,
    prev_p_clean: torch.Tensor | None = None,
    log_floor: float | None = None,
    masking: str = "recompute",
    gmm_recipe: str = "authors",
) -> dict[str, Any]:
    """Push, vote, mask empty clusters and refresh p_clean after one epoch.

    Args:
        queue: the :class:`LabelQueue` (updated in place when ``push``).
        teacher_labels: ``(N,)`` teacher argmax labels collected during the epoch.
        teacher_loss: ``(N,)`` teacher CE per utterance.
        active: ``(K,)`` bool cluster mask before this update (not modified in place).
        push: False during the label-fixed epochs (the queue is left alone).
        noise_model: ``"gmm"``, ``"gate"`` (needs ``gate_threshold``) or ``"none"``.
        clip_percentiles, gmm_n_iter: passed to the GMM fit (``gmm_n_iter`` None: the recipe's).
        labels_in_use: ``(N,)`` labels used during the epoch (default: the queue's vote).
        update_labels: False keeps ``labels_in_use`` as the returned labels (queue still pushed).
        visited: ``(N,)`` bool, rows that have a teacher label and loss this epoch (default all).
        prev_p_clean: ``(N,)`` p_clean of unvisited rows (default 1).
        log_floor: floor of the log-loss (None: the GMM's own 1e-12 floor).
        masking: ``"recompute"`` (authors) or ``"permanent"`` (see above).
        gmm_recipe: ``"authors"`` or ``"monotone"`` (:func:`~ssrl_lab.labels.noise.fit_clean_posterior`).

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
    if masking not in MASKINGS:
        raise ValueError(f"epoch_end_update: masking must be one of {MASKINGS}, got {masking!r}")
    k = active.shape[0]
    n = queue.n
    if tuple(teacher_loss.shape) != (n,):
        raise ValueError(f"epoch_end_update: teacher_loss has shape {tuple(teacher_loss.shape)}, expected ({n},)")
    active = active.to(queue.device)
    vote_mask = active if masking == "permanent" else None
    prev = queue.vote(vote_mask) if labels_in_use is None else torch.as_tensor(labels_in_use).to(queue.device, torch.int64)
    if tuple(prev.shape) != (n,):
        raise ValueError(f"epoch_end_update: labels_in_use has shape {tuple(prev.shape)}, expected ({n},)")
    vis = None
    if visited is not None:
        vis = torch.as_tensor(visited).to(queue.device)
        if vis.dtype != torch.bool or tuple(vis.shape) != (n,):
            raise ValueError(f"epoch_end_update: visited must be a ({n},) bool tensor")
        if bool(vis.all()):
            vis = None
    if push:
        tl = torch.as_tensor(teacher_labels).to(queue.device)
        if vis is not None:
            tl = torch.where(vis, tl.to(torch.int64), prev)
        if tl.numel() and int(tl.max()) >= k:
            raise ValueError(f"epoch_end_update: teacher label {int(tl.max())} >= K={k}")
        queue.push(tl)
    labels, agreement = queue.vote_and_agreement(vote_mask)
    if not update_labels:
        labels = prev
    if masking == "permanent":
        new_active = update_active(active, labels, k)
    else:
        new_active = active_from_labels(labels, k).to(active.device) if update_labels else active.clone()
    n_masked = int(active.sum()) - int(new_active.sum())

    loss = teacher_loss
    if log_floor is not None and gmm_recipe == "monotone":
        loss = loss.clamp_min(math.exp(log_floor))
    fit_loss = loss if vis is None else loss[vis.to(loss.device)]
    fit: GMMFit | None = None
    if noise_model == "gmm":
        p_fit, fit = fit_clean_posterior(fit_loss, clip_percentiles=clip_percentiles, n_iter=gmm_n_iter,
                                         recipe=gmm_recipe,
                                         floor=log_floor if gmm_recipe == "authors" else None)
    elif noise_model == "gate":
        p_fit = loss_gate(fit_loss, float(gate_threshold))
    else:
        p_fit = torch.ones(fit_loss.shape[0], dtype=torch.float32, device=loss.device)
    if vis is None:
        p_clean = p_fit
    else:
        v = vis.to(loss.device)
        p_clean = (torch.ones(n, dtype=torch.float32, device=loss.device) if prev_p_clean is None
                   else torch.as_tensor(prev_p_clean).to(loss.device, torch.float32).clone())
        p_clean[v] = p_fit.to(torch.float32)

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
