"""DINO's networks: the student (SpeakerNet + DINOHead, :class:`DINOModel`) and, from a finished
DINO run, the teacher backbone every stage-2 method starts from (:func:`load_teacher_backbone`)."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..features import build_spec_augment
from .dino_config import DINOConfig
from .run import read_checkpoint


class DINOModel(nn.Module):
    """Backbone (SpeakerNet) + DINOHead; ``forward(views) -> list of (B, K) logits``.

    Consecutive views of equal length are batched through the backbone together.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, views: Sequence[torch.Tensor], augment_spec: bool = False) -> list[torch.Tensor]:
        groups: list[list[torch.Tensor]] = []
        for v in views:
            if groups and groups[-1][0].shape == v.shape:
                groups[-1].append(v)
            else:
                groups.append([v])
        emb = torch.cat([self.backbone(torch.cat(g, 0), augment_spec=augment_spec) for g in groups], 0)
        return list(self.head(emb).chunk(len(views), 0))


def build_student(cfg: DINOConfig) -> DINOModel:
    from ..models import DINOHead, SpeakerNet

    backbone = SpeakerNet(cfg.encoder, spec_augment=build_spec_augment(cfg))
    head = DINOHead(backbone.emb_dim, cfg.head_hidden, cfg.head_bottleneck, cfg.n_prototypes,
                    n_layers=cfg.head_layers, use_bn=cfg.head_bn, norm_last_layer=cfg.norm_last_layer)
    return DINOModel(backbone, head)


def load_teacher_backbone(run_dir, device="cpu") -> nn.Module:
    """The teacher SpeakerNet of a DINO run directory (what iterative / SSRL start from)."""
    import json
    from pathlib import Path

    from ..models import EncoderConfig, SpeakerNet

    run_dir = Path(run_dir)
    cfg = json.loads((run_dir / "config.json").read_text())
    ckpt = read_checkpoint(run_dir)
    if ckpt is None:
        raise FileNotFoundError(f"{run_dir}: no checkpoint.pt (is it a DINO run directory?)")
    net = SpeakerNet(EncoderConfig.from_dict(cfg["encoder"]))
    sd = {k[len("backbone."):]: v for k, v in ckpt["teacher"].items() if k.startswith("backbone.")}
    net.load_state_dict(sd)
    return net.to(device)
