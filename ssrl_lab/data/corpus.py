"""A corpus: a training table, a test table and the test trials, described by ``corpus.json``;
optionally a dev table (and its trials) for choosing settings without looking at the test split.

``<dir>/corpus.json``::

    {"name": "synthvox-demo",
     "train": {"format": "table", "path": "train.tsv"},
     "test":  {"format": "voxceleb", "path": "/data/voxceleb1/test/wav"},
     "trials": "trials.txt",
     "dev": {"format": "table", "path": "dev.tsv"},      (optional)
     "dev_trials": "dev_trials.txt"}                     (optional; needs "dev")

``dev`` takes any spec ``train`` / ``test`` take. Its speakers must not be test speakers (checked
by name when both tables know their speakers); sharing speakers with the training table is
allowed but logged. Without ``dev_trials`` a dev split is scored on all its pairs only.

Formats: ``table`` (an :class:`UtteranceTable` TSV; relative audio paths in it resolve against
the TSV's folder), ``voxceleb`` (a ``<speaker>/<video>/<file>`` tree, see
:func:`~ssrl_lab.data.readers.read_voxceleb`; optional keys ``cache``, ``cache_dir``) and
``kaldi`` (a data dir, see :func:`~ssrl_lab.data.readers.read_kaldi`; optional key ``root``) and
``packed`` (a split folder written by ``python -m ssrl_lab.data.pack``: int16 shards read through
``np.memmap``, see :mod:`ssrl_lab.data.packed`).
Relative paths resolve against the corpus dir. The trials name utterances of the test table.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any, Mapping

from ..utils.io import atomic_write_json
from .readers import read_kaldi, read_voxceleb
from .table import UtteranceTable
from .trials import TrialList, TrialReport, parse_trials

CORPUS_FILE = "corpus.json"
FORMATS = ("table", "voxceleb", "kaldi", "packed")
_SPEC_KEYS = {"table": {"format", "path"}, "voxceleb": {"format", "path", "cache", "cache_dir"},
              "kaldi": {"format", "path", "root"}, "packed": {"format", "path"}}
_TOP_KEYS = {"name", "train", "test", "trials", "dev", "dev_trials", "description", "version", "meta"}

log = logging.getLogger("ssrl_lab.data.corpus")


class CorpusError(ValueError):
    """A corpus directory or its corpus.json is unusable."""


@dataclasses.dataclass
class Corpus:
    name: str
    root: Path
    train: UtteranceTable
    test: UtteranceTable
    trials: TrialList
    trial_report: TrialReport | None = None
    spec: dict = dataclasses.field(default_factory=dict)
    dev: UtteranceTable | None = None  # None: the corpus has no dev split
    dev_trials: TrialList | None = None  # None: no dev trial list (dev scored on all pairs only)
    dev_trial_report: TrialReport | None = None

    def summary(self) -> dict:
        out = {"name": self.name, "root": str(self.root), "train": self.train.summary(),
               "test": self.test.summary(), "trials": len(self.trials), "target_trials": self.trials.n_target}
        if self.dev is not None:
            out["dev"] = self.dev.summary()
            out["dev_trials"] = None if self.dev_trials is None else len(self.dev_trials)
        return out


def _resolve(base: Path, p: str) -> Path:
    q = Path(os.path.expanduser(p))
    return q if q.is_absolute() else base / q


def load_table(path) -> UtteranceTable:
    """:meth:`UtteranceTable.load` with relative audio paths resolved against the TSV's folder."""
    path = Path(path)
    t = UtteranceTable.load(path)
    base = path.parent.resolve()
    if any(not os.path.isabs(p) for p in t.path):
        t = dataclasses.replace(t, path=[p if os.path.isabs(p) else str(base / p) for p in t.path])
    return t


