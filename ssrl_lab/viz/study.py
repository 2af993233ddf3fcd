"""The study's figure: EER against stage-2 compute, one line per system with a band across seeds."""
from __future__ import annotations

import math
from typing import Iterable, Mapping

import numpy as np
import plotly.graph_objects as go

__all__ = ["eer_vs_compute", "SYSTEM_NAMES"]

SYSTEM_NAMES = {
    "ssrl": "SSRL (one round)",
    "iterative_new": "iterative, new encoder each round",
    "iterative_finetune": "iterative, fine-tuned each round",
    "iterative_stage1": "iterative, from DINO each round (LGL)",
}
_COLOURS = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]


def _rgba(hex_colour: str, alpha: float) -> str:
    h = hex_colour.lstrip("#")
    return f"rgba({int(h[0:2], 16)}, {int(h[2:4], 16)}, {int(h[4:6], 16)}, {alpha})"


def eer_vs_compute(rows: Iterable[Mapping], metric: str = "eer_all_pairs", x: str = "budget",
                   title: str | None = None) -> go.Figure:
    """Mean EER over seeds against stage-2 epochs per system; the band spans the seeds' min-max.

    ``rows``: one per (system, budget, seed) with ``system``, ``budget`` (stage-2 epochs) and
    ``metric``. Points without a finite value are left out (and do not make a band).
    """
    rows = [r for r in rows if r.get(metric) is not None and math.isfinite(float(r[metric]))]
    fig = go.Figure()
    systems = list(dict.fromkeys(r["system"] for r in rows))
    for i, system in enumerate(systems):
        colour = _COLOURS[i % len(_COLOURS)]
        xs = sorted({r[x] for r in rows if r["system"] == system})
        vals = [[float(r[metric]) for r in rows if r["system"] == system and r[x] == b] for b in xs]
        mean = [float(np.mean(v)) for v in vals]
        lo, hi = [float(np.min(v)) for v in vals], [float(np.max(v)) for v in vals]
        name = SYSTEM_NAMES.get(system, system)
        if any(len(v) > 1 for v in vals):
            fig.add_trace(go.Scatter(x=xs + xs[::-1], y=hi + lo[::-1], fill="toself", fillcolor=_rgba(colour, 0.15),
                                     line=dict(width=0), hoverinfo="skip", showlegend=False, name=f"{name} seeds"))
        fig.add_trace(go.Scatter(x=xs, y=mean, mode="lines+markers", name=name, line=dict(color=colour),
                                 customdata=[[len(v), a, b] for v, a, b in zip(vals, lo, hi)],
                                 hovertemplate="%{x} epochs: %{y:.2f} % (mean of %{customdata[0]} seeds, "
                                               "%{customdata[1]:.2f}-%{customdata[2]:.2f})<extra>" + name + "</extra>"))
    label = {"eer": "EER, trial list (%)", "eer_all_pairs": "EER, all test pairs (%)", "dev_eer": "dev EER (%)"}
    fig.update_layout(title=dict(text=title or f"{label.get(metric, metric)} against stage-2 compute"),
                      xaxis_title="stage-2 training epochs", yaxis_title=label.get(metric, metric),
                      legend=dict(title="system (band: seeds' range)"))
    fig.update_xaxes(tickmode="array", tickvals=sorted({r[x] for r in rows}))
    return fig
