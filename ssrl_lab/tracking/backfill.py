"""Backfill: runs that finished before tracking existed (or with ``tracking: "none"``) sent to
TensorBoard or MLflow afterwards, from their ``metrics.jsonl``, ``config.json`` and ``results.json``.

Every run directory under ``root`` (a folder holding ``metrics.jsonl``) is replayed line by line
into the chosen sink at the same steps a live run would have used, and closed with its results
(hparams / final metrics). The event files go into ``<out>/<the run's path under root>/tb/``, so a
committed archive stays untouched (``out`` defaults to ``root``). A run that already has event files
there is skipped (counted) unless ``force``. MLflow runs get a fresh run id each time.

    python -m ssrl_lab.tracking.backfill outputs/study-archive --out outputs/board/study40
    make board BOARD_DIR=outputs/board/study40
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Sequence

from ..utils.io import read_jsonl
from .fields import check_mode, scalars
from .tracker import Sink

log = logging.getLogger("ssrl_lab.tracking")

__all__ = ["backfill_run", "backfill"]


def _sink(mode: str, run_dir: Path, config: dict) -> Sink:
    if mode == "tensorboard":
        from .tensorboard_sink import TensorBoardSink

        return TensorBoardSink(run_dir, config)
    from .mlflow_sink import MLflowSink

    return MLflowSink(run_dir, config)


def backfill_run(run_dir, out_dir, mode: str = "tensorboard") -> int:
    """Replay one run's ``metrics.jsonl`` into ``mode``'s sink writing under ``out_dir``; returns
    the number of lines sent. Raises FileNotFoundError without ``metrics.jsonl``."""
    check_mode(mode)
    if mode == "none":
        raise ValueError("backfill needs a back-end: tensorboard or mlflow")
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    lines = read_jsonl(run_dir / "metrics.jsonl") if (run_dir / "metrics.jsonl").exists() else None
    if lines is None:
        raise FileNotFoundError(f"{run_dir / 'metrics.jsonl'} does not exist")
    config = json.loads((run_dir / "config.json").read_text()) if (run_dir / "config.json").exists() else {}
    out_dir.mkdir(parents=True, exist_ok=True)
    sink = _sink(mode, out_dir, {**config, "tracking": mode})
    sink.open(0)
    try:
        for step, rec in enumerate(lines):
            sink.log(step, scalars(rec), {})
        res = run_dir / "results.json"
        if res.exists():
            sink.finish(max(len(lines) - 1, 0), json.loads(res.read_text()))
    finally:
        sink.close()
    return len(lines)


def backfill(root, out=None, mode: str = "tensorboard", force: bool = False) -> dict[str, int]:
    """Backfill every run directory under ``root``; returns ``{"runs", "lines", "skipped"}``."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a folder")
    out = Path(out) if out is not None else root
    done = {"runs": 0, "lines": 0, "skipped": 0}
    for metrics in sorted(root.rglob("metrics.jsonl")):
        run_dir = metrics.parent
        dest = out / run_dir.relative_to(root)
        if mode == "tensorboard" and not force and any((dest / "tb").glob("events.out.tfevents.*")):
            log.info("backfill: %s already has event files: skipped (force to add another)", dest)
            done["skipped"] += 1
            continue
        done["lines"] += backfill_run(run_dir, dest, mode)
        done["runs"] += 1
    return done


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ssrl_lab.tracking.backfill", description=__doc__.split("\n\n")[0])
    ap.add_argument("root", help="a folder of run directories (e.g. outputs/study-archive)")
    ap.add_argument("--out", default=None, help="where the event files go (default: beside each run)")
    ap.add_argument("--tracking", default="tensorboard", choices=("tensorboard", "mlflow"))
    ap.add_argument("--force", action="store_true", help="backfill runs that already have event files")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        done = backfill(args.root, args.out, args.tracking, args.force)
    except FileNotFoundError as e:
        print(f"backfill refused: {e}", file=sys.stderr)
        return 2
    print(f"backfill: {done['runs']} run(s), {done['lines']} line(s) sent to {args.tracking}; "
          f"{done['skipped']} skipped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
