"""Per-epoch trajectories of the study's runs on one axis of stage-2 epochs: EER, pseudo-label
quality against the synthetic corpus's true speakers, and SSRL's noise detector.

Read from each run's ``metrics.jsonl`` (nothing is retrained). One row per (run, stage-2 epoch
``x``) with what that epoch recorded:

* **labels** (``label_accuracy``: share of training utterances whose label's majority speaker is
  their own, i.e. cluster purity; ``nmi``; ``n_clusters``): the labels made at the end of epoch
  ``x``, the ones the next epoch trains on. SSRL: its k-means labels at ``x = 0``, then every
  epoch's voted labels. An iterative protocol of rounds of ``L`` epochs: round ``r``'s k-means
  labels at ``x = (r - 1) L`` (they stay fixed for the round's ``L`` epochs);
* **EER** (``eer``, ``eer_all_pairs``, ``dev_eer``): where an evaluation ran (SSRL every
  ``eval_every`` epochs, an iterative protocol after every round, at ``x = r L``);
* **the detector** (SSRL only, collecting epochs): ``frac_clean`` (share called clean,
  p_clean > 0.5), ``precision_clean`` and ``recall_clean`` of "clean" against "label right",
  and ``ece`` (expected calibration error of p_clean, where the run recorded its reliability
  curve; runs before 2026-12-06 did not).

The true speakers never reach training: they only score the labels (``labels.history``).
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Iterable

log = logging.getLogger(__name__)

__all__ = ["run_trace", "study_traces", "TRACE_KEYS", "trace_summary", "trace_markdown", "last_reliability"]

#: the per-epoch values a trace row may carry (None where the epoch did not record it)
TRACE_KEYS = ("label_accuracy", "nmi", "n_clusters", "eer", "eer_all_pairs", "dev_eer", "frac_clean",
              "precision_clean", "recall_clean", "ece")


def _read_jsonl(path: Path) -> list[dict]:
    rows, bad = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                bad += 1
    if bad:
        log.warning("%s: %d unreadable line(s) skipped (an interrupted write)", path, bad)
    return rows


def _row(x: int, **values) -> dict:
    return {"x": int(x), **{k: values.get(k) for k in TRACE_KEYS}}


def _eval_fields(ev: dict | None) -> dict:
    ev = ev or {}
    return {k: ev.get(k) for k in ("eer", "eer_all_pairs", "dev_eer")}


def _merge(rows: list[dict]) -> list[dict]:
    """One row per ``x``: later records fill what earlier ones left None."""
    out: dict[int, dict] = {}
    for r in rows:
        cur = out.setdefault(r["x"], _row(r["x"]))
        for k in TRACE_KEYS:
            if r.get(k) is not None:
                cur[k] = r[k]
    return [out[x] for x in sorted(out)]


def run_trace(run_dir, system: str) -> list[dict]:
    """The trace of one run (``system``: ``ssrl`` or an ``iterative_*`` protocol); rows sorted by
    ``x``. Raises FileNotFoundError when the run has no ``metrics.jsonl``."""
    run_dir = Path(run_dir)
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: the run has not started")
    lines = _read_jsonl(path)
    rows: list[dict] = []
    if system == "ssrl":
        for m in lines:
            if m.get("stage") == "kmeans":
                rows.append(_row(0, label_accuracy=m.get("purity"), nmi=m.get("nmi"), n_clusters=m.get("n_clusters")))
            elif m.get("stage") == "ssrl" and "epoch" in m:
                cs = m.get("clean_split") or {}
                rel = m.get("reliability") or {}
                rows.append(_row(m["epoch"], label_accuracy=cs.get("label_accuracy", m.get("purity")), nmi=m.get("nmi"),
                                 n_clusters=m.get("n_clusters"),
                                 frac_clean=m.get("frac_clean") if m.get("collecting") else None,
                                 precision_clean=cs.get("precision_clean"), recall_clean=cs.get("recall_clean"),
                                 ece=rel.get("ece"), **_eval_fields(m.get("eval"))))
        return _merge(rows)
    if not system.startswith("iterative"):
        raise ValueError(f"system must be 'ssrl' or an iterative protocol, got {system!r}")
    cfg_path = run_dir / "config.json"
    length = json.loads(cfg_path.read_text(encoding="utf-8")).get("epochs") if cfg_path.exists() else None
    if not length:
        raise ValueError(f"{cfg_path}: an iterative run's config must give its epochs per round")
    for m in lines:
        if m.get("stage") == "iterative" and "round" in m:
            r, pl = int(m["round"]), m.get("pseudo_labels") or {}
            rows.append(_row((r - 1) * length, label_accuracy=pl.get("purity"), nmi=pl.get("nmi"),
                             n_clusters=m.get("n_used", pl.get("n_clusters"))))
            rows.append(_row(r * length, **_eval_fields(m.get("eval"))))
    return _merge(rows)


def study_traces(points: Iterable[dict], budget: int | None = None) -> list[dict]:
    """Trace rows of the study's runs (``points`` as :func:`ssrl_lab.study.study_points` or the
    ``points`` of ``study.json``), each run once, tagged ``system``, ``seed``, ``train_budget``
    (the run's own length). ``budget``: keep runs of that length only (a 30-epoch iterative run
    also serves the 12-epoch points: it is kept once, at 30). Runs not started are skipped with a
    log line."""
    seen, out = set(), []
    for p in points:
        run_dir = Path(p["run_dir"])
        train_budget = int(p.get("train_budget") or _epochs_of(run_dir, p["system"]) or p["budget"])
        if (budget is not None and train_budget != budget) or run_dir in seen:
            continue
        seen.add(run_dir)
        try:
            trace = run_trace(run_dir, p["system"])
        except (FileNotFoundError, ValueError) as e:
            log.info("no trace for %s: %s", run_dir, e)
            continue
        out += [{"system": p["system"], "seed": p["seed"], "train_budget": train_budget, **r} for r in trace]
    return out


def _epochs_of(run_dir: Path, system: str) -> int | None:
    """A run's stage-2 epochs from its config (SSRL: epochs; iterative: rounds x epochs)."""
    try:
        cfg = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    if system == "ssrl":
        return cfg.get("epochs")
    return cfg.get("epochs", 0) * cfg.get("rounds", 0) or None


