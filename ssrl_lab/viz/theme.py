"""Figure templates: the default plotly look for notebooks, and ``paper`` for figures that go into
papers (white background, larger fonts, thin grid, no coloured plot area).

Select it for one figure (``show_and_save(fig, run, name, template="paper")`` or
``apply(fig, "paper")``), for every later figure of a session (``use("paper")``), or for a whole
papermill / demo run with ``SSRL_LAB_PLOT_TEMPLATE=paper`` (read by :func:`show_and_save`).
"""
from __future__ import annotations

import os

import numpy as np
import plotly.graph_objects as go
import plotly.io as pio

TEMPLATE_ENV = "SSRL_LAB_PLOT_TEMPLATE"
PAPER = "paper"
#: Names accepted by :func:`apply` / :func:`use` besides plotly's own templates.
TEMPLATES = (PAPER,)

_FONT = dict(family="Arial, Helvetica, sans-serif", size=18, color="black")
_AXIS = dict(showline=True, linecolor="black", linewidth=1.2, mirror=True, ticks="outside", gridcolor="#e5e5e5",
             zerolinecolor="#bbbbbb", title=dict(font=dict(size=20)), tickfont=dict(size=16))


def _paper_template() -> go.layout.Template:
    return go.layout.Template(layout=dict(
        font=_FONT, title=dict(font=dict(size=22)), paper_bgcolor="white", plot_bgcolor="white",
        xaxis=_AXIS, yaxis=_AXIS, legend=dict(font=dict(size=16), bgcolor="rgba(255,255,255,0.8)"),
        colorway=["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"],
    ))


pio.templates[PAPER] = _paper_template()


def resolve(template: str | None) -> str | None:
    """The template to use: ``template``, else ``$SSRL_LAB_PLOT_TEMPLATE``, else None (plotly's default)."""
    name = template or os.environ.get(TEMPLATE_ENV) or None
    if name is None:
        return None
    if name == PAPER:
        return "plotly_white+" + PAPER
    if name not in pio.templates:
        raise ValueError(f"unknown figure template {name!r}: use {PAPER!r} or one of plotly's "
                         f"({', '.join(sorted(pio.templates))})")
    return name


def apply(fig: go.Figure, template: str | None = None) -> go.Figure:
    """Set ``fig``'s template (see :func:`resolve`; nothing changes when none is chosen); returns ``fig``."""
    name = resolve(template)
    if name is not None:
        fig.update_layout(template=name)
    return fig


#: x-axis titles whose values are whole numbers
INTEGER_AXES = ("epoch", "round", "stage-2 training epochs")


def integer_ticks(fig: go.Figure, max_ticks: int = 10) -> go.Figure:
    """Whole-number ticks on the x axes of a figure whose x axis is titled epoch or round (and
    whose x values are all whole numbers): plotly's automatic ticks put 1.2, 1.4, ... between two
    epochs, and with ``tickformat="d"`` print them as "1 1 1 2 2 2". Returns ``fig``."""
    titles = [str(getattr(ax.title, "text", None) or "").lower() for ax in fig.select_xaxes()]
    if not any(t in INTEGER_AXES for t in titles):
        return fig
    xs = []
    for trace in fig.data:
        x = getattr(trace, "x", None)
        if x is None:
            continue
        try:
            xs.append(np.asarray(x, dtype=np.float64).ravel())
        except (TypeError, ValueError):  # category or date axes: leave the figure alone
            return fig
    values = np.concatenate(xs) if xs else np.zeros(0)
    values = values[np.isfinite(values)]
    if not values.size or not np.all(values == np.round(values)):
        return fig
    lo, hi = float(values.min()), float(values.max())
    dtick = max(1, int(np.ceil((hi - lo) / max_ticks)))
    fig.update_xaxes(tickmode="linear", tick0=lo, dtick=dtick, tickformat="d")
    return fig


def use(template: str | None) -> None:
    """Make ``template`` the default of every figure created afterwards (None: plotly's default)."""
    pio.templates.default = resolve(template) or "plotly"
