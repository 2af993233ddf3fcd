"""The golden record of every trainer on the smoke profile: the proof that a refactor keeps behaviour.

Runs each method with fixed seeds on the SynthVox smoke corpus: DINO, random init, supervised, the
iterative baseline with each ``init`` and SSRL with each noise model, and records every metrics
line, every results file and SSRL's final labels, without what varies between runs on one machine
(wall times, paths). ``tests/test_golden.py`` compares a fresh record with the committed
``golden.json``: integers, strings and flags exactly, floats to a relative 1e-4 (CPU kernels differ
slightly between machines).

The script uses only public entry points (``train(cfg)`` of each method), so it runs at any commit.
Regenerate the file from the commit *before* a refactor, never from refactored code::

    git worktree add /tmp/pre <commit> && cd /tmp/pre && python tests/golden/make_golden.py --out tests/golden/golden.json

Training is chaotic: a different CPU (another instruction set, so other float kernels) drifts past
1e-4 within a few steps. The file therefore records the machine (``_machine``: CPU capability and
model, torch version, threads) and the reference commit; on another machine the test rebuilds the
record from that commit's code (``git archive``) and compares with it instead.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

#: (name, module, config overrides); stage-2 runs start from the ``dino`` run. Evaluation only at the
#: end and no explorer snapshots (tests/test_snapshots.py covers them): embedding dominates the cost
RUNS = (
    ("dino", "dino", dict(epochs=2, max_steps_per_epoch=3, eval_every=0, snapshots={"enabled": False})),
    ("random", "random_init", dict()),
    ("supervised", "supervised", dict(epochs=2, max_steps_per_epoch=3)),
    ("iterative_new", "iterative", dict(init="new", rounds=2, epochs=1, max_steps_per_epoch=3)),
    ("iterative_finetune", "iterative", dict(init="finetune", rounds=2, epochs=1, max_steps_per_epoch=3)),
    ("iterative_stage1", "iterative", dict(init="stage1", rounds=2, epochs=1, max_steps_per_epoch=3)),
    ("ssrl_gmm", "ssrl", dict(noise_model="gmm", epochs=3, max_steps_per_epoch=3, snapshots={"enabled": False})),
    ("ssrl_none", "ssrl", dict(noise_model="none", epochs=3, max_steps_per_epoch=3, snapshots={"enabled": False})),
    ("ssrl_gate", "ssrl", dict(noise_model="gate", gate_threshold=2.5, epochs=3, max_steps_per_epoch=3, snapshots={"enabled": False})),
)
STAGE2 = ("iterative", "ssrl")
#: each trainer module's config class, as its module exports it
CONFIGS = {"dino": "DINOConfig", "random_init": "RandomInitConfig", "supervised": "SupervisedConfig",
           "iterative": "IterativeConfig", "ssrl": "SSRLConfig"}
#: keys that vary between two runs of one commit on one machine
VOLATILE = ("seconds", "run_dir", "path", "file", "eta", "wall", "snapshot", "corpus", "dino_run", "time")


def _volatile(key: str) -> bool:
    k = key.lower()
    return any(v in k for v in VOLATILE) or k.endswith(("_s_per_epoch", "_share"))  # shares of wall time


def clean(obj):
    """``obj`` without volatile keys (recursively), with non-finite floats as strings."""
    if isinstance(obj, dict):
        return {k: clean(v) for k, v in sorted(obj.items()) if not _volatile(str(k))}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return repr(obj)
    return obj


def _config(module: str, corpus: str, run_dir: Path, dino_dir: Path, overrides: dict):
    import importlib

    mod = importlib.import_module(f"ssrl_lab.train.{module}")
    cls = getattr(mod, CONFIGS[module])  # the public name, wherever the class is defined
    extra = dict(dino_run=str(dino_dir)) if module in STAGE2 else {}
    return mod, cls.profile("smoke", corpus=corpus, run_dir=str(run_dir), device="cpu", seed=0, **extra, **overrides)


def machine() -> dict:
    """What decides the float kernels: torch's CPU capability, the CPU model, torch, threads."""
    import platform

    import torch

    model = ""
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        model = platform.processor()
    return {"cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpu_model": model,
            "torch": torch.__version__, "threads": torch.get_num_threads()}


def record(corpus, work) -> dict:
    """Train every run of :data:`RUNS` under ``work`` and return the cleaned record."""
    import numpy as np

    work = Path(work)
    out = {}
    for name, module, overrides in RUNS:
        run_dir = work / name
        mod, cfg = _config(module, str(corpus), run_dir, work / "dino", overrides)
        mod.train(cfg, progress=False)
        rec = {"metrics": [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]}
        for p in sorted(run_dir.glob("results*.json")):
            rec[p.stem] = json.loads(p.read_text())
        if (run_dir / "history.npz").exists():
            with np.load(run_dir / "history.npz") as h:
                if "labels" in h.files:
                    rec["final_labels"] = np.asarray(h["labels"])[-1].astype(int).tolist()
        out[name] = clean(rec)
    return out


def compare(got, want, where: str = "", rel: float = 1e-4, abs_tol: float = 1e-6) -> list[str]:
    """The differences between two records: integers, strings, flags and None exactly, floats to
    ``rel`` (and ``abs_tol`` near 0)."""
    diffs: list[str] = []
    if isinstance(want, dict) and isinstance(got, dict):
        for k in sorted(set(want) | set(got)):
            if k not in got or k not in want:
                diffs.append(f"{where}.{k}: {'missing' if k not in got else 'unexpected'}")
            else:
                diffs += compare(got[k], want[k], f"{where}.{k}", rel, abs_tol)
    elif isinstance(want, list) and isinstance(got, list):
        if len(got) != len(want):
            diffs.append(f"{where}: length {len(got)} != {len(want)}")
        else:
            for i, (g, w) in enumerate(zip(got, want)):
                diffs += compare(g, w, f"{where}[{i}]", rel, abs_tol)
    elif isinstance(want, float) or isinstance(got, float):
        ok = isinstance(got, (int, float)) and not isinstance(got, bool) and math.isclose(got, want, rel_tol=rel,
                                                                                          abs_tol=abs_tol)
        if not ok:
            diffs.append(f"{where}: {got!r} != {want!r}")
    elif got != want or type(got) is not type(want):
        diffs.append(f"{where}: {got!r} != {want!r}")
    return diffs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(Path(__file__).with_name("golden.json")))
    ap.add_argument("--corpus", default=None, help="the SynthVox smoke corpus (default: built in a temporary folder)")
    ap.add_argument("--commit", default=None, help="the commit whose code this is (recorded in _machine)")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = args.corpus
        if corpus is None:
            from ssrl_lab.data.synthvox import build_synthvox

            corpus = build_synthvox(Path(tmp) / "smoke-corpus", "smoke", seed=0)
        rec = record(corpus, Path(tmp) / "runs")
    rec["_machine"] = {**machine(), "commit": args.commit}
    Path(args.out).write_text(json.dumps(rec, indent=1, sort_keys=True) + "\n")
    print(f"wrote {args.out}: {', '.join(rec)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
