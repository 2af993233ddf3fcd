"""The speaker network every trainer and extractor uses: waveform -> embedding.

``SpeakerNet = Fbank -> (SpecAugment, when asked and in training mode) -> encoder``.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from ssrl_lab.features import Fbank, SpecAugment
from ssrl_lab.models.config import EncoderConfig
from ssrl_lab.models.ecapa import ECAPA
from ssrl_lab.models.resnet import ResNet34

__all__ = ["SpeakerNet", "build_encoder", "count_parameters"]


def build_encoder(cfg: EncoderConfig) -> nn.Module:
    """The encoder for ``cfg.arch``: maps ``(B, n_mels, frames)`` to ``(B, emb_dim)``; has ``.emb_dim``."""
    if not isinstance(cfg, EncoderConfig):
        raise TypeError(f"build_encoder: expected an EncoderConfig, got {type(cfg).__name__}")
    if cfg.arch == "ecapa":
        return ECAPA(cfg)
    if cfg.arch == "resnet34":
        return ResNet34(cfg)
    raise ValueError(f"build_encoder: unknown arch {cfg.arch!r}")  # pragma: no cover - validated


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements in ``module`` (only those with ``requires_grad`` if asked)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


class SpeakerNet(nn.Module):
    """Fbank + optional SpecAugment + encoder.

    Args:
        encoder_cfg: the encoder configuration (``n_mels`` also sets the filterbank).
        spec_augment: applied to the features when ``forward(..., augment_spec=True)`` is called
            in training mode; ``None`` makes ``augment_spec`` a no-op.

    ``forward(wave (B, T), augment_spec=False) -> (B, emb_dim)``.
    """

    def __init__(self, encoder_cfg: EncoderConfig, spec_augment: SpecAugment | None = None) -> None:
        super().__init__()
        self.encoder_cfg = encoder_cfg
        self.fbank = Fbank(n_mels=encoder_cfg.n_mels)
        self.spec_augment = spec_augment
        self.encoder = build_encoder(encoder_cfg)
        self.emb_dim = self.encoder.emb_dim

    def features(self, wave: torch.Tensor, augment_spec: bool = False) -> torch.Tensor:
        """Mean-normalised log-Mel features ``(B, n_mels, frames)``, SpecAugmented if asked."""
        feats = self.fbank(wave)
        if augment_spec and self.spec_augment is not None:
            feats = self.spec_augment(feats)
        return feats

    def forward(self, wave: torch.Tensor, augment_spec: bool = False) -> torch.Tensor:
        return self.encoder(self.features(wave, augment_spec))
