"""SSRL's pseudo-label state in one object: labels in use, queue, p_clean, active clusters and
what the current epoch has collected.

The schedule follows the authors' stage-2 script (``train_lnc_nlm_dino_ali.py`` of
ZXHY-82/SSRL), with 0-based epochs:

* the queue is seeded with ``seed_copies`` (authors: ``queue_len // 2``) copies of the k-means
  label;
* :meth:`collecting`: from epoch ``collect_start`` (authors: ``label_fixed_epochs -
  (queue_len // 2 + 1)``) the teacher labels and judges every utterance it sees;
* :meth:`updating` (the authors' ``is_update``): ``epoch + 1 >= label_fixed_epochs``. In such an
  epoch the in-step target of the teacher's loss is the vote :meth:`targets`,
  ``mode((queue + [self_label])[-queue_len:])``, and at its end the labels in use change; in a
  collecting epoch before that the target is the raw ``self_label`` and the labels stay;
* :meth:`end_epoch` (collecting epochs): push the collected teacher labels, vote, recompute the
  active clusters, refresh p_clean from the collected teacher losses
  (:func:`~ssrl_lab.labels.epoch_end.epoch_end_update`).

The vote's tie-break is the one ambiguity of the authors' code: ``statistics.mode`` returns the
first of the tied modes on Python >= 3.8 (``tie_break="oldest"``, our default), but raises on
Python 3.7, where the script falls back to the newest label (``tie_break="recent"`` is the
closest of ours; it differs when an older label ties with two newer ones).

Rows the epoch did not visit (``drop_last``) push their label in use (the queue has one fill
pointer for all rows); the authors' per-utterance lists simply do not grow for them. The two
give the same vote unless the row's queue is full and tied (see :mod:`~ssrl_lab.labels.queue`).
"""
from __future__ import annotations

from typing import Any

import torch

from ssrl_lab.labels.epoch_end import MASKINGS, NOISE_MODELS, epoch_end_update
from ssrl_lab.labels.noise import RECIPES
from ssrl_lab.labels.queue import LabelQueue
from ssrl_lab.labels.relabel import active_from_labels

__all__ = ["PseudoLabelState"]


