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
    """Label change rate (top panel, its own axis: a few per cent would be flat against 0 on the
    agreement's 0-1 axis) and mean queue agreement (bottom panel, 0-1) over epochs."""
    from plotly.subplots import make_subplots

    ep = history_epochs(history)
    has_q = "queue_agreement" in history
    fig = make_subplots(rows=2 if has_q else 1, cols=1, shared_xaxes=True, vertical_spacing=0.1,
                        subplot_titles=["label change rate"] + (["mean queue agreement"] if has_q else []))
    fig.add_trace(go.Scatter(x=ep, y=change_rate(history["labels"]), mode="lines+markers", name="label change rate"),
                  row=1, col=1)
    fig.update_yaxes(title_text="share changed", rangemode="tozero", row=1, col=1)
    if has_q:
        fig.add_trace(go.Scatter(x=ep, y=mean_agreement(history["queue_agreement"]), mode="lines+markers",
                                 name="queue agreement"), row=2, col=1)
        fig.update_yaxes(title_text="agreement", range=[0, 1.05], row=2, col=1)
    fig.update_xaxes(title_text="epoch", row=2 if has_q else 1, col=1)
    fig.update_layout(title=title, hovermode="x unified", height=520 if has_q else 320)
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


def cluster_color(c: int) -> str:
    """One colour per cluster id (the same on both sides of a Sankey)."""
    from .embedding import PALETTE

    return PALETTE[int(c) % len(PALETTE)]


def changed_clusters(labels_a, labels_b, threshold: float = 0.1) -> tuple[set[int], set[int]]:
    """Clusters at the first / second epoch that split, merged or changed members: a cluster is
    *stable* when more than ``1 - threshold`` of its members go to (come from) one cluster, and
    that cluster keeps (got) more than ``1 - threshold`` of its own members from it."""
    src, dst, cnt = flows(labels_a, labels_b)
    a, b = np.asarray(labels_a, np.int64), np.asarray(labels_b, np.int64)
    ua, na = np.unique(a, return_counts=True)
    ub, nb = np.unique(b, return_counts=True)
    size_a, size_b = dict(zip(ua.tolist(), na.tolist())), dict(zip(ub.tolist(), nb.tolist()))
    best_out: dict[int, tuple[int, int]] = {}
    best_in: dict[int, tuple[int, int]] = {}
    for s_, d_, c_ in zip(src.tolist(), dst.tolist(), cnt.tolist()):  # largest first
        best_out.setdefault(s_, (d_, c_))
        best_in.setdefault(d_, (s_, c_))
    keep = 1.0 - threshold
    stable_a = {s_ for s_, (d_, c_) in best_out.items()
                if c_ > keep * size_a[s_] and best_in[d_][0] == s_ and c_ > keep * size_b[d_]}
    stable_b = {best_out[s_][0] for s_ in stable_a}
    return set(size_a) - stable_a, set(size_b) - stable_b


