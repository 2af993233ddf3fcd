"""Pseudo-label quality: per-cluster purity against size, NMI / purity / accuracy over epochs
(or rounds), and the cluster count against the true speaker count.

Rows whose true speaker is unknown (``-1``) are ignored by every purity computation.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from ..runs import series
from .training import first_key

NMI_KEYS = ("nmi", "pseudo_labels.nmi", "labels.nmi", "pseudo.nmi", "cluster.nmi")
PURITY_KEYS = ("purity", "pseudo_labels.purity", "labels.purity", "pseudo.purity", "cluster.purity")
ACCURACY_KEYS = ("accuracy", "pseudo_labels.accuracy", "labels.accuracy", "pseudo.accuracy", "cluster.accuracy")
COUNT_KEYS = ("n_clusters", "pseudo_labels.n_clusters", "labels.n_clusters", "pseudo.n_clusters", "cluster.n_clusters", "n_active")


@dataclass
class ClusterPurity:
    """Per cluster (sorted by id): ``size`` (labelled members), ``purity`` (share of the
    majority speaker) and ``majority`` (that speaker's code)."""

    cluster: np.ndarray
    size: np.ndarray
    purity: np.ndarray
    majority: np.ndarray

    def weighted_purity(self) -> float:
        """Overall purity: majority members over all labelled members."""
        n = self.size.sum()
        return float((self.purity * self.size).sum() / n) if n else float("nan")

    def row(self, cluster: int) -> dict:
        i = np.searchsorted(self.cluster, cluster)
        if i >= self.cluster.size or self.cluster[i] != cluster:
            raise KeyError(f"cluster {cluster} has no labelled members")
        return {"cluster": int(cluster), "size": int(self.size[i]), "purity": float(self.purity[i]),
                "majority": int(self.majority[i])}

    def describe(self, cluster: int, speaker_names: Sequence[str] | None = None, n_members: int | None = None) -> str:
        """A readable summary of one cluster: size, purity and the majority speaker by name
        (``speaker_names[code]``; ``#code`` when no names are given), e.g.
        ``cluster 43: 18 labelled members, purity 0.47 (majority speaker id10270: 8 of 18)``."""
        r = self.row(cluster)
        who = speaker_name(r["majority"], speaker_names)
        n_major = int(round(r["purity"] * r["size"]))
        total = f" ({n_members} members in all)" if n_members is not None and n_members != r["size"] else ""
        return (f"cluster {r['cluster']}: {r['size']} labelled members{total}, purity {r['purity']:.2f} "
                f"(majority speaker {who}: {n_major} of {r['size']})")

    def table(self, speaker_names: Sequence[str] | None = None, order: str = "size", limit: int | None = None) -> str:
        """A plain-text table, one row per cluster (cluster, size, purity, majority speaker by
        name), sorted by ``order`` ("size": largest first, "purity": least pure first)."""
        if order not in ("size", "purity"):
            raise ValueError(f"order must be 'size' or 'purity', got {order!r}")
        idx = np.lexsort((self.cluster, -self.size)) if order == "size" else np.lexsort((self.cluster, self.purity))
        idx = idx[:limit] if limit is not None else idx
        rows = [f"{'cluster':>8} {'size':>6} {'purity':>7}  majority speaker"]
        rows += [f"{int(self.cluster[k]):>8} {int(self.size[k]):>6} {self.purity[k]:>7.3f}  "
                 f"{speaker_name(self.majority[k], speaker_names)}" for k in idx]
        return "\n".join(rows)


def speaker_name(code: int, speaker_names: Sequence[str] | None = None) -> str:
    """The speaker's name for an integer code (``#code`` without names, ``unknown`` for -1)."""
    code = int(code)
    if code < 0:
        return "unknown"
    if speaker_names is not None and code < len(speaker_names):
        return str(speaker_names[code])
    return f"#{code}"


def log_ticks(lo: float, hi: float) -> list[float]:
    """Tick values for a log axis from ``lo`` to ``hi``: 1-2-5 per decade, every integer digit
    when that leaves fewer than three (so a narrow range reads "8 10 20 30", not "8 9 1 2 3")."""
    lo, hi = max(float(lo), 1e-12), max(float(hi), float(lo))
    decades = range(int(np.floor(np.log10(lo))), int(np.ceil(np.log10(hi))) + 1)
    for mantissas in ((1, 2, 5), (1, 2, 3, 5), tuple(range(1, 10))):
        ticks = [m * 10.0 ** d for d in decades for m in mantissas if lo <= m * 10.0 ** d <= hi]
        if len(ticks) >= 3:
            return ticks
    return sorted({lo, hi} | set(ticks))


def cluster_purity(pred, true) -> ClusterPurity:
    """Purity of every cluster in ``pred`` against integer speaker codes ``true`` (-1 ignored)."""
    pred = np.asarray(pred, dtype=np.int64)
    true = np.asarray(true, dtype=np.int64)
    if pred.shape != true.shape:
        raise ValueError(f"pred has shape {pred.shape}, true has {true.shape}")
    keep = true >= 0
    p, t = pred[keep], true[keep]
    if p.size == 0:
        e = np.zeros(0, dtype=np.int64)
        return ClusterPurity(e, e, np.zeros(0), e)
    pairs, counts = np.unique(np.stack([p, t]), axis=1, return_counts=True)
    clusters, first = np.unique(pairs[0], return_index=True)
    sizes = np.add.reduceat(counts, first)
    best = np.maximum.reduceat(counts, first)
    # the speaker of the first maximal pair within each cluster's block
    maj = np.empty(clusters.size, dtype=np.int64)
    bounds = list(first) + [counts.size]
    for j in range(clusters.size):
        block = slice(bounds[j], bounds[j + 1])
        maj[j] = pairs[1, block][np.argmax(counts[block])]
    return ClusterPurity(clusters, sizes.astype(np.int64), best / sizes, maj)


def purity_vs_size(pred, true, title: str = "cluster purity against size",
                   speaker_names: Sequence[str] | None = None) -> go.Figure:
    """Scatter of per-cluster purity against cluster size (log x with plain integer ticks);
    hover names the cluster and its majority speaker (by name when ``speaker_names`` given)."""
    cp = cluster_purity(pred, true)
    text = [f"cluster {c}<br>size {s}<br>purity {p:.2f}<br>majority speaker {speaker_name(m, speaker_names)}"
            for c, s, p, m in zip(cp.cluster, cp.size, cp.purity, cp.majority)]
    fig = go.Figure(go.Scatter(x=cp.size, y=cp.purity, mode="markers", text=text, hoverinfo="text",
                               marker=dict(size=7, opacity=0.7), name="clusters"))
    xaxis = dict(type="log", title="cluster size (utterances)")
    if cp.size.size:
        ticks = log_ticks(cp.size.min(), cp.size.max())
        xaxis.update(tickmode="array", tickvals=ticks, ticktext=[f"{t:,.0f}" if t >= 1 else f"{t:g}" for t in ticks])
    fig.update_layout(title=f"{title} ({cp.cluster.size} clusters, overall purity {cp.weighted_purity():.3f})",
                      xaxis=xaxis, yaxis=dict(title="purity", range=[0, 1.05]))
    return fig


def quality_curves(metrics: Sequence[dict], x: str = "epoch", title: str = "pseudo-label quality",
                   stage: str | None = None) -> go.Figure:
    """NMI, purity and Hungarian accuracy of the pseudo labels over epochs (or rounds)."""
    fig = go.Figure()
    for label, cands in (("NMI", NMI_KEYS), ("purity", PURITY_KEYS), ("accuracy", ACCURACY_KEYS)):
        k = first_key(metrics, cands, x=x, stage=stage)
        if k is None:
            continue
        xs, ys = series(metrics, k, x=x, stage=stage)
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=label))
    if not fig.data:
        fig.add_annotation(text="no pseudo-label metrics recorded", showarrow=False, x=0.5, y=0.5,
                           xref="paper", yref="paper")
    fig.update_layout(title=title, xaxis_title=x, yaxis_title="score", hovermode="x unified")
    return fig


