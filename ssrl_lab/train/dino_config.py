"""DINO's configuration and its profiles (``smoke``, ``demo``, ``vox``)."""
from __future__ import annotations

import dataclasses

from ..config import check
from .snapshots import SnapshotConfig
from .train_config import OptimConfig


@dataclasses.dataclass
class DINOConfig(OptimConfig):
    """DINO hyper-parameters (see :data:`PROFILES` for smoke / demo / vox).

    ``batch_size`` is the global batch (utterances per step, all ranks). The learning rate is
    ``lr * batch_size / lr_ref_batch`` when ``lr_ref_batch > 0`` (linear scaling), with a
    linear warm-up over ``warmup_epochs`` then cosine to ``min_lr``. ``weight_decay`` ->
    ``weight_decay_end`` (cosine). Teacher momentum ``teacher_momentum`` -> ``teacher_momentum_end``
    (``momentum_schedule`` "cosine" | "linear" | "constant"); teacher temperature warms up
    from ``warmup_teacher_temp`` over ``warmup_teacher_temp_epochs``.

    Collapse guard (:class:`~ssrl_lab.train.guards.CollapseGuard`, on with ``collapse_guard``):
    the run stops with a message, keeping the last checkpoint, when for ``collapse_patience``
    consecutive steps the entropy of the teacher's batch-mean output is under ``collapse_low``
    nats (one prototype dominates) or its mean per-sample entropy is above ``collapse_high`` x
    log(``n_prototypes``) (uniform outputs). A healthy sharp teacher has a low per-sample entropy
    but spreads its argmaxes; the early-epoch dip of prototype use (FEASIBILITY.md) stays far
    from both thresholds and is shorter than the patience.
    """

    n_global: int = 2
    global_s: float = 2.0
    n_local: int = 2
    local_s: float = 1.0
    epochs: int = 20
    optimizer: str = "adamw"
    warmup_epochs: float = 1.0
    weight_decay: float = 0.04
    lr_ref_batch: int = 0
    weight_decay_end: float = 0.04
    freeze_last_layer: int = 1
    teacher_momentum: float = 0.99
    teacher_momentum_end: float = 0.996
    momentum_schedule: str = "cosine"
    teacher_temp: float = 0.04
    warmup_teacher_temp: float = 0.04
    warmup_teacher_temp_epochs: int = 0
    student_temp: float = 0.1
    center_momentum: float = 0.9
    head_hidden: int = 512
    head_bottleneck: int = 128
    n_prototypes: int = 1024
    head_layers: int = 3
    head_bn: bool = True
    norm_last_layer: bool = True
    collapse_guard: bool = True
    collapse_low: float = 0.1
    collapse_high: float = 0.98
    collapse_patience: int = 20
    snapshots: SnapshotConfig = dataclasses.field(default_factory=SnapshotConfig)

    def validate(self) -> None:
        super().validate()
        check(self.collapse_low >= 0, f"collapse_low must be >= 0 nats, got {self.collapse_low}")
        check(0 < self.collapse_high <= 1, f"collapse_high must be in (0, 1], got {self.collapse_high}")
        check(self.collapse_patience >= 1, f"collapse_patience must be >= 1 step, got {self.collapse_patience}")
        check(self.n_global >= 1, f"n_global must be >= 1, got {self.n_global}")
        check(self.n_local >= 0, f"n_local must be >= 0, got {self.n_local}")
        check(self.n_global + self.n_local >= 2, "DINO needs at least 2 views (n_global + n_local >= 2)")
        check(self.global_s > 0 and self.local_s > 0, f"crop lengths must be > 0 (global_s={self.global_s}, local_s={self.local_s})")
        check(self.freeze_last_layer >= 0, f"freeze_last_layer must be >= 0, got {self.freeze_last_layer}")
        for name in ("teacher_momentum", "teacher_momentum_end", "center_momentum"):
            v = getattr(self, name)
            check(0.0 <= v <= 1.0, f"{name} must be in [0, 1], got {v}")
        check(self.momentum_schedule in ("cosine", "linear", "constant"),
              f"momentum_schedule must be cosine, linear or constant, got {self.momentum_schedule!r}")
        for name in ("teacher_temp", "warmup_teacher_temp", "student_temp"):
            check(getattr(self, name) > 0, f"{name} must be > 0, got {getattr(self, name)}")
        check(self.n_prototypes >= 2 and self.head_hidden >= 1 and self.head_bottleneck >= 1,
              "n_prototypes must be >= 2, head_hidden and head_bottleneck >= 1")



PROFILES: dict[str, dict] = {
    "smoke": dict(
        encoder_preset="micro", n_global=2, global_s=1.0, n_local=2, local_s=0.5, batch_size=8, epochs=2,
        lr=1e-3, warmup_epochs=0.5, n_prototypes=32, head_hidden=64, head_bottleneck=32, max_steps_per_epoch=3,
        augment=None, eval_every=1, eval_batch_size=16, eval_max_len_s=1.5, teacher_momentum=0.9, teacher_momentum_end=0.99,
        amp="off",
    ),
    "demo": dict(
        # 2 idle CPU cores: ~0.5 s per step of 64 utterances (4 crops each), 75 steps per epoch on the
        # SynthVox demo corpus; 15 epochs take ~10 minutes (FEASIBILITY.md: more epochs keep helping).
        encoder_preset="tiny", n_global=2, global_s=2.0, n_local=2, local_s=1.0, batch_size=64, epochs=15,
        optimizer="adamw", lr=1e-3, min_lr=1e-5, warmup_epochs=0.5, weight_decay=0.04, weight_decay_end=0.04,
        clip_grad=3.0, freeze_last_layer=1, teacher_momentum=0.99, teacher_momentum_end=0.996,
        momentum_schedule="cosine", teacher_temp=0.04, student_temp=0.1, center_momentum=0.9,
        n_prototypes=1024, head_hidden=512, head_bottleneck=128, eval_every=5, preload=True,
        eval_batch_size=32, eval_bucket_s=0.5,
        augment={"p_reverb": 0.4, "p_noise": 0.4, "p_music": 0.0, "p_babble": 0.0, "p_none": 0.2},
    ),
    "vox": dict(
        encoder_preset="ssrl_paper", n_global=2, global_s=4.0, n_local=4, local_s=2.0, batch_size=240,
        epochs=150, optimizer="sgd", sgd_momentum=0.9, lr=0.25, lr_ref_batch=240, min_lr=1e-5, warmup_epochs=10.0,
        weight_decay=5e-5, weight_decay_end=5e-5, clip_grad=3.0, freeze_last_layer=1, teacher_momentum=0.999,
        teacher_momentum_end=0.9999, momentum_schedule="linear", teacher_temp=0.04, warmup_teacher_temp=0.04,
        student_temp=0.1, center_momentum=0.9, n_prototypes=65536, head_hidden=2048, head_bottleneck=256,
        eval_every=10, num_workers=8, eval_batch_size=1, augment={},
        augment_on="batch",  # bench/loader.py: 3.8-5.4x the items per worker from FLAC, 61-71x from packed shards
    ),
}
DINOConfig.PROFILES = PROFILES
