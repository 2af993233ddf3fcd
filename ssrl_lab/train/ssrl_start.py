"""How SSRL starts: student and EMA teacher from the DINO run's teacher backbone, the k-means
labels of its embeddings (cached in the run's ``embeddings/``) and the pseudo-label state they seed."""
from __future__ import annotations

import logging
import time

import numpy as np
import torch
from torch import nn

from ..features import build_spec_augment
from ..labels.state import PseudoLabelState
from . import distributed as dist
from .classifier import ClassifierModel
from .ema import make_teacher
from .optim import param_groups
from .run import RunDir
from .ssrl_config import SSRLConfig

log = logging.getLogger("ssrl_lab.train.ssrl")


def build_models(cfg: SSRLConfig, device: torch.device) -> tuple[ClassifierModel, nn.Module]:
    """Student (DINO teacher backbone + AAM-softmax over k clusters) and its EMA teacher."""
    from .dino_model import load_teacher_backbone

    backbone = load_teacher_backbone(cfg.dino_run, "cpu")
    spec = build_spec_augment(cfg)
    if spec is not None:
        backbone.spec_augment = spec
    student = ClassifierModel(backbone, cfg.k, cfg.aam_scale, cfg.aam_margin).to(device)
    return student, make_teacher(student)


def initial_labels(cfg: SSRLConfig, run: RunDir, backbone: nn.Module, table, device, progress: bool) -> dict:
    """k-means labels and centroids of the DINO-backbone embeddings (main rank, broadcast)."""
    from pathlib import Path

    from ..cluster import spherical_kmeans
    from ..eval.embed import extract_embeddings

    t0 = time.perf_counter()
    ck = Path(cfg.dino_run) / "checkpoint.pt"
    st = ck.stat() if ck.exists() else None
    key = f"dino:{Path(cfg.dino_run).resolve()}:{st.st_size if st else 0}:{st.st_mtime_ns if st else 0}"
    emb = extract_embeddings(backbone, table, device=device, batch_size=max(cfg.eval_batch_size, 64),
                             chunk_s=cfg.embed_chunk_s, max_len_s=cfg.embed_max_len_s,
                             cache_path=run.embeddings_dir / "dino_train.npz",
                             cache_key=key,
                             progress=progress and dist.is_main(), skip_bad=cfg.skip_bad)
    t_embed = time.perf_counter() - t0
    out = None
    if dist.is_main():
        t1 = time.perf_counter()
        ok = np.isfinite(emb).all(1)
        x = np.where(ok[:, None], emb, 1.0)  # unreadable rows: a constant vector (one cluster)
        km = spherical_kmeans(x, cfg.k, n_iter=cfg.kmeans_iter, seed=cfg.seed, backend=cfg.kmeans_backend,
                              device=device)
        out = {"labels": np.asarray(km.labels, dtype=np.int64), "centroids": np.asarray(km.centroids, np.float32),
               "n_empty": int(km.n_empty), "seconds_embed": t_embed, "seconds_kmeans": time.perf_counter() - t1}
    return dist.broadcast_object(out)


def label_state(cfg: SSRLConfig, seed_labels, device) -> PseudoLabelState:
    """The pseudo-label state of ``cfg`` (queue, schedule, noise model, masking) seeded with ``seed_labels``."""
    return PseudoLabelState(seed_labels, cfg.k, queue_len=cfg.queue_len, seed_copies=cfg.seed_copies,
                            tie_break=cfg.tie_break, label_fixed_epochs=cfg.label_fixed_epochs,
                            collect_start=cfg.collect_start, noise_model=cfg.noise_model,
                            gate_threshold=cfg.gate_threshold, clip_percentiles=tuple(cfg.clip_percentiles),
                            log_floor=cfg.log_floor, gmm_recipe=cfg.gmm_recipe, masking=cfg.masking,
                            mask_empty=cfg.mask_empty, device=device)


def build_optimizer(cfg: SSRLConfig, student: nn.Module) -> torch.optim.Adam:
    """Adam with L2 decay: on every parameter with ``decay_all_params`` (the authors'
    ``Adam(model.parameters())``), else not on biases and norms."""
    if cfg.decay_all_params:
        groups = [{"params": [p for p in student.parameters() if p.requires_grad], "weight_decay": cfg.weight_decay}]
    else:
        groups = param_groups(student, cfg.weight_decay)
    return torch.optim.Adam(groups, lr=cfg.learning_rates[0])


def start_labels(cfg: SSRLConfig, run: RunDir, student: nn.Module, teacher: nn.Module, table, device, progress: bool,
                 true: np.ndarray | None) -> tuple[PseudoLabelState, dict]:
    """A fresh run's pseudo labels: k-means of the DINO embeddings seed the label state, their
    centroids the student's classifier rows (the teacher copies the student); logs the ``kmeans``
    metrics line. Returns the label state and the k-means fields."""
    from .ssrl_report import cluster_fields

    init = initial_labels(cfg, run, student.backbone, table, device, progress)
    pl = label_state(cfg, init["labels"], device)
    student.head.init_from_centroids(torch.as_tensor(init["centroids"]))
    student.head.set_active(pl.active)
    teacher.load_state_dict(student.state_dict())
    kinfo = {"n_empty": init["n_empty"], "seconds_embed": init["seconds_embed"],
             "seconds_kmeans": init["seconds_kmeans"], **cluster_fields(pl.labels, true)}
    n_used = int(pl.active.sum())
    run.log_metrics({"stage": "kmeans", "epoch": 0, "k": cfg.k, "n_clusters": n_used, **kinfo})
    if dist.is_main():
        log.info("k-means: %d clusters used of %d%s", n_used, cfg.k, f", NMI {kinfo['nmi']:.3f}" if "nmi" in kinfo else "")
    return pl, kinfo
