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

import logging

import torch

from ..data.augment import build_augmenter
from ..data.batch_augment import build_batch_augment
from . import distributed as dist
from .devices import autocast, seed_everything
from .dino_config import PROFILES, DINOConfig  # noqa: F401 - re-exported
from .dino_loss import DINOLoss, teacher_stats
from .dino_model import DINOModel, build_student, load_teacher_backbone  # noqa: F401 - re-exported
from .ema import ema_update, make_teacher
from .guards import CollapseGuard, check_loss, check_world
from .harness import trainer
from .loader import batch_per_rank, epoch_steps
from .loop import Method
from .optim import build_optimizer, clip_gradients, param_groups, set_lr_wd
from .results import eval_summary, evaluate_model, result_fields, score_arrays
from .run import RunDir
from .schedules import cosine_schedule, momentum_schedule, warmup_constant_schedule
from .snapshots import save_teacher_snapshot
from .wrap import prepare_models

log = logging.getLogger("ssrl_lab.train.dino")


class DINOMethod(Method):
    """DINO as a :class:`~ssrl_lab.train.loop.Method`: student and EMA teacher, loss, optimiser,
    the schedules and the collapse guard; its step is DINO's, its record the teacher's health."""

    stage, what, n_sums = "dino", "DINO", 4  # loss, entropy, entropy of the mean, distinct argmaxes
    log_keys = ("teacher_entropy", "teacher_entropy_of_mean", "teacher_distinct_argmax")

    def __init__(self, cfg: DINOConfig, corpus, run: RunDir, device: torch.device, progress: bool = False,
                 checkpoint: dict | None = None) -> None:
        from ..data.datasets import MultiCropDataset

        self.cfg, self.corpus, self.run, self.device, self.progress = cfg, corpus, run, device, progress
        self.table = corpus.train.without_speakers()
        check_world(len(self.table), dist.world_size())
        self.per_rank = batch_per_rank(cfg)
        seed_everything(cfg.seed)  # identical initialisation on every rank
        student = build_student(cfg).to(device)
        self.student_ddp, self.student, self.teacher = prepare_models(cfg, device, student, make_teacher(student),
                                                                      sync_teacher=True)
        self.teacher.train()
        self.criterion = DINOLoss(cfg.n_prototypes, cfg.student_temp, cfg.center_momentum).to(device)
        groups = param_groups(self.student, cfg.weight_decay)
        self.optimizer = build_optimizer(cfg.optimizer, groups, cfg.lr, cfg.sgd_momentum)
        self.dataset = MultiCropDataset(self.table, cfg.n_global, cfg.global_s, cfg.n_local, cfg.local_s,
                                        build_augmenter(cfg, self.table), seed=cfg.seed, skip_bad=cfg.skip_bad,
                                        preload=cfg.preload)
        self.batch_aug = build_batch_augment(cfg, self.table, device)
        self.epochs, self.loader_seed = cfg.epochs, cfg.seed
        self.steps_per_epoch = steps = epoch_steps(cfg, len(self.dataset), self.per_rank)
        base_lr = cfg.lr * cfg.batch_size / cfg.lr_ref_batch if cfg.lr_ref_batch > 0 else cfg.lr
        self.lr = cosine_schedule(base_lr, cfg.min_lr, cfg.epochs, steps, cfg.warmup_epochs)
        self.wd = cosine_schedule(cfg.weight_decay, cfg.weight_decay_end, cfg.epochs, steps)
        self.momentum = momentum_schedule(cfg.teacher_momentum, cfg.teacher_momentum_end, cfg.epochs, steps,
                                          cfg.momentum_schedule)
        self.temp = warmup_constant_schedule(cfg.warmup_teacher_temp, cfg.teacher_temp, cfg.warmup_teacher_temp_epochs,
                                             cfg.epochs, steps)
        self.guard = (CollapseGuard(cfg.n_prototypes, cfg.collapse_low, cfg.collapse_high, cfg.collapse_patience)
                      if cfg.collapse_guard else None)
        self.last_layer = {id(p) for p in self.student.head.last_layer_parameters()}
        self.modules = [self.student, self.teacher, self.criterion]
        self.argmaxes: list[torch.Tensor] = []

    def begin_epoch(self, epoch: int, partial: dict | None) -> None:
        self.argmaxes = list(partial["argmaxes"]) if partial else []

    def epoch_state(self) -> dict:
        return {"argmaxes": list(self.argmaxes)}

    def step(self, batch: dict, epoch: int, step: int, it: int) -> tuple[float, ...]:
        cfg = self.cfg
        set_lr_wd(self.optimizer, self.lr[it], self.wd[it])
        views = [v.to(self.device, non_blocking=True) for v in self.batch_aug(batch, epoch)["views"]]
        with autocast(self.device, cfg.amp):
            with torch.no_grad():
                t_out = self.teacher(views[: cfg.n_global])
            s_out = self.student_ddp(views, augment_spec=cfg.spec_augment)
        loss = self.criterion(s_out, t_out, self.temp[it])
        check_loss(loss, "DINO", epoch, step, it)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip_gradients(self.student, cfg.clip_grad)
        if epoch < cfg.freeze_last_layer:
            for p in self.student.parameters():
                if id(p) in self.last_layer:
                    p.grad = None
        self.optimizer.step()
        ema_update(self.teacher, self.student, self.momentum[it])
        st = teacher_stats(self.criterion.teacher_probs(t_out, self.temp[it]))
        self.criterion.update_center(t_out)
        self.argmaxes.append(st["argmax"])
        if self.guard is not None:
            self.guard.update(st["entropy"], st["entropy_of_mean"], epoch, step)
        return loss.item(), st["entropy"], st["entropy_of_mean"], float(st["argmax"].unique().numel())

    def end_epoch(self, epoch: int, sums: torch.Tensor, n: int, seconds_steps: float) -> dict:
        dist.all_reduce_mean(sums)
        arg_all = dist.all_gather_variable(torch.cat(self.argmaxes)) if self.argmaxes else torch.zeros(0)
        last = epoch * self.steps_per_epoch + n - 1
        return {
            "loss": float(sums[0] / n), "lr": self.lr[last], "weight_decay": self.wd[last],
            "momentum": self.momentum[last], "teacher_temp": self.temp[last], "teacher_entropy": float(sums[1] / n),
            "teacher_entropy_of_mean": float(sums[2] / n), "teacher_distinct_argmax": float(sums[3] / n),
            "teacher_distinct_argmax_epoch": int(arg_all.unique().numel()), "steps": n,
            "seconds_steps": seconds_steps,  # the step loop alone: loading included, evaluation excluded
        }

    def evaluate(self, epoch: int, is_last: bool) -> dict:
        cfg, device = self.cfg, self.device
        ev = evaluate_model(self.teacher.backbone, self.corpus, cfg, device, progress=self.progress,
                            return_scores=is_last)
        ev_s = evaluate_model(self.student.backbone, self.corpus, cfg, device, all_pairs=False)
        if is_last:
            self.run.write_scores(ev["scores"], ev["labels"], **score_arrays(ev))
        return {"eval": eval_summary(ev),
                "eval_student": {"eer": ev_s["eer"], "mindcf_0.01": ev_s["mindcf_0.01"]},
                "snapshot": save_teacher_snapshot(self.teacher.backbone, self.table, self.run.path, epoch + 1,
                                                  cfg.snapshots, device, cfg.skip_bad)}

    def state_dict(self) -> dict:
        return {"student": self.student.state_dict(), "teacher": self.teacher.state_dict(),
                "optimizer": self.optimizer.state_dict(), "loss": self.criterion.state_dict(),
                "collapse": self.guard.state_dict() if self.guard is not None else None}

    def load_state_dict(self, checkpoint: dict) -> None:
        self.student.load_state_dict(checkpoint["student"])
        self.teacher.load_state_dict(checkpoint["teacher"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.criterion.load_state_dict(checkpoint["loss"])
        if self.guard is not None and checkpoint.get("collapse"):
            self.guard.load_state_dict(checkpoint["collapse"])

    def results(self, last_eval: dict, seconds: float) -> dict:
        """The last epoch's evaluation (in its checkpoint when resumed after it) as results.json."""
        return {"system": "dino", **result_fields(last_eval["eval"]), "evaluated": "teacher",
                "eval_student": last_eval.get("eval_student"), "seconds": seconds, "epochs": self.cfg.epochs}


train = trainer(DINOMethod, doc="""Train DINO as configured; returns the final results dict (also in results.json).

``train(cfg, *, resume=False, progress=True, stop_after_epoch=None)``: ``resume`` continues from
``checkpoint.pt`` in ``cfg.run_dir`` (or returns the stored results of a finished run);
``stop_after_epoch`` stops right after that epoch's checkpoint and returns None, as if the process
had been killed (tests, time-boxed sessions). The run is :func:`ssrl_lab.train.harness.run`.

SIGTERM / SIGINT stop the run at the next step boundary after checkpointing that step
(resumed exactly, mid-epoch) and raise :class:`~ssrl_lab.train.signals.TrainingInterrupted`.
A NaN / inf loss or a collapsed teacher raises :class:`~ssrl_lab.train.guards.TrainingDiverged`;
the last checkpoint is kept.
""")


def main(argv=None) -> int:
    from .cli import main as cli_main

    return cli_main("dino", DINOConfig, train, argv)


if __name__ == "__main__":
    raise SystemExit(main())