def read_spec(spec: Mapping[str, Any] | str, base, role: str = "table", cache: bool = True) -> UtteranceTable:
    """The table a ``{"format": ..., "path": ...}`` spec describes (``base``: relative paths)."""
    base = Path(base)
    if isinstance(spec, (str, os.PathLike)):
        spec = {"format": "table", "path": str(spec)}
    if not isinstance(spec, Mapping):
        raise CorpusError(f"{role}: expected {{'format': ..., 'path': ...}}, got {spec!r}")
    fmt = spec.get("format")
    if fmt not in FORMATS:
        raise CorpusError(f"{role}: unknown format {fmt!r}; valid formats: {', '.join(FORMATS)}")
    unknown = sorted(set(spec) - _SPEC_KEYS[fmt])
    if unknown:
        raise CorpusError(f"{role}: unknown key(s) {unknown} for format {fmt!r}; valid: {sorted(_SPEC_KEYS[fmt])}")
    if not isinstance(spec.get("path"), str) or not spec["path"]:
        raise CorpusError(f"{role}: 'path' must be a non-empty string")
    path = _resolve(base, spec["path"])
    if not path.exists():
        raise FileNotFoundError(f"{role}: {fmt} path {path} does not exist")
    if fmt == "table":
        return load_table(path)
    if fmt == "voxceleb":
        cache_dir = spec.get("cache_dir")
        return read_voxceleb(path, cache=bool(spec.get("cache", cache)),
                             cache_dir=_resolve(base, cache_dir) if cache_dir else None)
    if fmt == "packed":
        from .packed import read_packed

        return read_packed(path)
    root = spec.get("root")
    return read_kaldi(path, root=_resolve(base, root) if root else None)


