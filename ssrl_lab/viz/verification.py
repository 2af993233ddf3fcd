"""Verification plots: DET curves on normal-deviate axes for several systems, and target /
non-target score distributions. Inputs: ``{system name: (scores, labels)}`` (``Run.scores()``).
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots
from scipy.stats import norm

from ..eval.metrics import det_curve, eer

DET_TICKS_PCT = (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 40)
_FLOOR = 1e-4  # rates are clipped to [1e-4, 1 - 1e-4] before the probit


def probit(p) -> np.ndarray:
    """Normal deviate of a rate (clipped away from 0 and 1)."""
    return norm.ppf(np.clip(np.asarray(p, dtype=np.float64), _FLOOR, 1 - _FLOOR))


def det_figure(systems: Mapping[str, tuple[np.ndarray, np.ndarray]], max_points: int = 2000,
               title: str = "DET curves") -> go.Figure:
    """DET curves (false-alarm against miss rate, both on normal-deviate axes) with each
    system's EER point marked; the legend gives the EER."""
    fig = go.Figure()
    for name, (scores, labels) in systems.items():
        fpr, fnr, _ = det_curve(scores, labels, max_points=max_points)
        e = eer(scores, labels)
        fig.add_trace(go.Scatter(x=probit(fpr), y=probit(fnr), mode="lines", name=f"{name} (EER {100 * e:.2f} %)",
                                 customdata=np.stack([100 * fpr, 100 * fnr], axis=1),
                                 hovertemplate="FA %{customdata[0]:.2f} %<br>miss %{customdata[1]:.2f} %"))
        fig.add_trace(go.Scatter(x=probit([e]), y=probit([e]), mode="markers", marker=dict(size=8, symbol="circle-open"),
                                 showlegend=False, hoverinfo="skip", legendgroup=name))
    ticks = probit(np.asarray(DET_TICKS_PCT) / 100)
    labels_txt = [f"{t:g}" for t in DET_TICKS_PCT]
    rng = [float(probit(0.0005)), float(probit(0.5))]
    fig.add_trace(go.Scatter(x=rng, y=rng, mode="lines", line=dict(color="#bbbbbb", dash="dot"), name="EER line",
                             hoverinfo="skip"))
    fig.update_layout(title=title, height=550, width=650,
                      xaxis=dict(title="false alarm rate (%)", tickvals=ticks, ticktext=labels_txt, range=rng),
                      yaxis=dict(title="miss rate (%)", tickvals=ticks, ticktext=labels_txt, range=rng, scaleanchor="x"))
    return fig


def score_distributions(systems: Mapping[str, tuple[np.ndarray, np.ndarray]], bins: int = 60,
                        title: str = "score distributions") -> go.Figure:
    """Target and non-target score densities, one panel per system."""
    names = list(systems)
    fig = make_subplots(rows=max(1, len(names)), cols=1, subplot_titles=names, vertical_spacing=0.08)
    for i, name in enumerate(names, start=1):
        scores, labels = systems[name]
        s = np.asarray(scores, dtype=np.float64)
        lab = np.asarray(labels).astype(bool)
        if s.shape != lab.shape:
            raise ValueError(f"{name}: scores {s.shape} and labels {lab.shape} differ in shape")
        lo, hi = float(s.min()), float(s.max())
        for part, nm, col in ((s[lab], "target", "#2ca02c"), (s[~lab], "non-target", "#d62728")):
            if part.size == 0:
                continue
            dens, edges = np.histogram(part, bins=bins, range=(lo, hi if hi > lo else lo + 1e-6), density=True)
            fig.add_trace(go.Bar(x=0.5 * (edges[1:] + edges[:-1]), y=dens, width=edges[1] - edges[0], opacity=0.55,
                                 marker_color=col, name=nm, legendgroup=nm, showlegend=(i == 1)), row=i, col=1)
    fig.update_layout(title=title, barmode="overlay", bargap=0, height=max(320, 260 * len(names)))
    fig.update_xaxes(title_text="cosine score", row=max(1, len(names)), col=1)
    return fig
