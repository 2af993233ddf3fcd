"""Process-group helpers: the same code runs under ``torchrun`` (DDP) and in one process.

``init_distributed()`` reads ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` from the environment
(set by torchrun); without them everything degrades to a single process and every collective
is the identity.
"""
from __future__ import annotations

import datetime
import os
from typing import Any

import torch
import torch.distributed as dist


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if is_initialized() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", 0))


def is_main() -> bool:
    return rank() == 0


def init_distributed(backend: str | None = None, timeout_s: float = 1800.0) -> bool:
    """Initialise the default process group when launched by torchrun; True when distributed.

    On CUDA the backend is ``cpu:gloo,cuda:nccl``: nccl for CUDA tensors and gloo for the CPU
    tensors that metric reductions and label gathers use (nccl alone refuses CPU tensors); gloo
    otherwise (override with ``backend``).
    The environment variable ``SSRL_LAB_DIST_BACKEND`` overrides the default (e.g. ``gloo`` to
    run several ranks on one GPU, which nccl refuses, or to work around a broken nccl install).
    Under nccl the current device becomes ``cuda:LOCAL_RANK``. Calling it twice is harmless.
    """
    if is_initialized():
        return True
    if int(os.environ.get("WORLD_SIZE", 1)) <= 1 or "RANK" not in os.environ:
        return False
    if backend is None:
        backend = os.environ.get("SSRL_LAB_DIST_BACKEND") or None
    if backend is None:
        backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
    if "nccl" in backend:
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_s))
    return True


def cleanup() -> None:
    """Destroy the process group if one is up."""
    if is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if is_initialized():
        dist.barrier()


def all_reduce_mean(t: torch.Tensor) -> torch.Tensor:
    """In-place mean over ranks (identity in one process); returns ``t``."""
    if is_initialized() and world_size() > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t /= world_size()
    return t


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    if is_initialized() and world_size() > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_gather_tensor(t: torch.Tensor) -> torch.Tensor:
    """Concatenate ``t`` (same shape on every rank) along dim 0 over ranks."""
    if not is_initialized() or world_size() == 1:
        return t
    parts = [torch.empty_like(t) for _ in range(world_size())]
    dist.all_gather(parts, t.contiguous())
    return torch.cat(parts, 0)


def all_gather_variable(t: torch.Tensor) -> torch.Tensor:
    """Like :func:`all_gather_tensor` but the first dimension may differ between ranks."""
    if not is_initialized() or world_size() == 1:
        return t
    n = torch.tensor([t.shape[0]], device=t.device, dtype=torch.long)
    sizes = [torch.zeros_like(n) for _ in range(world_size())]
    dist.all_gather(sizes, n)
    sizes = [int(s.item()) for s in sizes]
    m = max(sizes)
    pad = torch.zeros((m - t.shape[0],) + tuple(t.shape[1:]), dtype=t.dtype, device=t.device)
    parts = [torch.empty((m,) + tuple(t.shape[1:]), dtype=t.dtype, device=t.device) for _ in sizes]
    dist.all_gather(parts, torch.cat([t, pad], 0).contiguous())
    return torch.cat([p[:s] for p, s in zip(parts, sizes)], 0)


def broadcast_(t: torch.Tensor) -> torch.Tensor:
    """In-place broadcast from rank 0 (keeps float state bit-identical across ranks)."""
    if is_initialized() and world_size() > 1:
        dist.broadcast(t, 0)
    return t


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Send a picklable object from ``src`` to every rank (identity in one process)."""
    if not is_initialized() or world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_object(obj: Any) -> list:
    if not is_initialized() or world_size() == 1:
        return [obj]
    out = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out
