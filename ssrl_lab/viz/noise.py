"""Pseudo-label noise: the log-loss histogram with the fitted two-component GMM for every epoch
(a slider over epochs), and how well the clean/noisy detector finds wrong labels.

Inputs are the arrays of SSRL's ``history.npz``: ``loss (E, N)`` (teacher cross-entropy
against the label in use), ``gmm (E, 3, 2)`` (weights, means, variances on the clipped
log-loss; component 0 = clean), ``clip (E, 2)`` (log-loss clip bounds), ``p_clean (E, N)``,
``labels (E, N)`` and ``true (N,)``.

A pseudo label counts as *correct* when its cluster's majority true speaker is the utterance's
own speaker. The detector calls an utterance clean when ``p_clean >= threshold`` (0.5).
Precision = correct among those called clean; recall = called clean among the correct ones.
"""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from .clusters import cluster_purity
from .queue import history_epochs

LOG_EPS = 1e-12  # the floor labels.noise applies before the log


def log_loss(loss, clip=None) -> np.ndarray:
    """``log(max(loss, eps))`` clipped to ``clip = (low, high)`` when given; non-finite dropped."""
    x = np.log(np.maximum(np.asarray(loss, dtype=np.float64), LOG_EPS))
    x = x[np.isfinite(x)]
    if clip is not None and np.all(np.isfinite(clip)):
        x = np.clip(x, float(clip[0]), float(clip[1]))
    return x


def gmm_components(gmm, x) -> np.ndarray:
    """``(len(x), 2)`` weighted component densities of a ``(3, 2)`` GMM array at ``x``."""
    w, m, v = (np.asarray(gmm, dtype=np.float64)[i] for i in range(3))
    v = np.maximum(v, 1e-300)
    x = np.asarray(x, dtype=np.float64).reshape(-1, 1)
    return w * np.exp(-0.5 * (x - m) ** 2 / v) / np.sqrt(2 * np.pi * v)