class PseudoLabelState:
    """Everything SSRL knows about its pseudo labels, with one ``state_dict``.

    Args:
        seed_labels: ``(N,)`` k-means labels.
        k: number of clusters (classifier rows).
        queue_len, seed_copies, tie_break: the label queue (:class:`LabelQueue`).
        label_fixed_epochs, collect_start: the schedule (module docstring).
        noise_model, gate_threshold, clip_percentiles, log_floor, gmm_recipe: p_clean.
        masking: ``"recompute"`` (authors) or ``"permanent"``
            (:func:`~ssrl_lab.labels.epoch_end.epoch_end_update`).
        mask_empty: False keeps every cluster active for ever.
        device: where the tensors live.

    Attributes: ``labels`` (N,) int64 in use, ``p_clean`` (N,) float32, ``active`` (K,) bool,
    ``queue``, and the epoch's ``coll_label`` (N,) int64 (-1 unseen), ``coll_loss`` (N,)
    float32 (NaN unseen), ``visited`` (N,) bool.
    """

    #: the keys of :meth:`state_dict` that hold the label state, and those of the epoch's collection
    SAVED = ("labels", "queue", "p_clean", "active")
    COLLECTED = ("coll_label", "coll_loss", "visited")

    def __init__(self, seed_labels: Any, k: int, *, queue_len: int = 5, seed_copies: int | None = None,
                 tie_break: str = "oldest", label_fixed_epochs: int = 5, collect_start: int | None = None,
                 noise_model: str = "gmm", gate_threshold: float | None = None,
                 clip_percentiles: tuple[float, float] = (0.1, 99.9), log_floor: float | None = -20.0,
                 gmm_recipe: str = "authors", masking: str = "recompute", mask_empty: bool = True,
                 device: str | torch.device = "cpu") -> None:
        if noise_model not in NOISE_MODELS:
            raise ValueError(f"PseudoLabelState: noise_model must be one of {NOISE_MODELS}, got {noise_model!r}")
        if masking not in MASKINGS:
            raise ValueError(f"PseudoLabelState: masking must be one of {MASKINGS}, got {masking!r}")
        if gmm_recipe not in RECIPES:
            raise ValueError(f"PseudoLabelState: gmm_recipe must be one of {RECIPES}, got {gmm_recipe!r}")
        self.device = torch.device(device)
        self.k = int(k)
        self.label_fixed_epochs = int(label_fixed_epochs)
        self.collect_start = (max(0, label_fixed_epochs - (queue_len // 2 + 1)) if collect_start is None
                              else int(collect_start))
        self.noise_model, self.gate_threshold = noise_model, gate_threshold
        self.clip_percentiles, self.log_floor = tuple(clip_percentiles), log_floor
        self.gmm_recipe, self.masking, self.mask_empty = gmm_recipe, masking, mask_empty
        self.labels = torch.as_tensor(seed_labels).to(self.device, torch.int64)
        n = int(self.labels.shape[0])
        self.n = n
        copies = max(1, queue_len // 2) if seed_copies is None else int(seed_copies)
        self.queue = LabelQueue(n, queue_len, self.labels, copies, device=self.device, tie_break=tie_break,
                                n_labels=self.k)
        self.p_clean = torch.ones(n, dtype=torch.float32, device=self.device)
        self.active = (active_from_labels(self.labels, self.k).to(self.device) if mask_empty
                       else torch.ones(self.k, dtype=torch.bool, device=self.device))
        self.begin_epoch()

    # -- the schedule --------------------------------------------------------------------------
    def collecting(self, epoch: int) -> bool:
        """Whether the teacher labels and judges the utterances in (0-based) ``epoch``."""
        return epoch >= self.collect_start

    def updating(self, epoch: int) -> bool:
        """The authors' ``is_update``: voted in-step targets, and new labels at the epoch's end."""
        return epoch + 1 >= self.label_fixed_epochs

    # -- in the step ---------------------------------------------------------------------------
    def _vote_mask(self) -> torch.Tensor | None:
        return self.active if self.masking == "permanent" else None

    def targets(self, index: torch.Tensor, self_label: torch.Tensor, epoch: int) -> torch.Tensor:
        """The target of the teacher's loss: the in-step vote when updating, else ``self_label``."""
        if not self.updating(epoch):
            return self_label
        return self.queue.vote_with(index, self_label, self._vote_mask())

    def begin_epoch(self, collected: dict[str, Any] | None = None) -> None:
        """Forget what the previous epoch collected, or restore what an interrupted epoch had
        collected (``collected``: :meth:`collected`'s dict)."""
        if collected is not None:
            self.coll_label = torch.as_tensor(collected["coll_label"]).to(self.device, torch.int64)
            self.coll_loss = torch.as_tensor(collected["coll_loss"]).to(self.device, torch.float32)
            self.visited = torch.as_tensor(collected["visited"]).to(self.device, torch.bool)
            return
        self.coll_label = torch.full((self.n,), -1, dtype=torch.int64, device=self.device)
        self.coll_loss = torch.full((self.n,), float("nan"), dtype=torch.float32, device=self.device)
        self.visited = torch.zeros(self.n, dtype=torch.bool, device=self.device)

    def collected(self) -> dict[str, Any]:
        """What this epoch has collected so far (:data:`COLLECTED`), on the CPU."""
        return {"coll_label": self.coll_label.cpu(), "coll_loss": self.coll_loss.cpu(), "visited": self.visited.cpu()}

    def collect(self, index: torch.Tensor, self_label: torch.Tensor, loss: torch.Tensor) -> None:
        """Store the teacher's labels and losses of rows ``index`` (all ranks' rows, gathered)."""
        index = index.to(self.device, torch.int64)
        self.coll_label.index_copy_(0, index, self_label.to(self.device, torch.int64))
        self.coll_loss.index_copy_(0, index, loss.to(self.device, torch.float32))
        self.visited[index] = True

    # -- at the epoch's end --------------------------------------------------------------------
    def end_epoch(self, epoch: int) -> dict[str, Any]:
        """The label update after (0-based) ``epoch``; returns :func:`epoch_end_update`'s dict plus
        ``prev_labels``. Outside collecting epochs nothing changes (``gmm`` None)."""
        prev = self.labels
        if not self.collecting(epoch):
            vote_mask = self._vote_mask()
            agreement = self.queue.agreement(vote_mask)
            return {"labels": prev, "prev_labels": prev, "p_clean": self.p_clean, "active": self.active,
                    "queue_agreement": agreement, "gmm": None, "n_masked": 0}
        out = epoch_end_update(self.queue, self.coll_label, self.coll_loss, self.active, push=True,
                               noise_model=self.noise_model, gate_threshold=self.gate_threshold,
                               clip_percentiles=self.clip_percentiles, labels_in_use=prev,
                               update_labels=self.updating(epoch), visited=self.visited,
                               prev_p_clean=self.p_clean, log_floor=self.log_floor, masking=self.masking,
                               gmm_recipe=self.gmm_recipe)
        self.labels = out["labels"].to(self.device)
        self.p_clean = out["p_clean"].to(self.device, torch.float32).contiguous()
        if self.mask_empty:
            self.active = out["active"].to(self.device)
        return {**out, "prev_labels": prev}

    # -- checkpoints ---------------------------------------------------------------------------
    def saved_state(self) -> dict[str, Any]:
        """The label state (:data:`SAVED`: labels, queue, p_clean, active clusters), on the CPU."""
        return {"labels": self.labels.cpu(), "queue": self.queue.state_dict(), "p_clean": self.p_clean.cpu(),
                "active": self.active.cpu()}

    def state_dict(self) -> dict[str, Any]:
        """:meth:`saved_state` and the epoch's collection (:meth:`collected`), on the CPU."""
        return {**self.saved_state(), **self.collected()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        missing = [key for key in ("labels", "queue", "p_clean", "active") if key not in state]
        if missing:
            raise KeyError(f"PseudoLabelState.load_state_dict: missing key(s) {missing}")
        labels = torch.as_tensor(state["labels"])
        if tuple(labels.shape) != (self.n,):
            raise ValueError(f"PseudoLabelState.load_state_dict: labels have shape {tuple(labels.shape)}, "
                             f"this state has {self.n} utterances")
        if tuple(torch.as_tensor(state["active"]).shape) != (self.k,):
            raise ValueError(f"PseudoLabelState.load_state_dict: active does not have {self.k} clusters")
        self.labels = labels.to(self.device, torch.int64)
        self.queue.load_state_dict(state["queue"])
        self.p_clean = torch.as_tensor(state["p_clean"]).to(self.device, torch.float32)
        self.active = torch.as_tensor(state["active"]).to(self.device, torch.bool)
        self.begin_epoch(state if "coll_label" in state else None)
