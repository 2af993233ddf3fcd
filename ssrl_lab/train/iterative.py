"""The two-stage iterative pseudo-labelling baseline (Cai, Wang, Li, ICASSP 2021; loss gate optional).

Round ``r``: embed every training utterance with the current model (round 1: the teacher
backbone of a DINO run), spherical k-means into ``k`` clusters, train a classifier
(AAM-softmax, s 32, m 0.2) on the cluster ids, then evaluate it; its backbone is the next
round's model. Three protocols say what each round trains (``init``):

* ``"new"``: a NEW randomly initialised encoder and head each round (Cai, Wang, Li, ICASSP 2021);
* ``"finetune"``: the current model fine-tuned, its head initialised from the k-means centroids
  of its own embeddings (what FEASIBILITY.md tried);
* ``"stage1"``: the stage-1 (DINO) model again each round, with a fresh randomly initialised
  head: the loss-gated-learning public code's protocol (TaoRuijie/Loss-Gated-Learning, Stage 2,
  which loads the stage-1 model into a new trainer every round and clusters with the previous
  round's best model).
 ``loss_gates`` (one per round, or empty) keeps only
samples whose CE is under the round's gate (loss-gated learning).

Each round logs ``{"stage": "iterative", "round", "eval", "pseudo_labels" (NMI, purity,
inverse purity, accuracy vs. the corpus's true training labels, never used in training), "k",
"seconds_cluster", "seconds_train", "init", "evaluated", "gate"}``; per-epoch lines have stage
``round<r>``. ``results_round<r>.json`` per round; ``results.json`` = the last round.
Resumable per epoch within a round and per round.
"""
from __future__ import annotations

import copy
import dataclasses
import logging
import time

import numpy as np
import torch

from ..cluster.kmeans import BACKENDS as KMEANS_BACKENDS
from ..config import check
from ..data.augment import DEMO_AUG
from . import distributed as dist
from . import harness
from .classifier import ClassifierConfig, ClassifierModel, fit, new_backbone
from .devices import seed_everything
from .results import eval_summary, evaluate_final, result_fields
from .run import RunDir

log = logging.getLogger("ssrl_lab.train.iterative")


#: how each round's network starts (module docstring)
INITS = ("new", "finetune", "stage1")


@dataclasses.dataclass
class IterativeConfig(ClassifierConfig):
    """``dino_run``: the DINO run directory whose teacher starts round 1; ``rounds``; ``k``
    clusters; ``init`` "new" | "finetune" | "stage1"; ``loss_gates`` (per round; empty = no gate);
    ``kmeans_iter``; ``kmeans_backend`` ("auto" = faiss-gpu, else torch on the training GPU, else
    faiss on the CPU); ``embed_chunk_s`` / ``embed_max_len_s`` (how training utterances are embedded
    for clustering: fixed-length chunks batch well on CPU; None = whole utterances)."""

    dino_run: str = ""
    rounds: int = 2
    k: int = 300
    init: str = "new"
    loss_gates: list[float] = dataclasses.field(default_factory=list)
    kmeans_iter: int = 20
    kmeans_backend: str = "auto"
    embed_chunk_s: float | None = None
    embed_max_len_s: float | None = None

    def validate(self) -> None:
        super().validate()
        check(self.rounds >= 1, f"rounds must be >= 1, got {self.rounds}")
        check(self.k >= 2, f"k must be >= 2, got {self.k}")
        check(self.kmeans_backend in KMEANS_BACKENDS,
              f"kmeans_backend must be one of {KMEANS_BACKENDS}, got {self.kmeans_backend!r}")
        check(self.init in INITS, f"init must be one of {', '.join(INITS)}, got {self.init!r}")
        check(not self.loss_gates or len(self.loss_gates) >= self.rounds,
              f"loss_gates has {len(self.loss_gates)} values for {self.rounds} rounds (give one per round or none)")
        check(all(g > 0 for g in self.loss_gates), f"loss_gates must be > 0, got {self.loss_gates}")



