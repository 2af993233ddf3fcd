"""Check a corpus before spending GPU hours on it: decode every file once, count what is wrong.

``python -m ssrl_lab.data.check --corpus DIR [--workers N] [--min-seconds S] [--exclude too_short,resampled]``

Every train and test file is decoded once, in parallel processes, with the training reader
(:func:`~ssrl_lab.data.audio.load_audio`: soundfile / PyAV, stereo to mono, resampling to
16 kHz, the empty / silent / non-finite checks), and counted by kind:

* unreadable (training would skip them): ``missing``, ``corrupt``, ``empty``, ``silent``,
  ``nonfinite`` (the reasons of :class:`~ssrl_lab.data.audio.AudioError`);
* usable but worth knowing: ``too_short`` (under ``min_seconds`` after decoding; crops of short
  files are padded by repetition) and ``resampled`` (not stored at 16 kHz).

The report adds the sample rates, channel counts and durations found, the files per second and
the worker count, and is printed as a table. Two files are written atomically beside the
training split's table (the cached table of a VoxCeleb tree, ``<root>/.ssrl_table.tsv``; the TSV
of a ``table`` corpus; the ``wav.scp`` folder of a Kaldi one; or, where that folder is not
writable, under ``$SSRL_LAB_CACHE/checks``):

* ``<table stem>.bad.tsv``, the bad-file list: one line per file of the excluded kinds (the
  unreadable ones, plus those named by ``exclude``) with its split, reason, size and mtime;
* ``<table stem>.check.json``, the report (``00_corpus`` shows it).

Training with ``skip_bad=True`` drops the listed training files before the first step
(:func:`listed_bad_training_files`, used by :func:`ssrl_lab.train.skips.open_training_corpus`);
an entry whose file changed since the check (size or mtime) is ignored, with a warning.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import math
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from ..utils.io import atomic_write_json, atomic_write_text
from .audio import SAMPLE_RATE, load_audio_info
from .errors import REASONS, AudioError

log = logging.getLogger("ssrl_lab.data.check")

UNREADABLE = REASONS  # missing, corrupt, empty, silent, nonfinite
FLAGS = ("too_short", "resampled")
KINDS = UNREADABLE + FLAGS
DEFAULT_MIN_SECONDS = 1.0
BAD_LIST_COLUMNS = ("split", "utt_id", "reason", "detail", "size", "mtime_ns", "path")
REPORT_VERSION = 1
_CHUNK = 32


# -- one file ------------------------------------------------------------------------------
def check_file(path, min_seconds: float = DEFAULT_MIN_SECONDS) -> dict:
    """Decode ``path`` with the training reader: ``{"status": "ok" | reason, "detail", "sample_rate",
    "channels", "seconds", "too_short", "resampled"}`` (rate / channels None when unreadable)."""
    try:
        wave, info = load_audio_info(path)
    except AudioError as e:
        return {"status": e.reason, "detail": e.detail, "sample_rate": None, "channels": None, "seconds": None,
                "too_short": False, "resampled": False}
    except Exception as e:  # anything else the decoders raise is a corrupt file too
        return {"status": "corrupt", "detail": f"{type(e).__name__}: {e}", "sample_rate": None, "channels": None,
                "seconds": None, "too_short": False, "resampled": False}
    seconds = wave.size / SAMPLE_RATE
    return {"status": "ok", "detail": "", "sample_rate": info.sample_rate, "channels": info.channels,
            "seconds": seconds, "too_short": seconds < min_seconds, "resampled": info.sample_rate != SAMPLE_RATE}


def _check_chunk(args) -> list[tuple[int, dict]]:
    paths, start, min_seconds = args
    return [(start + i, check_file(p, min_seconds)) for i, p in enumerate(paths)]


def _worker_init() -> None:  # one decoding thread per process: the processes are the parallelism
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        import torch

        torch.set_num_threads(1)
    except Exception:  # pragma: no cover - torch is always installed
        pass


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def check_paths(paths: Sequence[str], workers: int | None = None, min_seconds: float = DEFAULT_MIN_SECONDS,
                progress: bool = True, desc: str = "check") -> list[dict]:
    """:func:`check_file` of every path, in ``workers`` processes (1: in this one), in order."""
    workers = default_workers() if workers is None else max(1, int(workers))
    out: list[dict | None] = [None] * len(paths)
    chunks = [(list(paths[i:i + _CHUNK]), i, min_seconds) for i in range(0, len(paths), _CHUNK)]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(paths), desc=desc, unit="file", dynamic_ncols=True, leave=False)
    try:
        if workers == 1 or len(chunks) <= 1:
            results: Iterable = map(_check_chunk, chunks)
            ex = None
        else:
            import multiprocessing as mp

            ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
            ex = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init)
            results = ex.map(_check_chunk, chunks)
        try:
            for res in results:
                for i, r in res:
                    out[i] = r
                if bar is not None:
                    bar.update(len(res))
        finally:
            if ex is not None:
                ex.shutdown(cancel_futures=True)
    finally:
        if bar is not None:
            bar.close()
    return out  # type: ignore[return-value]


# -- where the results go ------------------------------------------------------------------
def _train_table_file(corpus) -> Path:
    """The file the training split's table lives in (or, for VoxCeleb trees, is cached in)."""
    from .corpus import _resolve

    spec = corpus.spec.get("train")
    if isinstance(spec, (str, os.PathLike)):
        spec = {"format": "table", "path": str(spec)}
    fmt = spec.get("format")
    path = _resolve(corpus.root, spec["path"])
    if fmt == "voxceleb":
        from .readers import _cache_paths

        cache_dir = spec.get("cache_dir")
        root = Path(path).expanduser().resolve()
        return _cache_paths(root, _resolve(corpus.root, cache_dir) if cache_dir else None)[0]
    if fmt == "kaldi":
        return Path(path) / "ssrl.tsv"  # not a file of its own: names the folder and the stem
    return Path(path)


