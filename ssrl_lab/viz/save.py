"""Saving plotly figures as standalone HTML files beside a run.

Every figure a notebook shows is also written to ``<run_dir>/plots/<name>.html`` so it can be
opened without Jupyter. The files reference ``plots/plotly.min.js`` (plotly's ``"directory"``
mode): plotly.js (about 3.5 MB) is written once per plots folder instead of being inlined in
every file, and nothing is fetched from a CDN, so the plots open offline. Copy the whole
``plots/`` folder when moving them. Both files are written atomically. Every page has a
``<title>`` (the figure's title, else its name), so browser tabs and history say what it shows.
"""
from __future__ import annotations

import html as _html
import re
from pathlib import Path

from ..utils.io import atomic_write_text
from . import theme

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


def figure_title(fig) -> str:
    """The figure's title text with HTML tags removed ('' when it has none)."""
    t = fig.layout.title.text if fig.layout.title is not None else None
    return " ".join(re.sub(r"<[^>]+>", " ", t or "").split())


def with_page_title(html: str, title: str) -> str:
    """``html`` with ``<title>title</title>`` in its head (replacing an existing one)."""
    tag = f"<title>{_html.escape(title)}</title>"
    if re.search(r"<title>.*?</title>", html, flags=re.S):
        return re.sub(r"<title>.*?</title>", lambda _: tag, html, count=1, flags=re.S)
    if "<head>" in html:
        return html.replace("<head>", "<head>" + tag, 1)
    return html.replace("<html>", f"<html><head>{tag}</head>", 1)


def save_figure(fig, run_dir, name: str, template: str | None = None) -> Path:
    """Write ``fig`` to ``<run_dir>/plots/<name>.html`` (atomically) and return the path.

    ``name`` is a plain file stem (letters, digits, ``_.-``); ``.html`` is added when missing.
    ``template``: a figure template (``"paper"``, see :mod:`.theme`) applied before saving.
    """
    stem = name[:-5] if name.endswith(".html") else name
    if not _NAME.match(stem):
        raise ValueError(f"plot name {name!r}: use letters, digits, '_', '.', '-' only")
    theme.apply(fig, template)
    theme.integer_ticks(fig)
    out_dir = plots_dir(run_dir)
    ensure_plotly_js(out_dir)
    html = fig.to_html(include_plotlyjs="directory", full_html=True)
    html = with_page_title(html, figure_title(fig) or stem)
    return atomic_write_text(out_dir / f"{stem}.html", html)


class PNGUnavailable(RuntimeError):
    """No PNG renderer: kaleido or a Chrome/Chromium for it is missing."""


#: how many PNGs were not written for want of a renderer (each also logged)
PNG_SKIPPED = {"count": 0}


def save_png(fig, run_dir, name: str, width: int = 900, height: int = 520, scale: float = 2.0, strict: bool = False):
    """Write ``fig`` to ``<run_dir>/plots/<name>.png`` (atomically, through kaleido and a local
    Chrome/Chromium; nothing is downloaded) and return the path. Without a renderer the PNG is
    skipped: a warning is logged, :data:`PNG_SKIPPED` counts it and None is returned (``strict``
    raises :class:`PNGUnavailable` instead); the HTML of :func:`save_figure` is the figure of record."""
    import logging
    import os

    stem = name[:-4] if name.endswith(".png") else name
    if not _NAME.match(stem):
        raise ValueError(f"plot name {name!r}: use letters, digits, '_', '.', '-' only")
    out = plots_dir(run_dir) / f"{stem}.png"
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}.png")
    try:
        fig.write_image(str(tmp), width=width, height=height, scale=scale)
        tmp.replace(out)
        return out
    except Exception as e:  # kaleido missing, no Chrome, or the renderer failed
        tmp.unlink(missing_ok=True)
        if strict:
            raise PNGUnavailable(f"{out}: no PNG renderer ({type(e).__name__}: {e})") from e
        PNG_SKIPPED["count"] += 1
        logging.getLogger(__name__).warning("%s not written (%d PNG(s) skipped so far): %s: %s", out,
                                            PNG_SKIPPED["count"], type(e).__name__, (str(e).splitlines() or [""])[0][:200])
        return None


def show_and_save(fig, run_dir, name: str, show: bool = True, template: str | None = None, png: bool = False) -> None:
    """Save ``fig`` (see :func:`save_figure`; ``template`` or ``$SSRL_LAB_PLOT_TEMPLATE`` picks its
    look) and display it inline when in IPython.

    ``png`` also writes ``<name>.png`` beside it (:func:`save_png`). Returns None, so a cell ending
    with this call shows the figure and nothing else; use :func:`save_figure` for the file's path.
    """
    save_figure(fig, run_dir, name, template)
    if png:
        save_png(fig, run_dir, name)
    if show:
        try:
            from IPython import get_ipython
            from IPython.display import display
        except ImportError:  # pragma: no cover - IPython is a dependency
            return None
        if get_ipython() is not None:
            display(fig)
    return None
