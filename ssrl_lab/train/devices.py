"""Where and how a run computes: the device, mixed precision, a device-synchronised timer and
the seeded RNG state (set, saved in checkpoints, restored on resume).

* :func:`resolve_device` - ``"auto"`` -> ``cuda:LOCAL_RANK`` when CUDA is available, else CPU.
* :func:`autocast` - bf16 autocast on CUDA (``amp="auto"|"bf16"``), a no-op otherwise.
* :func:`seed_everything`, :func:`rng_state`, :func:`set_rng_state` - python / numpy / torch
  (and CUDA) generators, saved in checkpoints so a resumed run continues identically.
* :class:`StepTimer` - wall clock that synchronises CUDA first (times device work).
"""
from __future__ import annotations

import contextlib
import random
import time

import numpy as np
import torch

from . import distributed as dist


def resolve_device(spec: str = "auto", cudnn_benchmark: bool | None = None) -> torch.device:
    """``"auto"`` -> ``cuda:LOCAL_RANK`` if CUDA is available else ``cpu``; other strings as given.

    ``cudnn_benchmark`` (CUDA only; None leaves it alone): let cuDNN time its convolution
    algorithms once per input shape and keep the fastest. Training crops have fixed lengths, so
    this pays off (measured on an H100: an SSRL step of the paper model at batch 240 took 126
    instead of 137 ms); embedding extraction of whole utterances switches it off again (every
    length is a new shape), see :func:`ssrl_lab.eval.embed.extract_embeddings`.
    """
    if spec == "auto":
        dev = torch.device(f"cuda:{dist.local_rank()}" if torch.cuda.is_available() else "cpu")
    else:
        dev = torch.device(spec)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"device {spec!r} requested but CUDA is not available")
    if dev.type == "cuda" and cudnn_benchmark is not None:
        torch.backends.cudnn.benchmark = bool(cudnn_benchmark)
    return dev


def amp_dtype(device: torch.device, amp: str) -> torch.dtype | None:
    """The autocast dtype for ``amp`` ("auto": bf16 on CUDA, off on CPU; "bf16"; "off")."""
    if amp == "off":
        return None
    if amp == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    if amp == "bf16":
        return torch.bfloat16
    raise ValueError(f"amp {amp!r} is not one of auto, bf16, off")


def autocast(device: torch.device, amp: str):
    """A context manager running the forward pass in bf16 when asked (no-op otherwise)."""
    dtype = amp_dtype(device, amp)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


class StepTimer:
    """Wall-clock timer that synchronises CUDA first, so it measures the device work."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.device = device

    def now(self) -> float:
        if self.cuda:
            torch.cuda.synchronize(self.device)
        return time.perf_counter()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def rng_state() -> dict:
    """Python, numpy, torch (and CUDA when present) generator states."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
