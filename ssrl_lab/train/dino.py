"""Stage 1: DINO self-distillation for speaker embeddings (multi-crop, EMA teacher).

The student (SpeakerNet + DINOHead) sees every crop (``n_global`` long + ``n_local`` short,
each independently cropped and augmented); the teacher, an EMA copy of the student without
gradients, sees only the global crops. :class:`DINOLoss` is the cross-entropy from each
centred, sharpened teacher view to every student view except the same view.

Per step: cosine learning rate with linear warm-up, optional weight-decay schedule (none on
biases / norms), gradient clipping, last-layer gradients dropped in the first
``freeze_last_layer`` epochs, then the teacher EMA step (momentum schedule) and the centre EMA.

``python -m ssrl_lab.train.dino --profile demo --corpus data/synthvox-demo --run-dir outputs/dino``
"""
from __future__ import annotations

import dataclasses
import logging
import time
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..config import check
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
    eval_summary,
    evaluate_model,
    make_loader,
    param_groups,
    resolve_device,
    result_fields,
    rng_state,
    score_arrays,
    seed_everything,
    set_lr_wd,
    set_rng_state,
    skip_batches,
    steps_per_epoch,
    sync_bn_enabled,
    wrap_ddp,
)
from .context import progress as progress_bar
from .ema import ema_update, make_teacher, unwrap
from .guards import CollapseGuard, check_finite_modules, check_loss, check_world
from .run import RunDir, read_checkpoint
from .schedules import cosine_schedule, momentum_schedule, warmup_constant_schedule
from .signals import interruptible
from .snapshots import SnapshotConfig, save_teacher_snapshot

log = logging.getLogger("ssrl_lab.train.dino")


# -- the loss ------------------------------------------------------------------------------
class DINOLoss(nn.Module):
    """DINO cross-entropy with teacher centring and sharpening.

    ``forward(student_out, teacher_out, teacher_temp)``: ``student_out`` a list of ``(B, K)``
    logits, one per view (global views first, in the same order as the teacher's);
    ``teacher_out`` a list of ``(B, K)`` logits for the global views. Each teacher view ``i``
    gives targets ``softmax((t_i - centre) / teacher_temp)``; each student view ``v != i`` is
    scored with ``-sum q log softmax(s_v / student_temp)``, averaged over the batch and over all
    such pairs. :meth:`update_center` then moves the centre towards the batch mean of the
    teacher logits (all-reduced over ranks): ``c <- m c + (1 - m) mean``.
    """

    def __init__(self, out_dim: int, student_temp: float = 0.1, center_momentum: float = 0.9) -> None:
        super().__init__()
        self.student_temp = float(student_temp)
        self.center_momentum = float(center_momentum)
        self.register_buffer("center", torch.zeros(1, out_dim))

    def teacher_probs(self, teacher_out: Sequence[torch.Tensor], teacher_temp: float) -> list[torch.Tensor]:
        return [F.softmax((t.float() - self.center) / teacher_temp, dim=-1).detach() for t in teacher_out]

    def forward(self, student_out: Sequence[torch.Tensor], teacher_out: Sequence[torch.Tensor],
                teacher_temp: float) -> torch.Tensor:
        if len(teacher_out) > len(student_out):
            raise ValueError(f"DINOLoss: {len(teacher_out)} teacher views but only {len(student_out)} student views")
        targets = self.teacher_probs(teacher_out, teacher_temp)
        logp = [F.log_softmax(s.float() / self.student_temp, dim=-1) for s in student_out]
        total, n_pairs = 0.0, 0
        for i, q in enumerate(targets):
            for v, lp in enumerate(logp):
                if v == i:
                    continue
                total = total + torch.sum(-q * lp, dim=-1).mean()
                n_pairs += 1
        if n_pairs == 0:
            raise ValueError("DINOLoss: no (teacher, other student view) pair; give at least 2 views")
        return total / n_pairs

    @torch.no_grad()
    def update_center(self, teacher_out: Sequence[torch.Tensor]) -> None:
        t = torch.cat([x.float() for x in teacher_out], 0)
        s = t.sum(0, keepdim=True)
        n = torch.tensor([float(t.shape[0])], device=t.device)
        dist.all_reduce_sum(s)
        dist.all_reduce_sum(n)
        self.center.mul_(self.center_momentum).add_(s / n, alpha=1.0 - self.center_momentum)


@torch.no_grad()
def teacher_stats(probs: Sequence[torch.Tensor]) -> dict:
    """Mean per-sample entropy, entropy of the batch-mean distribution (nats) and argmaxes."""
    p = torch.cat(list(probs), 0)
    ent = -(p * torch.log(p.clamp_min(1e-12))).sum(-1).mean()
    pm = p.mean(0)
    ent_mean = -(pm * torch.log(pm.clamp_min(1e-12))).sum()
    arg = p.argmax(-1)
    return {"entropy": float(ent), "entropy_of_mean": float(ent_mean), "argmax": arg.cpu()}


