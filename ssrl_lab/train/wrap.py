"""How the models are wrapped for training: ``torch.compile`` of the encoders, SyncBatchNorm
and DistributedDataParallel (:func:`prepare_models` does all three in that order)."""
from __future__ import annotations

import logging

import torch
from torch import nn

from . import distributed as dist
from .ema import unwrap

log = logging.getLogger("ssrl_lab.train.wrap")


def prepare_models(cfg, device: torch.device, student: nn.Module, teacher: nn.Module | None = None, *,
                   sync_teacher: bool = False) -> tuple[nn.Module, nn.Module, nn.Module | None]:
    """``torch.compile`` the encoders (``cfg.compile``), convert to SyncBatchNorm when several CUDA
    ranks train (the teacher too with ``sync_teacher``: DINO's teacher runs in train mode) and
    wrap the student in DDP. Returns ``(student as called, student module, teacher)``."""
    sync_bn = sync_bn_enabled(cfg, device)
    if sync_bn and sync_teacher and teacher is not None:
        teacher = nn.SyncBatchNorm.convert_sync_batchnorm(teacher)
    compile_encoders(cfg, *(m for m in (student, teacher) if m is not None))
    wrapped = wrap_ddp(student, device, sync_bn)
    return wrapped, unwrap(wrapped), teacher


def compile_encoders(cfg, *models: nn.Module) -> None:
    """With ``cfg.compile``, ``torch.compile`` every speaker encoder inside ``models`` in place
    (``nn.Module.compile``: parameters, state dicts and checkpoints are unchanged; backward is
    compiled by AOTAutograd). The Fbank front end stays eager. A no-op when ``compile`` is off."""
    if not cfg.compile:
        return
    from ..models.speaker_net import SpeakerNet

    seen = set()
    for model in models:
        for m in model.modules():
            if isinstance(m, SpeakerNet) and id(m.encoder) not in seen:
                seen.add(id(m.encoder))
                m.encoder.compile()
    log.info("torch.compile: %d encoder(s) compiled in place", len(seen))


def sync_bn_enabled(cfg, device: torch.device) -> bool:
    """SyncBatchNorm for ``cfg.sync_bn`` ("on", "off", "auto": CUDA with several ranks) on ``device``."""
    return use_sync_bn({"on": True, "off": False}.get(cfg.sync_bn, "auto"), device)


def use_sync_bn(flag: str | bool, device: torch.device) -> bool:
    """Resolve the ``sync_bn`` config value: ``"auto"`` = on for CUDA with several ranks."""
    if isinstance(flag, bool):
        return flag and dist.world_size() > 1
    return device.type == "cuda" and dist.world_size() > 1


def wrap_ddp(model: nn.Module, device: torch.device, sync_bn: bool) -> nn.Module:
    """Wrap in DistributedDataParallel when distributed (optionally converting to SyncBatchNorm)."""
    if dist.world_size() == 1:
        return model
    if sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=False)
