"""Helpers the notebooks call right after their ``parameters`` cell.

A notebook's parameters are plain variables (papermill injects new values after the cell
tagged ``parameters``). Method parameters default to ``None``, meaning "the profile's value";
:func:`setup` checks the common ones (``profile``, ``corpus``, ``run_dir``), resolves paths and
keeps the non-None method parameters as config overrides; :func:`make_config` builds the
method's config from the profile with those overrides, so a wrong name, type or range fails
in the second cell with a message naming the parameter, before anything trains.

Relative paths resolve against the repository root (the folder holding ``pyproject.toml``
above this package), so a notebook gives the same result from JupyterLab (whose working
directory is ``notebooks/``), from papermill and from ``python -m ssrl_lab.demo``.

The notebooks annotate parameters as ``Optional[int]`` rather than ``int | None``:
papermill's parameter parser (used by ``inspect_notebook`` and so by the sweep) does not
understand the ``|`` form and would silently drop such parameters.

**Unknown parameters are refused inside the notebook.** papermill passes ``-p name value`` on
as a new cell after the one tagged ``parameters``, whether or not the notebook declares
``name`` (it only logs "Passed unknown parameter"); in JupyterLab a user does the same by
adding a cell. Every notebook therefore follows one pattern, which a new notebook copies:

* the ``parameters`` cell imports this module first and ends with::

      from ssrl_lab import notebook_params as nbp
      profile: str = "demo"  # ...
      ...
      nbp.declare(globals(), notebook="06_study")  # keep last: records the names above

  (the keyword keeps papermill's parser from reading the line as part of the last parameter);
* the next cell passes the namespace to :func:`setup` (first thing it does)::

      s = nbp.setup("study", profile, corpus, run_dir, params=dict(...), namespace=globals())

:func:`setup` then looks at the cells run since the parameters cell (papermill's injected cell,
or the user's) and raises :class:`ParameterError` for any name they assign that the parameters
cell did not declare, with the closest valid name ("did you mean queue_len?") and the list of
valid ones, before anything is trained or any run directory is created. Inside IPython the
cells are read from the kernel's input history (``_ih``), so only names actually assigned in
them count; elsewhere (a notebook exported as a script) the names new in ``globals()`` since
:func:`declare` count. Names starting with ``_`` are never parameters (use them for helper
variables of your own in an added cell). The check runs once per run of the parameters cell:
re-running the setup cell later does not re-check.
"""
from __future__ import annotations

import ast
import difflib
import os
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

PROFILES = ("smoke", "demo", "vox")
#: Corpus used when ``corpus`` is None (VoxCeleb has no default: give its corpus.json folder).
DEFAULT_CORPORA = {"smoke": "data/synthvox-smoke", "demo": "data/synthvox-demo"}


class ParameterError(ValueError):
    """A notebook parameter is unknown, of the wrong type or out of range."""


def repo_root() -> Path:
    """The repository root: ``$SSRL_LAB_ROOT`` when set, else the folder above the package
    when it holds ``pyproject.toml`` (editable install), else the working directory."""
    env = os.environ.get("SSRL_LAB_ROOT")
    if env:
        return Path(env).resolve()
    here = Path(__file__).resolve().parents[1]
    if (here / "pyproject.toml").exists():
        return here
    return Path.cwd().resolve()


def resolve_path(path) -> Path | None:
    """``None`` stays None; ``~`` expands; a relative path is taken from the repository root."""
    if path is None:
        return None
    p = Path(os.path.expanduser(str(path)))
    return p if p.is_absolute() else repo_root() / p


def check_choice(name: str, value: Any, allowed: Iterable[Any]) -> Any:
    allowed = tuple(allowed)
    if value not in allowed:
        raise ParameterError(f"parameter {name}={value!r} is not one of {', '.join(map(repr, allowed))}")
    return value


def check_type(name: str, value: Any, types: type | tuple[type, ...], optional: bool = True) -> Any:
    """Refuse ``value`` unless it is an instance of ``types`` (or None when ``optional``);
    ints pass for floats, bools never pass for numbers."""
    if value is None and optional:
        return value
    types = types if isinstance(types, tuple) else (types,)
    if float in types and isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, bool) and bool not in types:
        ok = False
    else:
        ok = isinstance(value, types)
    if not ok:
        names = " or ".join(t.__name__ for t in types) + (" or None" if optional else "")
        raise ParameterError(f"parameter {name}={value!r} has type {type(value).__name__}; expected {names}")
    return value