# -- the model -----------------------------------------------------------------------------
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


# -- configuration -------------------------------------------------------------------------
@dataclasses.dataclass
class DINOConfig(TrainConfig):
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
    batch_size: int = 64
    epochs: int = 20
    optimizer: str = "adamw"
    lr: float = 1e-3
    lr_ref_batch: int = 0
    min_lr: float = 1e-5
    warmup_epochs: float = 1.0
    weight_decay: float = 0.04
    weight_decay_end: float = 0.04
    sgd_momentum: float = 0.9
    clip_grad: float = 3.0
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
        check(self.batch_size >= 2, f"batch_size must be >= 2, got {self.batch_size}")
        check(self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}")
        check(self.optimizer in ("sgd", "adamw", "adam"), f"optimizer must be sgd, adamw or adam, got {self.optimizer!r}")
        check(self.lr > 0 and self.min_lr >= 0, f"lr must be > 0 and min_lr >= 0 (lr={self.lr}, min_lr={self.min_lr})")
        check(0 <= self.warmup_epochs <= self.epochs, f"warmup_epochs must be in [0, epochs], got {self.warmup_epochs}")
        check(self.clip_grad >= 0, f"clip_grad must be >= 0 (0 = off), got {self.clip_grad}")
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


# -- training ------------------------------------------------------------------------------
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


def _epoch_record(stats: dict, epoch: int, seconds: float) -> dict:
    rec = {"stage": "dino", "epoch": epoch}
    rec.update(stats)
    rec["seconds"] = seconds
    return rec


