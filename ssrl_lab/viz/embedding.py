"""2-D maps of embeddings: PCA then UMAP, coloured by pseudo label, true speaker, p_clean, ...

:func:`project` subsamples to at most ``cap`` points (5,000 by default, stated in the figure
title), reduces to 50 dimensions with PCA and maps to 2-D with UMAP (``random_state`` fixed, so
a re-run draws the same map) or with PCA alone (``method="pca"``: instant, for smoke runs and
tests; UMAP compiles with numba on first use, about 15 s per process).
:func:`embedding_figure` draws one scatter per colouring with a drop-down to switch between
them; hovering a point shows its utterance id and value.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

DEFAULT_CAP = 5000
PCA_DIM = 50
PALETTE = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
    "#17becf", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173", "#3182bd", "#e6550d", "#31a354",
    "#756bb1", "#636363", "#6baed6", "#fd8d3c", "#74c476", "#9e9ac8", "#969696", "#9c9ede", "#cedb9c",
    "#e7ba52", "#e7969c", "#de9ed6",
)


@dataclass
class Projection:
    """2-D coordinates ``xy`` of the rows ``index`` (into the full set of ``n_total`` points)."""

    xy: np.ndarray
    index: np.ndarray
    method: str
    n_total: int
    cap: int

    @property
    def subsampled(self) -> bool:
        return self.index.size < self.n_total

    def describe(self) -> str:
        s = f"{self.method.upper()} of {self.index.size:,} points"
        if self.subsampled:
            s += f" (random subsample, cap {self.cap:,}, of {self.n_total:,})"
        return s


def subsample(n: int, cap: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of at most ``cap`` of ``n`` rows, drawn without replacement."""
    if cap <= 0:
        raise ValueError(f"cap must be positive, got {cap}")
    if n <= cap:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=cap, replace=False))


def project(emb, method: str = "umap", cap: int = DEFAULT_CAP, seed: int = 0, n_neighbors: int = 15,
            min_dist: float = 0.1, index: np.ndarray | None = None) -> Projection:
    """Map embeddings ``(N, D)`` to 2-D. Rows are L2-normalised first (cosine geometry).

    ``index`` fixes which rows to use (e.g. the same subsample for several epochs); otherwise
    at most ``cap`` rows are drawn with ``seed``.
    """
    emb = np.asarray(emb, dtype=np.float32)
    if emb.ndim != 2 or emb.shape[0] < 3:
        raise ValueError(f"embeddings must be (N >= 3, D), got shape {emb.shape}")
    if method not in ("umap", "pca"):
        raise ValueError(f"method must be 'umap' or 'pca', got {method!r}")
    idx = subsample(emb.shape[0], cap, seed) if index is None else np.asarray(index, dtype=np.int64)
    x = emb[idx]
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    from sklearn.decomposition import PCA

    n_comp = min(PCA_DIM if method == "umap" else 2, x.shape[0], x.shape[1])
    z = PCA(n_components=n_comp, random_state=seed).fit_transform(x)
    if method == "umap":
        import umap

        reducer = umap.UMAP(n_components=2, n_neighbors=max(2, min(n_neighbors, x.shape[0] - 1)),
                            min_dist=min_dist, random_state=seed, metric="euclidean",
                            n_jobs=1)  # a fixed random_state is single-threaded anyway: say so, no warning
        z = reducer.fit_transform(z)
    if z.shape[1] < 2:  # 1-D input: pad so the figure still draws
        z = np.concatenate([z, np.zeros((z.shape[0], 2 - z.shape[1]))], axis=1)
    return Projection(np.asarray(z[:, :2], dtype=np.float64), idx, method, emb.shape[0], cap)


def _is_categorical(values: np.ndarray) -> bool:
    return values.dtype.kind in "iubUSO"


def category_colors(values) -> list[str]:
    """A colour per point for categorical ``values`` (cycled palette; -1 / None / '-' grey)."""
    values = np.asarray(values)
    uniq = {v: i for i, v in enumerate(dict.fromkeys(values.tolist()))}
    out = []
    for v in values.tolist():
        if v is None or v == -1 or v == "-" or v == "None":
            out.append("#cccccc")
        else:
            out.append(PALETTE[uniq[v] % len(PALETTE)])
    return out


def embedding_figure(proj: Projection, utt_id: Sequence[str], colorings: Mapping[str, np.ndarray],
                     title: str = "embeddings", marker_size: int = 5) -> go.Figure:
    """Scatter of ``proj.xy``; one trace per colouring (full-length arrays, indexed by
    ``proj.index``), switched with a drop-down. Integer/string values are categorical, floats
    continuous (Viridis with a colour bar)."""
    if not colorings:
        raise ValueError("colorings is empty: give at least one of pseudo label, speaker, ...")
    utt = np.asarray(utt_id).astype(str)
    if utt.shape[0] != proj.n_total:
        raise ValueError(f"utt_id has {utt.shape[0]} entries, embeddings had {proj.n_total}")
    idx = proj.index
    fig = go.Figure()
    names = list(colorings)
    for j, name in enumerate(names):
        vals = np.asarray(colorings[name])
        if vals.shape[0] != proj.n_total:
            raise ValueError(f"colouring {name!r} has {vals.shape[0]} values, embeddings had {proj.n_total}")
        v = vals[idx]
        if _is_categorical(v):
            marker = dict(size=marker_size, color=category_colors(v))
            shown = [str(a) for a in v.tolist()]
        else:
            v = v.astype(np.float64)
            marker = dict(size=marker_size, color=v, colorscale="Viridis", showscale=True,
                          colorbar=dict(title=name))
            shown = [f"{a:.3f}" for a in v.tolist()]
        text = [f"{u}<br>{name}: {s}" for u, s in zip(utt[idx], shown)]
        fig.add_trace(go.Scattergl(x=proj.xy[:, 0], y=proj.xy[:, 1], mode="markers", marker=marker, name=name,
                                   text=text, hoverinfo="text", visible=(j == 0), showlegend=False))
    if len(names) > 1:
        buttons = [dict(label=n, method="update",
                        args=[{"visible": [i == j for i in range(len(names))]}, {"title": {"text": f"{title}: {n} — {proj.describe()}"}}])
                   for j, n in enumerate(names)]
        fig.update_layout(updatemenus=[dict(buttons=buttons, direction="down", x=1.0, xanchor="right", y=1.12, yanchor="top")])
    fig.update_layout(title=dict(text=f"{title}: {names[0]} — {proj.describe()}"), xaxis=dict(showticklabels=False),
                      yaxis=dict(showticklabels=False, scaleanchor="x"), height=600)
    return fig
