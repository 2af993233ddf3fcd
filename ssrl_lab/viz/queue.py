"""Label-queue dynamics of SSRL: how often labels change, how much each utterance's queue
agrees, and how clusters split and merge between two epochs (a Sankey of the largest flows).
Inputs are the arrays of ``history.npz`` (``labels (E, N)``, ``queue_agreement (E, N)``).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import plotly.graph_objects as go


def history_epochs(history: dict) -> np.ndarray:
    """Epoch number of each history row (``history["epoch"]`` when stored, else 0..E-1)."""
    n = np.asarray(history["labels"]).shape[0]
    if "epoch" in history and np.asarray(history["epoch"]).shape == (n,):
        return np.asarray(history["epoch"], dtype=np.int64)
    return np.arange(n, dtype=np.int64)


def change_rate(labels) -> np.ndarray:
    """Share of utterances whose label differs from the previous row; ``nan`` for the first row."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"labels must be (E, N), got shape {labels.shape}")
    out = np.full(labels.shape[0], np.nan)
    if labels.shape[0] > 1:
        out[1:] = (labels[1:] != labels[:-1]).mean(axis=1)
    return out


def mean_agreement(queue_agreement) -> np.ndarray:
    """Mean queue agreement per epoch (rows of ``(E, N)``), ignoring non-finite entries."""
    qa = np.asarray(queue_agreement, dtype=np.float64)
    return np.array([np.nanmean(r) if np.isfinite(r).any() else np.nan for r in qa])


def label_dynamics(history: dict, title: str = "label-queue dynamics") -> go.Figure:
    """Label change rate and mean queue agreement over epochs."""
    ep = history_epochs(history)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=ep, y=change_rate(history["labels"]), mode="lines+markers", name="label change rate"))
    if "queue_agreement" in history:
        fig.add_trace(go.Scatter(x=ep, y=mean_agreement(history["queue_agreement"]), mode="lines+markers",
                                 name="queue agreement"))
    fig.update_layout(title=title, xaxis_title="epoch", yaxis=dict(title="share", range=[0, 1.05]),
                      hovermode="x unified")
    return fig


def flows(labels_a, labels_b) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All ``(source cluster, target cluster, count)`` flows, largest first."""
    a = np.asarray(labels_a, dtype=np.int64)
    b = np.asarray(labels_b, dtype=np.int64)
    if a.shape != b.shape:
        raise ValueError(f"label arrays differ in shape: {a.shape} vs {b.shape}")
    pairs, counts = np.unique(np.stack([a, b]), axis=1, return_counts=True)
    order = np.argsort(-counts, kind="stable")
    return pairs[0, order], pairs[1, order], counts[order]


def cluster_sankey(labels_a, labels_b, epoch_a: int, epoch_b: int, top_n: int = 40,
                   title: str = "cluster flows") -> go.Figure:
    """Sankey of the ``top_n`` largest flows of utterances from clusters at ``epoch_a`` to
    clusters at ``epoch_b``; splits show as one left node feeding several right nodes, merges as
    the reverse. The title states how many utterances the drawn flows cover."""
    if top_n < 1:
        raise ValueError(f"top_n must be at least 1, got {top_n}")
    src, dst, cnt = flows(labels_a, labels_b)
    src, dst, cnt = src[:top_n], dst[:top_n], cnt[:top_n]
    left = {c: i for i, c in enumerate(dict.fromkeys(src.tolist()))}
    right = {c: i + len(left) for i, c in enumerate(dict.fromkeys(dst.tolist()))}
    labels = [f"e{epoch_a}: c{c}" for c in left] + [f"e{epoch_b}: c{c}" for c in right]
    total = np.asarray(labels_a).size
    fig = go.Figure(go.Sankey(
        node=dict(label=labels, pad=8, thickness=12),
        link=dict(source=[left[s] for s in src.tolist()], target=[right[d] for d in dst.tolist()], value=cnt.tolist()),
    ))
    fig.update_layout(title=f"{title}: epoch {epoch_a} → {epoch_b}, top {len(cnt)} flows "
                            f"({int(cnt.sum()):,} of {total:,} utterances)", height=max(400, 14 * len(labels)))
    return fig


def stayed_share(labels_a, labels_b) -> float:
    """Share of utterances whose cluster id is the same at both epochs."""
    a, b = np.asarray(labels_a), np.asarray(labels_b)
    return float((a == b).mean()) if a.size else float("nan")


def label_history_figure(history: dict, row: int, utt_label: str = "", fields: Sequence[str] = ("labels", "p_clean", "queue_agreement")) -> go.Figure:
    """One utterance's pseudo label, p_clean and queue agreement over epochs."""
    from plotly.subplots import make_subplots

    ep = history_epochs(history)
    present = [f for f in fields if f in history]
    fig = make_subplots(rows=len(present), cols=1, shared_xaxes=True, subplot_titles=present)
    for i, f in enumerate(present, start=1):
        y = np.asarray(history[f])[:, row]
        fig.add_trace(go.Scatter(x=ep, y=y.astype(np.float64), mode="lines+markers", name=f,
                                 line_shape="hv" if f == "labels" else "linear"), row=i, col=1)
    true = history.get("true")
    t = f", true speaker {int(np.asarray(true)[row])}" if true is not None else ""
    fig.update_layout(title=f"label history of {utt_label or f'row {row}'}{t}", height=200 * len(present) + 80,
                      showlegend=False)
    return fig
