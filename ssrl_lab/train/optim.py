"""The optimiser of a run: parameter groups (no weight decay on biases and norms), the optimiser
by name, the per-step learning rate and weight decay, gradient clipping."""
from __future__ import annotations

import torch
from torch import nn


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two optimiser groups: decayed weights, and biases / norm parameters (1-d) without decay."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay, "apply_wd": True},
            {"params": no_decay, "weight_decay": 0.0, "apply_wd": False}]


def set_lr_wd(optimizer: torch.optim.Optimizer, lr: float, wd: float | None = None) -> None:
    """Set every group's lr (times its ``lr_scale`` if any) and, for decayed groups, weight decay."""
    for g in optimizer.param_groups:
        g["lr"] = lr * g.get("lr_scale", 1.0)
        if wd is not None and g.get("apply_wd", True):
            g["weight_decay"] = wd


def build_optimizer(name: str, groups: list[dict], lr: float, momentum: float = 0.9) -> torch.optim.Optimizer:
    """``"sgd"`` (momentum, as the paper), ``"adamw"`` or ``"adam"``."""
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr)
    raise ValueError(f"optimizer {name!r} is not one of sgd, adamw, adam")


def clip_gradients(model: nn.Module, max_norm: float) -> float:
    """Clip the total gradient norm (0 disables); returns the norm before clipping."""
    params = [p for p in model.parameters() if p.grad is not None]
    if not params:
        return 0.0
    if max_norm and max_norm > 0:
        return float(torch.nn.utils.clip_grad_norm_(params, max_norm))
    return float(torch.norm(torch.stack([p.grad.detach().norm() for p in params])))
