"""Stage 2: SSRL, self-supervised reflective learning (one round, from a DINO teacher).

Start (:mod:`~ssrl_lab.train.ssrl_start`, in the method's constructor): student and EMA teacher are SpeakerNet + AAM-softmax
over ``k`` clusters on the DINO run's teacher backbone; k-means of its embeddings seeds the label
state (:class:`~ssrl_lab.labels.state.PseudoLabelState`) and the classifier rows. The teacher
(``ema_start`` -> ``ema_end``) stays in eval mode and is the evaluated model.

:meth:`SSRLMethod.step` (a student crop and a clean teacher crop per utterance): from
``collect_start_epoch`` on the teacher relabels the clean crop; in label-update epochs (the
authors' ``is_update``: 0-based ``epoch + 1 >= label_fixed_epochs``) its loss targets the in-step
vote ``mode((queue + [self_label])[-queue_len:])``; labels and losses are gathered over ranks and
collected by row; the student's loss is ``sum(p_clean * CE) / sum(p_clean)``.
:meth:`SSRLMethod.end_epoch`: the queue push, vote, masking and p_clean refresh of
:meth:`PseudoLabelState.end_epoch`. Run directory: also ``history.npz`` (per-utterance labels,
p_clean, teacher loss, queue agreement per epoch) and a ``kmeans`` metrics line before the epochs.

``python -m ssrl_lab.train.ssrl --profile demo --corpus data/synthvox-demo --run-dir outputs/ssrl
dino_run=outputs/dino``
"""
from __future__ import annotations

import logging
import time

import torch
import torch.nn.functional as F

from ..config import check
from ..data.augment import build_augmenter
from ..data.batch_augment import build_batch_augment
from ..features import max_normalize
from ..labels.history import EpochHistory
from ..labels.noise import weighted_loss
from ..labels.relabel import self_labels
from ..labels.state import PseudoLabelState
from . import distributed as dist
from .devices import StepTimer, autocast, seed_everything
from .ema import ema_update
from .guards import TrainingDiverged, check_loss, check_world
from .harness import trainer
from .loader import batch_per_rank, epoch_steps
from .loop import Method
from .optim import clip_gradients, set_lr_wd
from .results import eval_summary, evaluate_model, score_arrays
from .run import RunDir
from .schedules import momentum_schedule
from .snapshots import save_teacher_snapshot
from .ssrl_config import PROFILES, SSRLConfig, lr_schedule  # noqa: F401 - re-exported
from .ssrl_report import label_fields, ssrl_results
from .ssrl_start import build_models, build_optimizer, label_state, start_labels
from .wrap import prepare_models

log = logging.getLogger("ssrl_lab.train.ssrl")


