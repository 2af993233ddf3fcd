"""Saving plotly figures as standalone HTML files beside a run.

Every figure a notebook shows is also written to ``<run_dir>/plots/<name>.html`` so it can be
opened without Jupyter. The files reference ``plots/plotly.min.js`` (plotly's ``"directory"``
mode): plotly.js (about 3.5 MB) is written once per plots folder instead of being inlined in
every file, and nothing is fetched from a CDN, so the plots open offline. Copy the whole
``plots/`` folder when moving them. Both files are written atomically.
"""
from __future__ import annotations

import re
from pathlib import Path

from ..utils.io import atomic_write_text

PLOTLY_JS = "plotly.min.js"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def plots_dir(run_dir) -> Path:
    """``<run_dir>/plots`` (created)."""
    d = Path(run_dir) / "plots"
    d.mkdir(parents=True, exist_ok=True)
    return d


def ensure_plotly_js(directory) -> Path:
    """Write ``plotly.min.js`` into ``directory`` unless it is already there."""
    from plotly.offline import get_plotlyjs

    path = Path(directory) / PLOTLY_JS
    if not path.exists() or path.stat().st_size == 0:
        atomic_write_text(path, get_plotlyjs())
    return path


def save_figure(fig, run_dir, name: str) -> Path:
    """Write ``fig`` to ``<run_dir>/plots/<name>.html`` (atomically) and return the path.

    ``name`` is a plain file stem (letters, digits, ``_.-``); ``.html`` is added when missing.
    """
    stem = name[:-5] if name.endswith(".html") else name
    if not _NAME.match(stem):
        raise ValueError(f"plot name {name!r}: use letters, digits, '_', '.', '-' only")
    out_dir = plots_dir(run_dir)
    ensure_plotly_js(out_dir)
    html = fig.to_html(include_plotlyjs="directory", full_html=True)
    return atomic_write_text(out_dir / f"{stem}.html", html)


def show_and_save(fig, run_dir, name: str, show: bool = True) -> Path:
    """Save ``fig`` (see :func:`save_figure`), display it inline when in IPython; return the path.

    Returns the path rather than the figure so that a cell ending with this call does not
    display the figure twice.
    """
    path = save_figure(fig, run_dir, name)
    if show:
        try:
            from IPython import get_ipython
            from IPython.display import display
        except ImportError:  # pragma: no cover - IPython is a dependency
            return path
        if get_ipython() is not None:
            display(fig)
    return path
