"""The study's power: the smallest EER difference its deciding comparison could resolve, at the
test-set sizes a reader compares (40 speakers, the demo's; 200, the study profile's).

The deciding pair is SSRL against the strongest iterative protocol by **dev** EER (the study
passes it: :func:`ssrl_lab.study.strongest_protocol`) at the study's largest budget, with every
seed either system has there. When the study's design gave another protocol extra seeds
(``extra_points``, e.g. ``finetune`` in the 200-speaker study), the study reports that pair's
power too: the rule chooses on dev, the design chose before any run, and a reader compares both
(:func:`powers` lists them). :func:`ssrl_lab.eval.power.detectable_difference_runs` gives the
minimal detectable difference (80 % power, 5 % two-sided) on the trial list and on all pairs; a
size other than the test set's own is read with the m-out-of-n speaker bootstrap (``projected``
when larger than the test set: it assumes the test speakers represent the population).
"""
from __future__ import annotations

import logging
from typing import Any, Sequence

log = logging.getLogger("ssrl_lab.study")

__all__ = ["POWER_SPEAKERS", "POWER_REPS", "WHY_DEV", "WHY_DESIGN", "study_power", "powers", "power_markdown"]

#: the test-set sizes the study reports its power at
POWER_SPEAKERS = (40, 200)
#: replicates per estimate: a standard error needs fewer than an interval's tails (8 M all pairs cost ~20 s per 1,000)
POWER_REPS = 300


#: why the study reports a pair's power: the rule's choice, or the design's
WHY_DEV = "the strongest iterative protocol by dev EER"
WHY_DESIGN = "given extra seeds by the study's design"


def study_power(rows: Sequence[dict], rival: str | None, budgets: Sequence[int],
                speakers: Sequence[int] = POWER_SPEAKERS, n_reps: int = POWER_REPS,
                why: str = WHY_DEV) -> dict[str, Any]:
    """``{"a", "b", "why", "budget", "n_seeds", "estimates": [{"on", "n_speakers", "mdd", "se", ...}],
    "reason"}`` for SSRL against ``rival`` (e.g. ``"iterative_finetune"``; None when the study has
    none), reported because ``why``; ``estimates`` is empty (with a ``reason``) when the pair has
    no scores."""
    from .eval.power import detectable_difference
    from .eval.saved_scores import ScoresError, score_sets

    budget = max(budgets)
    out: dict[str, Any] = {"a": "ssrl", "b": rival, "why": why, "budget": budget, "estimates": [], "reason": None}
    if rival is None:
        out["reason"] = "the study has no iterative protocol with a dev EER to compare SSRL with"
        return out
    files = {s: [r["scores_file"] for r in rows if r["system"] == s and r["budget"] == budget] for s in (out["a"], out["b"])}
    if not files[out["a"]] or not files[out["b"]]:
        out["reason"] = f"no runs of {out['a']} or {out['b']} at E = {budget}"
        return out
    out["n_seeds"] = [len(files[out["a"]]), len(files[out["b"]])]
    na = len(files[out["a"]])
    for on in ("trials", "all_pairs"):
        try:  # scored once per column (8 M pairs on the study set), then every test-set size
            sets, trials = score_sets(files[out["a"]] + files[out["b"]], on)
        except (ScoresError, ValueError) as e:
            log.warning("power (%s): %s", on, e)
            out["reason"] = str(e)
            continue
        for n in speakers:
            try:
                r = {**detectable_difference(sets[:na], sets[na:], trials, n_speakers=int(n), n_reps=n_reps), "on": on}
            except ValueError as e:
                log.warning("power at %d speakers (%s): %s", n, on, e)
                out["reason"] = str(e)
                continue
            out["estimates"].append(r)
            log.info("power: MDD %s at %d speakers (%s): %s points", out["b"], n, on,
                     f"{r['mdd']:.2f}" if r["mdd"] is not None else "-")
    return out


def powers(summary: dict) -> list[dict]:
    """A study summary's power estimates: the deciding pair's, then those of the pairs its design
    gave extra seeds (``power_more``); an absent one is left out."""
    return [p for p in [summary.get("power"), *summary.get("power_more", [])] if p]


def power_markdown(power: dict | None) -> str:
    """The power table: per column and test-set size, the minimal detectable difference and its parts."""
    if not power or not power.get("estimates"):
        return f"Not estimated: {(power or {}).get('reason') or 'no study runs'}."
    f = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    seeds = min(power["n_seeds"])
    lines = [f"The smallest true EER difference between **{power['a']}** and **{power['b']}** "
             f"({power.get('why', WHY_DEV)}) at E = {power['budget']} that the comparison detects with 80 % power "
             f"(5 % two-sided), with {seeds} seed{'s' if seeds != 1 else ''} per system; from the speaker bootstrap "
             "of these runs' scores (m-out-of-n for another test-set size; *projected* where larger than the test set). "
             "A claim's difference below this is likely to read 'not separable' even when real.", "",
             "| scores | test speakers | minimal detectable difference (points) | SE of the difference | "
             "of which speakers | of which seeds | observed difference |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in power["estimates"]:
        size = f"{r['n_speakers']}" + (" (projected)" if r["extrapolated"] else "")
        mdd = f"**{f(r['mdd'])}**" if r["mdd"] is not None or r.get("mdd_speakers_only") is None else \
            f"≥ {r['mdd_speakers_only']:.2f} (speakers only: 1 seed has no seed variance)"
        lines.append(f"| {'trial list' if r['on'] == 'trials' else 'all pairs'} | {size} | {mdd} | "
                     f"{f(r['se'])} | {f(r['se_speakers'])} | {f(r['se_seeds'])} | {r['diff']:+.2f} |")
    return "\n".join(lines)