class SSRLMethod(Method):
    """SSRL as a :class:`~ssrl_lab.train.loop.Method`: student, EMA teacher and the pseudo-label
    state (:class:`~ssrl_lab.labels.state.PseudoLabelState`); :meth:`step` is the algorithm."""

    stage, what, n_sums = "ssrl", "SSRL", 5  # student loss, teacher loss, kept weight, teacher s, step s
    log_keys = ("n_clusters", "label_change_rate", "frac_clean", "nmi")

    def __init__(self, cfg: SSRLConfig, corpus, run: RunDir, device: torch.device, progress: bool = False,
                 checkpoint: dict | None = None) -> None:
        from ..data.datasets import PairCropDataset

        self.cfg, self.corpus, self.run, self.device, self.progress = cfg, corpus, run, device, progress
        self.table = corpus.train.without_speakers()
        true = corpus.train.speaker_codes()[0]
        self.true = true if bool((true >= 0).any()) else None
        n = len(self.table)
        check(cfg.k <= n, f"k={cfg.k} is larger than the number of training utterances ({n})")
        check_world(n, dist.world_size())
        self.per_rank = batch_per_rank(cfg)
        self.steps_per_epoch = epoch_steps(cfg, n, self.per_rank)
        self.epochs, self.loader_seed = cfg.epochs, cfg.seed
        self.lr = lr_schedule(cfg, self.steps_per_epoch)
        self.momentum = momentum_schedule(cfg.ema_start, cfg.ema_end, cfg.epochs, self.steps_per_epoch,
                                          cfg.ema_schedule)
        seed_everything(cfg.seed)
        student, teacher = build_models(cfg, device)
        teacher.eval()
        self.optimizer = build_optimizer(cfg, student)
        self.pl: PseudoLabelState | None = None  # set here afresh, or by load_state_dict() when resuming
        self.kinfo: dict = {}
        if checkpoint is None:  # k-means labels of the DINO embeddings, centroids as the classifier rows
            self.pl, self.kinfo = start_labels(cfg, run, student, teacher, self.table, device, progress, self.true)
        self.student_ddp, self.student, self.teacher = prepare_models(cfg, device, student, teacher)
        self.dataset = PairCropDataset(self.table, cfg.student_s, cfg.teacher_s, build_augmenter(cfg, self.table),
                                       seed=cfg.seed, skip_bad=cfg.skip_bad, preload=cfg.preload)
        self.batch_aug = build_batch_augment(cfg, self.table, device)
        self.history = EpochHistory(n, true=self.true, utt_id=self.table.utt_id, seed=cfg.seed)
        self.timer = StepTimer(device)
        self.modules = [self.student, self.teacher]
        log.info("SSRL: K=%d, collect from epoch %d, labels fixed for %d epochs", cfg.k, cfg.collect_start + 1,
                 cfg.label_fixed_epochs)

    def begin_epoch(self, epoch: int, partial: dict | None) -> None:
        self.student.train()
        self.teacher.eval()
        self.pl.begin_epoch(partial)  # a resumed epoch restores what it had collected

    def epoch_state(self) -> dict:
        return self.pl.collected()

    def step(self, batch: dict, epoch: int, step: int, it: int) -> tuple[float, ...]:
        cfg, pl, device = self.cfg, self.pl, self.device
        t_step = self.timer.now()
        set_lr_wd(self.optimizer, self.lr[it])
        batch = self.batch_aug(batch, epoch)
        idx = batch["index"].to(device, non_blocking=True)
        y = pl.labels[idx]  # the labels in use
        t_loss_mean, t_teacher = 0.0, 0.0
        xs = batch["student"].to(device, non_blocking=True)
        xs = max_normalize(xs) if cfg.max_normalize else xs
        if pl.collecting(epoch):
            t0 = self.timer.now()
            with torch.no_grad():
                self_label, logits_t = self.teacher_relabels(batch, y)
                # the target: the in-step vote over the queue and self_label in label-update epochs.
                # The vote may pick a cluster masked since (masking="recompute", as the authors'):
                # its logit is -inf and its loss inf, judged noisy by the GMM
                t_loss = F.cross_entropy(logits_t, pl.targets(idx, self_label, epoch), reduction="none")
            t_teacher = self.timer.now() - t0
            gather = dist.all_gather_tensor  # every rank collects every rank's rows, labels and losses
            pl.collect(gather(idx), gather(self_label), gather(t_loss))
            finite = torch.isfinite(t_loss)
            t_loss_mean = float(t_loss[finite].mean()) if bool(finite.any()) else 0.0
        w = pl.p_clean[idx] if cfg.noise_model != "none" else None
        with autocast(device, cfg.amp):
            logits = self.student_ddp(xs, y, augment_spec=cfg.spec_augment)
        ce = F.cross_entropy(logits.float(), y, reduction="none")
        loss = ce.mean() if w is None else weighted_loss(ce, w, eps=1e-8)  # sum(p_clean ce) / sum(p_clean)
        check_loss(loss, "SSRL student", epoch, step, it)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.clip_grad:
            clip_gradients(self.student, cfg.clip_grad)
        self.optimizer.step()
        ema_update(self.teacher, self.student, self.momentum[it])
        return (loss.item(), t_loss_mean, float(w.mean()) if w is not None else 1.0, t_teacher,
                self.timer.now() - t_step)

    def teacher_relabels(self, batch: dict, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The teacher's self labels and logits on the clean crop (margin on the label in use with
        ``teacher_margin``, masked clusters at -inf; argmax or a Sinkhorn-balanced argmax)."""
        cfg = self.cfg
        xt = batch["teacher"].to(self.device, non_blocking=True)
        xt = max_normalize(xt) if cfg.max_normalize else xt
        with autocast(self.device, cfg.amp):
            emb = self.teacher.backbone(xt)
        logits = self.teacher.head(emb.float(), y if cfg.teacher_margin else None)
        return self_labels(logits, self.pl.active, sinkhorn=cfg.use_sinkhorn, scale=self.teacher.head.scale,
                           n_iter=cfg.sinkhorn_iter, epsilon=cfg.sinkhorn_epsilon), logits

    def end_epoch(self, epoch: int, sums: torch.Tensor, n: int, seconds_steps: float) -> dict:
        dist.all_reduce_mean(sums)
        t_end = self.timer.now()
        out = self.pl.end_epoch(epoch)  # queue push, vote, masking, p_clean refresh
        dist.broadcast_(self.pl.p_clean)
        self.student.head.set_active(self.pl.active)
        self.teacher.head.set_active(self.pl.active)
        seconds_update = self.timer.now() - t_end
        t_report = time.perf_counter()
        pl, means, last = self.pl, sums / max(n, 1), epoch * self.steps_per_epoch + max(n - 1, 0)
        agg = self.history.append(epoch + 1, pl.labels, pl.p_clean, pl.coll_loss, out["queue_agreement"], out["gmm"])
        if dist.is_main():
            self.history.save(self.run.path / "history.npz")
        return {"loss": float(means[0]), "teacher_loss": float(means[1]) if pl.collecting(epoch) else None,
                "mean_weight": float(means[2]), "lr": self.lr[last], "momentum": self.momentum[last], "steps": n,
                **label_fields(pl, out, epoch, self.true, agg), "p_clean": pl.p_clean,  # a histogram (Loop)
                "seconds_steps": seconds_steps, "seconds_epoch_end": seconds_update,
                "epoch_end_share": seconds_update / max(seconds_steps + seconds_update, 1e-9),
                "seconds_report": time.perf_counter() - t_report,
                "teacher_share": float(sums[3] / max(float(sums[4]), 1e-9)) if pl.collecting(epoch) else 0.0}

    def evaluate(self, epoch: int, is_last: bool) -> dict:
        cfg, t0 = self.cfg, time.perf_counter()
        ev = evaluate_model(self.teacher.backbone, self.corpus, cfg, self.device, progress=self.progress,
                            return_scores=is_last)
        fields = {"eval": eval_summary(ev)}
        if is_last:
            ev_s = evaluate_model(self.student.backbone, self.corpus, cfg, self.device)
            fields["eval_student"] = eval_summary(ev_s)
            self.run.write_scores(ev["scores"], ev["labels"], **score_arrays(ev))
        fields["seconds_eval"] = time.perf_counter() - t0
        fields["snapshot"] = save_teacher_snapshot(self.teacher.backbone, self.table, self.run.path, epoch + 1,
                                                   cfg.snapshots, self.device, cfg.skip_bad)
        return fields

    def check_finite(self, where: str) -> None:
        super().check_finite(where)
        if not bool(torch.isfinite(self.pl.p_clean).all()):
            raise TrainingDiverged(f"{where}: p_clean holds NaN / inf values; the checkpoint was not written")

    def state_dict(self) -> dict:
        return {"student": self.student.state_dict(), "teacher": self.teacher.state_dict(),
                "optimizer": self.optimizer.state_dict(), **self.pl.saved_state(), "kmeans": self.kinfo}

    def load_state_dict(self, checkpoint: dict) -> None:
        self.student.load_state_dict(checkpoint["student"])
        self.teacher.load_state_dict(checkpoint["teacher"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.pl = label_state(self.cfg, checkpoint["labels"], self.device)
        self.pl.load_state_dict({key: checkpoint[key] for key in self.pl.SAVED})
        self.kinfo = checkpoint.get("kmeans", {})
        if (self.run.path / "history.npz").exists():
            self.history = EpochHistory.load(self.run.path / "history.npz")
            self.history.truncate(int(checkpoint["epoch"]))

    def results(self, last_eval: dict, seconds: float) -> dict:
        rows = [r for r in self.run.read_metrics() if r.get("stage") == "ssrl"] if dist.is_main() else []
        return ssrl_results(self.cfg, last_eval["eval"], last_eval.get("eval_student"), rows, self.pl, self.kinfo,
                            self.true, seconds)


train = trainer(SSRLMethod, required=("dino_run",), doc="""Train SSRL as configured; returns the results dict (also ``results.json``).

``train(cfg, *, resume=False, progress=True, stop_after_epoch=None)``: ``resume`` continues from
``checkpoint.pt`` (or returns the stored results of a finished run); ``stop_after_epoch`` stops after
that epoch's checkpoint and returns None (tests). The run is :func:`ssrl_lab.train.harness.run`.

SIGTERM / SIGINT checkpoint the step in progress (models, optimiser, label state and what the
epoch had collected: the resume is exact) and raise :class:`~ssrl_lab.train.signals.TrainingInterrupted`;
a NaN / inf loss raises :class:`~ssrl_lab.train.guards.TrainingDiverged` (the last good checkpoint is kept).
""")


def main(argv=None) -> int:
    from .cli import main as cli_main

    return cli_main("ssrl", SSRLConfig, train, argv)


if __name__ == "__main__":
    raise SystemExit(main())
