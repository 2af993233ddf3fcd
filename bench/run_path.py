"""The path of a run through the package: which ``ssrl_lab`` modules ``ssrl.train(cfg)`` visits, in
order, before its first training step, and how often it comes back to a module it has left.

Definition (what is counted)
----------------------------
``sys.setprofile`` watches SSRL's ``train(cfg)`` on the smoke profile (smoke corpus, a one-epoch
smoke DINO run as ``dino_run``, CPU, ``num_workers=0``) from its call until the first call of
``SSRLMethod.step`` (the loop's first training step; that call is the last event recorded).

* An **event** is a Python ``call`` event (a function or method starting to run) whose frame
  belongs to an ``ssrl_lab`` module (``frame.f_globals["__name__"]`` starts with ``ssrl_lab``) and
  that **follows the configuration**: one of its arguments (``self`` included) is the run's config
  object ``cfg``, or holds it as ``.cfg``, or holds an object holding it as ``.method.cfg`` (the
  loop). Calls whose ``self`` *is* ``cfg`` (the config's own properties and methods: reading a
  field) are not events, and neither are calls that were not handed the configuration (the
  embedding pass, the data items, the model's forward, ``distributed.rank()``...). Returns are not
  events: a module is *visited* when code of it is called with the configuration, not when a
  callee hands control back to it. Module bodies run by an import are not events either: every
  ``ssrl_lab`` module is imported before the trace starts.
* The **path** is the sequence of the events' modules with consecutive repeats merged: one entry
  per stretch of calls that stays in one module.
* A module's **entries** is how many times it appears in the path; its **re-entries** are
  ``entries - 1`` (times the path came back to it after leaving it for another ``ssrl_lab``
  module). ``modules`` is the number of distinct modules in the path; ``returns`` the sum of
  re-entries over all modules.

The same figures without the configuration filter (every ``ssrl_lab`` call: the k-means, the
embedding pass and the first batch's items included) are reported as ``all_calls`` for reference.

``python bench/run_path.py [--corpus DIR --dino RUN] [--json out.json]`` prints the figures and the
path (the smoke corpus and the DINO run are built in a temporary folder unless given).
``tests/test_code_shape.py`` asserts the targets of issue 25 with :func:`trace_run_path`.
"""
from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import sys
import tempfile
from collections import Counter
from pathlib import Path


def import_all() -> None:
    """Import every ``ssrl_lab`` module (so that no module body runs inside the trace)."""
    import ssrl_lab

    for info in pkgutil.walk_packages(ssrl_lab.__path__, "ssrl_lab."):
        if info.name.endswith("__main__"):
            continue
        importlib.import_module(info.name)


def smoke_dino(corpus: Path, out: Path) -> Path:
    """A one-epoch smoke DINO run (as tests/conftest.py's ``smoke_dino``)."""
    from ssrl_lab.train.dino import DINOConfig
    from ssrl_lab.train.dino import train as dino_train

    dino_train(DINOConfig.profile("smoke", corpus=str(corpus), run_dir=str(out), device="cpu", epochs=1,
                                  eval_every=0), resume=True, progress=False)
    return out


class _FirstStep(Exception):
    """Raised from the profiler at the first ``SSRLMethod.step`` call: the trace is complete."""


def trace_run_path(corpus, dino_run, run_dir) -> dict:
    """Trace SSRL's ``train(cfg)`` (smoke profile) to its first step; returns ``{"path": [module,
    ...], "entries": {module: n}, "modules": n, "max_entries": n, "returns": n, "events": n,
    "all_calls": {the same figures without the configuration filter}}`` (module docstring)."""
    import_all()
    from ssrl_lab.train import ssrl

    cfg = ssrl.SSRLConfig.profile("smoke", corpus=str(corpus), run_dir=str(run_dir), dino_run=str(dino_run),
                                  device="cpu", num_workers=0)
    step_code = ssrl.SSRLMethod.step.__code__
    path: list[str] = []
    every: list[str] = []
    n_events = 0

    config_classes = {c.__name__ for c in type(cfg).__mro__}

    def holds_cfg(value) -> bool:
        if value is cfg or getattr(value, "cfg", None) is cfg:
            return True
        return getattr(getattr(value, "method", None), "cfg", None) is cfg

    def profiler(frame, event, arg):
        nonlocal n_events
        if event != "call":
            return
        name = frame.f_globals.get("__name__") or ""
        code = frame.f_code
        if not name.startswith("ssrl_lab") or code.co_name == "<module>":
            return
        if not every or every[-1] != name:
            every.append(name)
        args = [frame.f_locals.get(a) for a in code.co_varnames[:code.co_argcount + code.co_kwonlyargcount]]
        own = code.co_qualname.split(".")[0] in config_classes  # the config's own property or method
        if code is step_code or (not own and any(holds_cfg(a) for a in args)):
            n_events += 1
            if not path or path[-1] != name:
                path.append(name)
        if code is step_code:
            raise _FirstStep

    sys.setprofile(profiler)
    try:
        ssrl.train(cfg, progress=False)
    except _FirstStep:
        pass
    finally:
        sys.setprofile(None)
    if not path or path[-1] != "ssrl_lab.train.ssrl":
        raise RuntimeError("the trace ended before SSRLMethod.step was called")
    return {**_figures(path), "events": n_events, "all_calls": _figures(every)}


def _figures(path: list[str]) -> dict:
    entries = dict(Counter(path))
    return {"path": path, "entries": entries, "modules": len(entries), "max_entries": max(entries.values()),
            "returns": sum(n - 1 for n in entries.values())}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", help="a built corpus (default: the SynthVox smoke corpus, built in a temp folder)")
    ap.add_argument("--dino", help="a finished smoke DINO run of that corpus (default: trained in a temp folder)")
    ap.add_argument("--json", help="also write the figures here")
    args = ap.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.corpus:
            corpus = Path(args.corpus)
        else:
            from ssrl_lab.data.synthvox import build_synthvox

            corpus = build_synthvox(tmp / "corpus", "smoke", seed=0)
        dino = Path(args.dino) if args.dino else smoke_dino(corpus, tmp / "dino")
        out = trace_run_path(corpus, dino, tmp / "ssrl")
    print(f"modules visited: {out['modules']}; returns (re-entries): {out['returns']}; "
          f"most entries of one module: {out['max_entries']}; calls followed: {out['events']}")
    a = out["all_calls"]
    print(f"(every ssrl_lab call: modules {a['modules']}, returns {a['returns']}, most entries {a['max_entries']})")
    for mod, n in sorted(out["entries"].items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"  {n:3d}  {mod}")
    print("path (one line per entry):")
    for i, mod in enumerate(out["path"], 1):
        print(f"  {i:3d}  {mod}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
