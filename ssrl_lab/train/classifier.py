"""AAM-softmax classification training on given labels (iterative baseline, supervised bound).

Reusable pieces (the SSRL trainer builds on them):

* :class:`ClassifierModel` - SpeakerNet backbone + :class:`~ssrl_lab.models.AAMSoftmax` head.
* :func:`weighted_ce` - per-sample cross-entropy with optional per-sample weights and a loss
  gate (only samples whose CE is under ``gate`` contribute; loss-gated learning).
* :func:`classifier_step` - one optimiser step (schedules, autocast, clipping, optional EMA).
* :class:`ClassifierMethod` - the :class:`~ssrl_lab.train.loop.Method` whose step is
  :func:`classifier_step`.
* :func:`fit` - its epochs through the one training loop (per-epoch metrics, atomic resumable
  checkpoints), optional EMA teacher; returns the model to evaluate.
"""
from __future__ import annotations

import dataclasses
import logging

import torch
import torch.nn.functional as F
from torch import nn

from ..config import check
from ..data.augment import build_augmenter
from ..data.batch_augment import build_batch_augment
from ..features import build_spec_augment
from ..labels.noise import weighted_loss
from . import distributed as dist
from .devices import autocast
from .ema import ema_update, make_teacher, unwrap
from .guards import check_loss, check_world
from .loader import batch_per_rank, epoch_steps
from .loop import Loop, Method
from .optim import build_optimizer, clip_gradients, param_groups, set_lr_wd
from .results import eval_summary, evaluate_model
from .run import RunDir
from .schedules import cosine_schedule, momentum_schedule
from .train_config import OptimConfig, TrainConfig
from .wrap import prepare_models

log = logging.getLogger("ssrl_lab.train.classifier")


@dataclasses.dataclass
class ClassifierConfig(OptimConfig):
    """Classifier training: ``crop_s`` random crops, AAM-softmax (``aam_scale``, ``aam_margin``),
    the optimiser of :class:`~ssrl_lab.train.train_config.OptimConfig`; ``ema_teacher`` keeps an EMA copy
    (momentum ``teacher_momentum`` -> ``teacher_momentum_end``, cosine) that is then the evaluated model."""

    crop_s: float = 2.0
    aam_scale: float = 32.0
    aam_margin: float = 0.2
    ema_teacher: bool = False
    teacher_momentum: float = 0.99
    teacher_momentum_end: float = 0.999

    def validate(self) -> None:
        super().validate()
        check(self.crop_s > 0, f"crop_s must be > 0, got {self.crop_s}")
        check(self.aam_scale > 0 and self.aam_margin >= 0, "aam_scale must be > 0 and aam_margin >= 0")
        for name in ("teacher_momentum", "teacher_momentum_end"):
            check(0.0 <= getattr(self, name) <= 1.0, f"{name} must be in [0, 1], got {getattr(self, name)}")


class ClassifierModel(nn.Module):
    """``backbone`` (SpeakerNet) + AAM-softmax; ``forward(wave, labels=None) -> (B, K) logits``."""

    def __init__(self, backbone: nn.Module, n_classes: int, scale: float = 32.0, margin: float = 0.2) -> None:
        super().__init__()
        from ..models import AAMSoftmax

        self.backbone = backbone
        self.head = AAMSoftmax(backbone.emb_dim, n_classes, scale=scale, margin=margin)

    def forward(self, wave: torch.Tensor, labels: torch.Tensor | None = None, augment_spec: bool = False) -> torch.Tensor:
        return self.head(self.backbone(wave, augment_spec=augment_spec), labels)


def new_backbone(cfg: TrainConfig, seed: int) -> nn.Module:
    """A freshly initialised SpeakerNet (deterministic in ``seed``)."""
    from ..models import SpeakerNet

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return SpeakerNet(cfg.encoder, spec_augment=build_spec_augment(cfg))