def open_corpus(path, on_missing: str = "error", cache: bool = True) -> Corpus:
    """Open the corpus described by ``<path>/corpus.json`` (see the module doc).

    ``on_missing`` is passed to :func:`~ssrl_lab.data.trials.parse_trials` (trials naming
    utterances absent from the test table); ``cache`` to the VoxCeleb reader.
    """
    root = Path(path).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"corpus directory {root} does not exist")
    if not root.is_dir():
        raise CorpusError(f"corpus path {root} is not a directory")
    cfile = root / CORPUS_FILE
    if not cfile.is_file():
        entries = sorted(p.name for p in root.iterdir())
        hint = ("build one with `python -m ssrl_lab.data.synthvox --profile demo --out DIR` or write a corpus.json "
                "(ssrl_lab.data.corpus.write_corpus_json)")
        if not entries:
            raise FileNotFoundError(f"corpus directory {root} is empty: {hint}")
        raise FileNotFoundError(f"{cfile} not found (the directory holds {', '.join(entries[:8])}"
                                f"{' ...' if len(entries) > 8 else ''}): {hint}")
    try:
        spec = json.loads(cfile.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise CorpusError(f"{cfile}: not valid JSON ({e})") from None
    if not isinstance(spec, dict):
        raise CorpusError(f"{cfile}: expected a JSON object")
    missing = [k for k in ("name", "train", "test", "trials") if k not in spec]
    if missing:
        raise CorpusError(f"{cfile}: missing key(s) {missing}")
    unknown = sorted(set(spec) - _TOP_KEYS)
    if unknown:
        raise CorpusError(f"{cfile}: unknown key(s) {unknown}; valid: {sorted(_TOP_KEYS)}")
    if "dev_trials" in spec and "dev" not in spec:
        raise CorpusError(f"{cfile}: 'dev_trials' given without a 'dev' table")
    root = root.resolve()
    try:
        train = read_spec(spec["train"], root, "train", cache)
        test = read_spec(spec["test"], root, "test", cache)
        dev = read_spec(spec["dev"], root, "dev", cache) if "dev" in spec else None
    except CorpusError as e:
        raise CorpusError(f"{cfile}: {e}") from None
    for key in ("trials", "dev_trials"):
        if key in spec and not isinstance(spec[key], str):
            raise CorpusError(f"{cfile}: {key!r} must be a path string")
    trials, report = parse_trials(_resolve(root, spec["trials"]), test, on_missing=on_missing)
    dev_trials = dev_report = None
    if dev is not None:
        _check_dev_speakers(cfile, dev, train, test)
        if "dev_trials" in spec:
            dev_trials, dev_report = parse_trials(_resolve(root, spec["dev_trials"]), dev, on_missing=on_missing)
    return Corpus(str(spec["name"]), root, train, test, trials, report, spec, dev, dev_trials, dev_report)


def _check_dev_speakers(cfile: Path, dev: UtteranceTable, train: UtteranceTable, test: UtteranceTable) -> None:
    """Refuse a dev table sharing speakers or files with the test table; log overlap with train."""
    dev_spk = {s for s in dev.speaker if s is not None}
    shared_test = sorted(dev_spk & {s for s in test.speaker if s is not None})
    if shared_test:
        raise CorpusError(f"{cfile}: dev and test share {len(shared_test)} speaker(s) ({', '.join(shared_test[:5])}"
                          f"{' ...' if len(shared_test) > 5 else ''}); settings chosen on such a dev split would be "
                          "chosen on test speakers")
    shared_files = set(dev.path) & set(test.path)
    if shared_files:
        raise CorpusError(f"{cfile}: dev and test share {len(shared_files)} audio file(s), e.g. {sorted(shared_files)[0]}")
    shared_train = dev_spk & {s for s in train.speaker if s is not None}
    if shared_train:
        log.warning("%s: %d dev speaker(s) also appear in the training table", cfile, len(shared_train))


def _spec(spec, base: Path, role: str) -> dict:
    if isinstance(spec, Mapping):
        out = dict(spec)
    else:
        p = Path(spec)
        q = p if p.is_absolute() else base / p
        if p.suffix == ".tsv":
            fmt = "table"
        elif q.is_dir() and (q / "wav.scp").is_file():
            fmt = "kaldi"
        elif q.is_dir() and (q / "index.tsv").is_file():
            fmt = "packed"
        elif q.is_dir():
            fmt = "voxceleb"
        else:
            raise CorpusError(f"{role}: cannot tell the format of {q}; pass {{'format': ..., 'path': ...}}")
        out = {"format": fmt, "path": str(spec)}
    if out.get("format") not in FORMATS:
        raise CorpusError(f"{role}: unknown format {out.get('format')!r}; valid formats: {', '.join(FORMATS)}")
    unknown = sorted(set(out) - _SPEC_KEYS[out["format"]])
    if unknown or "path" not in out:
        raise CorpusError(f"{role}: bad spec {out}; keys for {out['format']!r}: {sorted(_SPEC_KEYS[out['format']])}")
    out["path"] = str(out["path"])
    return out


def write_corpus_json(dir, name, train_spec=None, test_spec=None, trials="trials.txt", dev_spec=None,
                      dev_trials=None, **extra) -> Path:
    """Write ``<dir>/corpus.json`` atomically (validated) and return its path.

    ``train_spec`` / ``test_spec`` / ``dev_spec`` (optional): a ``{"format", "path", ...}`` dict or
    a path (``.tsv`` -> table, a dir with ``wav.scp`` -> kaldi, a dir with ``index.tsv`` -> packed,
    another dir -> voxceleb); relative paths are kept relative to ``dir``. ``dev_trials``: the dev
    trial list (needs ``dev_spec``). ``extra``: ``description``, ``version``, ``meta``. ``name`` may
    also be a whole corpus.json mapping (``write_corpus_json(dir, {"name": ..., "train": ..., ...})``).
    """
    d = Path(dir)
    if isinstance(name, Mapping):
        whole = dict(name)
        missing = [k for k in ("name", "train", "test") if k not in whole]
        if missing or train_spec is not None or test_spec is not None:
            raise CorpusError(f"write_corpus_json: a whole spec needs name, train, test (missing {missing}) "
                              "and no separate train_spec/test_spec")
        name, train_spec, test_spec = whole.pop("name"), whole.pop("train"), whole.pop("test")
        trials = whole.pop("trials", trials)
        dev_spec = whole.pop("dev", dev_spec)
        dev_trials = whole.pop("dev_trials", dev_trials)
        extra = {**whole, **extra}
    if train_spec is None or test_spec is None:
        raise CorpusError("write_corpus_json: train_spec and test_spec are required")
    if dev_trials is not None and dev_spec is None:
        raise CorpusError("write_corpus_json: dev_trials needs dev_spec (the dev table)")
    unknown = sorted(set(extra) - {"description", "version", "meta"})
    if unknown:
        raise CorpusError(f"write_corpus_json: unknown key(s) {unknown}; valid extras: description, version, meta "
                          "(the dev split: dev_spec=, dev_trials=)")
    obj = {"name": str(name), "train": _spec(train_spec, d, "train"), "test": _spec(test_spec, d, "test"),
           "trials": str(trials)}
    if dev_spec is not None:
        obj["dev"] = _spec(dev_spec, d, "dev")
    if dev_trials is not None:
        obj["dev_trials"] = str(dev_trials)
    obj.update(extra)
    return atomic_write_json(d / CORPUS_FILE, obj)


__all__ = ["Corpus", "CorpusError", "open_corpus", "write_corpus_json", "read_spec", "load_table", "FORMATS",
           "CORPUS_FILE"]
