"""Collect the results of several runs into ``summary.json`` and ``summary.md``.

``summary.json``::

    {"systems": {"random": {"eer": ..., "eer_all_pairs": ..., "mindcf_0.01": ..., "mindcf_0.05": ..., ...},
                 "dino": ..., "iterative_r1": ..., "iterative_rN": ..., "ssrl": ..., "supervised": ...},
     "seconds": {"random": ..., "dino": ..., ..., "total": ...},
     "ordering": [{"claim": "DINO better than random", "outcome": "better", "diff": a - b,
                   "diff_ci": [lo, hi], "outcome_all_pairs": ..., "eer": [a, b], ...}, ...]}

EER values are percentages (5.0 = 5 %). ``dev_eer`` / ``dev_eer_all_pairs`` (and the dev minDCFs)
are the same metrics on the corpus's dev split, the split settings are chosen on; they are left out
for runs on a corpus without one. An iterative run contributes ``iterative_r1`` (its
``results_round1.json``) and ``iterative_rN`` (its ``results.json``, the last round; ``round``
says which); a run with ``init="finetune"`` (each round fine-tunes the current model rather than
training a new encoder) is named ``iterative_finetune_r1`` / ``iterative_finetune_rN``, so both
baselines can be compared side by side (``init="stage1"``: ``iterative_stage1_*``). ``seconds`` is
the compute each run recorded (training + evaluation); for an iterative run the whole run's seconds
are counted once, under its ``_rN`` key.

**Confidence intervals and claims.** Each system carries the 95 % intervals its ``results.json``
recorded (``eer_ci``, ``eer_all_pairs_ci``, ...: a bootstrap over test speakers). Runs of one
system with different seeds are one entry: its metrics are the means over seeds, ``seeds`` and
``runs`` list them. Each claim "A better than B" is judged by :func:`ssrl_lab.eval.saved_scores.compare_runs`
from the runs' ``scores.npz``: a paired bootstrap resampling the test speakers (shared by both
systems) and each system's seeds; ``outcome`` is ``better`` or ``worse`` when the 95 % interval
of EER(A) - EER(B) excludes 0, else ``not separable``; None (with ``reason``) when a system is
missing or its scores cannot be compared.

``python -m ssrl_lab.summary RUN_DIR [RUN_DIR ...] --out DIR``
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from .eval.bootstrap import CI_REPS
from .runs import RunError, open_run
from .utils.io import atomic_write_json, atomic_write_text

FIELDS = ("eer", "eer_all_pairs", "mindcf_0.01", "mindcf_0.05", "mindcf_0.01_all_pairs", "mindcf_0.05_all_pairs",
          "n_trials", "n_pairs", "dev_eer", "dev_eer_all_pairs", "dev_mindcf_0.01", "dev_mindcf_0.05",
          "epochs", "seconds", "evaluated", "round", "eer_ci", "eer_all_pairs_ci", "mindcf_0.01_ci",
          "mindcf_0.05_ci", "mindcf_0.01_all_pairs_ci", "mindcf_0.05_all_pairs_ci", "ci_reps")
#: the fields averaged over the seeds of one system
MEAN_FIELDS = ("eer", "eer_all_pairs", "mindcf_0.01", "mindcf_0.05", "mindcf_0.01_all_pairs", "mindcf_0.05_all_pairs",
               "dev_eer", "dev_eer_all_pairs", "dev_mindcf_0.01", "dev_mindcf_0.05", "seconds")
ORDER = ("random", "dino", "iterative_r1", "iterative_rN", "iterative_finetune_r1", "iterative_finetune_rN",
         "iterative_stage1_r1", "iterative_stage1_rN", "ssrl", "supervised")
#: (claim, better system, worse system)
CLAIMS = (
    ("DINO better than random", "dino", "random"),
    ("SSRL better than iterative round 1", "ssrl", "iterative_r1"),
    ("SSRL better than iterative round N", "ssrl", "iterative_rN"),
    ("SSRL better than fine-tuned iterative round N", "ssrl", "iterative_finetune_rN"),
    ("SSRL better than stage-1-restart iterative round N", "ssrl", "iterative_stage1_rN"),
)


def _pick(res: Mapping[str, Any], run_dir: Path, scores: str = "scores.npz", seed: Any = None) -> dict:
    out = {k: res[k] for k in FIELDS if k in res and res[k] is not None}
    skipped = res.get("skipped")
    if isinstance(skipped, Mapping):  # training files the run skipped (up front and while training)
        out["skipped"] = skipped.get("files")
        out["skipped_fraction"] = skipped.get("fraction")
    out["run_dir"] = str(run_dir)
    out["scores_file"] = str(Path(run_dir) / scores)
    out["seed"] = seed
    return out


def system_results(run_dir) -> dict[str, dict]:
    """``{system key: results}`` of one finished run (raises RunError when unfinished)."""
    run = open_run(run_dir)
    res = run.results
    if res is None:
        raise RunError(f"{run.path} has no results.json (the run has not finished)")
    system = str(res.get("system") or run.name)
    seed = (run.config or {}).get("seed")
    if system != "iterative":
        return {system: _pick(res, run.path, seed=seed)}
    init = str(res.get("init") or "new")
    prefix = "iterative" if init == "new" else f"iterative_{init}"
    out = {}
    r1 = run.path / "results_round1.json"
    if r1.exists():
        out[f"{prefix}_r1"] = _pick(json.loads(r1.read_text(encoding="utf-8")), run.path, "scores_round1.npz", seed)
        out[f"{prefix}_r1"].pop("seconds", None)  # counted once, with the whole run
    out[f"{prefix}_rN"] = _pick(res, run.path, seed=seed)
    return out


def _merge_seeds(recs: list[dict]) -> dict:
    """One entry for the runs of one system: means over seeds (:data:`MEAN_FIELDS`), the rest from
    the first run, ``seeds`` and ``runs`` (run_dir, seed, scores_file, eer of each)."""
    out = dict(recs[0])
    if len(recs) > 1:
        for k in MEAN_FIELDS:
            v = [r[k] for r in recs if isinstance(r.get(k), (int, float))]
            if len(v) == len(recs):
                out[k] = float(sum(v) / len(v))
            else:
                out.pop(k, None)
        for k in FIELDS:  # one run's interval is not the mean's
            if k.endswith("_ci"):
                out.pop(k, None)
    out["seeds"] = [r.get("seed") for r in recs]
    out["runs"] = [{"run_dir": r["run_dir"], "seed": r.get("seed"), "scores_file": r["scores_file"],
                    "eer": r.get("eer"), "eer_all_pairs": r.get("eer_all_pairs")} for r in recs]
    return out


def ordering_checks(systems: Mapping[str, Mapping[str, Any]], n_reps: int = CI_REPS) -> list[dict]:
    """Each claim of :data:`CLAIMS` with three outcomes (see the module docstring), on the
    trial-list EER (``outcome``, ``diff``, ``diff_ci``) and on the all-pairs EER
    (``outcome_all_pairs``, ...); ``eer`` / ``eer_all_pairs`` are ``[A, B]`` (means over seeds)."""
    from .eval.saved_scores import ScoresError, compare_runs

    out = []
    for claim, better, worse in CLAIMS:
        a, b = systems.get(better), systems.get(worse)
        rec: dict[str, Any] = {"claim": claim, "better": better, "worse": worse,
                               "eer": [(a or {}).get("eer"), (b or {}).get("eer")],
                               "eer_all_pairs": [(a or {}).get("eer_all_pairs"), (b or {}).get("eer_all_pairs")]}
        for on, sfx in (("trials", ""), ("all_pairs", "_all_pairs")):
            rec[f"outcome{sfx}"] = rec[f"diff{sfx}"] = rec[f"diff_ci{sfx}"] = None
            if a is None or b is None:
                rec[f"reason{sfx}"] = f"no {better if a is None else worse} run"
                continue
            files = lambda r: [x["scores_file"] for x in r.get("runs") or [r]]  # noqa: E731
            try:
                c = compare_runs(files(a), files(b), on=on, n_reps=n_reps)
            except (ScoresError, ValueError) as e:
                rec[f"reason{sfx}"] = str(e)
                continue
            rec.update({f"outcome{sfx}": c["outcome"], f"diff{sfx}": c["diff"], f"diff_ci{sfx}": c["ci"]})
            rec["n_seeds"] = c["n_seeds"]
        out.append(rec)
    return out


def collect(run_dirs: Iterable, extra_seconds: Mapping[str, float] | None = None, n_reps: int = CI_REPS) -> dict:
    """The summary dict of the finished runs among ``run_dirs`` (unfinished ones are listed under
    ``"missing"``)."""
    grouped: dict[str, list[dict]] = {}
    missing = []
    for d in run_dirs:
        try:
            for k, v in system_results(d).items():
                for other in grouped.get(k, []):
                    if other.get("seed") == v.get("seed"):
                        raise ValueError(f"system {k!r} appears twice with seed {v.get('seed')}: {other['run_dir']} "
                                         f"and {v['run_dir']}")
                grouped.setdefault(k, []).append(v)
        except RunError as e:
            missing.append({"run_dir": str(d), "reason": str(e)})
    systems = {k: _merge_seeds(v) for k, v in grouped.items()}
    ordered = {k: systems[k] for k in ORDER if k in systems}
    ordered.update({k: v for k, v in systems.items() if k not in ordered})
    seconds = {k: float(v["seconds"]) for k, v in ordered.items() if isinstance(v.get("seconds"), (int, float))}
    seconds["total"] = float(sum(seconds.values()))
    out = {"systems": ordered, "seconds": seconds, "ordering": ordering_checks(ordered, n_reps)}
    if extra_seconds:
        out["wall_seconds"] = {k: float(v) for k, v in extra_seconds.items()}
    if missing:
        out["missing"] = missing
    return out


def _num(v: Any, fmt: str) -> str:
    return format(v, fmt) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else "-"


def _skipped(r: Mapping[str, Any]) -> str:
    """``3 (0.06 %)``; ``-`` for a run that trained on nothing (random init) or predates the count."""
    n, f = r.get("skipped"), r.get("skipped_fraction")
    if not isinstance(n, int):
        return "-"
    return f"{n} ({100 * f:.2f} %)" if isinstance(f, (int, float)) and n else str(n)


def _ci(v: Any, fmt: str = ".2f") -> str:
    if isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, (int, float)) for x in v):
        return f" [{format(v[0], fmt)}, {format(v[1], fmt)}]"
    return ""


def _outcome(c: Mapping[str, Any], sfx: str) -> str:
    o = c.get(f"outcome{sfx}")
    if o is None:
        return f"n/a ({c.get(f'reason{sfx}', 'system missing')})"
    return f"**{o}** ({c[f'diff{sfx}']:+.2f}{_ci(c[f'diff_ci{sfx}'])})"


def to_markdown(summary: Mapping[str, Any]) -> str:
    """A results table with 95 % intervals, the claims and the compute spent."""
    lines = ["# Results", ""]
    if summary.get("note"):
        lines += [f"**{summary['note']}**", ""]
    lines += ["EER % with its 95 % interval in brackets (bootstrap over test speakers, "
              f"{CI_REPS} replicates); a system run with several seeds shows the mean over its seeds.", "",
              "| system | seeds | EER % (trials) | EER % (all pairs) | dev EER % (trials) | dev EER % (all pairs) "
              "| minDCF 0.01 | minDCF 0.05 | seconds | evaluated | skipped files |",
              "| --- | ---: | --- | --- | ---: | ---: | --- | --- | ---: | --- | ---: |"]
    for name, r in summary["systems"].items():
        label = f"{name} (round {r['round']})" if name.endswith("_rN") and "round" in r else name
        lines.append(f"| {label} | {len(r.get('seeds') or [None])} | {_num(r.get('eer'), '.2f')}{_ci(r.get('eer_ci'))} | "
                     f"{_num(r.get('eer_all_pairs'), '.2f')}{_ci(r.get('eer_all_pairs_ci'))} | "
                     f"{_num(r.get('dev_eer'), '.2f')} | {_num(r.get('dev_eer_all_pairs'), '.2f')} | "
                     f"{_num(r.get('mindcf_0.01'), '.3f')}{_ci(r.get('mindcf_0.01_ci'), '.3f')} | "
                     f"{_num(r.get('mindcf_0.05'), '.3f')}{_ci(r.get('mindcf_0.05_ci'), '.3f')} | "
                     f"{_num(r.get('seconds'), '.0f')} | {r.get('evaluated', '')} | {_skipped(r)} |")
    lines += ["", "## Claims", "",
              "EER(A) - EER(B) in points with its 95 % interval: a paired bootstrap over test speakers (and over "
              "seeds where a system has several); **better** / **worse** when the interval excludes 0, else "
              "**not separable**.", "",
              "| claim | trial list | all pairs |", "| --- | --- | --- |"]
    for c in summary["ordering"]:
        lines.append(f"| {c['claim']} | {_outcome(c, '')} | {_outcome(c, '_all_pairs')} |")
    lines += ["", "## Compute", "", "| stage | seconds |", "| --- | ---: |"]
    for k, v in summary["seconds"].items():
        lines.append(f"| {k} | {v:.0f} |")
    if summary.get("wall_seconds"):
        lines += ["", "Wall-clock per demo step:", "", "| step | seconds |", "| --- | ---: |"]
        for k, v in summary["wall_seconds"].items():
            lines.append(f"| {k} | {v:.0f} |")
    if summary.get("missing"):
        lines += ["", "## Missing runs", ""] + [f"- {m['run_dir']}: {m['reason']}" for m in summary["missing"]]
    return "\n".join(lines) + "\n"


def write_summary(summary: Mapping[str, Any], out_dir) -> tuple[Path, Path]:
    """Write ``summary.json`` and ``summary.md`` into ``out_dir`` (atomically)."""
    out_dir = Path(out_dir)
    j = atomic_write_json(out_dir / "summary.json", dict(summary))
    m = atomic_write_text(out_dir / "summary.md", to_markdown(summary))
    return j, m


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ssrl_lab.summary", description="Summarise finished runs.")
    ap.add_argument("runs", nargs="+", help="run directories")
    ap.add_argument("--out", required=True, help="folder for summary.json and summary.md")
    args = ap.parse_args(argv)
    s = collect(args.runs)
    j, m = write_summary(s, args.out)
    print(to_markdown(s))
    print(f"wrote {j} and {m}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
