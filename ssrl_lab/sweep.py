"""Parameter sweeps over a notebook with papermill.

``python -m ssrl_lab.sweep NOTEBOOK -p name v1,v2 [-p name2 v ...] [--out-root outputs/sweeps] [--dry-run]``

The grid is the cartesian product of the value lists. Every grid point runs the notebook
with papermill into its own run directory, ``<out-root>/<notebook stem>/<point>/`` where
``<point>`` names the swept values (``queue_len=1,noise_model=none``); the notebook's
``run_dir`` parameter is set to that folder and the executed notebook is saved in it.
``<out-root>/<notebook stem>/sweep.json`` records every point, its status and seconds.
Runs that track with MLflow (``-p tracking mlflow``) are children of one parent run named after
``<out-root>/<notebook stem>`` (:mod:`ssrl_lab.tracking.sweeps`), with the executed notebook as an artifact.

Values are parsed (``None``/``true``/``false``/ints/floats, else strings) and checked against
the notebook's parameters as ``papermill.inspect_notebook`` reports them (name, annotation,
default). An unknown name or a value of the wrong type is refused before anything runs, with
the list of valid parameters. A value starting with ``[`` is one JSON list (not split on commas).
"""
from __future__ import annotations

import argparse
import ast
import itertools
import json
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from .utils.io import atomic_write_json

NONE_WORDS = ("none", "null")
TRUE_WORDS = ("true", "yes")
FALSE_WORDS = ("false", "no")
_INT = re.compile(r"^[+-]?\d+$")
_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$|^[+-]?(inf|nan)$", re.IGNORECASE)
_TYPE_NAMES = {"int": int, "float": float, "bool": bool, "str": str, "list": list, "dict": dict, "None": type(None),
               "NoneType": type(None), "tuple": list}
RESERVED = ("run_dir",)


class SweepError(ValueError):
    """The sweep request is invalid (unknown parameter, wrong type, bad notebook)."""


@dataclass
class Param:
    """One notebook parameter: ``types`` is None when nothing is known (any value accepted)."""

    name: str
    annotation: str
    default: str
    types: tuple[type, ...] | None
    help: str = ""

    def describe(self) -> str:
        ann = self.annotation if self.annotation and self.annotation != "None" else "untyped"
        h = f"  # {self.help}" if self.help else ""
        return f"{self.name}: {ann} = {self.default}{h}"


def parse_value(raw: str) -> Any:
    """``"None"`` -> None, ``"true"`` -> True, ``"3"`` -> 3, ``"1e-3"`` -> 0.001, ``"[1,2]"`` -> [1, 2],
    ``"'3'"`` -> "3" (quotes force a string), else the string itself."""
    s = raw.strip()
    low = s.lower()
    if low in NONE_WORDS:
        return None
    if low in TRUE_WORDS:
        return True
    if low in FALSE_WORDS:
        return False
    if _INT.match(s):
        return int(s)
    if _FLOAT.match(s):
        return float(s)
    if len(s) >= 2 and s[0] == s[-1] and s[0] in "'\"":
        return s[1:-1]
    if s.startswith("[") or s.startswith("{"):
        try:
            return json.loads(s)
        except json.JSONDecodeError as e:
            raise SweepError(f"value {raw!r} looks like JSON but does not parse: {e}") from None
    return s


def split_values(raw: str) -> list[str]:
    """``"1,2,3"`` -> three values; a JSON list value (``"[1,2]"``) stays whole."""
    s = raw.strip()
    if s.startswith("[") or s.startswith("{"):
        return [s]
    parts = [p for p in s.split(",")]
    if any(not p.strip() for p in parts):
        raise SweepError(f"empty value in {raw!r} (values are comma-separated)")
    return parts


