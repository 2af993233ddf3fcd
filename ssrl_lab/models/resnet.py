"""Thin ResNet34 speaker encoder (the WeSpeaker/VoxCeleb variant).

3x3 conv stem (stride 1, no max-pooling) -> four stages of BasicBlocks ([3, 4, 6, 3] by default)
with widths ``base_width * (1, 2, 4, 8)`` (32-64-128-256) and stride 2 in stages 2-4 along both
frequency and time -> flatten channels x frequency -> statistics pooling (mean and standard
deviation over time) -> linear to ``emb_dim``. Input ``(B, n_mels, T)`` (or ``(B, 1, n_mels, T)``),
output ``(B, emb_dim)``.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ssrl_lab.models.config import EncoderConfig

__all__ = ["ResNet34", "BasicBlock", "stats_pool"]


def stats_pool(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Concatenated mean and standard deviation over the last axis: ``(B, C, T) -> (B, 2C)``."""
    mean = x.mean(dim=-1)
    var = (x - mean.unsqueeze(-1)).square().mean(dim=-1)
    return torch.cat([mean, var.clamp_min(eps).sqrt()], dim=1)


class BasicBlock(nn.Module):
    """Two 3x3 conv+BN layers with an identity (or 1x1 conv+BN projection) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet34(nn.Module):
    """Thin ResNet encoder built from an :class:`EncoderConfig` with ``arch == "resnet34"``."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        if cfg.arch != "resnet34":
            raise ValueError(f"ResNet34: config has arch={cfg.arch!r}, expected 'resnet34'")
        self.cfg = cfg
        self.n_mels = cfg.n_mels
        self.emb_dim = cfg.emb_dim
        w = cfg.base_width
        self.stem = nn.Sequential(nn.Conv2d(1, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU())
        stages = []
        c_in = w
        freq = cfg.n_mels
        for i, n_blocks in enumerate(cfg.resnet_blocks):
            c_out = w * 2**i
            stride = 1 if i == 0 else 2
            blocks = [BasicBlock(c_in, c_out, stride)] + [BasicBlock(c_out, c_out) for _ in range(n_blocks - 1)]
            stages.append(nn.Sequential(*blocks))
            c_in = c_out
            freq = (freq - 1) // stride + 1  # 3x3 conv, padding 1
        self.stages = nn.Sequential(*stages)
        self.out_freq = freq
        self.stats_dim = 2 * c_in * freq
        self.fc = nn.Linear(self.stats_dim, cfg.emb_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3:
            x = x.unsqueeze(1)
        if x.dim() != 4 or x.shape[1] != 1 or x.shape[2] != self.n_mels:
            raise ValueError(
                f"ResNet34: expected (batch, {self.n_mels}, frames) or (batch, 1, {self.n_mels}, frames) "
                f"features, got shape {tuple(x.shape)}"
            )
        h = self.stages(self.stem(x))  # (B, C, F', T')
        h = h.flatten(1, 2)  # (B, C * F', T')
        return self.fc(stats_pool(h.float()))  # statistics in float32 under autocast
