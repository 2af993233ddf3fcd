"""The shared command line of every trainer.

``python -m ssrl_lab.train.<method> --profile P --corpus DIR --run-dir DIR [--resume] [--quiet] [key=value ...]``

Overrides are ``key=value`` pairs; a value is parsed as JSON when it parses (``lr=1e-3``,
``amp="off"``, ``crops=[2,4]``, ``sync_bn=true``) and kept as a string otherwise
(``amp=off``). Nested keys use dots: ``encoder.channels=64``. Works under ``torchrun``.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any, Callable, Sequence

from ..config import ConfigError
from .guards import TrainingDiverged
from .signals import TrainingInterrupted


def parse_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """``["a.b=1", "c=x"]`` -> ``{"a": {"b": 1}, "c": "x"}``; malformed pairs raise ConfigError."""
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"override {pair!r} is not of the form key=value")
        key, raw = pair.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"override {pair!r} has an empty key")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            nxt = node.setdefault(p, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"override {pair!r}: {p!r} was already given a value")
            node = nxt
        node[parts[-1]] = value
    return out


def build_parser(method: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=f"python -m ssrl_lab.train.{method}",
                                 description=f"Train / evaluate the {method} system.")
    ap.add_argument("--profile", default="demo", help="smoke | demo | vox (default demo)")
    ap.add_argument("--corpus", required=True, help="corpus directory (holding corpus.json)")
    ap.add_argument("--run-dir", required=True, help="run directory, e.g. outputs/dino")
    ap.add_argument("--resume", action="store_true", help="continue (or return) the run in --run-dir")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    ap.add_argument("overrides", nargs="*", help="key=value config overrides (JSON values; dotted keys)")
    return ap


def main(method: str, config_cls, train_fn: Callable, argv: Sequence[str] | None = None) -> int:
    """Parse arguments, build ``config_cls.profile(...)``, run ``train_fn``.

    Exit status: 0 done; 2 configuration error; 3 training diverged (NaN loss, DINO collapse;
    the last good checkpoint is kept); 128 + signum when stopped by SIGTERM (143) or SIGINT
    (130) after checkpointing - continue with ``--resume``.
    """
    args = build_parser(method).parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        overrides = parse_overrides(args.overrides)
        overrides["corpus"] = args.corpus
        overrides["run_dir"] = args.run_dir
        cfg = config_cls.profile(args.profile, **overrides)
        results = train_fn(cfg, resume=args.resume, progress=not args.quiet)
    except ConfigError as e:
        print(f"{method}: configuration error: {e}", file=sys.stderr)
        return 2
    except TrainingInterrupted as e:  # SIGTERM / SIGINT: checkpoint saved at a step boundary
        print(f"{method}: {e}", file=sys.stderr)
        return e.exit_code
    except TrainingDiverged as e:  # NaN loss / DINO collapse: the last good checkpoint is kept
        print(f"{method}: training stopped: {e}", file=sys.stderr)
        return 3
    from . import distributed as dist

    if dist.is_main() and results is not None:
        print(json.dumps({k: v for k, v in results.items() if not isinstance(v, (list, dict))}, indent=1))
    dist.cleanup()
    return 0