def cluster_sankey(labels_a, labels_b, epoch_a: int, epoch_b: int, top_n: int = 40,
                   title: str = "cluster flows", threshold: float = 0.1) -> go.Figure:
    """Sankey of how clusters at ``epoch_a`` became clusters at ``epoch_b``, showing only the
    clusters that split, merged or changed more than ``threshold`` of their members
    (:func:`changed_clusters`; stable clusters, the c255 -> c255 identity flows, are left out).

    The ``top_n`` largest flows touching a changed cluster are drawn; every cluster has one
    colour on both sides (its flows take its colour at the source). The title says how many
    clusters changed and how many utterances the drawn flows cover."""
    if top_n < 1:
        raise ValueError(f"top_n must be at least 1, got {top_n}")
    if not 0 <= threshold < 1:
        raise ValueError(f"threshold must be in [0, 1), got {threshold}")
    total = np.asarray(labels_a).size
    ch_a, ch_b = changed_clusters(labels_a, labels_b, threshold)
    n_a = np.unique(np.asarray(labels_a)).size
    src, dst, cnt = flows(labels_a, labels_b)
    sel = np.array([s_ in ch_a or d_ in ch_b for s_, d_ in zip(src.tolist(), dst.tolist())], dtype=bool)
    src, dst, cnt = src[sel][:top_n], dst[sel][:top_n], cnt[sel][:top_n]
    head = (f"{title}: epoch {epoch_a} → {epoch_b}, {len(ch_a)} of {n_a} clusters split, merged or changed "
            f"more than {threshold:.0%} of their members")
    if cnt.size == 0:
        fig = go.Figure()
        fig.add_annotation(text=f"no cluster changed more than {threshold:.0%} of its members", showarrow=False,
                           x=0.5, y=0.5, xref="paper", yref="paper")
        fig.update_layout(title=head)
        return fig
    left = {c: i for i, c in enumerate(dict.fromkeys(src.tolist()))}
    right = {c: i + len(left) for i, c in enumerate(dict.fromkeys(dst.tolist()))}
    labels = [f"e{epoch_a}: c{c}" for c in left] + [f"e{epoch_b}: c{c}" for c in right]
    colors = [cluster_color(c) for c in left] + [cluster_color(c) for c in right]

    def alpha(hex_color: str, a: float = 0.4) -> str:
        h = hex_color.lstrip("#")
        return f"rgba({int(h[0:2], 16)},{int(h[2:4], 16)},{int(h[4:6], 16)},{a})"

    fig = go.Figure(go.Sankey(
        node=dict(label=labels, pad=8, thickness=12, color=colors),
        link=dict(source=[left[s_] for s_ in src.tolist()], target=[right[d_] for d_ in dst.tolist()],
                  value=cnt.tolist(), color=[alpha(cluster_color(s_)) for s_ in src.tolist()]),
    ))
    fig.update_layout(title=f"{head}; top {len(cnt)} flows ({int(cnt.sum()):,} of {total:,} utterances)",
                      height=max(400, 14 * len(labels)))
    return fig


def stayed_share(labels_a, labels_b) -> float:
    """Share of utterances whose cluster id is the same at both epochs."""
    a, b = np.asarray(labels_a), np.asarray(labels_b)
    return float((a == b).mean()) if a.size else float("nan")


def label_history_figure(history: dict, row: int, utt_label: str = "",
                         fields: Sequence[str] = ("labels", "p_clean", "queue_agreement"),
                         speaker_names: Sequence[str] | None = None) -> go.Figure:
    """One utterance's pseudo label, p_clean and queue agreement over epochs.

    The label panel ticks at the cluster ids the utterance visited (integers, never 407.5);
    p_clean and queue agreement are drawn on 0-1; the shared x axis is titled "epoch". The title
    names the true speaker (``speaker_names[code]`` when given)."""
    from plotly.subplots import make_subplots

    ep = history_epochs(history)
    present = [f for f in fields if f in history]
    titles = {"labels": "pseudo label (cluster id)", "p_clean": "p_clean", "queue_agreement": "queue agreement"}
    fig = make_subplots(rows=len(present), cols=1, shared_xaxes=True, subplot_titles=[titles.get(f, f) for f in present])
    for i, f in enumerate(present, start=1):
        y = np.asarray(history[f])[:, row]
        fig.add_trace(go.Scatter(x=ep, y=y.astype(np.float64), mode="lines+markers", name=titles.get(f, f),
                                 line_shape="hv" if f == "labels" else "linear"), row=i, col=1)
        if f == "labels":
            visited = np.unique(y[y >= 0]).astype(np.int64)
            if 0 < visited.size <= 12:
                fig.update_yaxes(tickmode="array", tickvals=visited.tolist(), ticktext=[str(v) for v in visited],
                                 range=[visited.min() - 0.5, visited.max() + 0.5], row=i, col=1)
            else:
                fig.update_yaxes(tickformat="d", row=i, col=1)
        elif f in ("p_clean", "queue_agreement"):
            fig.update_yaxes(range=[0, 1.05], row=i, col=1)
    if present:
        fig.update_xaxes(title_text="epoch", tickformat="d", row=len(present), col=1)
    true = history.get("true")
    t = ""
    if true is not None:
        code = int(np.asarray(true)[row])
        if code < 0:
            t = ", true speaker unknown"
        elif speaker_names is not None and code < len(speaker_names):
            t = f", true speaker {speaker_names[code]}"
        else:
            t = f", true speaker #{code}"
    fig.update_layout(title=f"label history of {utt_label or f'row {row}'}{t}", height=200 * len(present) + 80,
                      showlegend=False)
    return fig