def _fallback(p: Path) -> Path:
    from .readers import default_cache_dir

    key = hashlib.sha1(str(p.resolve()).encode()).hexdigest()[:16]
    return default_cache_dir() / "checks" / f"{p.stem.lstrip('.')}-{key}{p.suffix}"


def output_paths(corpus) -> tuple[Path, Path]:
    """``(bad list, report)`` paths beside the training table (see the module doc)."""
    t = _train_table_file(corpus)
    return t.with_name(t.stem + ".bad.tsv"), t.with_name(t.stem + ".check.json")


def _existing(p: Path) -> Path | None:
    for q in (p, _fallback(p)):
        if q.is_file():
            return q
    return None


def _target(p: Path) -> Path:
    """``p`` when its folder is writable, else its place under the cache dir (created)."""
    if os.access(p.parent, os.W_OK):
        return p
    q = _fallback(p)
    q.parent.mkdir(parents=True, exist_ok=True)
    return q


def _fingerprint(table) -> str:
    h = hashlib.sha1()
    for u in table.utt_id:
        h.update(u.encode())
        h.update(b"\n")
    return h.hexdigest()


# -- the report ----------------------------------------------------------------------------
@dataclasses.dataclass
class CheckReport:
    """The outcome of :func:`check_corpus` (``to_dict`` is what ``.check.json`` holds)."""

    corpus: str
    root: str
    splits: dict            # split -> {"files", "ok", kind counts..., "sample_rates", "channels", "seconds"}
    bad: list               # excluded files: {"split", "utt_id", "reason", "detail", "size", "mtime_ns", "path"}
    flagged: list           # too short / resampled files (first 1000): {"split", "utt_id", "kinds", "path"}
    excluded_kinds: list
    min_seconds: float
    workers: int
    seconds: float
    files_per_second: float
    fingerprints: dict
    checked_at: str = ""
    bad_list: str = ""
    report_path: str = ""

    @property
    def n_files(self) -> int:
        return sum(s["files"] for s in self.splits.values())

    def counts(self, split: str | None = None) -> dict[str, int]:
        """Files of each kind (all splits when ``split`` is None)."""
        names = [split] if split else list(self.splits)
        return {k: sum(self.splits[s].get(k, 0) for s in names) for k in ("ok",) + KINDS}

    def to_dict(self) -> dict:
        return {"version": REPORT_VERSION, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, d: dict) -> "CheckReport":
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in fields})

    def rows(self) -> list[list[str]]:
        """The report as table rows: a header, then one row per kind / statistic."""
        names = list(self.splits)
        rows = [["", *names]]
        for k in ("files", "ok") + KINDS:
            rows.append([k.replace("_", " ") + (" (listed bad)" if k in self.excluded_kinds else ""),
                         *[str(self.splits[s].get(k, 0)) for s in names]])
        rows.append(["sample rates (Hz: files)", *[_hist(self.splits[s]["sample_rates"]) for s in names]])
        rows.append(["channels (n: files)", *[_hist(self.splits[s]["channels"]) for s in names]])
        for stat in ("min", "median", "max"):
            rows.append([f"{stat} seconds", *[_num(self.splits[s]["seconds"].get(stat)) for s in names]])
        rows.append(["hours", *[_num(self.splits[s]["seconds"].get("total", 0) / 3600, ".2f") for s in names]])
        return rows

    def to_markdown(self) -> str:
        rows = self.rows()
        out = ["| " + " | ".join(rows[0]) + " |", "| --- |" + " ---: |" * (len(rows[0]) - 1)]
        out += ["| " + " | ".join(r) + " |" for r in rows[1:]]
        out.append("")
        out.append(f"{self.n_files} files in {self.seconds:.1f} s with {self.workers} worker(s): "
                   f"{self.files_per_second:.0f} files/s. Too short: under {self.min_seconds:g} s.")
        if self.bad_list:
            out.append(f"Bad-file list ({len(self.bad)} files): {self.bad_list}")
        return "\n".join(out) + "\n"

    def to_text(self) -> str:
        rows = self.rows()
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
                 for r in rows]
        lines.append("")
        lines.append(f"{self.n_files} files in {self.seconds:.1f} s with {self.workers} worker(s): "
                     f"{self.files_per_second:.1f} files/s")
        for b in self.bad[:20]:
            lines.append(f"  {b['reason']:<9} {b['split']:<5} {b['path']}" + (f"  ({b['detail']})" if b["detail"] else ""))
        if len(self.bad) > 20:
            lines.append(f"  ... {len(self.bad) - 20} more in {self.bad_list}")
        if self.bad_list:
            lines.append(f"bad-file list: {self.bad_list} ({len(self.bad)} files; training with skip_bad=True skips them)")
        if self.report_path:
            lines.append(f"report: {self.report_path}")
        return "\n".join(lines)

    def is_current(self, corpus) -> bool:
        """True when the corpus still lists the same train and test utterances as when checked."""
        return self.fingerprints == {"train": _fingerprint(corpus.train), "test": _fingerprint(corpus.test)}