def loss_histogram_slider(history: dict, bins: int = 60, title: str = "teacher log-loss and its GMM") -> go.Figure:
    """Density histogram of the clipped log-loss with the clean / noisy GMM components and the
    mixture, one frame per epoch, chosen with a slider. Epochs without finite losses are skipped."""
    for k in ("loss", "gmm"):
        if k not in history:
            raise KeyError(f"history has no {k!r} array (found {sorted(history)})")
    loss = np.asarray(history["loss"])
    gmm = np.asarray(history["gmm"])
    clip = np.asarray(history["clip"]) if "clip" in history else None
    epochs = history_epochs(history)
    fig = go.Figure()
    shown: list[int] = []
    for e in range(loss.shape[0]):
        x = log_loss(loss[e], None if clip is None else clip[e])
        if x.size < 2:
            continue
        lo, hi = float(x.min()), float(x.max())
        if hi <= lo:
            hi = lo + 1e-6
        dens, edges = np.histogram(x, bins=bins, range=(lo, hi), density=True)
        centers = 0.5 * (edges[1:] + edges[:-1])
        grid = np.linspace(lo, hi, 200)
        comp = gmm_components(gmm[e], grid)
        vis = not shown
        fig.add_trace(go.Bar(x=centers, y=dens, width=edges[1] - edges[0], name="log-loss", opacity=0.5,
                             marker_color="#7f7f7f", visible=vis))
        fig.add_trace(go.Scatter(x=grid, y=comp[:, 0], name="clean component", line=dict(color="#2ca02c"), visible=vis))
        fig.add_trace(go.Scatter(x=grid, y=comp[:, 1], name="noisy component", line=dict(color="#d62728"), visible=vis))
        fig.add_trace(go.Scatter(x=grid, y=comp.sum(1), name="mixture", line=dict(color="black", dash="dot"), visible=vis))
        shown.append(e)
    if not shown:
        fig.add_annotation(text="no finite losses recorded yet", showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
        fig.update_layout(title=title)
        return fig
    n = len(shown)
    steps = []
    for j, e in enumerate(shown):
        vis = [False] * (4 * n)
        vis[4 * j: 4 * j + 4] = [True] * 4
        steps.append(dict(method="update", label=str(int(epochs[e])),
                          args=[{"visible": vis}, {"title.text": f"{title}, epoch {int(epochs[e])}"}]))
    # the slider relayouts "title.text" only: a plain "title" string would replace the title object
    # (and plotly.js then drops it), so the title vanished after the first move
    fig.update_layout(sliders=[dict(active=0, steps=steps, currentvalue=dict(prefix="epoch "), pad=dict(t=40))],
                      title=dict(text=f"{title}, epoch {int(epochs[shown[0]])}"), xaxis_title="log(cross-entropy)",
                      yaxis_title="density", bargap=0)
    return fig


def correct_mask(labels, true) -> np.ndarray:
    """Boolean (N,): the label's cluster majority speaker is the true speaker (False where unknown)."""
    labels = np.asarray(labels, dtype=np.int64)
    true = np.asarray(true, dtype=np.int64)
    cp = cluster_purity(labels, true)
    out = np.zeros(labels.shape, dtype=bool)
    if cp.cluster.size == 0:
        return out
    pos = np.clip(np.searchsorted(cp.cluster, labels), 0, cp.cluster.size - 1)
    known = (true >= 0) & (cp.cluster[pos] == labels)
    out[known] = cp.majority[pos[known]] == true[known]
    return out


def detector_stats(history: dict, threshold: float = 0.5) -> dict[str, np.ndarray]:
    """Per epoch: ``precision``, ``recall``, ``clean_share`` (called clean), ``mean_p_clean``,
    ``correct_share`` (labels actually correct), over utterances with a known speaker."""
    labels = np.asarray(history["labels"])
    p = np.asarray(history["p_clean"], dtype=np.float64)
    true = np.asarray(history["true"], dtype=np.int64)
    known = true >= 0
    out = {k: np.full(labels.shape[0], np.nan) for k in ("precision", "recall", "clean_share", "mean_p_clean", "correct_share")}
    for e in range(labels.shape[0]):
        pe = p[e]
        finite = np.isfinite(pe)
        if not finite.any():
            continue
        called = (pe >= threshold) & finite
        out["clean_share"][e] = called[finite].mean()
        out["mean_p_clean"][e] = pe[finite].mean()
        if not known.any():
            continue
        ok = correct_mask(labels[e], true) & known & finite
        c = called & known
        out["correct_share"][e] = ok[known & finite].mean()
        if c.any():
            out["precision"][e] = (ok & c).sum() / c.sum()
        if ok.any():
            out["recall"][e] = (ok & c).sum() / ok.sum()
    return out


def detector_curves(history: dict, threshold: float = 0.5, title: str = "clean-label detector") -> go.Figure:
    """Detector precision and recall, the share judged clean and the share actually correct, over epochs.

    When the history carries the trainer's aggregates over ALL utterances (``agg_precision_clean``,
    ``agg_recall_clean``, ``agg_frac_clean``, ``agg_label_accuracy``; the per-utterance arrays may
    be a subset on large corpora) those are drawn; otherwise they are computed here."""
    st = detector_stats(history, threshold)
    for mine, agg in (("precision", "agg_precision_clean"), ("recall", "agg_recall_clean"),
                      ("clean_share", "agg_frac_clean"), ("correct_share", "agg_label_accuracy")):
        if agg in history and np.asarray(history[agg]).shape == st[mine].shape:
            st[mine] = np.asarray(history[agg], dtype=np.float64)
    ep = history_epochs(history)
    fig = go.Figure()
    for key, name, dash in (("precision", "precision", None), ("recall", "recall", None),
                            ("clean_share", f"judged clean (p ≥ {threshold:g})", "dot"),
                            ("correct_share", "labels actually correct", "dash")):
        fig.add_trace(go.Scatter(x=ep, y=st[key], mode="lines+markers", name=name, line=dict(dash=dash)))
    fig.update_layout(title=title, xaxis_title="epoch", yaxis=dict(title="share", range=[0, 1.05]), hovermode="x unified")
    return fig
