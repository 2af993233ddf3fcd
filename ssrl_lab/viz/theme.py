"""Figure templates: the default plotly look for notebooks, and ``paper`` for figures that go into
papers (white background, larger fonts, thin grid, no coloured plot area).

Select it for one figure (``show_and_save(fig, run, name, template="paper")`` or
``apply(fig, "paper")``), for every later figure of a session (``use("paper")``), or for a whole
papermill / demo run with ``SSRL_LAB_PLOT_TEMPLATE=paper`` (read by :func:`show_and_save`).
"""
from __future__ import annotations

import os

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


def use(template: str | None) -> None:
    """Make ``template`` the default of every figure created afterwards (None: plotly's default)."""
    pio.templates.default = resolve(template) or "plotly"
