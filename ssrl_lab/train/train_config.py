"""The configuration every trainer shares: :class:`TrainConfig` (each method's config derives
from it) and :class:`OptimConfig` (the trainers with a cosine learning rate)."""
from __future__ import annotations

import dataclasses
from typing import ClassVar

from ..config import Config, check
from ..models.config import EncoderConfig


@dataclasses.dataclass
class TrainConfig(Config):
    """Fields shared by every method's config (each method's config derives from this one).

    ``corpus``: corpus directory (``corpus.json``); ``run_dir``: output folder; ``seed``;
    ``device`` ("auto" = cuda:LOCAL_RANK when CUDA, else cpu); ``amp`` ("auto" = bf16 on CUDA,
    "bf16", "off"); ``num_workers`` (DataLoader processes); ``sync_bn`` ("auto" = on for CUDA with
    several ranks, "on", "off"); ``preload`` (decode the training table into memory once);
    ``skip_bad`` (substitute unreadable training files instead of raising, and drop those
    ``python -m ssrl_lab.data.check`` listed before the first step); ``max_skip_fraction`` (stop
    when more than this share of the training files was skipped; see :mod:`ssrl_lab.train.skips`); ``augment``
    (AugmentConfig fields; ``null`` = no waveform augmentation); ``spec_augment`` (SpecAugment on
    student features); ``eval_every`` (epochs between evaluations; 0 = only at the end);
    ``eval_batch_size``, ``eval_chunk_s``, ``eval_max_len_s``, ``eval_bucket_s`` (embedding extraction;
    ``eval_bucket_s`` trims test utterances to a length grid so that they batch);
    ``max_steps_per_epoch`` (0 = the whole table; tests cap it); ``cudnn_benchmark`` (CUDA: let
    cuDNN pick the fastest convolution algorithm per crop shape; see :func:`resolve_device`);
    ``augment_on`` (``"loader"``: the DataLoader workers augment each crop, the default;
    ``"batch"``: the workers only decode and crop, and the trainer augments the batch on the
    training device, see :mod:`ssrl_lab.data.batch_augment`); ``compile`` (``torch.compile`` the
    encoders' forward and backward in place; off by default, see :func:`~ssrl_lab.train.wrap.compile_encoders`);
    ``tracking`` (where every metrics line also goes: "tensorboard", "mlflow" or "none"; see
    :mod:`ssrl_lab.tracking`; not part of the run's identity).
    """

    corpus: str = ""
    run_dir: str = ""
    seed: int = 0
    device: str = "auto"
    amp: str = "auto"
    num_workers: int = 0
    sync_bn: str = "auto"
    preload: bool = False
    skip_bad: bool = False
    max_skip_fraction: float = 0.01
    encoder: EncoderConfig = dataclasses.field(default_factory=lambda: EncoderConfig.preset("tiny"))
    augment: dict | None = dataclasses.field(default_factory=dict)
    spec_augment: bool = False
    eval_every: int = 0
    eval_batch_size: int = 16
    eval_chunk_s: float | None = None
    eval_max_len_s: float | None = None
    eval_bucket_s: float | None = None
    max_steps_per_epoch: int = 0
    cudnn_benchmark: bool = True
    augment_on: str = "loader"
    compile: bool = False
    tracking: str = "tensorboard"

    def validate(self) -> None:
        from ..tracking import check_mode

        check_mode(self.tracking)
        check(self.augment_on in ("loader", "batch"), f"augment_on must be loader or batch, got {self.augment_on!r}")
        check(self.amp in ("auto", "bf16", "off"), f"amp must be auto, bf16 or off, got {self.amp!r}")
        check(self.sync_bn in ("auto", "on", "off"), f"sync_bn must be auto, on or off, got {self.sync_bn!r}")
        check(0.0 <= self.max_skip_fraction <= 1.0,
              f"max_skip_fraction must be in [0, 1], got {self.max_skip_fraction}")
        check(self.num_workers >= 0, f"num_workers must be >= 0, got {self.num_workers}")
        check(self.eval_every >= 0, f"eval_every must be >= 0, got {self.eval_every}")
        check(self.eval_batch_size >= 1, f"eval_batch_size must be >= 1, got {self.eval_batch_size}")
        for name in ("eval_chunk_s", "eval_max_len_s", "eval_bucket_s"):
            v = getattr(self, name)
            check(v is None or v > 0, f"{name} must be positive seconds or None, got {v}")
        check(self.max_steps_per_epoch >= 0, f"max_steps_per_epoch must be >= 0, got {self.max_steps_per_epoch}")
        if self.augment is not None:
            try:
                from ..data.augment import AugmentConfig
            except ImportError:  # pragma: no cover - the data layer is always installed
                return
            AugmentConfig.from_dict(self.augment, _prefix="augment.")

    #: the named profiles of a trainer's config (``{"smoke": {...}, "demo": {...}, "vox": {...}}``),
    #: set by the trainer's module: ``smoke`` (seconds, tests), ``demo`` (the SynthVox demo corpus
    #: on CPU), ``vox`` (VoxCeleb, the paper's settings)
    PROFILES: ClassVar[dict] = {}

    @classmethod
    def profile(cls, name: str, **overrides):
        """The config of profile ``name`` (:attr:`PROFILES`) with ``overrides`` (nested dicts merge)."""
        return cls._profile(cls.PROFILES, name, overrides)

    @classmethod
    def _profile(cls, profiles: dict, name: str, overrides: dict):
        """Build profile ``name`` from ``profiles`` then apply ``overrides`` (nested dicts merge)."""
        if name not in profiles:
            from ..config import ConfigError

            raise ConfigError(f"unknown profile {name!r} for {cls.__name__}; valid: {', '.join(profiles)}")
        base = dict(profiles[name])
        enc = base.pop("encoder_preset", None)
        if enc is not None:
            base["encoder"] = EncoderConfig.preset(enc, **base.pop("encoder", {})).to_dict()
        cfg = cls.from_dict(base)
        return cfg.replace(**overrides) if overrides else cfg


@dataclasses.dataclass
class OptimConfig(TrainConfig):
    """The fields of the trainers with a cosine learning rate (DINO, the classifier trainers):
    the global ``batch_size``, ``epochs``, ``optimizer`` ("sgd" with ``sgd_momentum``, "adamw",
    "adam"), ``lr`` -> ``min_lr`` (cosine after ``warmup_epochs`` of linear warm-up),
    ``weight_decay`` (none on biases and norms) and ``clip_grad`` (the total gradient norm; 0 = off)."""

    batch_size: int = 64
    epochs: int = 10
    optimizer: str = "adam"
    lr: float = 1e-3
    min_lr: float = 1e-5
    warmup_epochs: float = 0.0
    weight_decay: float = 5e-5
    sgd_momentum: float = 0.9
    clip_grad: float = 3.0

    def validate(self) -> None:
        super().validate()
        check(self.batch_size >= 2, f"batch_size must be >= 2, got {self.batch_size}")
        check(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
        check(self.optimizer in ("sgd", "adamw", "adam"), f"optimizer must be sgd, adamw or adam, got {self.optimizer!r}")
        check(self.lr > 0 and self.min_lr >= 0, f"lr must be > 0 and min_lr >= 0 (lr={self.lr}, min_lr={self.min_lr})")
        check(0 <= self.warmup_epochs <= self.epochs, f"warmup_epochs must be in [0, epochs], got {self.warmup_epochs}")
        check(self.clip_grad >= 0, f"clip_grad must be >= 0 (0 = off), got {self.clip_grad}")
