"""What SSRL reports: each epoch's label-state fields of the metrics line, the rank checksums
that prove every rank holds the same labels, and the run's results.json."""
from __future__ import annotations

import logging

import numpy as np
import torch

from ..labels.history import p_clean_reliability
from ..labels.state import PseudoLabelState
from . import distributed as dist
from .results import result_fields
from .ssrl_config import SSRLConfig

log = logging.getLogger("ssrl_lab.train.ssrl")

#: the clean / noisy split of p_clean scored against the true labels (history aggregates)
CLEAN_SPLIT = ("label_accuracy", "precision_noisy", "recall_noisy", "precision_clean", "recall_clean", "f1_noisy")


def state_signature(labels: torch.Tensor, queue, p_clean: torch.Tensor, active: torch.Tensor) -> tuple:
    """Integer / float checksums of the label state (compared across ranks every epoch)."""
    w = torch.arange(labels.shape[0], device=labels.device, dtype=torch.int64) % 9973 + 1
    ent = queue.entries.to(torch.int64)
    return (int((labels.to(torch.int64) * w).sum()), int((ent * w.unsqueeze(1)).sum()), queue.filled,
            float(p_clean.double().sum()), int(active.sum()))


def cluster_fields(labels: torch.Tensor, true: np.ndarray | None) -> dict:
    from ..cluster import cluster_report

    if true is None or not (true >= 0).any():
        return {}
    rep = cluster_report(labels.cpu().numpy(), true)
    return {k: rep[k] for k in ("nmi", "purity", "inverse_purity", "accuracy")}


def label_fields(pl: PseudoLabelState, out: dict, epoch: int, true: np.ndarray | None, agg: dict) -> dict:
    """The label state after (0-based) ``epoch``'s update ``out`` (:meth:`PseudoLabelState.end_epoch`):
    cluster count, label changes, the queue's agreement, p_clean, the GMM; the ranks' agreement
    under torchrun; against the true speakers (``true``, never used in training) where known."""
    collect, agreement, fit = pl.collecting(epoch), out["queue_agreement"], out["gmm"]
    rec = {
        "collecting": collect, "updating_labels": pl.updating(epoch), "n_clusters": int(pl.active.sum()),
        "label_change_rate": float((out["prev_labels"] != pl.labels).float().mean()),
        "queue_agreement": float(agreement.float().mean()), "frac_clean": float((pl.p_clean > 0.5).float().mean()),
        "mean_p_clean": float(pl.p_clean.mean()), "visited": float(pl.visited.float().mean()) if collect else 0.0,
        "gmm": fit.to_dict() if fit is not None else None,
    }
    if dist.world_size() > 1:
        sigs = dist.all_gather_object(state_signature(pl.labels, pl.queue, pl.p_clean, pl.active))
        rec["ranks_agree"] = all(sg == sigs[0] for sg in sigs)
        if not rec["ranks_agree"]:
            log.error("epoch %d: label state differs between ranks: %s", epoch + 1, sigs)
    if true is not None:
        rec.update(cluster_fields(pl.labels, true))
        if collect:
            seen = pl.visited.cpu().numpy()
            rec["teacher_label_nmi"] = (cluster_fields(pl.coll_label[pl.visited], true[seen]) if seen.any()
                                        else {}).get("nmi")
        rec["clean_split"] = {k: agg.get(k) for k in CLEAN_SPLIT}
        if collect:  # p_clean is refreshed from this epoch's teacher losses: how well it is calibrated
            rec["reliability"] = p_clean_reliability(pl.p_clean, pl.labels, true)
    return rec


def ssrl_results(cfg: SSRLConfig, ev: dict, ev_student: dict | None, rows: list[dict], pl: PseudoLabelState,
                 kmeans: dict, true: np.ndarray | None, seconds: float) -> dict:
    """results.json: the teacher's evaluation ``ev``, the student's, the clusters at the end
    (``rows``: the run's ``ssrl`` metrics lines) and the mean shares of the epoch end and the teacher."""
    share = [r["epoch_end_share"] for r in rows]
    tshare = [r["teacher_share"] for r in rows if r.get("collecting")]
    final, ev_student = (rows[-1] if rows else {}), ev_student or {}
    return {
        "system": "ssrl", **result_fields(ev), "evaluated": "teacher",
        "eval_student": {k: ev_student.get(k) for k in ("eer", "eer_all_pairs", "mindcf_0.01", "mindcf_0.05")},
        "seconds": seconds, "epochs": cfg.epochs, "k": cfg.k, "n_clusters": int(pl.active.sum()),
        "n_true_speakers": int(np.unique(true[true >= 0]).size) if true is not None else None,
        "kmeans_nmi": kmeans.get("nmi"), "nmi": final.get("nmi"), "purity": final.get("purity"),
        "epoch_end_share": float(np.mean(share)) if share else None,
        "teacher_share": float(np.mean(tshare)) if tshare else None,
        "noise_model": cfg.noise_model, "queue_len": cfg.queue_len, "dino_run": cfg.dino_run,
    }
