"""DINO's loss: cross-entropy from each centred, sharpened teacher view to every other student view.

:class:`DINOLoss` (with the teacher centre as a buffer, all-reduced over ranks) and
:func:`teacher_stats` (the teacher's entropies and argmaxes, which the collapse guard watches).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from . import distributed as dist


class DINOLoss(nn.Module):
    """DINO cross-entropy with teacher centring and sharpening.

    ``forward(student_out, teacher_out, teacher_temp)``: ``student_out`` a list of ``(B, K)``
    logits, one per view (global views first, in the same order as the teacher's);
    ``teacher_out`` a list of ``(B, K)`` logits for the global views. Each teacher view ``i``
    gives targets ``softmax((t_i - centre) / teacher_temp)``; each student view ``v != i`` is
    scored with ``-sum q log softmax(s_v / student_temp)``, averaged over the batch and over all
    such pairs. :meth:`update_center` then moves the centre towards the batch mean of the
    teacher logits (all-reduced over ranks): ``c <- m c + (1 - m) mean``.
    """

    def __init__(self, out_dim: int, student_temp: float = 0.1, center_momentum: float = 0.9) -> None:
        super().__init__()
        self.student_temp = float(student_temp)
        self.center_momentum = float(center_momentum)
        self.register_buffer("center", torch.zeros(1, out_dim))

    def teacher_probs(self, teacher_out: Sequence[torch.Tensor], teacher_temp: float) -> list[torch.Tensor]:
        return [F.softmax((t.float() - self.center) / teacher_temp, dim=-1).detach() for t in teacher_out]

    def forward(self, student_out: Sequence[torch.Tensor], teacher_out: Sequence[torch.Tensor],
                teacher_temp: float) -> torch.Tensor:
        if len(teacher_out) > len(student_out):
            raise ValueError(f"DINOLoss: {len(teacher_out)} teacher views but only {len(student_out)} student views")
        targets = self.teacher_probs(teacher_out, teacher_temp)
        logp = [F.log_softmax(s.float() / self.student_temp, dim=-1) for s in student_out]
        total, n_pairs = 0.0, 0
        for i, q in enumerate(targets):
            for v, lp in enumerate(logp):
                if v == i:
                    continue
                total = total + torch.sum(-q * lp, dim=-1).mean()
                n_pairs += 1
        if n_pairs == 0:
            raise ValueError("DINOLoss: no (teacher, other student view) pair; give at least 2 views")
        return total / n_pairs

    @torch.no_grad()
    def update_center(self, teacher_out: Sequence[torch.Tensor]) -> None:
        t = torch.cat([x.float() for x in teacher_out], 0)
        s = t.sum(0, keepdim=True)
        n = torch.tensor([float(t.shape[0])], device=t.device)
        dist.all_reduce_sum(s)
        dist.all_reduce_sum(n)
        self.center.mul_(self.center_momentum).add_(s / n, alpha=1.0 - self.center_momentum)


@torch.no_grad()
def teacher_stats(probs: Sequence[torch.Tensor]) -> dict:
    """Mean per-sample entropy, entropy of the batch-mean distribution (nats) and argmaxes."""
    p = torch.cat(list(probs), 0)
    ent = -(p * torch.log(p.clamp_min(1e-12))).sum(-1).mean()
    pm = p.mean(0)
    ent_mean = -(pm * torch.log(pm.clamp_min(1e-12))).sum()
    arg = p.argmax(-1)
    return {"entropy": float(ent), "entropy_of_mean": float(ent_mean), "argmax": arg.cpu()}
