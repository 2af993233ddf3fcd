"""The study's figures: EER against stage-2 compute, and per-epoch trajectories (EER, pseudo-label
quality, SSRL's noise detector) on one axis of stage-2 epochs; one line per system (mean over
seeds) with a band spanning the seeds."""
from __future__ import annotations

import math
from typing import Iterable, Mapping

import numpy as np
import plotly.graph_objects as go

__all__ = ["eer_vs_compute", "trace_figure", "detector_figure", "reliability_figure", "SYSTEM_NAMES", "TRACE_LABELS"]

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
            fig.add_trace(go.Scatter(x=xs + xs[::-1], y=hi + lo[::-1], mode="lines", fill="toself",
                                     fillcolor=_rgba(colour, 0.15),
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


#: axis titles of the trace keys (ssrl_lab.study_traces.TRACE_KEYS)
TRACE_LABELS = {
    "label_accuracy": "pseudo-label accuracy (cluster purity)",
    "nmi": "NMI of the pseudo labels", "n_clusters": "clusters in use", "eer": "test EER, trial list (%)",
    "eer_all_pairs": "test EER, all pairs (%)", "dev_eer": "dev EER (%)", "frac_clean": "share called clean",
    "precision_clean": "precision of 'clean'", "recall_clean": "recall of 'clean'", "ece": "calibration error of p_clean",
}


def _finite(v) -> bool:
    return v is not None and math.isfinite(float(v))


def _band_line(fig: go.Figure, rows: list, key: str, name: str, colour: str, step: bool = False,
               dash: str | None = None) -> None:
    """Mean of ``key`` over the rows' seeds at every ``x``, with the seeds' min-max band."""
    xs = sorted({r["x"] for r in rows if _finite(r.get(key))})
    if not xs:
        return
    vals = [[float(r[key]) for r in rows if r["x"] == x and _finite(r.get(key))] for x in xs]
    mean = [float(np.mean(v)) for v in vals]
    lo, hi = [float(np.min(v)) for v in vals], [float(np.max(v)) for v in vals]
    if any(len(v) > 1 for v in vals):
        bx, blo, bhi = xs, lo, hi
        if step:  # each value holds until the next x (the last until the rows' last epoch)
            ends = xs[1:] + [max(max(r["x"] for r in rows), xs[-1])]
            bx = [x for a, b in zip(xs, ends) for x in (a, b)]
            blo, bhi = [v for v in lo for _ in (0, 1)], [v for v in hi for _ in (0, 1)]
        fig.add_trace(go.Scatter(x=bx + bx[::-1], y=bhi + blo[::-1], mode="lines", fill="toself",
                                 fillcolor=_rgba(colour, 0.15), line=dict(width=0), hoverinfo="skip",
                                 showlegend=False, name=f"{name} seeds"))
    if step and xs[-1] < max(r["x"] for r in rows):  # draw the last step to the end
        xs, mean = xs + [max(r["x"] for r in rows)], mean + [mean[-1]]
        vals, lo, hi = vals + [vals[-1]], lo + [lo[-1]], hi + [hi[-1]]
    fig.add_trace(go.Scatter(x=xs, y=mean, mode="lines+markers", name=name,
                             line=dict(color=colour, shape="hv" if step else "linear", dash=dash),
                             customdata=[[len(v), a, b] for v, a, b in zip(vals, lo, hi)],
                             hovertemplate="epoch %{x}: %{y:.4g} (mean of %{customdata[0]} seeds, "
                                           "%{customdata[1]:.4g}-%{customdata[2]:.4g})<extra>" + name + "</extra>"))


def trace_figure(traces: Iterable[Mapping], key: str, title: str | None = None) -> go.Figure:
    """``key`` (:data:`TRACE_LABELS`) against stage-2 epochs, one line per system with a band across
    seeds. ``traces``: rows of :func:`ssrl_lab.study_traces.study_traces`. An iterative protocol's
    labels are drawn as steps (fixed for a round)."""
    traces = list(traces)
    fig = go.Figure()
    for i, system in enumerate(dict.fromkeys(t["system"] for t in traces)):
        rows = [t for t in traces if t["system"] == system]
        step = system.startswith("iterative") and key in ("label_accuracy", "nmi", "n_clusters")
        _band_line(fig, rows, key, SYSTEM_NAMES.get(system, system), _COLOURS[i % len(_COLOURS)], step=step)
    label = TRACE_LABELS.get(key, key)
    fig.update_layout(title=dict(text=title or f"{label} against stage-2 epochs"), xaxis_title="stage-2 training epochs",
                      yaxis_title=label, legend=dict(title="system (band: seeds' range)"))
    return fig


def detector_figure(traces: Iterable[Mapping], system: str = "ssrl", title: str | None = None) -> go.Figure:
    """SSRL's noise model as a detector of right labels over stage-2 epochs: precision and recall
    of "clean" (p_clean > 0.5) against "label right", the share it calls clean, and the share
    that is actually right (the label accuracy: what a detector that calls everything clean
    would reach as precision). Bands span the seeds."""
    rows = [t for t in traces if t["system"] == system]
    collecting = {t["x"] for t in rows if _finite(t.get("frac_clean"))}
    rows_c = [t for t in rows if t["x"] in collecting]
    fig = go.Figure()
    for key, colour, dash in (("precision_clean", "#d62728", None), ("recall_clean", "#1f77b4", None),
                              ("frac_clean", "#7f7f7f", "dot"), ("label_accuracy", "#2ca02c", "dash")):
        _band_line(fig, rows_c, key, TRACE_LABELS[key], colour, dash=dash)
    fig.update_layout(title=dict(text=title or f"{SYSTEM_NAMES.get(system, system)}: the noise model as a detector "
                                               "of right labels"),
                      xaxis_title="stage-2 training epochs", yaxis_title="share", yaxis_range=[0, 1],
                      legend=dict(title="mean over seeds (band: range)"))
    return fig


def reliability_figure(curves: Mapping[str, Mapping], title: str | None = None) -> go.Figure:
    """Reliability curves of p_clean (``{name: labels.history.p_clean_reliability(...)}``): per bin
    the mean p_clean against the share of right labels; the diagonal is a calibrated p_clean.
    Marker size follows the bin's row count."""
    fig = go.Figure(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", line=dict(color="#999", dash="dash"),
                               name="calibrated", hoverinfo="skip"))
    for i, (name, c) in enumerate(curves.items()):
        pts = [(m, r, n) for m, r, n in zip(c["mean_p"], c["share_right"], c["n"]) if n and m is not None]
        if not pts:
            continue
        total = sum(n for *_, n in pts)
        fig.add_trace(go.Scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="lines+markers",
                                 name=f"{name} (ECE {c['ece']:.3f})" if c.get("ece") is not None else name,
                                 marker=dict(size=[6 + 24 * math.sqrt(p[2] / total) for p in pts]),
                                 line=dict(color=_COLOURS[i % len(_COLOURS)]),
                                 customdata=[p[2] for p in pts],
                                 hovertemplate="mean p_clean %{x:.2f}: %{y:.2f} right (%{customdata} utterances)"
                                               "<extra>" + name + "</extra>"))
    fig.update_layout(title=dict(text=title or "Is p_clean a probability? Reliability of the noise model"),
                      xaxis_title="mean p_clean in the bin", yaxis_title="share of right labels in the bin",
                      xaxis_range=[0, 1], yaxis_range=[0, 1])
    return fig