#: The demo's K and lr are the setting the compute-matched study chose on the dev split for both
#: protocols the demo runs (``new`` and ``finetune``), out of four tried within the same budget as
#: every other system (ssrl_lab.study; README): K = 1.33x the 200 training speakers, lr 2e-3. Until
#: 2026-12-03 the demo used K = 300 (1.5x).
PROFILES: dict[str, dict] = {
    "smoke": dict(encoder_preset="micro", crop_s=1.0, batch_size=8, epochs=2, max_steps_per_epoch=3, rounds=2, k=6,
                  augment=None, amp="off", eval_batch_size=16, eval_max_len_s=1.5, lr=1e-3, kmeans_iter=10),
    "demo": dict(encoder_preset="tiny", crop_s=2.0, batch_size=64, epochs=6, embed_chunk_s=4.0, optimizer="adam", lr=2e-3,
                 min_lr=1e-5, warmup_epochs=1.0, weight_decay=5e-5, rounds=2, k=266, init="new",
                 dino_run="outputs/demo/dino", augment=dict(DEMO_AUG), preload=True, embed_max_len_s=None,
                 eval_batch_size=32, eval_bucket_s=0.5),
    "vox": dict(encoder_preset="ssrl_paper", crop_s=2.0, batch_size=256, epochs=40, optimizer="adam", lr=1e-3,
                min_lr=1e-5, warmup_epochs=2.0, weight_decay=5e-5, rounds=5, k=6000, init="new",
                loss_gates=[1.0, 3.0, 3.0, 5.0, 6.0], augment={}, num_workers=8, eval_batch_size=1,
                embed_max_len_s=10.0, embed_chunk_s=4.0),
}
IterativeConfig.PROFILES = PROFILES


def _embed(model, table, cfg: IterativeConfig, device, progress: bool) -> np.ndarray:
    from ..eval.embed import extract_embeddings

    return extract_embeddings(model, table, device=device, batch_size=max(cfg.eval_batch_size, 32),
                              chunk_s=cfg.embed_chunk_s, max_len_s=cfg.embed_max_len_s, progress=progress and dist.is_main(),
                              skip_bad=cfg.skip_bad)


def _cluster(emb: np.ndarray, cfg: IterativeConfig, r: int, device=None):
    from ..cluster import spherical_kmeans

    ok = np.isfinite(emb).all(1)
    res = spherical_kmeans(np.where(ok[:, None], emb, 0.0) if ok.all() else emb[ok], cfg.k, n_iter=cfg.kmeans_iter,
                           seed=cfg.seed + r, backend=cfg.kmeans_backend, device=device)
    labels = np.full(len(emb), -1, dtype=np.int64)
    labels[ok] = res.labels
    if not ok.all():  # unreadable files: give them their nearest centroid of the zero vector (cluster 0)
        labels[~ok] = 0
    return labels, res


def _round_labels(cfg: IterativeConfig, run: RunDir, r: int, current, table, device, resume: bool,
                  progress: bool) -> tuple[np.ndarray, dict, np.ndarray]:
    """Round ``r``'s pseudo labels: ``current``'s embeddings clustered (main rank, broadcast), kept
    in ``round<r>_clusters.pt`` so a resumed round clusters nothing again."""
    saved = run.load_checkpoint(f"round{r}_clusters") if resume else None
    if saved is not None:
        return saved["labels"], saved["info"], saved["centroids"]
    emb = _embed(current, table, cfg, device, progress)
    labels, k_info, centroids = None, None, None
    if dist.is_main():
        labels, km = _cluster(emb, cfg, r, device)
        k_info = {"k": cfg.k, "n_empty": int(km.n_empty), "n_used": int(len(np.unique(labels)))}
        centroids = np.asarray(km.centroids, dtype=np.float32)
    labels, k_info, centroids = dist.broadcast_object((labels, k_info, centroids))
    run.save_checkpoint({"labels": labels, "info": k_info, "centroids": centroids}, name=f"round{r}_clusters")
    return labels, k_info, centroids


def _round_model(cfg: IterativeConfig, r: int, current, centroids, device) -> ClassifierModel:
    """What round ``r`` trains (``cfg.init``, module docstring), its AAM head seeded by the round."""
    from .dino_model import load_teacher_backbone

    if cfg.init == "new":
        backbone = new_backbone(cfg, cfg.seed + 7919 * r)
    elif cfg.init == "stage1":
        backbone = load_teacher_backbone(cfg.dino_run, device)
    else:
        backbone = copy.deepcopy(current)
    seed_everything(cfg.seed + 7919 * r)  # the AAM head's initialisation draws from the global generator
    model = ClassifierModel(backbone, cfg.k, cfg.aam_scale, cfg.aam_margin)
    if cfg.init == "finetune":  # the current model's clusters are its classes: start from the centroids
        model.head.init_from_centroids(torch.as_tensor(centroids))
    return model


