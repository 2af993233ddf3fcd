"""Two (or more) finished studies side by side: how the intervals narrow when the test set grows.

The 40-speaker study (``outputs/study-archive``) and the 200-speaker one (``outputs/study200-archive``)
train the same systems on the same audio; only the dev and test speakers differ. A reader wants
to see, per system and budget, each study's mean test EER with its 95 % interval and that
interval's width, and per claim each study's verdict with its interval: this module reads their
``study.json`` files and writes that as markdown. Nothing is recomputed: every number is the one
its study printed. An interim report (``study-partial.json``, :mod:`ssrl_lab.study_partial`)
can stand in for an unfinished study; its column says how many points it holds.

    python -m ssrl_lab.study_compare "40 speakers=outputs/study-archive/study.json" \\
        "200 speakers=outputs/study200-archive/study.json" [--out outputs/study-compare.md]
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Sequence

from .study_power import powers

__all__ = ["StudyCompareError", "load_studies", "compare_markdown", "main"]


class StudyCompareError(ValueError):
    """A study file that is missing, unreadable or not a study summary."""


def _load(path: Path) -> dict:
    try:
        summary = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise StudyCompareError(f"{path}: no such study file (run the study, or restore its archive)") from None
    except (OSError, json.JSONDecodeError) as e:
        raise StudyCompareError(f"{path}: unreadable study file: {e}") from None
    missing = [k for k in ("table", "claims") if not isinstance(summary.get(k), list)]
    if missing:
        raise StudyCompareError(f"{path}: not a finished study summary (no {', '.join(missing)})")
    return summary


def load_studies(specs: Sequence[str]) -> list[tuple[str, dict]]:
    """``["label=path/study.json", ...]`` -> ``[(label, summary), ...]``; a spec without ``=`` is
    labelled by its number of test speakers when the summary says it, else by its folder."""
    if len(specs) < 2:
        raise StudyCompareError("give at least two studies to compare")
    out = []
    for spec in specs:
        label, sep, path = spec.partition("=")
        if not sep:
            label, path = "", spec
        summary = _load(Path(path))
        label = label or _default_label(summary, Path(path))
        part = summary.get("partial")
        if part:  # an interim report (study-partial.json) says so in its column's head
            label += f" (interim: {part['finished']} of {part['planned']} points)"
        out.append((label, summary))
    labels = [label for label, _ in out]
    if len(set(labels)) != len(labels):
        raise StudyCompareError(f"two studies share a label: {labels}; name them with label=path")
    return out


def _default_label(summary: dict, path: Path) -> str:
    n = _test_speakers(summary)
    return f"{n} speakers" if n else path.parent.name


def _test_speakers(summary: dict) -> int | None:
    """The test speakers the study measured on (its power estimate that was not projected)."""
    for e in (summary.get("power") or {}).get("estimates", []):
        if not e.get("extrapolated"):
            return int(e["n_speakers_observed"])
    return None


def _width(ci) -> float | None:
    ok = isinstance(ci, (list, tuple)) and len(ci) == 2 and all(isinstance(v, (int, float)) and math.isfinite(v) for v in ci)
    return float(ci[1] - ci[0]) if ok else None


def _mean_cell(row: dict | None, on: str) -> str:
    if row is None:
        return "-"
    sfx = "" if on == "trials" else "_all_pairs"
    mean, ci = row.get(f"eer{sfx}_mean"), row.get(f"eer{sfx}_ci")
    if mean is None:
        return "-"
    w = _width(ci)
    return f"{mean:.2f} [{ci[0]:.2f}, {ci[1]:.2f}] (±{w / 2:.2f}, {row['n_seeds']} seeds)" if w is not None else f"{mean:.2f}"


def _claim_cell(claim: dict | None, on: str) -> str:
    if claim is None:
        return "-"
    sfx = "" if on == "trials" else "_all_pairs"
    outcome = claim.get(f"outcome{sfx}")
    if outcome is None:
        return f"n/a ({claim.get(f'reason{sfx}', '')})"
    ci = claim.get(f"diff_ci{sfx}")
    w = _width(ci)
    interval = f" [{ci[0]:.2f}, {ci[1]:.2f}], ±{w / 2:.2f}" if w is not None else ""
    return f"**{outcome}** ({claim[f'diff{sfx}']:+.2f}{interval})"


def _mdd(summary: dict, rival: str, on: str) -> str:
    """The MDD measured on the study's whole test set: of the estimates not projected beyond it,
    the one at the most speakers (a study also reads smaller sets, e.g. 40 of its 200)."""
    measured = [e for p in powers(summary) if p.get("b") == rival for e in p.get("estimates", [])
                if e.get("on") == on and not e.get("extrapolated") and e.get("mdd") is not None]
    if not measured:
        return "-"
    e = max(measured, key=lambda e: e["n_speakers"])
    return f"{e['mdd']:.2f} ({e['n_speakers']} speakers, {e['n_seeds']} seeds)"


def compare_markdown(studies: Sequence[tuple[str, dict]], on: str = "trials") -> str:
    """The side-by-side markdown: mean test EER per system and budget, the measured minimal
    detectable difference of each pair a study reported power for, and every claim; ``on`` is
    ``"trials"`` (the trial list) or ``"all_pairs"``. A row one study lacks reads ``-``."""
    if on not in ("trials", "all_pairs"):
        raise StudyCompareError(f"on must be 'trials' or 'all_pairs', not {on!r}")
    labels = [label for label, _ in studies]
    head = "| " + " | ".join(labels) + " |"
    rule = " --- |" * len(labels)
    column = "trial list" if on == "trials" else "all pairs"

    keys: list[tuple[str, int]] = []
    for _, s in studies:
        keys += [(r["system"], r["budget"]) for r in s["table"] if (r["system"], r["budget"]) not in keys]
    tables = [{(r["system"], r["budget"]): r for r in s["table"]} for _, s in studies]
    lines = [f"Test EER % ({column}): mean over seeds [95 % interval of the mean] (half-width, seeds).", "",
             "| system | stage-2 epochs " + head, "| --- | ---: |" + rule]
    lines += [f"| {system} | {budget} | " + " | ".join(_mean_cell(t.get((system, budget)), on) for t in tables) + " |"
              for system, budget in keys]

    rivals: list[str] = []
    for _, s in studies:
        rivals += [p["b"] for p in powers(s) if p.get("b") and p["b"] not in rivals]
    lines += ["", "Minimal detectable difference of SSRL against each pair a study reported (points, 80 % power, "
              "5 % two-sided), measured on each study's own test set:", "", "| SSRL against " + head, "| --- |" + rule]
    lines += [f"| {rival} | " + " | ".join(_mdd(s, rival, on) for _, s in studies) + " |" for rival in rivals]

    claims: list[str] = []
    for _, s in studies:
        claims += [c["claim"] for c in s["claims"] if c["claim"] not in claims]
    by_claim = [{c["claim"]: c for c in s["claims"]} for _, s in studies]
    lines += ["", f"Claims ({column}): EER(SSRL) - EER(X) in points [95 % interval], ± its half-width.", "",
              "| claim " + head, "| --- |" + rule]
    lines += [f"| {claim} | " + " | ".join(_claim_cell(b.get(claim), on) for b in by_claim) + " |" for claim in claims]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ssrl_lab.study_compare", description=__doc__.split("\n\n")[0])
    ap.add_argument("studies", nargs="+", help="label=path/to/study.json (two or more)")
    ap.add_argument("--on", choices=("trials", "all_pairs", "both"), default="both")
    ap.add_argument("--out", type=Path, help="write the markdown here (atomically) instead of printing it")
    args = ap.parse_args(argv)
    try:
        studies = load_studies(args.studies)
    except StudyCompareError as e:
        ap.exit(2, f"study_compare: {e}\n")
    ons = ("trials", "all_pairs") if args.on == "both" else (args.on,)
    text = "\n\n".join(compare_markdown(studies, on) for on in ons) + "\n"
    if args.out is None:
        print(text, end="")
        return 0
    from .utils.io import atomic_write_text

    atomic_write_text(args.out, text)
    print(f"study_compare: wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
