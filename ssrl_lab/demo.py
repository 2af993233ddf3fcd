"""``make demo``: every system on one corpus, executed notebooks, plots and a summary.

``python -m ssrl_lab.demo --corpus data/synthvox-demo --out outputs/demo [--profile demo]``

Steps (each resumes or returns stored results when its run directory already holds them, so a
second ``make demo`` only redoes what is missing):

1. evaluate a randomly initialised encoder (``<out>/random``);
2. ``notebooks/01_dino.ipynb`` -> ``<out>/dino`` (stage 1);
3. ``notebooks/02_iterative.ipynb`` -> ``<out>/iterative`` (the baseline's rounds, from DINO,
   a new encoder each round as in the paper);
4. ``notebooks/02_iterative.ipynb`` with ``init="finetune"`` -> ``<out>/iterative_finetune`` (the
   same baseline fine-tuning the current model each round: on SynthVox the stronger of the two);
5. ``notebooks/03_ssrl.ipynb`` -> ``<out>/ssrl`` (SSRL, from DINO);
6. ``notebooks/04_compare.ipynb`` -> ``<out>/compare`` plots and ``<out>/summary.json`` / ``summary.md``.

The executed notebooks are saved as ``<out>/0N_*.ipynb`` (the fine-tuned baseline's as
``02_iterative_finetune.ipynb``); every run's plots are HTML files under ``<run>/plots/``. The
wall-clock seconds of each step are added to the summary.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Sequence

from . import notebook_params as nbp
from . import summary as sm

STEPS = ("random", "dino", "iterative", "iterative_finetune", "ssrl", "compare")


def run_notebook(name: str, out_dir: Path, parameters: dict, kernel: str = "python3",
                 out_name: str | None = None) -> Path:
    """Execute ``notebooks/<name>`` with papermill into ``<out_dir>/<out_name or name>``."""
    import papermill as pm

    src = nbp.repo_root() / "notebooks" / name
    if not src.exists():
        raise FileNotFoundError(f"notebook {src} does not exist")
    dst = out_dir / (out_name or name)
    pm.execute_notebook(str(src), str(dst), parameters=parameters, kernel_name=kernel, progress_bar=False,
                        cwd=str(src.parent))
    return dst


def evaluate_random(profile: str, corpus: Path, run_dir: Path) -> dict:
    from .train.random_init import RandomInitConfig, train

    cfg = RandomInitConfig.profile(profile, corpus=str(corpus), run_dir=str(run_dir))
    return train(cfg, resume=True, progress=False)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ssrl_lab.demo", description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", default="data/synthvox-demo", help="corpus folder (corpus.json)")
    ap.add_argument("--out", default="outputs/demo", help="output folder")
    ap.add_argument("--profile", default="demo", choices=nbp.PROFILES)
    ap.add_argument("--kernel", default="python3", help="Jupyter kernel for papermill")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    corpus = nbp.resolve_path(args.corpus)
    out = nbp.resolve_path(args.out)
    if not (corpus / "corpus.json").exists():
        print(f"demo: {corpus} holds no corpus.json; build it first: "
              f"python -m ssrl_lab.data.synthvox --profile {args.profile} --out {args.corpus}", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    dirs = {s: out / s for s in STEPS}
    common = {"profile": args.profile, "corpus": str(corpus)}
    runs = [str(dirs[s]) for s in ("random", "dino", "iterative", "iterative_finetune", "ssrl")]
    from_dino = {**common, "dino_run": str(dirs["dino"])}
    # (step, notebook, parameters, executed notebook's name)
    plan = [
        ("dino", "01_dino.ipynb", {**common, "run_dir": str(dirs["dino"])}, None),
        ("iterative", "02_iterative.ipynb", {**from_dino, "run_dir": str(dirs["iterative"])}, None),
        ("iterative_finetune", "02_iterative.ipynb",
         {**from_dino, "run_dir": str(dirs["iterative_finetune"]), "init": "finetune"}, "02_iterative_finetune.ipynb"),
        ("ssrl", "03_ssrl.ipynb", {**from_dino, "run_dir": str(dirs["ssrl"])}, None),
        ("compare", "04_compare.ipynb", {"profile": args.profile, "run_dir": str(dirs["compare"]), "summary_out": str(out),
                                         "runs": runs}, None),
    ]
    wall: dict[str, float] = {}
    t_all = time.perf_counter()
    t0 = time.perf_counter()
    print(f"[demo] random-init evaluation -> {dirs['random']}", flush=True)
    evaluate_random(args.profile, corpus, dirs["random"])
    wall["random"] = time.perf_counter() - t0
    for step, name, params, out_name in plan:
        executed = out / (out_name or name)
        print(f"[demo] {name} -> {executed} (run {dirs[step]})", flush=True)
        t0 = time.perf_counter()
        try:
            run_notebook(name, out, params, args.kernel, out_name)
        except Exception as e:
            print(f"[demo] {name} failed: {str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__}\n"
                  f"[demo] the executed notebook with the error is {executed}", file=sys.stderr)
            return 1
        wall[step] = time.perf_counter() - t0
    wall["total"] = time.perf_counter() - t_all
    summ = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    summ["wall_seconds"] = wall
    j, m = sm.write_summary(summ, out)
    print(sm.to_markdown(summ))
    print("[demo] done. Look at:")
    print(f"  {m}  (results table and the expected ordering)")
    print(f"  {j}")
    for step, name, _, out_name in plan:
        print(f"  {out / (out_name or name)}  (executed notebook)   plots: {dirs[step] / 'plots'}/*.html")
    return 0


if __name__ == "__main__":
    sys.exit(main())
