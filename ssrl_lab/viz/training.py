"""Training curves read from ``metrics.jsonl`` records: loss / lr / momentum, DINO's collapse
indicators and EER over epochs.

Every function takes the list of metric records (``Run.metrics``) and dotted key names, so the
same plots serve every trainer; keys absent from the records are skipped (a panel is drawn only
for keys that have at least one value).
"""
from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..runs import series

#: Candidate key names per panel, first match wins (trainers name things slightly differently).
LOSS_KEYS = ("loss",)
LR_KEYS = ("lr",)
MOMENTUM_KEYS = ("momentum", "teacher_momentum", "ema_momentum")
EER_KEYS = ("eval.eer", "eer")

#: Legend names of metric keys (DINO and SSRL evaluate the EMA teacher as ``eval`` and the student
#: as ``eval_student``); other keys show with ``_`` as spaces. The raw key stays in ``trace.meta``.
KEY_LABELS = {
    "eval.eer": "teacher EER, trial list", "eval.eer_all_pairs": "teacher EER, all pairs",
    "eval_student.eer": "student EER, trial list", "eval_student.eer_all_pairs": "student EER, all pairs",
    "eval.mindcf_0.01": "teacher minDCF 0.01", "eval_student.mindcf_0.01": "student minDCF 0.01",
    "lr": "learning rate", "teacher_entropy": "teacher entropy (per sample)",
    "teacher_entropy_of_mean": "entropy of the mean teacher output",
    "teacher_distinct_argmax": "distinct argmaxes per batch", "teacher_distinct_argmax_epoch": "distinct argmaxes per epoch",
}


def key_label(key: str, labels: Mapping[str, str] | None = None) -> str:
    """A readable legend name for a metric key (``labels`` first, then :data:`KEY_LABELS`)."""
    if labels and key in labels:
        return labels[key]
    return KEY_LABELS.get(key, key.replace("_", " "))


def first_key(metrics: Sequence[dict], candidates: Iterable[str], x: str = "epoch",
              stage: str | None = None) -> str | None:
    """The first candidate key with at least one numeric value in ``metrics`` (of ``stage``)."""
    for k in candidates:
        if series(metrics, k, x=x, stage=stage)[0].size:
            return k
    return None


def curves(metrics: Sequence[dict], panels: Mapping[str, Sequence[str]], title: str = "", x: str = "epoch",
           stage: str | None = None, labels: Mapping[str, str] | None = None) -> go.Figure:
    """One subplot per panel; each panel draws every key in its list that has values.

    ``panels = {"loss": ["loss"], "lr": ["lr"]}``. Panels with no data are dropped; a figure
    with no data at all carries an annotation saying so. Traces are named by :func:`key_label`
    (``labels`` overrides it), the key itself is kept in ``trace.meta``.
    """
    present = {}
    for panel, keys in panels.items():
        ks = [k for k in keys if series(metrics, k, stage=stage, x=x)[0].size]
        if ks:
            present[panel] = ks
    if not present:
        fig = go.Figure()
        fig.add_annotation(text="no metrics recorded yet", showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
        fig.update_layout(title=title)
        return fig
    fig = make_subplots(rows=len(present), cols=1, shared_xaxes=True, subplot_titles=list(present),
                        vertical_spacing=0.08)
    for row, (panel, ks) in enumerate(present.items(), start=1):
        for k in ks:
            xs, ys = series(metrics, k, stage=stage, x=x)
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=key_label(k, labels), meta=k),
                          row=row, col=1)
    fig.update_xaxes(title_text=x, row=len(present), col=1)
    fig.update_layout(title=title, height=max(300, 220 * len(present)), hovermode="x unified")
    return fig


def training_curves(metrics: Sequence[dict], title: str = "training", x: str = "epoch",
                    extra: Sequence[str] = ()) -> go.Figure:
    """Loss, learning rate and teacher momentum over epochs (plus any ``extra`` keys, one panel each)."""
    panels: dict[str, list[str]] = {}
    for panel, cands in (("loss", LOSS_KEYS), ("learning rate", LR_KEYS), ("teacher momentum", MOMENTUM_KEYS)):
        k = first_key(metrics, cands, x=x)
        if k:
            panels[panel] = [k]
    for k in extra:
        panels[k] = [k]
    return curves(metrics, panels, title=title, x=x)


def collapse_curves(metrics: Sequence[dict], entropy_key: str = "teacher_entropy",
                    mean_entropy_key: str = "teacher_entropy_of_mean",
                    argmax_keys: Sequence[str] = ("teacher_distinct_argmax", "teacher_distinct_argmax_epoch"),
                    title: str = "DINO collapse indicators") -> go.Figure:
    """Teacher entropy against the entropy of the mean teacher output, and distinct argmaxes.

    Collapse to one prototype shows as both entropies falling to 0; collapse to a uniform output
    as the per-sample entropy rising to the mean's (log K). Healthy training keeps the per-sample
    entropy well below the mean's and many distinct argmaxes.
    """
    return curves(metrics, {"entropy (nats)": [entropy_key, mean_entropy_key], "distinct teacher argmaxes (per batch / per epoch)": list(argmax_keys)},
                  title=title)


def eer_curves(runs: Mapping[str, Sequence[dict]], keys: Sequence[str] = EER_KEYS, x: str = "epoch",
               title: str = "EER over training", stage: str | None = None) -> go.Figure:
    """EER (%) over epochs (or rounds: ``x="round", stage="iterative"``) for one or several
    runs: ``{"dino": metrics, ...}``; the all-pairs EER dotted when recorded."""
    fig = go.Figure()
    for name, metrics in runs.items():
        k = first_key(metrics, keys, x=x, stage=stage)
        if k is None:
            continue
        xs, ys = series(metrics, k, x=x, stage=stage)
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines+markers", name=name))
        all_k = k.replace("eer", "eer_all_pairs")
        xa, ya = series(metrics, all_k, x=x, stage=stage)
        if xa.size and all_k != k:
            fig.add_trace(go.Scatter(x=xa, y=ya, mode="lines+markers", name=f"{name} (all pairs)",
                                     line=dict(dash="dot")))
    if not fig.data:
        fig.add_annotation(text="no evaluation recorded yet", showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    fig.update_layout(title=title, xaxis_title=x, yaxis_title="EER (%)", hovermode="x unified")
    return fig