def cluster_count_curve(metrics: Sequence[dict], n_true: int | None, x: str = "epoch",
                        title: str = "cluster count against true speaker count", stage: str | None = None) -> go.Figure:
    """Active cluster count over epochs with the true speaker count as a horizontal line."""
    fig = go.Figure()
    k = first_key(metrics, COUNT_KEYS, x=x, stage=stage)
    if k is not None:
        xs, ys = series(metrics, k, x=x, stage=stage)
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name="clusters in use"))
    if n_true:
        fig.add_hline(y=n_true, line=dict(dash="dash", color="black"),
                      annotation_text=f"true speakers: {n_true}", annotation_position="bottom right")
    fig.update_layout(title=title, xaxis_title=x, yaxis_title="count")
    return fig


def counts_from_labels(labels: np.ndarray) -> np.ndarray:
    """Distinct labels per row of an ``(E, N)`` label history."""
    labels = np.asarray(labels)
    return np.array([np.unique(row).size for row in labels], dtype=np.int64)


def cluster_count_from_history(labels: np.ndarray, n_true: int | None, epochs: Sequence[int] | None = None,
                               title: str = "cluster count against true speaker count") -> go.Figure:
    """Like :func:`cluster_count_curve`, computed from an ``(E, N)`` label history."""
    counts = counts_from_labels(labels)
    xs = np.arange(counts.size) if epochs is None else np.asarray(epochs)
    return cluster_count_curve([{"epoch": float(e), "n_clusters": int(c)} for e, c in zip(xs, counts)], n_true,
                               title=title)


def history_cluster_count(history: Mapping[str, np.ndarray], title: str = "cluster count against true speaker count"
                          ) -> go.Figure:
    """The cluster count per epoch of an SSRL ``history.npz`` (``Run.history()``) against the true
    speaker count: the recorded ``agg_n_clusters`` when the history has them, else counted from
    its ``(E, N)`` labels (histories written before the aggregates existed)."""
    from .queue import history_epochs

    true = np.asarray(history["true"]) if "true" in history else np.zeros(0, dtype=np.int64)
    n_true = int(np.unique(true[true >= 0]).size) or None
    epochs = history_epochs(history)
    if epochs.size and "agg_n_clusters" in history:
        rows = [{"epoch": int(e), "n_clusters": float(c)} for e, c in zip(epochs, history["agg_n_clusters"])]
        return cluster_count_curve(rows, n_true, title=title)
    return cluster_count_from_history(history["labels"], n_true, epochs, title=title)


def quality_table(rows: Mapping[str, Mapping[str, float]]) -> go.Figure:
    """A plotly table of ``{name: {"nmi": .., "purity": .., ...}}``."""
    names = list(rows)
    cols = sorted({k for r in rows.values() for k in r})
    cells = [names] + [[(f"{rows[n].get(c):.3f}" if isinstance(rows[n].get(c), float) else rows[n].get(c, ""))
                        for n in names] for c in cols]
    return go.Figure(go.Table(header=dict(values=["system"] + cols), cells=dict(values=cells)))