def train(cfg: IterativeConfig, *, resume: bool = False, progress: bool = True,
          stop_after: tuple[int, int] | None = None) -> dict | None:
    """Run ``cfg.rounds`` rounds; returns the last round's results (also results.json).

    ``stop_after=(round, epoch)``: stop after that epoch's checkpoint of that round (tests). The run
    is :func:`ssrl_lab.train.harness.run` of :func:`run_rounds`.
    """
    return harness.run(cfg, run_rounds, resume=resume, progress=progress, stop=stop_after, required=("dino_run",))


def run_rounds(cfg: IterativeConfig, corpus, run: RunDir, device, *, resume: bool, progress: bool,
               stop: tuple[int, int] | None) -> dict | None:
    """The iterative job: the rounds not done yet (module docstring), each resumable; the last
    round's results with every round's EER, or None when ``stop`` stopped it."""
    from ..cluster import cluster_report
    from ..models import EncoderConfig, SpeakerNet
    from .dino_model import load_teacher_backbone

    table = corpus.train.without_speakers()
    true = corpus.train.speaker_codes()[0]

    done, seconds, history = 0, 0.0, []
    ckpt = run.load_checkpoint() if resume else None
    current = load_teacher_backbone(cfg.dino_run, device)
    if current.encoder_cfg.to_dict() != cfg.encoder.to_dict() and cfg.init == "new":
        log.warning("the DINO run's encoder differs from cfg.encoder; new rounds use cfg.encoder")
    if ckpt is not None:
        done, seconds, history = int(ckpt["round"]), float(ckpt["seconds"]), list(ckpt["history"])
        current = SpeakerNet(EncoderConfig.from_dict(ckpt["encoder"])).to(device)
        current.load_state_dict(ckpt["backbone"])
        if not run.has_checkpoint(f"round{done + 1}"):
            run.truncate_metrics(int(ckpt["n_metrics"]))
    for r in range(done + 1, cfg.rounds + 1):
        t_round = time.perf_counter()
        labels, k_info, centroids = _round_labels(cfg, run, r, current, table, device, resume, progress)
        t_cluster = time.perf_counter() - t_round
        report = cluster_report(labels, true) if (true >= 0).any() else None
        if report is not None and dist.is_main():
            log.info("round %d: pseudo labels NMI %.3f purity %.3f (%d clusters used)", r, report["nmi"],
                     report["purity"], k_info["n_used"])
        model = _round_model(cfg, r, current, centroids, device)
        seed_everything(cfg.seed + 1000 * dist.rank() + r)
        gate = cfg.loss_gates[r - 1] if cfg.loss_gates else None
        out = fit(cfg, run, model, table, labels, device, stage=f"round{r}", ckpt_name=f"round{r}", gate=gate,
                  record={"round": r}, progress=progress, resume=resume, seed=cfg.seed + r, corpus=corpus,
                  stop_after_epoch=stop[1] if stop is not None and stop[0] == r else None)
        if out is None:
            return None
        current, info = out
        ev = evaluate_final(current, corpus, cfg, device, run, progress, scores=(f"scores_round{r}.npz", "scores.npz"))
        seconds += time.perf_counter() - t_round
        run.log_metrics({"stage": "iterative", "round": r, "eval": eval_summary(ev), "pseudo_labels": report,
                         **k_info, "seconds_cluster": t_cluster, "seconds_train": info["train_seconds"],
                         "init": cfg.init, "evaluated": info["evaluated"], "gate": gate,
                         "seconds": time.perf_counter() - t_round})
        history.append({"system": "iterative", "round": r, **result_fields(ev), "evaluated": info["evaluated"],
                        "init": cfg.init, "pseudo_labels": report, "k": cfg.k, "seconds": seconds,
                        "epochs": cfg.epochs * r})
        run.write_results(history[-1], f"results_round{r}.json")
        if dist.is_main():
            log.info("round %d: EER %.2f %% (all pairs %s)", r, ev["eer"], ev["eer_all_pairs"])
        run.save_checkpoint({"round": r, "backbone": current.state_dict(), "encoder": current.encoder_cfg.to_dict(),
                             "seconds": seconds, "history": history})
    rounds = [{"round": h["round"], "eer": h["eer"], "eer_all_pairs": h["eer_all_pairs"],
               "nmi": (h["pseudo_labels"] or {}).get("nmi")} for h in history]
    return {**history[-1], "rounds": rounds}


def main(argv=None) -> int:
    from .cli import main as cli_main

    return cli_main("iterative", IterativeConfig, train, argv)


if __name__ == "__main__":
    raise SystemExit(main())