def as_list(name: str, value: Any) -> list | None:
    """A list parameter that may also arrive as a comma-separated string (``papermill -p runs a,b``)
    or as a JSON list string; None stays None."""
    if value is None:
        return None
    if isinstance(value, str):
        v = value.strip()
        if v.startswith("["):
            import json

            try:
                value = json.loads(v)
            except json.JSONDecodeError as e:
                raise ParameterError(f"parameter {name}={value!r}: not a valid JSON list ({e})") from None
        else:
            value = [p.strip() for p in v.split(",") if p.strip()]
    check_type(name, value, (list, tuple), optional=False)
    return list(value)


def overrides(params: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters that were set (not None): config overrides."""
    return {k: v for k, v in params.items() if v is not None}


def default_run_dir(profile: str, name: str) -> str:
    return f"outputs/{profile}/{name}"


def default_corpus(profile: str) -> str:
    if profile not in DEFAULT_CORPORA:
        raise ParameterError(f"profile {profile!r} has no default corpus: set corpus= to a folder holding corpus.json")
    return DEFAULT_CORPORA[profile]


# -- declared parameters -------------------------------------------------------------------
_STATE = "__ssrl_lab_declared__"
#: names IPython and the notebook machinery put into a kernel's namespace (never parameters)
_KERNEL_NAMES = frozenset({"In", "Out", "get_ipython", "exit", "quit", "open"})


def _assigned_names(source: str) -> list[str]:
    """Names a cell assigns at its top level (also inside if / for / with / try blocks, not in
    functions or classes), in order; [] when the cell does not parse."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    out: list[str] = []

    def targets(t) -> None:
        if isinstance(t, ast.Name):
            out.append(t.id)
        elif isinstance(t, (ast.Tuple, ast.List)):
            for e in t.elts:
                targets(e)
        elif isinstance(t, ast.Starred):
            targets(t.value)

    def walk(stmts) -> None:
        for st in stmts:
            if isinstance(st, ast.Assign):
                for t in st.targets:
                    targets(t)
            elif isinstance(st, (ast.AnnAssign, ast.AugAssign)):
                targets(st.target)
            elif isinstance(st, (ast.For, ast.AsyncFor)):
                targets(st.target)
                walk(st.body + st.orelse)
            elif isinstance(st, (ast.If, ast.While)):
                walk(st.body + st.orelse)
            elif isinstance(st, (ast.With, ast.AsyncWith)):
                for item in st.items:
                    if item.optional_vars is not None:
                        targets(item.optional_vars)
                walk(st.body)
            elif isinstance(st, ast.Try):
                walk(st.body + st.orelse + st.finalbody + [s for h in st.handlers for s in h.body])
    walk(tree.body)
    return list(dict.fromkeys(out))


def _looks_like_value(v: Any) -> bool:
    return not isinstance(v, (types.ModuleType, types.FunctionType, types.BuiltinFunctionType, type)) \
        and type(v).__module__ != "typing"


def _history(namespace: Mapping[str, Any]) -> list | None:
    ih = namespace.get("_ih")
    return ih if isinstance(ih, list) and ih else None


def declare(namespace: dict, notebook: str = "") -> tuple[str, ...]:
    """Record the parameters a notebook's ``parameters`` cell declares; call it as that cell's
    last line, ``nbp.declare(globals(), notebook="03_ssrl")``. Returns the declared names.

    In IPython the names are those the cell assigns (read from the input history); elsewhere,
    the value names (not modules, functions, classes or typing objects) present when it runs.
    """
    ih = _history(namespace)
    if ih is not None and "declare(" in ih[-1]:
        names = [n for n in _assigned_names(ih[-1]) if not n.startswith("_")]
        start = len(ih)
    else:
        names = [n for n, v in namespace.items()
                 if not n.startswith("_") and n not in _KERNEL_NAMES and _looks_like_value(v)]
        start = None
    namespace[_STATE] = {"notebook": notebook, "names": tuple(names), "start": start,
                         "baseline": frozenset(namespace) | {_STATE}, "checked": False}
    return tuple(names)


def unknown_parameter_message(unknown: Iterable[str], valid: Iterable[str], notebook: str = "") -> str:
    """The :class:`ParameterError` text for undeclared names: each with its closest valid name."""
    valid = list(valid)
    parts = []
    for name in unknown:
        close = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
        parts.append(f"{name} (did you mean {close[0]}?)" if close else name)
    where = f"{notebook}: " if notebook else ""
    many = len(parts) > 1
    return (f"{where}unknown parameter{'s' if many else ''} {', '.join(parts)}: the parameters cell does not declare "
            f"{'them' if many else 'it'}, so {'they' if many else 'it'} would change nothing and the default experiment "
            f"would run. Nothing was run. Valid parameters: {', '.join(valid)}. Fix the name and run the notebook again "
            "from its parameters cell (helper variables of your own: start their names with _).")


def check_declared(namespace: dict) -> None:
    """Raise :class:`ParameterError` for names assigned since :func:`declare` that it did not declare."""
    state = namespace.get(_STATE)
    if state is None:
        raise ParameterError("the parameters cell did not record its names: end it with "
                             "nbp.declare(globals(), notebook=...) and run it first")
    if state["checked"]:
        return
    declared = set(state["names"])
    ih = _history(namespace)
    if state["start"] is not None and ih is not None:
        current = ih[-1]
        assigned: list[str] = []
        for src in ih[state["start"]:len(ih) - 1]:
            if src != current:  # an earlier run of this very cell is not a parameter cell
                assigned += _assigned_names(src)
        candidates = list(dict.fromkeys(assigned))
    else:
        baseline = state["baseline"]
        candidates = [n for n, v in namespace.items() if n not in baseline and _looks_like_value(v)]
    unknown = [n for n in candidates if n not in declared and not n.startswith("_") and n not in _KERNEL_NAMES]
    if unknown:
        raise ParameterError(unknown_parameter_message(unknown, state["names"], state["notebook"]))
    state["checked"] = True

@dataclass
class NotebookSetup:
    """The checked common parameters of one notebook run."""

    notebook: str
    profile: str
    corpus: Path | None
    run_dir: Path
    overrides: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        ov = ", ".join(f"{k}={v!r}" for k, v in self.overrides.items()) or "none"
        return (f"{self.notebook}: profile {self.profile}, corpus {self.corpus}, run_dir {self.run_dir}, "
                f"overrides: {ov}")


def setup(notebook: str, profile: str, corpus: str | None, run_dir: str | None, params: Mapping[str, Any] | None = None,
          need_corpus: bool = True, namespace: dict | None = None) -> NotebookSetup:
    """Check ``profile``, resolve ``corpus`` (profile default when None) and ``run_dir``
    (``outputs/<profile>/<notebook>`` when None) and keep the set ``params`` as overrides.

    ``namespace``: the notebook's ``globals()``; first of all, names assigned since the
    parameters cell's :func:`declare` that it did not declare are refused (see the module doc)."""
    if namespace is not None:
        check_declared(namespace)
    check_choice("profile", profile, PROFILES)
    check_type("corpus", corpus, str)
    check_type("run_dir", run_dir, str)
    corpus_path = resolve_path(corpus if corpus is not None else default_corpus(profile)) if need_corpus or corpus else None
    run = resolve_path(run_dir if run_dir is not None else default_run_dir(profile, notebook))
    return NotebookSetup(notebook, profile, corpus_path, run, overrides(dict(params or {})))


def require_dir(name: str, path, hint: str = "") -> Path:
    """The resolved directory ``path``; a clear error naming the parameter when it is missing."""
    p = resolve_path(path)
    if p is None or not p.is_dir():
        raise ParameterError(f"parameter {name}={path!r}: directory {p} does not exist" + (f" ({hint})" if hint else ""))
    return p


def make_config(config_cls, s: NotebookSetup, **fixed):
    """``config_cls.profile(s.profile, **s.overrides, **fixed)`` with ``corpus`` and ``run_dir``
    filled in; a ConfigError is re-raised as :class:`ParameterError` naming the notebook."""
    from .config import ConfigError

    kw = dict(s.overrides)
    kw.update(fixed)
    if s.corpus is not None:
        kw.setdefault("corpus", str(s.corpus))
    kw.setdefault("run_dir", str(s.run_dir))
    valid = set(config_cls.field_names())
    unknown = sorted(k for k in kw if k not in valid)
    if unknown:
        raise ParameterError(f"{s.notebook}: parameter(s) {', '.join(unknown)} are not fields of {config_cls.__name__}")
    try:
        return config_cls.profile(s.profile, **kw)
    except ConfigError as e:
        raise ParameterError(f"{s.notebook}: {e}") from None
