"""AAM-softmax classification training on given labels (iterative baseline, supervised bound).

Reusable pieces (the SSRL trainer builds on them):

* :class:`ClassifierModel` - SpeakerNet backbone + :class:`~ssrl_lab.models.AAMSoftmax` head.
* :func:`weighted_ce` - per-sample cross-entropy with optional per-sample weights and a loss
  gate (only samples whose CE is under ``gate`` contribute; loss-gated learning).
* :func:`classifier_step` - one optimiser step (schedules, autocast, clipping, optional EMA).
* :func:`train_epoch` - one epoch over a loader; returns the epoch's statistics.
* :func:`fit` - epochs with per-epoch metrics and atomic checkpoints (resumable), optional EMA
  teacher; returns the model to evaluate.
"""
from __future__ import annotations

import dataclasses
import logging
import time

import torch
import torch.nn.functional as F
from torch import nn

from ..config import check
from ..labels.noise import weighted_loss
from . import distributed as dist
from .context import (
    TrainConfig,
    autocast,
    build_augmenter,
    build_batch_augment,
    build_optimizer,
    build_spec_augment,
    clip_gradients,
    compile_encoders,
    make_loader,
    param_groups,
    rng_state,
    set_lr_wd,
    set_rng_state,
    skip_batches,
    steps_per_epoch,
    sync_bn_enabled,
    wrap_ddp,
)
from .context import progress as progress_bar
from .ema import ema_update, make_teacher, unwrap
from .guards import check_finite_modules, check_loss, check_world
from .run import RunDir
from .schedules import cosine_schedule, momentum_schedule
from .signals import interruptible

log = logging.getLogger("ssrl_lab.train.classifier")


