"""Collect the results of several runs into ``summary.json`` and ``summary.md``.

``summary.json``::

    {"systems": {"random": {"eer": ..., "eer_all_pairs": ..., "mindcf_0.01": ..., "mindcf_0.05": ..., ...},
                 "dino": ..., "iterative_r1": ..., "iterative_rN": ..., "ssrl": ..., "supervised": ...},
     "seconds": {"random": ..., "dino": ..., ..., "total": ...},
     "ordering": [{"claim": "DINO better than random", "holds": true, "eer": [a, b], ...}, ...]}

EER values are percentages (5.0 = 5 %). ``dev_eer`` / ``dev_eer_all_pairs`` (and the dev minDCFs)
are the same metrics on the corpus's dev split, the split settings are chosen on; they are left out
for runs on a corpus without one. An iterative run contributes ``iterative_r1`` (its
``results_round1.json``) and ``iterative_rN`` (its ``results.json``, the last round; ``round``
says which); a run with ``init="finetune"`` (each round fine-tunes the current model rather than
training a new encoder) is named ``iterative_finetune_r1`` / ``iterative_finetune_rN``, so both
baselines can be compared side by side. ``seconds`` is the compute each run recorded (training +
evaluation); for an iterative run the whole run's seconds are counted once, under its ``_rN`` key.

``python -m ssrl_lab.summary RUN_DIR [RUN_DIR ...] --out DIR``
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from .runs import RunError, open_run
from .utils.io import atomic_write_json, atomic_write_text

FIELDS = ("eer", "eer_all_pairs", "mindcf_0.01", "mindcf_0.05", "mindcf_0.01_all_pairs", "mindcf_0.05_all_pairs",
          "n_trials", "n_pairs", "dev_eer", "dev_eer_all_pairs", "dev_mindcf_0.01", "dev_mindcf_0.05",
          "epochs", "seconds", "evaluated", "round")
ORDER = ("random", "dino", "iterative_r1", "iterative_rN", "iterative_finetune_r1", "iterative_finetune_rN", "ssrl",
         "supervised")
#: (claim, better system, worse system)
CLAIMS = (
    ("DINO better than random", "dino", "random"),
    ("SSRL better than iterative round 1", "ssrl", "iterative_r1"),
    ("SSRL better than iterative round N", "ssrl", "iterative_rN"),
    ("SSRL better than fine-tuned iterative round N", "ssrl", "iterative_finetune_rN"),
)


def _pick(res: Mapping[str, Any], run_dir: Path) -> dict:
    out = {k: res[k] for k in FIELDS if k in res and res[k] is not None}
    skipped = res.get("skipped")
    if isinstance(skipped, Mapping):  # training files the run skipped (up front and while training)
        out["skipped"] = skipped.get("files")
        out["skipped_fraction"] = skipped.get("fraction")
    out["run_dir"] = str(run_dir)
    return out


def system_results(run_dir) -> dict[str, dict]:
    """``{system key: results}`` of one finished run (raises RunError when unfinished)."""
    run = open_run(run_dir)
    res = run.results
    if res is None:
        raise RunError(f"{run.path} has no results.json (the run has not finished)")
    system = str(res.get("system") or run.name)
    if system != "iterative":
        return {system: _pick(res, run.path)}
    init = str(res.get("init") or "new")
    prefix = "iterative" if init == "new" else f"iterative_{init}"
    out = {}
    r1 = run.path / "results_round1.json"
    if r1.exists():
        out[f"{prefix}_r1"] = _pick(json.loads(r1.read_text(encoding="utf-8")), run.path)
        out[f"{prefix}_r1"].pop("seconds", None)  # counted once, with the whole run
    out[f"{prefix}_rN"] = _pick(res, run.path)
    return out


def ordering_checks(systems: Mapping[str, Mapping[str, Any]]) -> list[dict]:
    """Each claim of :data:`CLAIMS`: ``holds`` is True / False on the trial-list EER, None when a
    system is missing; ``holds_all_pairs`` the same on the all-pairs EER."""
    out = []
    for claim, better, worse in CLAIMS:
        rec: dict[str, Any] = {"claim": claim, "better": better, "worse": worse}
        for key, name in (("eer", "holds"), ("eer_all_pairs", "holds_all_pairs")):
            a = systems.get(better, {}).get(key)
            b = systems.get(worse, {}).get(key)
            ok = isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isfinite(a) and math.isfinite(b)
            rec[name] = (a < b) if ok else None
            rec[key] = [a, b]
        out.append(rec)
    return out


def collect(run_dirs: Iterable, extra_seconds: Mapping[str, float] | None = None) -> dict:
    """The summary dict of the finished runs among ``run_dirs`` (unfinished ones are listed under
    ``"missing"``)."""
    systems: dict[str, dict] = {}
    missing = []
    for d in run_dirs:
        try:
            for k, v in system_results(d).items():
                if k in systems:
                    raise ValueError(f"system {k!r} appears twice: {systems[k]['run_dir']} and {v['run_dir']}")
                systems[k] = v
        except RunError as e:
            missing.append({"run_dir": str(d), "reason": str(e)})
    ordered = {k: systems[k] for k in ORDER if k in systems}
    ordered.update({k: v for k, v in systems.items() if k not in ordered})
    seconds = {k: float(v["seconds"]) for k, v in ordered.items() if isinstance(v.get("seconds"), (int, float))}
    seconds["total"] = float(sum(seconds.values()))
    out = {"systems": ordered, "seconds": seconds, "ordering": ordering_checks(ordered)}
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


def _mark(h: bool | None) -> str:
    return "n/a (system missing)" if h is None else ("yes" if h else "NO")


def to_markdown(summary: Mapping[str, Any]) -> str:
    """A results table, the ordering checks and the compute spent."""
    lines = ["# Results", ""]
    if summary.get("note"):
        lines += [f"**{summary['note']}**", ""]
    lines += ["| system | EER % (trials) | EER % (all pairs) | dev EER % (trials) | dev EER % (all pairs) | minDCF 0.01 "
             "| minDCF 0.05 | seconds | evaluated | skipped files |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: |"]
    for name, r in summary["systems"].items():
        label = f"{name} (round {r['round']})" if name.endswith("_rN") and "round" in r else name
        lines.append(f"| {label} | {_num(r.get('eer'), '.2f')} | {_num(r.get('eer_all_pairs'), '.2f')} | "
                     f"{_num(r.get('dev_eer'), '.2f')} | {_num(r.get('dev_eer_all_pairs'), '.2f')} | "
                     f"{_num(r.get('mindcf_0.01'), '.3f')} | {_num(r.get('mindcf_0.05'), '.3f')} | "
                     f"{_num(r.get('seconds'), '.0f')} | {r.get('evaluated', '')} | {_skipped(r)} |")
    lines += ["", "## Expected ordering", "",
              "| claim | holds (trials EER) | holds (all-pairs EER) |", "| --- | --- | --- |"]
    for c in summary["ordering"]:
        lines.append(f"| {c['claim']} | {_mark(c['holds'])} | {_mark(c['holds_all_pairs'])} |")
    lines += ["", "One standard error of an EER on a few thousand trials is about 0.7-1 point: a margin "
              "smaller than that needs all-pairs scores and a second seed before it means anything.", ""]
    lines += ["## Compute", "", "| stage | seconds |", "| --- | ---: |"]
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
