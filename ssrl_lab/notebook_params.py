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
"""
from __future__ import annotations

import os
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
          need_corpus: bool = True) -> NotebookSetup:
    """Check ``profile``, resolve ``corpus`` (profile default when None) and ``run_dir``
    (``outputs/<profile>/<notebook>`` when None) and keep the set ``params`` as overrides."""
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