def train(cfg: DINOConfig, *, resume: bool = False, progress: bool = True,
          stop_after_epoch: int | None = None) -> dict | None:
    """Train DINO as configured; returns the final results dict (also in results.json).

    ``resume``: continue from ``checkpoint.pt`` in ``cfg.run_dir`` (or return the stored
    results of a finished run). ``stop_after_epoch``: stop right after that epoch's checkpoint
    and return None, as if the process had been killed (tests, time-boxed sessions).

    SIGTERM / SIGINT stop the run at the next step boundary after checkpointing that step
    (resumed exactly, mid-epoch) and raise :class:`~ssrl_lab.train.signals.TrainingInterrupted`.
    A NaN / inf loss or a collapsed teacher raises :class:`~ssrl_lab.train.guards.TrainingDiverged`;
    the last checkpoint is kept.
    """
    from ..data.datasets import MultiCropDataset
    from .skips import open_training_corpus

    check(bool(cfg.corpus), "DINOConfig.corpus is empty: give --corpus DIR")
    check(bool(cfg.run_dir), "DINOConfig.run_dir is empty: give --run-dir DIR")
    dist.init_distributed()
    device = resolve_device(cfg.device, cfg.cudnn_benchmark)
    run = RunDir(cfg.run_dir, cfg.to_dict(), resume=resume)
    if resume:
        done = run.read_results()
        if done is not None:
            log.info("%s is finished; returning its results", run.path)
            return done
    world = dist.world_size()
    check(cfg.batch_size % world == 0, f"batch_size={cfg.batch_size} must be divisible by the world size {world}")
    corpus = open_training_corpus(cfg, run)  # drops check-listed bad files; counts skips
    train_table = corpus.train.without_speakers()
    check_world(len(train_table), world)

    seed_everything(cfg.seed)  # identical initialisation on every rank
    student = build_student(cfg).to(device)
    teacher = make_teacher(student)
    sync_bn = sync_bn_enabled(cfg, device)
    if sync_bn:
        teacher = nn.SyncBatchNorm.convert_sync_batchnorm(teacher)
    teacher.train()
    compile_encoders(cfg, student, teacher)
    student_ddp = wrap_ddp(student, device, sync_bn)
    student_mod = unwrap(student_ddp)
    criterion = DINOLoss(cfg.n_prototypes, cfg.student_temp, cfg.center_momentum).to(device)
    optimizer = build_optimizer(cfg.optimizer, param_groups(student_mod, cfg.weight_decay), cfg.lr, cfg.sgd_momentum)

    dataset = MultiCropDataset(train_table, cfg.n_global, cfg.global_s, cfg.n_local, cfg.local_s,
                               build_augmenter(cfg, train_table), seed=cfg.seed, skip_bad=cfg.skip_bad,
                               preload=cfg.preload)
    batch_aug = build_batch_augment(cfg, train_table, device)
    per_rank = cfg.batch_size // world
    spe = steps_per_epoch(len(dataset), per_rank)
    check(spe >= 1, f"the training table ({len(dataset)} utterances) is smaller than one batch ({cfg.batch_size})")
    if cfg.max_steps_per_epoch:
        spe = min(spe, cfg.max_steps_per_epoch)
    base_lr = cfg.lr * cfg.batch_size / cfg.lr_ref_batch if cfg.lr_ref_batch > 0 else cfg.lr
    lr_s = cosine_schedule(base_lr, cfg.min_lr, cfg.epochs, spe, cfg.warmup_epochs)
    wd_s = cosine_schedule(cfg.weight_decay, cfg.weight_decay_end, cfg.epochs, spe)
    mom_s = momentum_schedule(cfg.teacher_momentum, cfg.teacher_momentum_end, cfg.epochs, spe, cfg.momentum_schedule)
    temp_s = warmup_constant_schedule(cfg.warmup_teacher_temp, cfg.teacher_temp, cfg.warmup_teacher_temp_epochs,
                                      cfg.epochs, spe)

    start_epoch, seconds_before, last_eval, partial = 0, 0.0, None, None
    guard = CollapseGuard(cfg.n_prototypes, cfg.collapse_low, cfg.collapse_high, cfg.collapse_patience) \
        if cfg.collapse_guard else None
    rank_seed = cfg.seed + 1000 * dist.rank()
    seed_everything(rank_seed)
    if resume:
        ckpt = run.load_checkpoint()
        if ckpt is None:
            run.truncate_metrics(0)  # lines of an attempt killed before its first checkpoint
        if ckpt is not None:
            student_mod.load_state_dict(ckpt["student"])
            teacher.load_state_dict(ckpt["teacher"])
            optimizer.load_state_dict(ckpt["optimizer"])
            criterion.load_state_dict(ckpt["loss"])
            start_epoch, seconds_before = int(ckpt["epoch"]), float(ckpt["seconds"])
            last_eval = ckpt.get("last_eval")
            partial = ckpt.get("partial")
            if guard is not None and ckpt.get("collapse"):
                guard.load_state_dict(ckpt["collapse"])
            states = ckpt["rng"]
            if len(states) == world and partial is None:
                set_rng_state(states[dist.rank()])
            run.truncate_metrics(int(ckpt["n_metrics"]))
            log.info("resumed %s at epoch %d%s", run.path, start_epoch,
                     f", step {partial['step']}" if partial else "")
    log.info("DINO: %d utterances, %d steps/epoch, batch %d (%d per rank, world %d), device %s",
             len(dataset), spe, cfg.batch_size, per_rank, world, device)

    last_layer = set(id(p) for p in student_mod.head.last_layer_parameters())

    def state(epoch_done: int, part: dict | None) -> dict:
        where = f"DINO after epoch {epoch_done}" + (f", step {part['step']} of epoch {epoch_done + 1}" if part else "")
        check_finite_modules([student_mod, teacher, criterion], where)
        return {
            "epoch": epoch_done, "step": epoch_done * spe + (part["step"] if part else 0),
            "student": student_mod.state_dict(), "teacher": teacher.state_dict(),
            "optimizer": optimizer.state_dict(), "loss": criterion.state_dict(),
            "rng": dist.all_gather_object(rng_state()), "seconds": seconds_before + time.perf_counter() - t_run,
            "last_eval": last_eval, "config": cfg.to_dict(), "partial": part,
            "collapse": guard.state_dict() if guard is not None else None,
        }

    t_run = time.perf_counter()
    with interruptible() as stop:
        for epoch in range(start_epoch, cfg.epochs):
            t0 = time.perf_counter()
            loader = make_loader(dataset, per_rank, epoch, cfg.seed, shuffle=True, drop_last=True,
                                 num_workers=cfg.num_workers)
            sums = torch.zeros(4, dtype=torch.float64)  # loss, entropy, entropy_of_mean, distinct per batch
            argmaxes = []
            n, first, epoch_seconds = 0, 0, 0.0
            if partial is not None:  # resuming mid-epoch: the accumulators and the step reached
                first, n, epoch_seconds = int(partial["step"]), int(partial["n"]), float(partial["epoch_seconds"])
                sums, argmaxes = partial["sums"].clone(), list(partial["argmaxes"])
                loader = skip_batches(loader, first)
            it_loader = iter(progress_bar(loader, progress, total=spe - first, desc=f"dino {epoch + 1}/{cfg.epochs}"))
            if partial is not None:  # after the loader iterator drew its seed, as in the straight run
                set_rng_state(partial["rng"][dist.rank()])
                partial = None
            t_steps = time.perf_counter()
            for step, batch in enumerate(it_loader, start=first):
                if step >= spe:
                    break
                it = epoch * spe + step
                set_lr_wd(optimizer, lr_s[it], wd_s[it])
                batch = batch_aug(batch, epoch)
                views = [v.to(device, non_blocking=True) for v in batch["views"]]
                with autocast(device, cfg.amp):
                    with torch.no_grad():
                        t_out = teacher(views[: cfg.n_global])
                    s_out = student_ddp(views, augment_spec=cfg.spec_augment)
                loss = criterion(s_out, t_out, temp_s[it])
                check_loss(loss, "DINO", epoch, step, it)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                clip_gradients(student_mod, cfg.clip_grad)
                if epoch < cfg.freeze_last_layer:
                    for p in student_mod.parameters():
                        if id(p) in last_layer:
                            p.grad = None
                optimizer.step()
                ema_update(teacher, student_mod, mom_s[it])
                st = teacher_stats(criterion.teacher_probs(t_out, temp_s[it]))
                criterion.update_center(t_out)
                sums += torch.tensor([loss.item(), st["entropy"], st["entropy_of_mean"],
                                      float(st["argmax"].unique().numel())], dtype=torch.float64)
                argmaxes.append(st["argmax"])
                n += 1
                if guard is not None:
                    guard.update(st["entropy"], st["entropy_of_mean"], epoch, step)
                if stop.requested() and step + 1 < spe:
                    run.save_checkpoint(state(epoch, {
                        "step": step + 1, "n": n, "sums": sums.clone(), "argmaxes": list(argmaxes),
                        "epoch_seconds": epoch_seconds + time.perf_counter() - t0,
                        "rng": dist.all_gather_object(rng_state())}))
                    raise stop.interrupted(run.path, epoch + 1, step + 1)
            dist.all_reduce_mean(sums)
            arg_all = dist.all_gather_variable(torch.cat(argmaxes)) if argmaxes else torch.zeros(0)
            last = epoch * spe + n - 1
            stats = {
                "loss": float(sums[0] / n), "lr": lr_s[last], "weight_decay": wd_s[last], "momentum": mom_s[last],
                "teacher_temp": temp_s[last], "teacher_entropy": float(sums[1] / n),
                "teacher_entropy_of_mean": float(sums[2] / n), "teacher_distinct_argmax": float(sums[3] / n),
                "teacher_distinct_argmax_epoch": int(arg_all.unique().numel()), "steps": n,
                # the step loop alone (loading included, evaluation excluded); after a mid-epoch
                # resume, only the steps run by this process
                "seconds_steps": time.perf_counter() - t_steps,
            }
            is_last = epoch + 1 == cfg.epochs
            if is_last or (cfg.eval_every and (epoch + 1) % cfg.eval_every == 0):
                ev = evaluate_model(teacher.backbone, corpus, cfg, device, progress=progress, return_scores=is_last)
                ev_s = evaluate_model(student_mod.backbone, corpus, cfg, device, all_pairs=False)
                stats["eval"] = eval_summary(ev)
                stats["eval_student"] = {"eer": ev_s["eer"], "mindcf_0.01": ev_s["mindcf_0.01"]}
                stats["snapshot"] = save_teacher_snapshot(teacher.backbone, train_table, run.path, epoch + 1, cfg.snapshots, device, cfg.skip_bad)
                last_eval = (stats["eval"], stats["eval_student"])
                if is_last:
                    run.write_scores(ev["scores"], ev["labels"], **score_arrays(ev))
            record = _epoch_record(stats, epoch + 1, epoch_seconds + time.perf_counter() - t0)
            run.log_metrics(record)
            if dist.is_main():
                log.info("epoch %d/%d loss %.4f H(t) %.3f H(mean t) %.3f distinct %.1f%s", epoch + 1, cfg.epochs,
                         stats["loss"], stats["teacher_entropy"], stats["teacher_entropy_of_mean"],
                         stats["teacher_distinct_argmax"],
                         f" EER teacher {stats['eval']['eer']:.2f} student {stats['eval_student']['eer']:.2f}"
                         if "eval" in stats else "")
            run.save_checkpoint(state(epoch + 1, None))
            if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch and not is_last:
                return None
            if not is_last and stop.requested():
                raise stop.interrupted(run.path, epoch + 1, 0)

    ev, ev_s = last_eval if last_eval else (None, None)
    if ev is None:  # resumed a run whose last epoch was checkpointed but not evaluated
        ev = eval_summary(evaluate_model(teacher.backbone, corpus, cfg, device, ci=True))
    results = {
        "system": "dino", **result_fields(ev), "evaluated": "teacher", "eval_student": ev_s,
        "seconds": seconds_before + time.perf_counter() - t_run, "epochs": cfg.epochs,
    }
    run.write_results(results)
    dist.barrier()
    return results


def main(argv=None) -> int:
    from .cli import main as cli_main

    return cli_main("dino", DINOConfig, train, argv)


if __name__ == "__main__":
    raise SystemExit(main())
