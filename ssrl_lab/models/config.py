"""Encoder configuration: one dataclass for both architectures, plus named presets.

Presets (``EncoderConfig.preset(name, **overrides)``):

=============== ====================================================================
``ecapa_c512``  ECAPA-TDNN, 512 channels, 1536 aggregation channels, 192-d (~6.2 M)
``ecapa_c1024`` ECAPA-TDNN, 1024 channels, 1536 aggregation channels, 192-d (~14.65 M)
``ssrl_paper``  the SSRL paper's encoder: c1024, 3072, 512-d embedding
``resnet34``    thin ResNet34 (WeSpeaker: widths 32-64-128-256), 256-d (~6.6 M)
``tiny``        CPU demo ECAPA: 64 channels, Res2Net scale 2, stride-2 stem, 192-d (~0.21 M; a DINO step of 64
                utterances costs ~0.4 s on 2 idle cores, half of the 128-channel model's, and scale 8 is ~5x slower again)
``micro``       smoke tests: 32 channels, stride-2 stem, 64-d (trains in seconds)
=============== ====================================================================

``ecapa_c1024`` follows the ECAPA paper's C=1024 model (aggregation width 1536), which is the
14.65 M parameter figure WeSpeaker publishes; the same blocks with a 3072-wide aggregation (the
SSRL paper's encoder, ``ssrl_paper``) have ~20.8 M parameters with a 192-d embedding.
"""
from __future__ import annotations

import dataclasses
from typing import Literal

from ssrl_lab.config import Config, ConfigError, check

__all__ = ["EncoderConfig", "PRESETS"]


@dataclasses.dataclass
class EncoderConfig(Config):
    """Speaker encoder hyper-parameters.

    Shared: ``arch`` ("ecapa" | "resnet34"), ``n_mels`` (input feature bins), ``emb_dim``.

    ECAPA-TDNN: ``channels`` (block width), ``last_channels`` (multi-layer aggregation width;
    0 means ``3 * channels``), ``scale`` (Res2Net groups; must divide ``channels``),
    ``se_channels`` (squeeze-excitation bottleneck), ``attention_channels`` (attentive pooling
    bottleneck), ``stem_kernel``, ``kernel_sizes`` and ``dilations`` of the SE-Res2 blocks (one
    entry per block; three in ECAPA),
    ``first_stride`` (stride of the stem conv: 2 halves the frame rate), ``global_context``
    (attention sees the utterance mean/std next to each frame).

    ResNet34: ``base_width`` (widths base, 2x, 4x, 8x), ``resnet_blocks`` (blocks per stage).
    """

    arch: Literal["ecapa", "resnet34"] = "ecapa"
    n_mels: int = 80
    emb_dim: int = 192
    channels: int = 512
    last_channels: int = 0
    scale: int = 8
    se_channels: int = 128
    attention_channels: int = 128
    stem_kernel: int = 5
    kernel_sizes: tuple[int, ...] = (3, 3, 3)
    dilations: tuple[int, ...] = (2, 3, 4)
    first_stride: int = 1
    global_context: bool = True
    base_width: int = 32
    resnet_blocks: tuple[int, ...] = (3, 4, 6, 3)

    def validate(self) -> None:
        check(self.n_mels >= 8, f"EncoderConfig.n_mels must be >= 8, got {self.n_mels}")
        check(self.emb_dim >= 1, f"EncoderConfig.emb_dim must be >= 1, got {self.emb_dim}")
        check(self.channels >= 1, f"EncoderConfig.channels must be >= 1, got {self.channels}")
        check(self.last_channels >= 0, f"EncoderConfig.last_channels must be >= 0 (0 = 3 * channels), got {self.last_channels}")
        check(self.scale >= 1, f"EncoderConfig.scale must be >= 1, got {self.scale}")
        check(
            self.channels % self.scale == 0,
            f"EncoderConfig.scale={self.scale} must divide channels={self.channels} (Res2Net groups)",
        )
        check(self.se_channels >= 1, f"EncoderConfig.se_channels must be >= 1, got {self.se_channels}")
        check(self.attention_channels >= 1, f"EncoderConfig.attention_channels must be >= 1, got {self.attention_channels}")
        check(
            self.stem_kernel >= 1 and self.stem_kernel % 2 == 1,
            f"EncoderConfig.stem_kernel must be an odd integer >= 1, got {self.stem_kernel}",
        )
        check(
            len(self.kernel_sizes) == len(self.dilations) >= 1,
            f"EncoderConfig.kernel_sizes {list(self.kernel_sizes)} and dilations {list(self.dilations)} "
            "must have the same length (one per SE-Res2 block, 3 in ECAPA)",
        )
        for i, k in enumerate(self.kernel_sizes):
            check(k >= 1 and k % 2 == 1, f"EncoderConfig.kernel_sizes[{i}] must be an odd integer >= 1, got {k}")
        for i, d in enumerate(self.dilations):
            check(1 <= d <= 64, f"EncoderConfig.dilations[{i}] must be in [1, 64], got {d}")
        check(self.first_stride in (1, 2, 3, 4), f"EncoderConfig.first_stride must be 1-4, got {self.first_stride}")
        check(self.base_width >= 1, f"EncoderConfig.base_width must be >= 1, got {self.base_width}")
        check(len(self.resnet_blocks) == 4, f"EncoderConfig.resnet_blocks needs 4 stage sizes, got {list(self.resnet_blocks)}")
        for i, n in enumerate(self.resnet_blocks):
            check(n >= 1, f"EncoderConfig.resnet_blocks[{i}] must be >= 1, got {n}")

    @property
    def aggregation_channels(self) -> int:
        """ECAPA multi-layer aggregation width (``last_channels`` or ``3 * channels``)."""
        return self.last_channels or 3 * self.channels

    @classmethod
    def preset(cls, name: str, **overrides) -> "EncoderConfig":
        """A named preset (see the module docstring) with ``overrides`` applied."""
        if name not in PRESETS:
            raise ConfigError(f"unknown encoder preset {name!r}; valid: {', '.join(PRESETS)}")
        data = dict(PRESETS[name])
        data.update(overrides)
        return cls.from_dict(data)


PRESETS: dict[str, dict] = {
    "ecapa_c512": dict(arch="ecapa", channels=512, last_channels=1536, emb_dim=192),
    "ecapa_c1024": dict(arch="ecapa", channels=1024, last_channels=1536, emb_dim=192),
    "ssrl_paper": dict(arch="ecapa", channels=1024, last_channels=3072, emb_dim=512),
    "resnet34": dict(arch="resnet34", base_width=32, emb_dim=256),
    "tiny": dict(
        arch="ecapa", channels=64, last_channels=192, scale=2, se_channels=32,
        attention_channels=32, first_stride=2, emb_dim=192,
    ),
    "micro": dict(
        arch="ecapa", channels=32, last_channels=96, scale=2, se_channels=16,
        attention_channels=16, first_stride=2, emb_dim=64,
    ),
}