@dataclasses.dataclass
class ClassifierConfig(TrainConfig):
    """Classifier training: ``crop_s`` random crops, AAM-softmax (``aam_scale``, ``aam_margin``),
    ``optimizer`` with cosine lr (``lr`` -> ``min_lr`` after ``warmup_epochs``), ``weight_decay``
    (none on biases / norms), ``clip_grad``; ``ema_teacher`` keeps an EMA copy (momentum
    ``teacher_momentum`` -> ``teacher_momentum_end``, cosine) that is then the evaluated model."""

    crop_s: float = 2.0
    batch_size: int = 64
    epochs: int = 10
    optimizer: str = "adam"
    lr: float = 1e-3
    min_lr: float = 1e-5
    warmup_epochs: float = 0.0
    weight_decay: float = 5e-5
    sgd_momentum: float = 0.9
    clip_grad: float = 3.0
    aam_scale: float = 32.0
    aam_margin: float = 0.2
    ema_teacher: bool = False
    teacher_momentum: float = 0.99
    teacher_momentum_end: float = 0.999

    def validate(self) -> None:
        super().validate()
        check(self.crop_s > 0, f"crop_s must be > 0, got {self.crop_s}")
        check(self.batch_size >= 2, f"batch_size must be >= 2, got {self.batch_size}")
        check(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
        check(self.optimizer in ("sgd", "adamw", "adam"), f"optimizer must be sgd, adamw or adam, got {self.optimizer!r}")
        check(self.lr > 0 and self.min_lr >= 0, f"lr must be > 0 and min_lr >= 0 (lr={self.lr}, min_lr={self.min_lr})")
        check(0 <= self.warmup_epochs <= self.epochs, f"warmup_epochs must be in [0, epochs], got {self.warmup_epochs}")
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


def classifier_step(model, optimizer, wave, labels, it: int, lr_s, cfg: ClassifierConfig, device,
                    weights=None, gate=None, teacher=None, mom_s=None, epoch: int = 0, step: int | None = None) -> dict:
    """One optimiser step on a batch; returns {"loss", "ce" (per sample), "kept", "correct"}.

    A NaN / inf loss raises :class:`~ssrl_lab.train.guards.TrainingDiverged` naming ``epoch``
    (0-based) and ``step`` (default: the global step ``it``) before anything is updated.
    """
    set_lr_wd(optimizer, lr_s[it])
    with autocast(device, cfg.amp):
        logits = model(wave, labels, augment_spec=cfg.spec_augment)
    loss, ce, keep = weighted_ce(logits, labels, weights, gate)
    check_loss(loss, "classifier", epoch, it if step is None else step, it)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    clip_gradients(unwrap(model), cfg.clip_grad)
    optimizer.step()
    if teacher is not None:
        ema_update(teacher, unwrap(model), mom_s[it])
    correct = (logits.detach().argmax(-1) == labels)
    return {"loss": float(loss.item()), "ce": ce, "kept": keep, "correct": correct}


def train_epoch(model, optimizer, loader, epoch: int, spe: int, lr_s, cfg: ClassifierConfig, device,
                gate: float | None = None, teacher=None, mom_s=None, progress: bool = False,
                desc: str = "train", stop=None, partial: dict | None = None, batch_aug=None) -> dict:
    """One epoch of :func:`classifier_step` over ``loader``.

    ``stop`` (a :class:`~ssrl_lab.train.signals.StopFlag`): when a stop is requested at a step
    boundary before the epoch's end, returns ``{"partial": {...}}`` (the step reached, the sums so
    far, the RNG states) instead of the statistics; ``partial`` resumes such an epoch exactly.
    """
    sums = torch.zeros(4, dtype=torch.float64)  # loss, samples, kept, correct
    n, first = 0, 0
    if partial is not None:
        first, n, sums = int(partial["step"]), int(partial["n"]), partial["sums"].clone()
        loader = skip_batches(loader, first)
    batches = iter(progress_bar(loader, progress, total=spe - first, desc=desc))
    if partial is not None:  # after the loader iterator drew its seed, as in the straight run
        set_rng_state(partial["rng"][dist.rank()])
    for step, batch in enumerate(batches, start=first):
        if step >= spe:
            break
        batch = batch_aug(batch, epoch) if batch_aug is not None else batch
        wave = batch["wave"].to(device, non_blocking=True)
        labels = batch["label"].to(device, non_blocking=True)
        out = classifier_step(model, optimizer, wave, labels, epoch * spe + step, lr_s, cfg, device,
                              gate=gate, teacher=teacher, mom_s=mom_s, epoch=epoch, step=step)
        sums += torch.tensor([out["loss"], len(labels), float(out["kept"].sum()), float(out["correct"].sum())],
                             dtype=torch.float64)
        n += 1
        if stop is not None and stop.requested() and step + 1 < spe:
            return {"partial": {"step": step + 1, "n": n, "sums": sums.clone(),
                                "rng": dist.all_gather_object(rng_state())}}
    dist.all_reduce_sum(sums)
    return {"loss": float(sums[0] / max(n * dist.world_size(), 1)), "train_acc": float(sums[3] / max(sums[1], 1)),
            "kept_fraction": float(sums[2] / max(sums[1], 1)), "lr": lr_s[epoch * spe + max(n - 1, 0)], "steps": n}


def fit(cfg: ClassifierConfig, run: RunDir, model: ClassifierModel, table, labels, device, *, stage: str,
        ckpt_name: str = "checkpoint", gate: float | None = None, record: dict | None = None,
        progress: bool = False, stop_after_epoch: int | None = None, resume: bool = True,
        seed: int | None = None, corpus=None) -> tuple[nn.Module, dict] | None:
    """Train ``model`` on ``labels`` (one int per row of ``table``) for ``cfg.epochs`` epochs.

    Each epoch logs ``{"stage": stage, "epoch", "loss", "train_acc", "kept_fraction", "lr",
    "seconds", **record}`` and checkpoints to ``<ckpt_name>.pt`` (resumed when present and
    ``resume``). Returns ``(backbone to evaluate, info)`` where the backbone is the EMA
    teacher's when ``cfg.ema_teacher`` (info["evaluated"] says which), or None when stopped by
    ``stop_after_epoch``. SIGTERM / SIGINT: the step in progress is checkpointed (resumed
    exactly) and :class:`~ssrl_lab.train.signals.TrainingInterrupted` raised.
    """
    from ..data.datasets import LabelledCropDataset

    seed = cfg.seed if seed is None else seed
    world = dist.world_size()
    check(cfg.batch_size % world == 0, f"batch_size={cfg.batch_size} must be divisible by the world size {world}")
    per_rank = cfg.batch_size // world
    check_world(len(table), world)
    model = model.to(device)
    teacher = make_teacher(model) if cfg.ema_teacher else None
    compile_encoders(cfg, *([model] if teacher is None else [model, teacher]))
    sync_bn = sync_bn_enabled(cfg, device)
    model_ddp = wrap_ddp(model, device, sync_bn)
    optimizer = build_optimizer(cfg.optimizer, param_groups(model, cfg.weight_decay), cfg.lr, cfg.sgd_momentum)
    dataset = LabelledCropDataset(table, labels, cfg.crop_s, build_augmenter(cfg, table), seed=seed,
                                  skip_bad=cfg.skip_bad, preload=cfg.preload)
    batch_aug = build_batch_augment(cfg, table, device)
    spe = steps_per_epoch(len(dataset), per_rank)
    check(spe >= 1, f"the training table ({len(dataset)} utterances) is smaller than one batch ({cfg.batch_size})")
    if cfg.max_steps_per_epoch:
        spe = min(spe, cfg.max_steps_per_epoch)
    lr_s = cosine_schedule(cfg.lr, cfg.min_lr, cfg.epochs, spe, cfg.warmup_epochs)
    mom_s = momentum_schedule(cfg.teacher_momentum, cfg.teacher_momentum_end, cfg.epochs, spe, "cosine")
    start, seconds, partial = 0, 0.0, None
    ckpt = run.load_checkpoint(ckpt_name) if resume else None
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        if teacher is not None:
            teacher.load_state_dict(ckpt["teacher"])
        start, seconds = int(ckpt["epoch"]), float(ckpt["seconds"])
        partial = ckpt.get("partial")
        if len(ckpt["rng"]) == world and partial is None:
            set_rng_state(ckpt["rng"][dist.rank()])
        run.truncate_metrics(int(ckpt["n_metrics"]))
        log.info("%s: resumed at epoch %d", stage, start)
    with interruptible() as stop:
        for epoch in range(start, cfg.epochs):
            t0 = time.perf_counter()
            loader = make_loader(dataset, per_rank, epoch, seed, shuffle=True, drop_last=True, num_workers=cfg.num_workers)
            stats = train_epoch(model_ddp, optimizer, loader, epoch, spe, lr_s, cfg, device, gate=gate, teacher=teacher,
                                mom_s=mom_s, progress=progress, desc=f"{stage} {epoch + 1}/{cfg.epochs}", stop=stop,
                                partial=partial, batch_aug=batch_aug)
            dt = time.perf_counter() - t0 + (partial["epoch_seconds"] if partial else 0.0)
            partial = None
            if "partial" in stats:  # stopped by a signal at a step boundary: checkpoint this step
                part = {**stats["partial"], "epoch_seconds": dt}
                check_finite_modules([model, teacher], f"{stage} epoch {epoch + 1}, step {part['step']}")
                run.save_checkpoint({"epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                     "teacher": teacher.state_dict() if teacher is not None else None,
                                     "rng": part["rng"], "seconds": seconds, "stage": stage, "partial": part},
                                    name=ckpt_name)
                raise stop.interrupted(run.path, epoch + 1, part["step"])
            seconds += dt
            rec = {"stage": stage, "epoch": epoch + 1, **stats, **(record or {}), "seconds": dt}
            if corpus is not None and cfg.eval_every and (epoch + 1) % cfg.eval_every == 0 and epoch + 1 < cfg.epochs:
                from .context import eval_summary, evaluate_model

                net = (teacher if teacher is not None else model).backbone
                rec["eval"] = eval_summary(evaluate_model(net, corpus, cfg, device, all_pairs=False))
            run.log_metrics(rec)
            if dist.is_main():
                log.info("%s epoch %d/%d loss %.3f acc %.3f kept %.2f", stage, epoch + 1, cfg.epochs, stats["loss"],
                         stats["train_acc"], stats["kept_fraction"])
            check_finite_modules([model, teacher], f"{stage} epoch {epoch + 1}")
            run.save_checkpoint({"epoch": epoch + 1, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                 "teacher": teacher.state_dict() if teacher is not None else None,
                                 "rng": dist.all_gather_object(rng_state()), "seconds": seconds, "stage": stage},
                                name=ckpt_name)
            if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch and epoch + 1 < cfg.epochs:
                return None
            if epoch + 1 < cfg.epochs and stop.requested():
                raise stop.interrupted(run.path, epoch + 1, 0)
    evaluated = teacher if teacher is not None else model
    return evaluated.backbone, {"evaluated": "ema_teacher" if teacher is not None else "student",
                                "train_seconds": seconds}