def annotation_types(annotation: str, default: str) -> tuple[type, ...] | None:
    """Python types allowed by a papermill-inferred annotation (``Optional[int]``, ``str``,
    ``Union[int, str]``, ``list[str]``); with no annotation, the default literal's type (and
    None), or None (anything) when the default is None or not a literal."""
    ann = (annotation or "").strip()
    if ann and ann != "None":
        out: list[type] = []

        def walk(a: str) -> None:
            a = a.strip()
            m = re.match(r"^(Optional|Union)\[(.*)\]$", a)
            if m:
                inner = _split_top(m.group(2))
                if m.group(1) == "Optional":
                    out.append(type(None))
                for x in inner:
                    walk(x)
                return
            base = re.sub(r"\[.*\]$", "", a).split(".")[-1]
            base = {"List": "list", "Dict": "dict", "Tuple": "tuple"}.get(base, base)
            if base in ("Any", "object"):
                out.append(object)
            elif base in _TYPE_NAMES:
                out.append(_TYPE_NAMES[base])
            else:
                out.append(object)

        walk(ann)
        return None if object in out else tuple(dict.fromkeys(out))
    try:
        v = ast.literal_eval(default)
    except (ValueError, SyntaxError):
        return None
    if v is None:
        return None
    t = type(v)
    return (list if t is tuple else t, type(None))


def _split_top(s: str) -> list[str]:
    depth, cur, out = 0, "", []
    for ch in s:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        out.append(cur)
    return out


def notebook_params(notebook) -> dict[str, Param]:
    """The notebook's parameters (``papermill.inspect_notebook``); refuses a notebook without
    a cell tagged ``parameters``."""
    import nbformat
    import papermill as pm

    path = Path(notebook)
    if not path.exists():
        raise SweepError(f"notebook {path} does not exist")
    nb = nbformat.read(path, as_version=4)
    if not any("parameters" in c.get("metadata", {}).get("tags", []) for c in nb.cells):
        raise SweepError(f"{path} has no cell tagged 'parameters'")
    raw = pm.inspect_notebook(str(path))
    out = {}
    for name, d in raw.items():
        ann = d.get("inferred_type_name") or ""
        out[name] = Param(name, ann, d.get("default", ""), annotation_types(ann, d.get("default", "")), d.get("help", ""))
    return out


def coerce(p: Param, raw: str) -> Any:
    """Parse ``raw`` for parameter ``p`` or raise :class:`SweepError` naming it."""
    value = parse_value(raw)
    if p.types is None:
        return value
    if value is None:
        if type(None) in p.types:
            return None
        raise SweepError(f"parameter {p.name} ({p.annotation}) cannot be None")
    if isinstance(value, bool):
        if bool in p.types:
            return value
    elif isinstance(value, int) and int in p.types:
        return value
    elif isinstance(value, (int, float)) and float in p.types:
        return float(value)
    elif isinstance(value, list) and list in p.types:
        return value
    elif isinstance(value, dict) and dict in p.types:
        return value
    if str in p.types:
        s = raw.strip()
        return s[1:-1] if len(s) >= 2 and s[0] == s[-1] and s[0] in "'\"" else s
    if isinstance(value, str):
        raise SweepError(f"parameter {p.name} expects {p.annotation or 'a ' + p.types[0].__name__}, got {raw!r}")
    raise SweepError(f"parameter {p.name} expects {p.annotation}, got {raw!r} ({type(value).__name__})")


@dataclass
class GridPoint:
    name: str
    params: dict[str, Any]
    run_dir: Path


def _fmt(v: Any) -> str:
    s = json.dumps(v) if isinstance(v, (list, dict)) else str(v)
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", s)


