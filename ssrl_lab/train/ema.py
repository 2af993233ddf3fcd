"""Exponential moving average of a network (the DINO / SSRL teacher)."""
from __future__ import annotations

import copy

import torch
from torch import nn


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel wrapper (or the module itself)."""
    return model.module if hasattr(model, "module") and isinstance(model, nn.parallel.DistributedDataParallel) else model


def make_teacher(student: nn.Module) -> nn.Module:
    """A deep copy of ``student`` with gradients off (the EMA teacher at step 0)."""
    teacher = copy.deepcopy(unwrap(student))
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, m: float) -> None:
    """``teacher <- m * teacher + (1 - m) * student`` for every parameter and float buffer.

    Each teacher tensor moves by exactly ``(1 - m)`` of its gap to the student's. Integer
    buffers (BatchNorm's ``num_batches_tracked``) are copied. Parameters and buffers are
    matched by name, so the two modules must have the same structure. Non-persistent buffers
    (constants such as a filterbank matrix, not saved in state dicts) are left alone: blending
    equal values would drift them by rounding and make a resumed run differ from a straight one.
    """
    if not 0.0 <= m <= 1.0:
        raise ValueError(f"ema_update: momentum {m} is outside [0, 1]")
    student = unwrap(student)
    s_params = dict(student.named_parameters())
    blend_t, blend_s = [], []
    for name, t in teacher.named_parameters():
        s = s_params.get(name)
        if s is None:
            raise KeyError(f"ema_update: student has no parameter {name!r}")
        blend_t.append(t)
        blend_s.append(s.detach().to(t.dtype))
    s_bufs = dict(student.named_buffers())
    for name, t in persistent_buffers(teacher):
        s = s_bufs.get(name)
        if s is None:
            raise KeyError(f"ema_update: student has no buffer {name!r}")
        if t.dtype.is_floating_point:
            blend_t.append(t)
            blend_s.append(s.detach().to(t.dtype))
        else:
            t.copy_(s)
    if blend_t:
        # the same two operations per tensor as t.mul_(m).add_(s, alpha=1 - m), hence the same
        # rounding, but a few fused launches instead of two per tensor (hundreds on a GPU)
        torch._foreach_mul_(blend_t, m)
        torch._foreach_add_(blend_t, blend_s, alpha=1.0 - m)


def persistent_buffers(module: nn.Module):
    """``(name, buffer)`` for every buffer that is part of the state dict."""
    for mod_name, mod in module.named_modules():
        skip = getattr(mod, "_non_persistent_buffers_set", set())
        for b_name, buf in mod.named_buffers(recurse=False):
            if buf is not None and b_name not in skip:
                yield (f"{mod_name}.{b_name}" if mod_name else b_name), buf
