"""ECAPA-TDNN speaker encoder (Desplanques et al., Interspeech 2020).

Layout: Conv1d+ReLU+BN stem -> three SE-Res2Net blocks (dilations 2, 3, 4 by default) ->
concatenation of the three block outputs (multi-layer feature aggregation) -> 1x1 conv+ReLU to
``last_channels`` -> attentive statistics pooling (with global context) -> BN -> linear ->
BN. Input ``(B, n_mels, T)``, output ``(B, emb_dim)``; every conv keeps the frame count (the stem
divides it by ``first_stride``), so any ``T >= first_stride`` works.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ssrl_lab.models.config import EncoderConfig

__all__ = ["ECAPA", "AttentiveStatsPool", "SERes2Block"]


class ConvReluBN(nn.Module):
    """Conv1d -> ReLU -> BatchNorm1d (the ECAPA ordering)."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 1, dilation: int = 1, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel, stride=stride, dilation=dilation,
                              padding=dilation * (kernel - 1) // 2)
        self.bn = nn.BatchNorm1d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(F.relu(self.conv(x)))


class Res2Conv(nn.Module):
    """Res2Net dilated convolution: ``scale`` channel groups, each group's conv sees the
    previous group's output added to its own input; the last group passes through."""

    def __init__(self, channels: int, kernel: int, dilation: int, scale: int) -> None:
        super().__init__()
        self.scale = scale
        self.width = channels // scale
        n = max(scale - 1, 1)
        self.convs = nn.ModuleList(ConvReluBN(self.width, self.width, kernel, dilation) for _ in range(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale == 1:
            return self.convs[0](x)
        groups = torch.split(x, self.width, dim=1)
        out = []
        y = None
        for i, conv in enumerate(self.convs):
            y = conv(groups[i] if y is None else groups[i] + y)
            out.append(y)
        out.append(groups[-1])
        return torch.cat(out, dim=1)


class SqueezeExcite(nn.Module):
    """Channel gating from the time-averaged activations (bottleneck ``se_channels``)."""

    def __init__(self, channels: int, se_channels: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(channels, se_channels)
        self.fc2 = nn.Linear(se_channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean(dim=2)))))
        return x * s.unsqueeze(2)


class SERes2Block(nn.Module):
    """1x1 ConvReluBN -> Res2 dilated conv -> 1x1 ConvReluBN -> SE, with a residual connection."""

    def __init__(self, channels: int, kernel: int, dilation: int, scale: int, se_channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            ConvReluBN(channels, channels, 1),
            Res2Conv(channels, kernel, dilation, scale),
            ConvReluBN(channels, channels, 1),
            SqueezeExcite(channels, se_channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def _mean_std(x: torch.Tensor, w: torch.Tensor | None = None, eps: float = 1e-8) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation over the last axis, optionally weighted by ``w`` (sums to 1)."""
    if w is None:
        mean = x.mean(dim=-1)
        var = (x - mean.unsqueeze(-1)).square().mean(dim=-1)
    else:
        mean = (w * x).sum(dim=-1)
        var = (w * (x - mean.unsqueeze(-1)).square()).sum(dim=-1)
    return mean, var.clamp_min(eps).sqrt()


class AttentiveStatsPool(nn.Module):
    """Attentive statistics pooling: channel- and frame-dependent softmax weights over time,
    then the weighted mean and standard deviation. With ``global_context`` the attention
    network also sees the utterance's (unweighted) mean and std next to every frame.
    ``(B, C, T) -> (B, 2C)``.
    """

    def __init__(self, channels: int, attention_channels: int, global_context: bool = True) -> None:
        super().__init__()
        self.global_context = global_context
        c_in = 3 * channels if global_context else channels
        self.attention = nn.Sequential(
            nn.Conv1d(c_in, attention_channels, 1),
            nn.Tanh(),
            nn.Conv1d(attention_channels, channels, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[-1]
        if self.global_context:
            mean, std = (s.to(x.dtype).unsqueeze(-1).expand(-1, -1, t) for s in _mean_std(x.float()))
            ctx = torch.cat([x, mean, std], dim=1)
        else:
            ctx = x
        # weights and statistics in float32: bf16/fp16 sums over hundreds of frames lose precision
        w = torch.softmax(self.attention(ctx).float(), dim=-1)
        mean, std = _mean_std(x.float(), w)
        return torch.cat([mean, std], dim=1)


class ECAPA(nn.Module):
    """ECAPA-TDNN encoder built from an :class:`EncoderConfig` with ``arch == "ecapa"``."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        if cfg.arch != "ecapa":
            raise ValueError(f"ECAPA: config has arch={cfg.arch!r}, expected 'ecapa'")
        self.cfg = cfg
        self.n_mels = cfg.n_mels
        self.emb_dim = cfg.emb_dim
        c = cfg.channels
        self.stem = ConvReluBN(cfg.n_mels, c, cfg.stem_kernel, stride=cfg.first_stride)
        self.blocks = nn.ModuleList(
            SERes2Block(c, k, d, cfg.scale, cfg.se_channels) for k, d in zip(cfg.kernel_sizes, cfg.dilations)
        )
        last = cfg.aggregation_channels
        self.aggregate = nn.Conv1d(len(self.blocks) * c, last, 1)
        self.pool = AttentiveStatsPool(last, cfg.attention_channels, cfg.global_context)
        self.pool_bn = nn.BatchNorm1d(2 * last)
        self.fc = nn.Linear(2 * last, cfg.emb_dim)
        self.emb_bn = nn.BatchNorm1d(cfg.emb_dim)

    def frame_features(self, x: torch.Tensor) -> torch.Tensor:
        """Frame-level features before pooling: ``(B, n_mels, T) -> (B, last_channels, T')``."""
        if x.dim() != 3 or x.shape[1] != self.n_mels:
            raise ValueError(f"ECAPA: expected (batch, {self.n_mels}, frames) features, got shape {tuple(x.shape)}")
        if x.shape[2] < self.cfg.first_stride:
            raise ValueError(f"ECAPA: {x.shape[2]} frames is too short (need >= {self.cfg.first_stride})")
        h = self.stem(x)
        outs = []
        for block in self.blocks:
            h = block(h)
            outs.append(h)
        return F.relu(self.aggregate(torch.cat(outs, dim=1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.frame_features(x)
        return self.emb_bn(self.fc(self.pool_bn(self.pool(h))))