def weighted_ce(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None,
                gate: float | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Mean CE over kept samples, weighted: ``sum(w m ce) / max(sum(w m), eps)``.

    ``m`` = ``ce < gate`` (all ones without a gate), ``w`` = ``weights`` (ones without).
    Returns ``(loss, per-sample ce (detached), kept mask)``; with nothing kept the loss is 0
    (but still connected to the graph, so DDP sees every parameter).
    """
    ce = F.cross_entropy(logits.float(), labels, reduction="none")
    keep = torch.ones_like(ce, dtype=torch.bool) if gate is None else (ce.detach() < gate)
    w = keep.float() if weights is None else weights.float() * keep.float()
    return weighted_loss(ce, w, eps=1e-8), ce.detach(), keep


def classifier_step(model, optimizer, wave, labels, it: int, lrs, cfg: ClassifierConfig, device, weights=None,
                    gate=None, teacher=None, momenta=None, epoch: int = 0, step: int | None = None) -> dict:
    """One optimiser step on a batch; returns {"loss", "ce" (per sample), "kept", "correct"}.

    A NaN / inf loss raises :class:`~ssrl_lab.train.guards.TrainingDiverged` naming ``epoch``
    (0-based) and ``step`` (default: the global step ``it``) before anything is updated.
    """
    set_lr_wd(optimizer, lrs[it])
    with autocast(device, cfg.amp):
        logits = model(wave, labels, augment_spec=cfg.spec_augment)
    loss, ce, keep = weighted_ce(logits, labels, weights, gate)
    check_loss(loss, "classifier", epoch, it if step is None else step, it)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    clip_gradients(unwrap(model), cfg.clip_grad)
    optimizer.step()
    if teacher is not None:
        ema_update(teacher, unwrap(model), momenta[it])
    correct = (logits.detach().argmax(-1) == labels)
    return {"loss": float(loss.item()), "ce": ce, "kept": keep, "correct": correct}


class ClassifierMethod(Method):
    """Classifier training on given labels as a :class:`~ssrl_lab.train.loop.Method` (the iterative
    baseline's rounds and the supervised bound): each step is :func:`classifier_step`."""

    n_sums = 4  # loss, samples, kept, correct
    log_keys = ("train_acc", "kept_fraction")

    def __init__(self, cfg: ClassifierConfig, model: ClassifierModel, table, labels, device, *, stage: str,
                 gate: float | None, record: dict | None, seed: int, corpus, progress: bool) -> None:
        from ..data.datasets import LabelledCropDataset

        self.cfg, self.device, self.corpus, self.progress = cfg, device, corpus, progress
        self.stage = self.what = stage
        self.gate, self.record = gate, dict(record or {})
        self.per_rank = batch_per_rank(cfg)
        check_world(len(table), dist.world_size())
        model = model.to(device)
        teacher = make_teacher(model) if cfg.ema_teacher else None
        self.model_ddp, self.model, self.teacher = prepare_models(cfg, device, model, teacher)
        self.optimizer = build_optimizer(cfg.optimizer, param_groups(self.model, cfg.weight_decay), cfg.lr,
                                         cfg.sgd_momentum)
        self.dataset = LabelledCropDataset(table, labels, cfg.crop_s, build_augmenter(cfg, table), seed=seed,
                                           skip_bad=cfg.skip_bad, preload=cfg.preload)
        self.batch_aug = build_batch_augment(cfg, table, device)
        self.epochs, self.loader_seed = cfg.epochs, seed
        self.steps_per_epoch = epoch_steps(cfg, len(self.dataset), self.per_rank)
        self.lr = cosine_schedule(cfg.lr, cfg.min_lr, cfg.epochs, self.steps_per_epoch, cfg.warmup_epochs)
        self.momentum = momentum_schedule(cfg.teacher_momentum, cfg.teacher_momentum_end, cfg.epochs,
                                          self.steps_per_epoch, "cosine")
        self.modules = [self.model, self.teacher]

    @property
    def evaluated(self) -> nn.Module:
        """The EMA teacher with ``ema_teacher``, else the trained model."""
        return self.teacher if self.teacher is not None else self.model

    def step(self, batch: dict, epoch: int, step: int, it: int) -> tuple[float, ...]:
        batch = self.batch_aug(batch, epoch)
        wave = batch["wave"].to(self.device, non_blocking=True)
        labels = batch["label"].to(self.device, non_blocking=True)
        out = classifier_step(self.model_ddp, self.optimizer, wave, labels, it, self.lr, self.cfg, self.device,
                              gate=self.gate, teacher=self.teacher, momenta=self.momentum, epoch=epoch, step=step)
        return out["loss"], len(labels), float(out["kept"].sum()), float(out["correct"].sum())

    def end_epoch(self, epoch: int, sums: torch.Tensor, n: int, seconds_steps: float) -> dict:
        dist.all_reduce_sum(sums)
        last = epoch * self.steps_per_epoch + max(n - 1, 0)
        return {"loss": float(sums[0] / max(n * dist.world_size(), 1)), "train_acc": float(sums[3] / max(sums[1], 1)),
                "kept_fraction": float(sums[2] / max(sums[1], 1)), "lr": self.lr[last],
                "steps": n, **self.record, "seconds_steps": seconds_steps}

    def evaluate(self, epoch: int, is_last: bool) -> dict:
        if is_last or self.corpus is None:  # the caller evaluates the final model
            return {}
        ev = evaluate_model(self.evaluated.backbone, self.corpus, self.cfg, self.device, all_pairs=False)
        return {"eval": eval_summary(ev)}

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "teacher": self.teacher.state_dict() if self.teacher is not None else None, "stage": self.stage}

    def load_state_dict(self, checkpoint: dict) -> None:
        self.model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        if self.teacher is not None:
            self.teacher.load_state_dict(checkpoint["teacher"])


def fit(cfg: ClassifierConfig, run: RunDir, model: ClassifierModel, table, labels, device, *, stage: str,
        ckpt_name: str = "checkpoint", gate: float | None = None, record: dict | None = None,
        progress: bool = False, stop_after_epoch: int | None = None, resume: bool = True,
        seed: int | None = None, corpus=None) -> tuple[nn.Module, dict] | None:
    """Train ``model`` on ``labels`` (one int per row of ``table``) for ``cfg.epochs`` epochs.

    Each epoch logs ``{"stage": stage, "epoch", "loss", "train_acc", "kept_fraction", "lr",
    "seconds", **record}`` (and ``eval`` every ``cfg.eval_every`` epochs before the last, when
    ``corpus`` is given) and checkpoints to ``<ckpt_name>.pt`` (resumed when present and
    ``resume``). Returns ``(backbone to evaluate, info)`` where the backbone is the EMA
    teacher's when ``cfg.ema_teacher`` (info["evaluated"] says which), or None when stopped by
    ``stop_after_epoch``. SIGTERM / SIGINT: the step in progress is checkpointed (resumed
    exactly) and :class:`~ssrl_lab.train.signals.TrainingInterrupted` raised.
    """
    method = ClassifierMethod(cfg, model, table, labels, device, stage=stage, gate=gate, record=record,
                              seed=cfg.seed if seed is None else seed, corpus=corpus, progress=progress)
    loop = Loop(method, run, progress=progress, stop_after_epoch=stop_after_epoch, ckpt_name=ckpt_name)
    if not loop.run(run.load_checkpoint(ckpt_name) if resume else None):
        return None
    return method.evaluated.backbone, {"evaluated": "ema_teacher" if method.teacher is not None else "student",
                                       "train_seconds": loop.seconds}
