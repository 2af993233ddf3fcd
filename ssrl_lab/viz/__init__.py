"""Plots for the notebooks (plotly): every function returns a ``plotly.graph_objects.Figure``
built from the arrays a run directory holds; :func:`save.show_and_save` shows a figure inline
and writes it to ``<run_dir>/plots/<name>.html``.

Modules: ``save`` (HTML files), ``training`` (loss / lr / momentum, collapse, EER over epochs),
``embedding`` (PCA/UMAP maps), ``clusters`` (purity, NMI/accuracy, cluster count), ``queue``
(label change rate, queue agreement, Sankey of cluster flows), ``noise`` (log-loss GMM per
epoch, detector precision/recall), ``verification`` (DET curves, score distributions), ``theme``
(the ``paper`` template: white background, larger fonts).
"""
from .save import save_figure, show_and_save
from .theme import use as use_template

__all__ = ["save_figure", "show_and_save", "use_template"]
