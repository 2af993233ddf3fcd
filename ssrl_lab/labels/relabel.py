"""Online relabelling: masked argmax, empty-cluster masking, Sinkhorn-balanced assignment.

SSRL relabels every utterance with the argmax of the teacher's classifier logits. Clusters that
lose all their members are masked out (logit -inf) for good, so the active count can only fall;
cluster indices never change, so no classifier rows are re-mapped.

:func:`sinkhorn_assign` is the optional "balanced relabelling" switch: an equal-partition
assignment over the active clusters by Sinkhorn-Knopp, as in SwAV. It works in the log domain
(stable at any logit scale) and streams over row chunks, so the ``(N, K)`` score matrix never has
to exist at once: pass either a tensor (it may live on CPU while the work runs on ``device``) or
a function ``scores(start, stop) -> (stop - start, K)`` (see :func:`cosine_scores`), which makes
N = 1 M x K = 8000 feasible on one GPU.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Union

import torch

__all__ = [
    "masked_argmax",
    "active_from_labels",
    "update_active",
    "sinkhorn_assign",
    "self_labels",
    "cosine_scores",
    "label_change_rate",
]

ScoreSource = Union[torch.Tensor, Callable[[int, int], torch.Tensor]]


def _check_active(active: torch.Tensor, k: int, where: str) -> torch.Tensor:
    if not isinstance(active, torch.Tensor) or active.dtype != torch.bool or active.dim() != 1:
        raise ValueError(f"{where}: active must be a 1-D bool tensor")
    if active.shape[0] != k:
        raise ValueError(f"{where}: active has {active.shape[0]} entries but there are {k} clusters")
    if not bool(active.any()):
        raise ValueError(f"{where}: no active cluster left")
    return active


def masked_argmax(logits: torch.Tensor, active: torch.Tensor) -> torch.Tensor:
    """``(B,)`` int64 argmax of ``(B, K)`` logits over the active clusters only.

    Never returns an inactive index: a row whose active logits are all -inf or NaN gets the
    first active cluster.
    """
    if logits.dim() != 2:
        raise ValueError(f"masked_argmax: logits must be (B, K), got {tuple(logits.shape)}")
    active = _check_active(active.to(logits.device), logits.shape[1], "masked_argmax")
    neg_inf = torch.tensor(float("-inf"), dtype=logits.dtype, device=logits.device)
    masked = torch.where(active, torch.nan_to_num(logits, nan=float("-inf")), neg_inf)
    idx = masked.argmax(dim=1)
    bad = ~active[idx]
    if bool(bad.any()):
        first = int(torch.nonzero(active)[0])
        idx = torch.where(bad, torch.full_like(idx, first), idx)
    return idx


def active_from_labels(labels: torch.Tensor, k: int, min_size: int = 1) -> torch.Tensor:
    """``(K,)`` bool: clusters holding at least ``min_size`` of the ``(N,)`` labels."""
    labels = torch.as_tensor(labels)
    if labels.dim() != 1:
        raise ValueError(f"active_from_labels: labels must be 1-D, got {tuple(labels.shape)}")
    if min_size < 1:
        raise ValueError(f"active_from_labels: min_size must be >= 1, got {min_size}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= k):
        raise ValueError(f"active_from_labels: labels must lie in [0, {k}), found [{int(labels.min())}, {int(labels.max())}]")
    return torch.bincount(labels.to(torch.int64), minlength=k) >= min_size


def update_active(active: torch.Tensor, labels: torch.Tensor, k: int, min_size: int = 1) -> torch.Tensor:
    """``active & has_members(labels)``: a cluster, once masked, never comes back."""
    if active.shape != (k,):
        raise ValueError(f"update_active: active has shape {tuple(active.shape)}, expected ({k},)")
    return active & active_from_labels(labels, k, min_size).to(active.device)


def cosine_scores(emb: torch.Tensor, weight: torch.Tensor, scale: float = 1.0, device=None) -> Callable[[int, int], torch.Tensor]:
    """A chunked score source ``scale * normalize(emb[a:b]) @ normalize(weight).T`` for Sinkhorn.

    ``emb`` (N, D) may stay on CPU; each chunk is moved to ``device`` (default: weight's device).
    """
    dev = torch.device(device) if device is not None else weight.device
    w = torch.nn.functional.normalize(weight.detach().to(dev, torch.float32), dim=1)

    def fn(start: int, stop: int) -> torch.Tensor:
        e = torch.nn.functional.normalize(emb[start:stop].detach().to(dev, torch.float32), dim=1)
        return scale * (e @ w.T)

    fn.n = emb.shape[0]  # type: ignore[attr-defined]
    return fn


def sinkhorn_assign(
    scores: ScoreSource,
    active: torch.Tensor,
    n_iter: int = 3,
    epsilon: float = 0.05,
    kind: str = "logits",
    n: int | None = None,
    chunk_size: int | None = None,
    device: Any = None,
) -> torch.Tensor:
    """Balanced labels: Sinkhorn-Knopp equal partition over the active clusters (SwAV).

    The transport plan is ``Q_ij ∝ exp(s_ij / epsilon) * u_i * v_j`` with every sample's row
    summing to 1/N and every active cluster's column to 1/K_active; each label is
    ``argmax_j Q_ij``. ``n_iter`` counts SwAV's (cluster-normalise, sample-normalise) rounds;
    the argmax does not depend on the final sample scaling, so it is skipped.

    Args:
        scores: ``(N, K)`` tensor, or a function ``(start, stop) -> (stop - start, K)``.
        active: ``(K,)`` bool; inactive clusters get no mass and are never chosen.
        n_iter: Sinkhorn rounds (SwAV: 3).
        epsilon: temperature on the scores (SwAV: 0.05 on cosine scores; with AAM logits at
            scale s, pass cosines or raise epsilon by the factor s).
        kind: ``"logits"`` (scores used as they are) or ``"probs"`` (scores are probabilities;
            their log is used).
        n: number of rows when ``scores`` is a function (or set ``scores.n``).
        chunk_size: rows per chunk (default ``2**26 // K`` rows, about 256 MB of float32).
        device: where the chunks are processed (default: the scores' device).

    Returns:
        ``(N,)`` int64 labels, all active; on ``device``.
    """
    if kind not in ("logits", "probs"):
        raise ValueError(f"sinkhorn_assign: kind must be 'logits' or 'probs', got {kind!r}")
    if n_iter < 1:
        raise ValueError(f"sinkhorn_assign: n_iter must be >= 1, got {n_iter}")
    if not epsilon > 0:
        raise ValueError(f"sinkhorn_assign: epsilon must be > 0, got {epsilon}")
    if isinstance(scores, torch.Tensor):
        if scores.dim() != 2:
            raise ValueError(f"sinkhorn_assign: scores must be (N, K), got {tuple(scores.shape)}")
        n_rows = scores.shape[0]
        dev = torch.device(device) if device is not None else scores.device
        tensor = scores

        def get(a: int, b: int) -> torch.Tensor:
            return tensor[a:b].to(dev)
    else:
        n_rows = n if n is not None else getattr(scores, "n", None)
        if n_rows is None:
            raise ValueError("sinkhorn_assign: pass n= when scores is a function")
        dev = torch.device(device) if device is not None else None
        fn = scores

        def get(a: int, b: int) -> torch.Tensor:
            out = fn(a, b)
            return out if dev is None else out.to(dev)

    if n_rows == 0:
        return torch.empty(0, dtype=torch.int64)
    k = active.shape[0]
    if chunk_size is None:
        chunk_size = max(1, (1 << 26) // max(k, 1))
    probe = get(0, min(chunk_size, n_rows))
    if probe.dim() != 2 or probe.shape[1] != k:
        raise ValueError(f"sinkhorn_assign: score chunks have shape {tuple(probe.shape)}, expected (rows, {k})")
    dev = probe.device
    act = _check_active(active.to(dev), k, "sinkhorn_assign")
    n_active = int(act.sum())
    neg_inf = torch.tensor(float("-inf"), dtype=torch.float32, device=dev)

    def z_of(chunk: torch.Tensor) -> torch.Tensor:
        c = chunk.to(torch.float32)
        if kind == "probs":
            c = torch.log(c.clamp_min(1e-30))
        return torch.where(act, c / epsilon, neg_inf)

    log_n, log_k = math.log(n_rows), math.log(n_active)
    log_v: torch.Tensor | None = None
    for _ in range(n_iter):
        col = torch.full((k,), float("-inf"), dtype=torch.float32, device=dev)
        for a in range(0, n_rows, chunk_size):
            z = z_of(probe if a == 0 else get(a, min(a + chunk_size, n_rows)))
            if log_v is None:  # first round: u = 1 (the global normalisation is a constant)
                log_u = torch.zeros(z.shape[0], 1, dtype=torch.float32, device=dev)
            else:
                log_u = -log_n - torch.logsumexp(z + log_v, dim=1, keepdim=True)
            col = torch.logaddexp(col, torch.logsumexp(z + log_u, dim=0))
        log_v = torch.where(act, -log_k - col, neg_inf)
    labels = torch.empty(n_rows, dtype=torch.int64, device=dev)
    for a in range(0, n_rows, chunk_size):
        b = min(a + chunk_size, n_rows)
        z = z_of(probe if a == 0 else get(a, b))
        labels[a:b] = masked_argmax(z + log_v, act)
    return labels


def label_change_rate(old: torch.Tensor, new: torch.Tensor) -> float:
    """Share of utterances whose label differs between ``old`` and ``new`` (both ``(N,)``)."""
    old, new = torch.as_tensor(old), torch.as_tensor(new)
    if old.shape != new.shape:
        raise ValueError(f"label_change_rate: shapes differ: {tuple(old.shape)} vs {tuple(new.shape)}")
    if old.numel() == 0:
        return 0.0
    return float((old.to(new.device).to(torch.int64) != new.to(torch.int64)).float().mean())


def self_labels(logits: torch.Tensor, active: torch.Tensor, *, sinkhorn: bool = False, scale: float = 1.0,
                n_iter: int = 3, epsilon: float = 0.05) -> torch.Tensor:
    """SSRL's teacher self labels of ``(B, K)`` logits: the argmax over the active clusters, or with
    ``sinkhorn`` the Sinkhorn-balanced assignment of the batch on ``logits / scale`` (cosines)."""
    if sinkhorn:
        return sinkhorn_assign(logits / scale, active, n_iter=n_iter, epsilon=epsilon)
    return masked_argmax(logits, active)
