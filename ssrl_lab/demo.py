"""``make demo``: every system on one corpus, executed notebooks, plots and a summary.

``python -m ssrl_lab.demo --corpus data/synthvox-demo --out outputs/demo [--profile demo]``

Steps (each resumes or returns stored results when its run directory already holds them, so a
second ``make demo`` only redoes what is missing):

1. evaluate a randomly initialised encoder (``<out>/random``);
2. ``notebooks/01_dino.ipynb`` -> ``<out>/dino`` (stage 1);
3. ``notebooks/02_iterative.ipynb`` -> ``<out>/iterative`` (the baseline's rounds, from DINO,
   a new encoder each round as in the paper: ``init="new"``);
4. ``notebooks/02_iterative.ipynb`` with ``init=STRONGEST_PROTOCOL`` -> ``<out>/iterative_<init>``
   (the iterative protocol the compute-matched study found strongest, by mean dev EER over seeds
   at the demo's budget: ``finetune``, fine-tuning the current model each round);
5. ``notebooks/03_ssrl.ipynb`` -> ``<out>/ssrl`` (SSRL, from DINO);
6. ``notebooks/04_compare.ipynb`` -> ``<out>/compare`` plots and ``<out>/summary.json`` / ``summary.md``.

The executed notebooks are saved as ``<out>/0N_*.ipynb`` (the second baseline's as
``02_iterative_<init>.ipynb``); every run's plots are HTML files under ``<run>/plots/``. The
wall-clock seconds of each step are added to the summary.

Before anything runs the demo prints its plan with each step's estimated time (measured on two
idle CPU cores, :data:`ESTIMATES_S`); while it runs every training stage prints one progress line
per epoch (:mod:`ssrl_lab.progress`) with an ETA for the stage and for the whole demo (the plan
is written to ``<out>/plan.json`` and named in ``SSRL_LAB_PLAN`` for the notebook kernels).

``--quick`` (``make demo QUICK=1``) runs the same pipeline on the smoke profile and the SynthVox
smoke corpus (8 training speakers, about two minutes) into ``outputs/demo-quick``: it checks
that everything runs; its numbers are labelled as not comparable with the demo's.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Sequence

from . import notebook_params as nbp
from . import notebook_run
from . import progress as prog
from . import summary as sm

#: The iterative protocol run beside the paper's (``new``): the strongest of ``finetune`` and
#: ``stage1`` in the compute-matched study, by mean dev EER over seeds at the demo's budget of 12
#: stage-2 epochs (:func:`ssrl_lab.study.strongest_protocol` on ``outputs/study-archive/study.json``;
#: tests/test_study.py checks the two agree). Test EER plays no part in the choice.
STRONGEST_PROTOCOL = "finetune"
BASELINES = ("iterative", f"iterative_{STRONGEST_PROTOCOL}")
STEPS = ("random", "dino", *BASELINES, "ssrl", "compare")

#: Estimated seconds per step on two idle CPU cores. demo: the fresh-clone ``make demo`` in the
#: README (corpus 80 s, DINO 12 min, each iterative baseline 3 min, SSRL 4 min, 24 min in all);
#: smoke: ``make demo QUICK=1`` measured on the development machine (about 2 min). ``iterative_stage1``
#: (run only when it is STRONGEST_PROTOCOL) is not measured in the demo: it takes finetune's figures.
ESTIMATES_S = {
    "demo": {"corpus": 80, "random": 20, "dino": 720, "iterative": 180, "iterative_finetune": 180,
             "iterative_stage1": 180, "ssrl": 240, "compare": 30},
    "smoke": {"corpus": 7, "random": 5, "dino": 25, "iterative": 21, "iterative_finetune": 26, "iterative_stage1": 26,
              "ssrl": 14, "compare": 8},
}
WHAT = {"corpus": "build the SynthVox corpus (skipped when built)", "random": "evaluate a random-init encoder",
        "dino": "01_dino: DINO pre-training", "iterative": "02_iterative: iterative pseudo-labelling, new encoder each round",
        "iterative_finetune": "02_iterative: iterative pseudo-labelling, fine-tuning the DINO model",
        "iterative_stage1": "02_iterative: iterative pseudo-labelling, restarting from the DINO model",
        "ssrl": "03_ssrl: SSRL from the DINO model", "compare": "04_compare: tables, plots, summary"}
QUICK_NOTE = ("QUICK run (make demo QUICK=1): smoke profile on the 8-speaker SynthVox smoke corpus. It only checks "
              "that the pipeline runs; its numbers are NOT comparable with the demo's or with each other.")


def run_notebook(name: str, out_dir: Path, parameters: dict, kernel: str = "python3",
                 out_name: str | None = None) -> Path:
    """Execute ``notebooks/<name>`` with papermill into ``<out_dir>/<out_name or name>``."""
    src = nbp.repo_root() / "notebooks" / name
    if not src.exists():
        raise FileNotFoundError(f"notebook {src} does not exist")
    return notebook_run.execute(src, out_dir / (out_name or name), parameters, kernel, cwd=src.parent)


def evaluate_random(profile: str, corpus: Path, run_dir: Path) -> dict:
    from .train.random_init import RandomInitConfig, train

    cfg = RandomInitConfig.profile(profile, corpus=str(corpus), run_dir=str(run_dir))
    return train(cfg, resume=True, progress=False)


def print_plan(steps: Sequence[prog.PlanStep], profile: str, out: Path, quick: bool) -> None:
    total = sum(st.estimate_s for st in steps)
    print(f"[demo] plan ({'QUICK, ' if quick else ''}profile {profile}) -> {out}; about {prog.fmt_duration(total)} "
          "on two idle CPU cores (steps already done are reused):", flush=True)
    for n, st in enumerate(steps, start=1):
        print(f"[demo]   {n}. {WHAT.get(st.step, st.step):<68} ~{prog.fmt_duration(st.estimate_s)}", flush=True)
    print("[demo] every training stage prints a [progress] line per epoch with ETAs for the stage and the demo",
          flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ssrl_lab.demo", description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", default=None, help="corpus folder (corpus.json) (default: data/synthvox-<profile>)")
    ap.add_argument("--out", default=None, help="output folder (default: outputs/demo, --quick: outputs/demo-quick)")
    ap.add_argument("--profile", default=None, choices=nbp.PROFILES, help="default: demo (--quick: smoke)")
    ap.add_argument("--kernel", default="python3", help="Jupyter kernel for papermill")
    ap.add_argument("--quick", action="store_true",
                    help="the smoke profile and corpus: the whole pipeline in about two minutes, numbers not comparable")
    ap.add_argument("--build-corpus", action="store_true", help="build the SynthVox corpus first when it is missing")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    profile = args.profile or ("smoke" if args.quick else "demo")
    corpus = nbp.resolve_path(args.corpus or nbp.DEFAULT_CORPORA.get(profile, "data/synthvox-demo"))
    out = nbp.resolve_path(args.out or ("outputs/demo-quick" if args.quick else "outputs/demo"))
    build = args.build_corpus and not (corpus / "corpus.json").exists()
    if not build and not (corpus / "corpus.json").exists():
        print(f"demo: {corpus} holds no corpus.json; build it first: "
              f"python -m ssrl_lab.data.synthvox --profile {profile} --out {corpus}", file=sys.stderr)
        return 2
    dirs = {s: out / s for s in STEPS}
    est = ESTIMATES_S.get(profile, ESTIMATES_S["demo"])
    steps = ([prog.PlanStep("corpus", est["corpus"])] if build else []) + [
        prog.PlanStep(s, est[s], str(dirs[s]) if s != "compare" else None) for s in STEPS]
    print_plan(steps, profile, out, args.quick)
    if build:
        from .data import synthvox

        print(f"[demo] building SynthVox ({profile}) in {corpus}", flush=True)
        rc = synthvox.main(["--profile", profile, "--out", str(corpus)])
        if rc:
            return rc
    out.mkdir(parents=True, exist_ok=True)
    os.environ[prog.PLAN_ENV] = str(prog.write_plan(out / "plan.json", "demo", steps))
    common = {"profile": profile, "corpus": str(corpus)}
    runs = [str(dirs[s]) for s in ("random", "dino", *BASELINES, "ssrl")]
    from_dino = {**common, "dino_run": str(dirs["dino"])}
    # (step, notebook, parameters, executed notebook's name)
    plan = [
        ("dino", "01_dino.ipynb", {**common, "run_dir": str(dirs["dino"])}, None),
        ("iterative", "02_iterative.ipynb", {**from_dino, "run_dir": str(dirs["iterative"])}, None),
        (BASELINES[1], "02_iterative.ipynb", {**from_dino, "run_dir": str(dirs[BASELINES[1]]), "init": STRONGEST_PROTOCOL},
         f"02_{BASELINES[1]}.ipynb"),
        ("ssrl", "03_ssrl.ipynb", {**from_dino, "run_dir": str(dirs["ssrl"])}, None),
        ("compare", "04_compare.ipynb", {"profile": profile, "run_dir": str(dirs["compare"]), "summary_out": str(out),
                                         "runs": runs}, None),
    ]
    wall: dict[str, float] = {}
    t_all = time.perf_counter()
    t0 = time.perf_counter()
    print(f"[demo] random-init evaluation -> {dirs['random']}", flush=True)
    evaluate_random(profile, corpus, dirs["random"])
    wall["random"] = time.perf_counter() - t0
    left = sum(est[s] for s in STEPS[1:])
    for step, name, params, out_name in plan:
        executed = out / (out_name or name)
        print(f"[demo] {name} -> {executed} (run {dirs[step]}; ~{prog.fmt_duration(est[step])}, "
              f"demo ~{prog.fmt_duration(left)} left)", flush=True)
        t0 = time.perf_counter()
        try:
            run_notebook(name, out, params, args.kernel, out_name)
        except Exception as e:
            print(f"[demo] {name} failed: {str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__}\n"
                  f"[demo] the executed notebook with the error is {executed}", file=sys.stderr)
            return 1
        wall[step] = time.perf_counter() - t0
        left -= est[step]
        print(f"[demo] {step} done in {prog.fmt_duration(wall[step])}", flush=True)
    wall["total"] = time.perf_counter() - t_all
    summ = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    summ["wall_seconds"] = wall
    if args.quick:
        summ["quick"] = True
        summ["note"] = QUICK_NOTE
    j, m = sm.write_summary(summ, out)
    print(sm.to_markdown(summ))
    print(f"[demo] done in {prog.fmt_duration(wall['total'])}. Look at:")
    print(f"  {m}  (results table and the expected ordering)")
    print(f"  {j}")
    for step, name, _, out_name in plan:
        print(f"  {out / (out_name or name)}  (executed notebook)   plots: {dirs[step] / 'plots'}/*.html")
    return 0


if __name__ == "__main__":
    sys.exit(main())