def _num(v, fmt: str = ".2f") -> str:
    return format(v, fmt) if isinstance(v, (int, float)) and math.isfinite(v) else "-"


def _hist(h: dict) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(h.items(), key=lambda kv: -kv[1])) or "-"


def _split_stats(results: list[dict]) -> dict:
    st: dict[str, Any] = {"files": len(results), "ok": 0, **{k: 0 for k in KINDS}}
    rates: dict[str, int] = {}
    chans: dict[str, int] = {}
    secs = []
    for r in results:
        if r["status"] == "ok":
            st["ok"] += 1
            rates[str(r["sample_rate"])] = rates.get(str(r["sample_rate"]), 0) + 1
            chans[str(r["channels"])] = chans.get(str(r["channels"]), 0) + 1
            secs.append(r["seconds"])
            for f in FLAGS:
                st[f] += bool(r[f])
        else:
            st[r["status"]] = st.get(r["status"], 0) + 1
    a = np.asarray(secs, dtype=np.float64)
    st["sample_rates"], st["channels"] = rates, chans
    st["seconds"] = ({"min": float(a.min()), "median": float(np.median(a)), "max": float(a.max()),
                      "total": float(a.sum())} if a.size else {"total": 0.0})
    return st


def _stat(path: str) -> tuple[int | None, int | None]:
    try:
        s = os.stat(path)
        return int(s.st_size), int(s.st_mtime_ns)
    except OSError:
        return None, None