def trace_summary(traces: list[dict], keys=("label_accuracy", "nmi", "n_clusters", "eer_all_pairs", "frac_clean",
                                            "precision_clean", "recall_clean")) -> list[dict]:
    """Per system, the mean over seeds of each key at the first and the last ``x`` that has it:
    ``{"system", "key", "x_first", "first", "x_last", "last", "n_seeds"}`` (the README's table)."""
    out = []
    for system in dict.fromkeys(t["system"] for t in traces):
        rows = [t for t in traces if t["system"] == system]
        for key in keys:
            xs = sorted({t["x"] for t in rows if _finite(t.get(key))})
            if not xs:
                continue
            vals = {x: [t[key] for t in rows if t["x"] == x and _finite(t.get(key))] for x in (xs[0], xs[-1])}
            out.append({"system": system, "key": key, "x_first": xs[0], "first": sum(vals[xs[0]]) / len(vals[xs[0]]),
                        "x_last": xs[-1], "last": sum(vals[xs[-1]]) / len(vals[xs[-1]]),
                        "n_seeds": len(vals[xs[-1]])})
    return out


def _finite(v) -> bool:
    return v is not None and isinstance(v, (int, float)) and math.isfinite(float(v))


def last_reliability(run_dir) -> dict | None:
    """The reliability curve of p_clean (``labels.history.p_clean_reliability``) that an SSRL run
    recorded last, with its ``epoch``; None when it recorded none (runs before 2026-12-06)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return None
    last = None
    for m in _read_jsonl(path):
        if m.get("stage") == "ssrl" and m.get("reliability"):
            last = {**m["reliability"], "epoch": m.get("epoch")}
    return last


def trace_markdown(summary: list[dict]) -> str:
    """:func:`trace_summary` as a table: per system, each value at its first and last epoch."""
    lines = ["| system | measure | first (epoch) | last (epoch) | seeds |", "| --- | --- | ---: | ---: | ---: |"]
    for r in summary:
        fmt = ".0f" if r["key"] == "n_clusters" else ".2f" if r["key"].startswith(("eer", "dev_eer")) else ".3f"
        lines.append(f"| {r['system']} | {r['key']} | {format(r['first'], fmt)} ({r['x_first']}) | "
                     f"{format(r['last'], fmt)} ({r['x_last']}) | {r['n_seeds']} |")
    return "\n".join(lines)
