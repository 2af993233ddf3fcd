"""Readers that turn a corpus on disk into an :class:`~ssrl_lab.data.table.UtteranceTable`.

* :func:`read_voxceleb`: the VoxCeleb1/VoxCeleb2 layout ``<root>/<speaker>/<video>/<utt>.{wav,m4a,flac}``
  (utt_id = the relative path, speaker = first directory, session = second). Durations come from
  file headers. The table is cached (``<root>/.ssrl_table.tsv`` when the root is writable, else
  under ``cache_dir`` keyed by a hash of the root path) together with the modification time of
  every video directory; a later call lists the tree again (cheap: no file is opened) and reuses
  the cache when nothing changed, or re-reads headers only in the video directories whose
  listing or mtime changed.
* :func:`read_kaldi`: a Kaldi data dir (``wav.scp``; ``utt2spk`` and ``utt2dur`` optional).
  Piped commands (``cmd |``) and ark offsets are refused.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..utils.io import atomic_write_json
from .audio import AudioError, audio_duration
from .table import UtteranceTable

AUDIO_EXTENSIONS = (".wav", ".flac", ".m4a")
CACHE_NAME = ".ssrl_table"
CACHE_VERSION = 1

log = logging.getLogger("ssrl_lab.data.readers")


def default_cache_dir() -> Path:
    """``$SSRL_LAB_CACHE`` or ``$XDG_CACHE_HOME/ssrl_lab`` or ``~/.cache/ssrl_lab``."""
    if os.environ.get("SSRL_LAB_CACHE"):
        return Path(os.environ["SSRL_LAB_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or (Path.home() / ".cache")
    return Path(base) / "ssrl_lab"


def _read_durations(paths: list[str], num_workers: int) -> np.ndarray:
    """Header durations; unreadable files get ``nan`` (logged, counted)."""

    def one(p: str) -> float:
        try:
            return audio_duration(p)
        except AudioError as e:
            log.warning("duration of %s unreadable: %s", p, e)
            return float("nan")

    if num_workers <= 1 or len(paths) < 64:
        out = [one(p) for p in paths]
    else:  # header reads are I/O bound: threads overlap the waits
        with ThreadPoolExecutor(num_workers) as ex:
            out = list(ex.map(one, paths, chunksize=256))
    bad = sum(1 for d in out if not math.isfinite(d))
    if bad:
        log.warning("%d of %d files have no readable duration (kept with duration nan)", bad, len(paths))
    return np.asarray(out, dtype=np.float64)


# -- VoxCeleb layout -----------------------------------------------------------------------
def scan_voxceleb(root, extensions=AUDIO_EXTENSIONS) -> tuple[dict[str, list[str]], dict[str, int]]:
    """List the tree without opening files.

    Returns ``{"spk/video": [file names]}`` and ``{"spk/video": mtime_ns}``. Hidden entries
    (starting with ``.``) are ignored; audio files at other depths are logged and ignored.
    """
    root = Path(root)
    exts = tuple(e.lower() for e in extensions)
    files: dict[str, list[str]] = {}
    mtimes: dict[str, int] = {}
    stray = 0
    with os.scandir(root) as it:
        speakers = sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)
    for spk in speakers:
        if not spk.is_dir():
            stray += spk.name.lower().endswith(exts)
            continue
        with os.scandir(spk.path) as it:
            videos = sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)
        for vid in videos:
            if not vid.is_dir():
                stray += vid.name.lower().endswith(exts)
                continue
            names = []
            with os.scandir(vid.path) as it:
                for f in it:
                    if f.name.startswith(".") or not f.name.lower().endswith(exts):
                        continue
                    if f.is_file():
                        names.append(f.name)
                    else:
                        stray += 1
            if names:
                key = f"{spk.name}/{vid.name}"
                files[key] = sorted(names)
                mtimes[key] = vid.stat().st_mtime_ns
    if stray:
        log.warning("%s: %d audio entries outside the <speaker>/<video>/<file> layout were ignored", root, stray)
    return files, mtimes


def _cache_paths(root: Path, cache_dir) -> tuple[Path, Path]:
    if cache_dir is None and os.access(root, os.W_OK):
        base = root / CACHE_NAME
    else:
        key = hashlib.sha1(str(root).encode()).hexdigest()[:16]
        base = Path(cache_dir if cache_dir is not None else default_cache_dir()) / "tables" / f"{root.name}-{key}"
    return base.with_suffix(".tsv"), base.with_suffix(".json")


def _load_cache(tsv: Path, meta_path: Path, root: Path, exts) -> tuple[UtteranceTable, dict] | None:
    if not (tsv.is_file() and meta_path.is_file()):
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        st = tsv.stat()
        if (meta.get("version") != CACHE_VERSION or meta.get("root") != str(root)
                or meta.get("extensions") != list(exts)
                or meta.get("tsv_size") != st.st_size or meta.get("tsv_mtime_ns") != st.st_mtime_ns):
            return None
        return UtteranceTable.load(tsv), meta
    except (OSError, ValueError) as e:
        log.warning("ignoring unreadable table cache %s: %s", tsv, e)
        return None


def _fill_durations(utt_ids, paths, known: dict, num_workers) -> np.ndarray:
    """Durations in table order: ``known[utt]`` where given, the others read from file headers."""
    dur = np.full(len(utt_ids), np.nan)
    todo = []
    for i, u in enumerate(utt_ids):
        if u in known:
            dur[i] = known[u]
        else:
            todo.append(i)
    if todo:
        workers = num_workers if num_workers is not None else min(8, os.cpu_count() or 1)
        dur[todo] = _read_durations([paths[i] for i in todo], workers)
    return dur


def read_voxceleb(
    root,
    cache: bool = True,
    *,
    cache_dir=None,
    refresh: bool = False,
    durations: bool = True,
    extensions=AUDIO_EXTENSIONS,
    num_workers: int | None = None,
) -> UtteranceTable:
    """Table of a VoxCeleb-layout tree ``<root>/<speaker>/<video>/<utt>.<ext>``.

    ``cache``: reuse/write the cached table (see the module doc); ``cache_dir``: where to keep
    it (default: inside ``root`` when writable, else :func:`default_cache_dir`); ``refresh``:
    re-read every header; ``durations=False`` skips header reads (duration ``nan``);
    ``num_workers``: threads for header reads (default ``min(8, cpus)``). Rows are sorted by
    utt_id; files whose header cannot be read are kept with duration ``nan``.
    """
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"VoxCeleb root {root} is not a directory")
    exts = tuple(e if e.startswith(".") else f".{e}" for e in extensions)
    files, mtimes = scan_voxceleb(root, exts)
    if not files:
        raise FileNotFoundError(
            f"no audio files ({', '.join(exts)}) found as {root}/<speaker>/<video>/<file>")
    tsv, meta_path = _cache_paths(root, cache_dir)
    old = None if (not cache or refresh) else _load_cache(tsv, meta_path, root, exts)
    if old is not None and durations and not old[1].get("durations", True):
        old = None  # cache was built without durations
    reuse: dict[str, float] = {}
    if old is not None:
        table, meta = old
        if meta.get("dirs") == mtimes and sorted(table.utt_id) == [
                f"{k}/{n}" for k in sorted(files) for n in files[k]]:
            log.debug("%s: table cache %s is up to date (%d utterances)", root, tsv, len(table))
            return table
        old_dirs = meta.get("dirs", {})
        for u, d in zip(table.utt_id, table.duration):
            key = u.rsplit("/", 1)[0]
            if key in mtimes and old_dirs.get(key) == mtimes[key]:
                reuse[u] = float(d)
    utt_ids = [f"{k}/{n}" for k in sorted(files) for n in files[k]]
    paths = [str(root / u) for u in utt_ids]
    dur = np.full(len(utt_ids), np.nan)
    if durations:
        n_new = sum(u not in reuse for u in utt_ids)
        if n_new:
            log.info("%s: reading %d headers (%d reused from cache)", root, n_new, len(reuse))
        dur = _fill_durations(utt_ids, paths, reuse, num_workers)
    parts = [u.split("/") for u in utt_ids]
    table = UtteranceTable(utt_ids, [p[0] for p in parts], [p[1] for p in parts], paths, dur)
    if cache:
        try:
            table.save(tsv)
            st = tsv.stat()
            atomic_write_json(meta_path, {
                "version": CACHE_VERSION, "root": str(root), "extensions": list(exts), "durations": durations,
                "n": len(table), "tsv_size": st.st_size, "tsv_mtime_ns": st.st_mtime_ns, "dirs": mtimes,
            }, indent=0)
        except OSError as e:
            log.warning("could not write the table cache %s: %s", tsv, e)
    return table


# -- Kaldi data dirs -----------------------------------------------------------------------
def _read_kv(path: Path, what: str) -> list[tuple[int, str, str]]:
    """``(line number, key, rest)`` for each non-empty line of a Kaldi ``key value`` file."""
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2:
            raise ValueError(f"{path}:{n}: expected '<utt> <{what}>', got {line!r}")
        out.append((n, parts[0], parts[1].strip()))
    return out


def read_kaldi(data_dir, root=None, durations: bool = True, on_missing: str = "error",
               num_workers: int | None = None) -> UtteranceTable:
    """Table of a Kaldi data dir: ``wav.scp`` (``<utt> <path>``), optional ``utt2spk``/``utt2dur``.

    utt_id = the Kaldi utterance id; speaker from ``utt2spk`` (unknown when absent); session =
    the name of the audio file's parent directory; relative paths resolve against ``root``
    (default: ``data_dir``). Durations come from ``utt2dur`` when present, else from headers.
    Piped commands (``... |``), ark offsets and ``segments`` files are refused. Missing audio
    files raise ``FileNotFoundError`` (``on_missing="error"``) or are dropped (``"skip"``).
    """
    if on_missing not in ("error", "skip"):
        raise ValueError(f"on_missing must be 'error' or 'skip', got {on_missing!r}")
    data_dir = Path(data_dir)
    scp = data_dir / "wav.scp"
    if not scp.is_file():
        raise FileNotFoundError(f"Kaldi data dir {data_dir}: wav.scp not found")
    if (data_dir / "segments").exists():
        raise ValueError(f"{data_dir}/segments: segmented recordings are not supported; "
                         "cut the segments into files first")
    base = Path(root) if root is not None else data_dir
    entries = _read_kv(scp, "path")
    utts, paths, missing = [], [], []
    for n, utt, p in entries:
        if p.endswith("|") or p.startswith("|"):
            raise ValueError(f"{scp}:{n}: piped command {p!r} for {utt} is not supported; "
                             "write the audio to files (e.g. with sox/ffmpeg) and list their paths")
        if ".ark:" in p or ".scp:" in p:
            raise ValueError(f"{scp}:{n}: archive entry {p!r} for {utt} is not supported; list audio file paths")
        path = Path(p).expanduser()
        path = path if path.is_absolute() else (base / path)
        if not path.is_file():
            missing.append((n, utt, str(path)))
            continue
        utts.append(utt)
        paths.append(str(path.resolve()))
    if missing:
        head = "; ".join(f"line {n}: {u} -> {p}" for n, u, p in missing[:5])
        msg = f"{scp}: {len(missing)} audio file(s) missing: {head}" + (" ..." if len(missing) > 5 else "")
        if on_missing == "error":
            raise FileNotFoundError(msg)
        log.warning("%s (dropped)", msg)
    spk: dict[str, str] = {}
    if (data_dir / "utt2spk").is_file():
        spk = {u: s for _, u, s in _read_kv(data_dir / "utt2spk", "speaker")}
        absent = [u for u in utts if u not in spk]
        if absent:
            raise ValueError(f"{data_dir}/utt2spk: no speaker for {len(absent)} utterance(s), e.g. {absent[:3]}")
    dur = np.full(len(utts), np.nan)
    if durations:
        known: dict[str, float] = {}
        if (data_dir / "utt2dur").is_file():
            for n, u, d in _read_kv(data_dir / "utt2dur", "duration"):
                try:
                    known[u] = float(d)
                except ValueError:
                    raise ValueError(f"{data_dir}/utt2dur:{n}: duration {d!r} is not a number") from None
        dur = _fill_durations(utts, paths, known, num_workers)
    return UtteranceTable(utts, [spk.get(u) for u in utts], [Path(p).parent.name for p in paths], paths, dur)


__all__ = ["AUDIO_EXTENSIONS", "read_voxceleb", "read_kaldi", "scan_voxceleb", "default_cache_dir"]
