"""What tracking costs: SSRL smoke runs with ``tracking`` none, tensorboard and mlflow side by side.

Every mode trains the same SSRL smoke run (the ``smoke`` profile, ``--epochs`` epochs, evaluated every
epoch) from one smoke DINO run, the modes interleaved ``--repeats`` times; MLflow writes to a fresh
sqlite store in a temporary folder (the default local store's kind). The tracker's own calls
(:class:`ssrl_lab.tracking.tracker.Tracker`: ``log`` once per metrics line, ``finish`` at the end)
are timed around the real calls. Reported per mode: the median epoch (``metrics.jsonl``'s
``seconds``), the median tracking seconds per epoch line (the first line, which opens the sink, is
reported apart as ``open_s``, and ``finish_s``: hparams, artifacts), and the per-epoch share
``tracking / epoch``, also against the fastest epoch of all modes (on a shared machine the load
changes between runs; that share is the conservative one), the figure in ``bench/RESULTS.md``
(budget: under 2 % of a smoke epoch).

    .venv/bin/python bench/tracking.py                       # builds the smoke corpus in a temporary folder
    .venv/bin/python bench/tracking.py --corpus data/synthvox-smoke --repeats 3
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

MODES = ("none", "tensorboard", "mlflow")


def _timed_tracker(times: dict):
    """Time every ``Tracker.log`` / ``Tracker.finish`` call of this process into ``times``; returns
    the function that puts the untimed methods back."""
    from ssrl_lab.tracking.tracker import Tracker

    log, finish = Tracker.log, Tracker.finish

    def timed_log(self, *a, **k):
        if not self.active:  # tracking "none" (or a failed sink): nothing to time
            return log(self, *a, **k)
        first = self.step is None
        t0 = time.perf_counter()
        log(self, *a, **k)
        times["open" if first else "log"].append(time.perf_counter() - t0)

    def timed_finish(self, *a, **k):
        if not self.active:
            return finish(self, *a, **k)
        t0 = time.perf_counter()
        finish(self, *a, **k)
        times["finish"].append(time.perf_counter() - t0)

    Tracker.log, Tracker.finish = timed_log, timed_finish

    def restore() -> None:
        Tracker.log, Tracker.finish = log, finish

    return restore


def run(corpus: Path, dino: Path, out: Path, mode: str, epochs: int) -> dict:
    from ssrl_lab.train.ssrl import SSRLConfig, train
    from ssrl_lab.utils.io import read_jsonl

    times: dict = {"open": [], "log": [], "finish": []}
    restore = _timed_tracker(times)
    try:
        t0 = time.perf_counter()
        train(SSRLConfig.profile("smoke", corpus=str(corpus), run_dir=str(out), dino_run=str(dino), device="cpu",
                                 epochs=epochs, eval_every=1, tracking=mode), progress=False)
        wall = time.perf_counter() - t0
    finally:
        restore()
    epochs_s = [r["seconds"] for r in read_jsonl(out / "metrics.jsonl") if r.get("stage") == "ssrl"]
    if mode != "none":
        assert times["open"] and times["finish"], f"{mode}: the tracker was not called"
    return {"wall_s": wall, "epoch_s": statistics.median(epochs_s), "log_s": times["log"],
            "open_s": sum(times["open"]), "finish_s": sum(times["finish"])}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", help="a smoke corpus (default: build one in the temporary folder)")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--dir", help="work folder (default: a temporary one, removed afterwards)")
    args = ap.parse_args(argv)
    uri_before = os.environ.get("MLFLOW_TRACKING_URI")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        tmp = Path(tmp)
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}"
        (tmp / "mlruns").mkdir()
        corpus = Path(args.corpus) if args.corpus else None
        if corpus is None:
            from ssrl_lab.data.synthvox import build_synthvox

            corpus = build_synthvox(tmp / "corpus", "smoke", seed=0)
        from ssrl_lab.train.dino import DINOConfig
        from ssrl_lab.train.dino import train as dino_train

        dino_train(DINOConfig.profile("smoke", corpus=str(corpus), run_dir=str(tmp / "dino"), device="cpu", epochs=1,
                                      eval_every=0, tracking="none"), progress=False)
        rows: dict[str, list[dict]] = {m: [] for m in MODES}
        for rep in range(args.repeats):
            for mode in MODES:
                rows[mode].append(run(corpus, tmp / "dino", tmp / f"{mode}-{rep}", mode, args.epochs))
        if uri_before is None:
            os.environ.pop("MLFLOW_TRACKING_URI")
        else:
            os.environ["MLFLOW_TRACKING_URI"] = uri_before
    report = {}
    fastest = min(r["epoch_s"] for rs in rows.values() for r in rs)  # the least loaded epoch: the conservative share
    for mode, rs in rows.items():
        epoch_s = statistics.median(r["epoch_s"] for r in rs)
        logs = [t for r in rs for t in r["log_s"]]
        log_s = statistics.median(logs) if logs else 0.0
        report[mode] = {"epoch_s": epoch_s, "wall_s": statistics.median(r["wall_s"] for r in rs),
                        "log_s_per_epoch": log_s, "share_of_epoch": log_s / epoch_s,
                        "share_of_fastest_epoch": log_s / fastest,
                        "open_s": statistics.median(r["open_s"] for r in rs),
                        "finish_s": statistics.median(r["finish_s"] for r in rs)}
    print(f"SSRL smoke, {args.epochs} epochs evaluated every epoch, {args.repeats} repeat(s) per mode (medians)")
    print(f"{'mode':<12} {'epoch s':>8} {'run s':>8} {'tracking s/epoch':>17} {'share':>7} {'of fastest':>10} "
          f"{'open s':>7} {'finish s':>9}")
    for mode, r in report.items():
        print(f"{mode:<12} {r['epoch_s']:8.3f} {r['wall_s']:8.2f} {r['log_s_per_epoch']:17.4f} "
              f"{100 * r['share_of_epoch']:6.2f}% {100 * r['share_of_fastest_epoch']:9.2f}% {r['open_s']:7.3f} "
              f"{r['finish_s']:9.3f}")
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