def build_grid(notebook, specs: Sequence[tuple[str, str]], out_root="outputs/sweeps") -> list[GridPoint]:
    """Check every ``(name, "v1,v2")`` against the notebook and return the grid points (nothing runs)."""
    params = notebook_params(notebook)
    valid = "\n  ".join(p.describe() for p in params.values())
    if "run_dir" not in params:
        raise SweepError(f"{notebook} has no run_dir parameter; the sweep sets it per grid point")
    names = [n for n, _ in specs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise SweepError(f"parameter(s) given twice: {', '.join(dup)}")
    unknown = [n for n in names if n not in params]
    if unknown:
        raise SweepError(f"unknown parameter(s) {', '.join(unknown)} for {notebook}; valid parameters:\n  {valid}")
    reserved = [n for n in names if n in RESERVED]
    if reserved:
        raise SweepError(f"{', '.join(reserved)} is set by the sweep (one run directory per point); use --out-root")
    values: list[list[Any]] = []
    for name, raw in specs:
        try:
            values.append([coerce(params[name], r) for r in split_values(raw)])
        except SweepError as e:
            raise SweepError(f"{e}\nvalid parameters:\n  {valid}") from None
    swept = [n for n, v in zip(names, values) if len(v) > 1] or names
    base = Path(out_root) / Path(notebook).stem
    grid = []
    for combo in itertools.product(*values) if values else [()]:
        point = dict(zip(names, combo))
        label = ",".join(f"{n}={_fmt(point[n])}" for n in swept) if swept else "default"
        grid.append(GridPoint(label, point, (base / label).resolve()))
    return grid


def run_grid(notebook, grid: Sequence[GridPoint], kernel_name: str = "python3", keep_going: bool = True,
             log=print, tracking_parent=None) -> list[dict]:
    """Execute every point with papermill (its progress lines streamed live); returns (and writes
    to ``sweep.json``) one record per point. ``tracking_parent``: the folder the MLflow parent run
    is named after and keeps its id in (default: the grid's folder; the study: its own folder)."""
    from . import notebook_run
    from .tracking.sweeps import sweep_parent

    if not grid:
        return []
    parent = Path(tracking_parent or grid[0].run_dir.parent)
    with sweep_parent(parent):  # MLflow: the runs are children of one run named after the sweep
        return _run_points(Path(notebook), grid, kernel_name, keep_going, log, notebook_run, parent)


def _run_points(nb: Path, grid: Sequence[GridPoint], kernel_name: str, keep_going: bool, log, notebook_run,
                parent: Path) -> list[dict]:
    from .tracking.sweeps import after_notebook

    records = []
    manifest = grid[0].run_dir.parent / "sweep.json"
    for i, g in enumerate(grid, start=1):
        g.run_dir.mkdir(parents=True, exist_ok=True)
        out_nb = g.run_dir / nb.name
        log(f"[{i}/{len(grid)}] {g.name} -> {out_nb}")
        t0 = time.perf_counter()
        rec = {"point": g.name, "params": g.params, "run_dir": str(g.run_dir), "notebook": str(out_nb)}
        try:
            notebook_run.execute(nb, out_nb, {**g.params, "run_dir": str(g.run_dir)}, kernel_name)
            rec["status"] = "ok"
            after_notebook(g.run_dir, out_nb, parent)  # MLflow: the executed notebook as an artifact
        except Exception as e:  # papermill raises PapermillExecutionError naming the failing cell
            rec["status"] = "failed"
            rec["error"] = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
            log(f"    failed: {rec['error']}")
            if not keep_going:
                records.append(rec | {"seconds": time.perf_counter() - t0})
                break
        rec["seconds"] = time.perf_counter() - t0
        records.append(rec)
        atomic_write_json(manifest, {"notebook": str(nb), "points": records})
    return records


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ssrl_lab.sweep", description=__doc__.split("\n\n")[0])
    ap.add_argument("notebook", help="the notebook to run, e.g. notebooks/03_ssrl.ipynb")
    ap.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUES"),
                    help="a parameter and its comma-separated values (repeatable)")
    ap.add_argument("--out-root", default="outputs/sweeps", help="root of the grid's run directories")
    ap.add_argument("--dry-run", action="store_true", help="check and print the grid, run nothing")
    ap.add_argument("--kernel", default="python3", help="Jupyter kernel name (default python3)")
    ap.add_argument("--stop-on-error", action="store_true", help="stop at the first failing point")
    args = ap.parse_args(argv)
    try:
        grid = build_grid(args.notebook, [tuple(p) for p in args.param], args.out_root)
    except SweepError as e:
        print(f"sweep refused: {e}", file=sys.stderr)
        return 2
    print(f"{len(grid)} grid point(s) for {args.notebook}:")
    for g in grid:
        print(f"  {g.name}: {json.dumps(g.params)} -> {g.run_dir}")
    if args.dry_run:
        return 0
    records = run_grid(args.notebook, grid, args.kernel, keep_going=not args.stop_on_error)
    failed = [r for r in records if r["status"] != "ok"]
    print(f"done: {len(records) - len(failed)} ok, {len(failed)} failed; manifest {grid[0].run_dir.parent / 'sweep.json'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
