"""The packed corpus format: utterances decoded once to 16 kHz int16 in large shard files.

A packed split is a folder (written by :mod:`ssrl_lab.data.pack`) with

* ``shard-NNNNN.pcm16``: raw little-endian int16 samples of many utterances back to back;
* ``index.tsv``: ``utt_id  speaker  session  shard  offset  length`` (offset and length in
  samples; ``speaker`` ``-`` when unknown).

:func:`read_packed` turns the index into an :class:`~ssrl_lab.data.table.UtteranceTable` whose
``path`` of each utterance is a *packed path* ``<split>/shard-NNNNN.pcm16@<offset>:<length>``;
:func:`~ssrl_lab.data.audio.load_audio` reads such a path through :func:`read_segment`, a slice
of an ``np.memmap`` of the shard (no decode; a crop reads only its own samples). Samples are
returned as ``int16 / 32768``, exactly what soundfile returns for 16-bit PCM, so a packed 16-bit
FLAC/WAV corpus gives the very same samples as the files.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from .errors import AudioError
from .table import UNKNOWN, UtteranceTable

SAMPLE_RATE = 16000
SHARD_SUFFIX = ".pcm16"
INDEX_FILE = "index.tsv"
INDEX_COLUMNS = ("utt_id", "speaker", "session", "shard", "offset", "length")
_PACKED = re.compile(r"^(?P<shard>.+\.pcm16)@(?P<offset>\d+):(?P<length>\d+)$")
_MAPS: dict[str, np.memmap] = {}  # per process: shard path -> memmap (opened on first use)


def packed_path(shard: str | os.PathLike, offset: int, length: int) -> str:
    return f"{shard}@{int(offset)}:{int(length)}"


def parse_packed_path(path) -> tuple[str, int, int] | None:
    """``(shard, offset, length)`` of a packed path, or None for an ordinary file path."""
    m = _PACKED.match(str(path))
    if m is None:
        return None
    return m["shard"], int(m["offset"]), int(m["length"])


def _memmap(shard: str) -> np.memmap:
    mm = _MAPS.get(shard)
    if mm is None:
        mm = np.memmap(shard, dtype="<i2", mode="r")
        _MAPS[shard] = mm
    return mm


def read_segment(path, start_s: float | None = None, dur_s: float | None = None) -> tuple[np.ndarray, int]:
    """Samples of a packed path as float32 ``(n, 1)`` and the sample rate, selected like
    soundfile's partial reads (``start = round(start_s * sr)``, ``frames = round(dur_s * sr)``)."""
    parsed = parse_packed_path(path)
    if parsed is None:
        raise ValueError(f"{path} is not a packed path (<shard>.pcm16@<offset>:<length>)")
    shard, off, length = parsed
    if not os.path.isfile(shard):
        raise AudioError(path, "missing", f"shard {shard} does not exist")
    mm = _memmap(shard)
    if off + length > mm.shape[0]:
        raise AudioError(path, "corrupt", f"samples {off}..{off + length} lie past the end of {shard} ({mm.shape[0]})")
    start = int(round(start_s * SAMPLE_RATE)) if start_s else 0
    if start >= length:
        return np.zeros((0, 1), np.float32), SAMPLE_RATE
    stop = length if dur_s is None else min(length, start + int(round(dur_s * SAMPLE_RATE)))
    seg = np.asarray(mm[off + start: off + stop], dtype=np.float32) * np.float32(1.0 / 32768.0)
    return seg.reshape(-1, 1), SAMPLE_RATE


def read_index(split_dir) -> list[tuple[str, str | None, str, str, int, int]]:
    """The rows of ``<split_dir>/index.tsv``; errors name the file and line."""
    path = Path(split_dir) / INDEX_FILE
    if not path.is_file():
        raise FileNotFoundError(f"packed split {split_dir}: {INDEX_FILE} not found (was packing finished?)")
    return read_index_file(path)


def read_index_file(path) -> list[tuple[str, str | None, str, str, int, int]]:
    """The rows of one index file (``index.tsv`` or a shard's part of it)."""
    path = Path(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    if not lines or tuple(lines[0].split("\t")) != INDEX_COLUMNS:
        raise ValueError(f"{path}: not a packed index (header must be {' '.join(INDEX_COLUMNS)})")
    rows = []
    for n, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != len(INDEX_COLUMNS):
            raise ValueError(f"{path}:{n}: expected {len(INDEX_COLUMNS)} tab-separated fields, got {len(parts)}")
        try:
            off, ln = int(parts[4]), int(parts[5])
        except ValueError:
            raise ValueError(f"{path}:{n}: offset and length must be integers, got {parts[4]!r}, {parts[5]!r}") from None
        if off < 0 or ln <= 0:
            raise ValueError(f"{path}:{n}: offset must be >= 0 and length > 0, got {off}, {ln}")
        rows.append((parts[0], None if parts[1] == UNKNOWN else parts[1], parts[2], parts[3], off, ln))
    return rows


def index_tsv(rows) -> str:
    out = ["\t".join(INDEX_COLUMNS)]
    for u, s, ss, shard, off, ln in rows:
        out.append(f"{u}\t{s if s is not None else UNKNOWN}\t{ss}\t{shard}\t{int(off)}\t{int(ln)}")
    return "\n".join(out) + "\n"


def read_packed(split_dir) -> UtteranceTable:
    """The :class:`UtteranceTable` of a packed split (paths are packed paths; durations exact).

    Every shard the index names must exist and hold the samples it claims (checked by size)."""
    d = Path(split_dir).resolve()
    rows = read_index(d)
    ends: dict[str, int] = {}
    for _, _, _, shard, off, ln in rows:
        ends[shard] = max(ends.get(shard, 0), off + ln)
    for shard, end in ends.items():
        p = d / shard
        if not p.is_file():
            raise FileNotFoundError(f"packed split {d}: shard {shard} named in {INDEX_FILE} does not exist")
        have = p.stat().st_size // 2
        if have < end:
            raise ValueError(f"packed split {d}: shard {shard} holds {have} samples, the index needs {end} (truncated?)")
    return UtteranceTable([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows],
                          [packed_path(d / r[3], r[4], r[5]) for r in rows],
                          np.array([r[5] / SAMPLE_RATE for r in rows], dtype=np.float64))


__all__ = ["read_packed", "read_segment", "read_index", "read_index_file", "index_tsv", "packed_path", "parse_packed_path",
           "INDEX_COLUMNS", "INDEX_FILE", "SHARD_SUFFIX"]