def check_corpus(corpus, workers: int | None = None, min_seconds: float = DEFAULT_MIN_SECONDS,
                 exclude: Iterable[str] = (), progress: bool = True, write: bool = True) -> CheckReport:
    """Check every train and test file of ``corpus`` (a :class:`~ssrl_lab.data.corpus.Corpus` or
    its folder); with ``write``, write the bad-file list and the report (see the module doc).

    ``exclude``: kinds of :data:`FLAGS` to list as bad as well (the unreadable kinds always are).
    """
    from .corpus import Corpus, open_corpus

    exclude = [e.strip() for e in exclude if e.strip()]
    unknown = [e for e in exclude if e not in FLAGS]
    if unknown:
        raise ValueError(f"exclude: unknown kind(s) {unknown}; valid: {', '.join(FLAGS)}")
    if min_seconds < 0:
        raise ValueError(f"min_seconds must be >= 0, got {min_seconds}")
    if not isinstance(corpus, Corpus):
        corpus = open_corpus(corpus, on_missing="skip")
    workers = default_workers() if workers is None else max(1, int(workers))
    excluded = list(UNREADABLE) + exclude
    splits, bad, flagged = {}, [], []
    n_all = len(corpus.train) + len(corpus.test)
    log.info("%s: checking %d files (%d train, %d test) with %d worker(s)", corpus.name, n_all, len(corpus.train),
             len(corpus.test), workers)
    t0 = time.perf_counter()
    for split, table in (("train", corpus.train), ("test", corpus.test)):
        res = check_paths(list(table.path), workers, min_seconds, progress, desc=f"check {split}")
        splits[split] = _split_stats(res)
        for u, p, r in zip(table.utt_id, table.path, res):
            kinds = [r["status"]] if r["status"] != "ok" else [f for f in FLAGS if r[f]]
            reason = next((k for k in kinds if k in excluded), None)
            if reason is not None:
                size, mtime = _stat(p)
                detail = r["detail"] or ("; ".join(kinds) if r["status"] == "ok" else "")
                bad.append({"split": split, "utt_id": u, "reason": reason, "detail": detail,
                            "size": size, "mtime_ns": mtime, "path": p})
            elif kinds and len(flagged) < 1000:
                flagged.append({"split": split, "utt_id": u, "kinds": kinds, "path": p})
    seconds = time.perf_counter() - t0
    report = CheckReport(
        corpus=corpus.name, root=str(corpus.root), splits=splits, bad=bad, flagged=flagged, excluded_kinds=excluded,
        min_seconds=float(min_seconds), workers=workers, seconds=seconds,
        files_per_second=n_all / seconds if seconds > 0 else float("nan"),
        fingerprints={"train": _fingerprint(corpus.train), "test": _fingerprint(corpus.test)},
        checked_at=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()))
    if write:
        bad_p, rep_p = (_target(p) for p in output_paths(corpus))
        report.bad_list, report.report_path = str(bad_p), str(rep_p)
        atomic_write_text(bad_p, format_bad_list(bad))
        atomic_write_json(rep_p, report.to_dict())
        log.info("wrote %s (%d files) and %s", bad_p, len(bad), rep_p)
    return report


# -- the bad-file list ---------------------------------------------------------------------
def format_bad_list(entries: Sequence[dict]) -> str:
    def cell(v) -> str:
        return "" if v is None else str(v).replace("\t", " ").replace("\n", " ")

    lines = ["\t".join(BAD_LIST_COLUMNS)]
    lines += ["\t".join(cell(e.get(c)) for c in BAD_LIST_COLUMNS) for e in entries]
    return "\n".join(lines) + "\n"


def read_bad_list(path) -> list[dict]:
    """The entries of a bad-file list (``size`` / ``mtime_ns`` as ints or None)."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    if not lines or tuple(lines[0].split("\t")) != BAD_LIST_COLUMNS:
        raise ValueError(f"{path}: not a bad-file list of ssrl_lab.data.check (header {lines[:1]})")
    out = []
    for n, line in enumerate(lines[1:], start=2):
        parts = line.split("\t")
        if len(parts) != len(BAD_LIST_COLUMNS):
            raise ValueError(f"{path}:{n}: expected {len(BAD_LIST_COLUMNS)} tab-separated fields, got {len(parts)}")
        e: dict[str, Any] = dict(zip(BAD_LIST_COLUMNS, parts))
        for k in ("size", "mtime_ns"):
            e[k] = int(e[k]) if e[k] else None
        out.append(e)
    return out


def bad_list_of(corpus) -> Path | None:
    """The corpus's bad-file list if a check wrote one."""
    return _existing(output_paths(corpus)[0])


def load_report(corpus) -> CheckReport | None:
    """The saved report of the last check of ``corpus`` (None when there is none)."""
    p = _existing(output_paths(corpus)[1])
    if p is None:
        return None
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        log.warning("ignoring unreadable check report %s: %s", p, e)
        return None
    return CheckReport.from_dict(d) if d.get("version") == REPORT_VERSION else None


def listed_bad_training_files(corpus) -> tuple[np.ndarray, list[dict], Path | None]:
    """Rows of ``corpus.train`` that the corpus's bad-file list names, with their entries.

    Returns ``(rows, entries, list path)``; entries whose file changed since the check (size or
    mtime differ) are left out with a warning: re-run the check to judge them again.
    """
    path = bad_list_of(corpus)
    if path is None:
        return np.zeros(0, np.int64), [], None
    entries = [e for e in read_bad_list(path) if e["split"] == "train"]
    if not entries:
        return np.zeros(0, np.int64), [], path
    row_of = {p: i for i, p in enumerate(corpus.train.path)}
    rows, kept, stale = [], [], 0
    for e in entries:
        i = row_of.get(e["path"])
        if i is None:
            continue  # no longer part of the training table
        if e["reason"] != "missing" and _stat(e["path"]) != (e["size"], e["mtime_ns"]):
            stale += 1
            continue
        rows.append(i)
        kept.append(e)
    if stale:
        log.warning("%s: %d listed file(s) changed since the check and are not skipped up front; "
                    "re-run python -m ssrl_lab.data.check", path, stale)
    return np.asarray(rows, np.int64), kept, path


# -- command line --------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ssrl_lab.data.check",
                                 description="Decode every train and test file of a corpus once and report bad files.")
    ap.add_argument("--corpus", required=True, help="corpus folder (holding corpus.json)")
    ap.add_argument("--workers", type=int, default=None, help=f"decoding processes (default: all {default_workers()} cores)")
    ap.add_argument("--min-seconds", type=float, default=DEFAULT_MIN_SECONDS,
                    help=f"shorter files are counted as too_short (default {DEFAULT_MIN_SECONDS:g})")
    ap.add_argument("--exclude", default="", help="also list these kinds as bad: too_short, resampled (comma-separated)")
    ap.add_argument("--no-write", action="store_true", help="report only; write no bad-file list")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        rep = check_corpus(args.corpus, workers=args.workers, min_seconds=args.min_seconds,
                           exclude=args.exclude.split(","), progress=not args.quiet, write=not args.no_write)
    except (FileNotFoundError, ValueError) as e:
        print(f"check: {e}", file=sys.stderr)
        return 2
    print(rep.to_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
