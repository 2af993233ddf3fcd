"""The utterance table: one format for every corpus.

Columns: ``utt_id`` (the path relative to the corpus root, as VoxCeleb trial lists name it,
e.g. ``id10270/x6uYqmx31kE/00001.wav``), ``speaker`` (``None`` when unknown: training is
self-supervised), ``session`` (VoxCeleb video id, SynthVox session), ``path`` (absolute path of
the audio file) and ``duration`` (seconds; ``nan`` when not measured).

Stored as a TSV with a header; unknown speakers are written as ``-``.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from ..utils.io import atomic_write_text

COLUMNS = ("utt_id", "speaker", "session", "path", "duration")
UNKNOWN = "-"


@dataclasses.dataclass
class UtteranceTable:
    utt_id: list[str]
    speaker: list[str | None]
    session: list[str]
    path: list[str]
    duration: np.ndarray

    def __post_init__(self) -> None:
        self.utt_id = list(self.utt_id)
        self.speaker = [None if (s is None or s == UNKNOWN or s == "") else str(s) for s in self.speaker]
        self.session = [str(s) for s in self.session]
        self.path = [str(p) for p in self.path]
        self.duration = np.asarray(self.duration, dtype=np.float64)
        n = len(self.utt_id)
        for name in ("speaker", "session", "path"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"utterance table: column {name} has {len(getattr(self, name))} rows, utt_id has {n}")
        if self.duration.shape != (n,):
            raise ValueError(f"utterance table: duration has shape {self.duration.shape}, expected ({n},)")
        if len(set(self.utt_id)) != n:
            seen, dup = set(), None
            for u in self.utt_id:
                if u in seen:
                    dup = u
                    break
                seen.add(u)
            raise ValueError(f"utterance table: duplicate utt_id {dup!r}")
        self._index: dict[str, int] | None = None

    # -- construction -------------------------------------------------------------------
    @classmethod
    def from_rows(cls, rows: Iterable[Sequence]) -> "UtteranceTable":
        rows = list(rows)
        cols = list(zip(*rows)) if rows else [[] for _ in COLUMNS]
        return cls(list(cols[0]), list(cols[1]), list(cols[2]), list(cols[3]), np.asarray(cols[4], dtype=np.float64))

    @classmethod
    def empty(cls) -> "UtteranceTable":
        return cls([], [], [], [], np.zeros(0))

    # -- basic access -------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.utt_id)

    def index_of(self, utt_id: str) -> int:
        if self._index is None:
            self._index = {u: i for i, u in enumerate(self.utt_id)}
        return self._index[utt_id]

    def lookup(self) -> dict[str, int]:
        """utt_id -> row index."""
        if self._index is None:
            self._index = {u: i for i, u in enumerate(self.utt_id)}
        return self._index

    @property
    def has_speakers(self) -> bool:
        return len(self) > 0 and all(s is not None for s in self.speaker)

    def speaker_codes(self) -> tuple[np.ndarray, list[str]]:
        """Integer speaker labels (``-1`` for unknown) and the sorted speaker names."""
        names = sorted({s for s in self.speaker if s is not None})
        code = {s: i for i, s in enumerate(names)}
        return np.array([code[s] if s is not None else -1 for s in self.speaker], dtype=np.int64), names

    def subset(self, idx) -> "UtteranceTable":
        idx = np.asarray(idx, dtype=np.int64)
        return UtteranceTable(
            [self.utt_id[i] for i in idx],
            [self.speaker[i] for i in idx],
            [self.session[i] for i in idx],
            [self.path[i] for i in idx],
            self.duration[idx],
        )

    def without_speakers(self) -> "UtteranceTable":
        """The same table with speaker labels hidden (what self-supervised training sees)."""
        return dataclasses.replace(self, speaker=[None] * len(self))

    def summary(self) -> dict:
        spk = [s for s in self.speaker if s is not None]
        d = self.duration[np.isfinite(self.duration)]
        return {
            "utterances": len(self),
            "speakers": len(set(spk)) if spk else None,
            "sessions": len(set(self.session)),
            "hours": float(d.sum() / 3600) if d.size else None,
            "mean_duration_s": float(d.mean()) if d.size else None,
            "min_duration_s": float(d.min()) if d.size else None,
            "max_duration_s": float(d.max()) if d.size else None,
        }

    # -- storage ------------------------------------------------------------------------
    def to_tsv(self) -> str:
        lines = ["\t".join(COLUMNS)]
        for u, s, ss, p, d in zip(self.utt_id, self.speaker, self.session, self.path, self.duration):
            lines.append(f"{u}\t{s if s is not None else UNKNOWN}\t{ss}\t{p}\t{d:.4f}")
        return "\n".join(lines) + "\n"

    def save(self, path) -> Path:
        return atomic_write_text(path, self.to_tsv())

    @classmethod
    def load(cls, path) -> "UtteranceTable":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"utterance table {path} does not exist")
        lines = path.read_text(encoding="utf-8").splitlines()
        if not lines or tuple(lines[0].split("\t")) != COLUMNS:
            raise ValueError(f"{path}: not an utterance table (header must be {' '.join(COLUMNS)})")
        rows = []
        for n, line in enumerate(lines[1:], start=2):
            if not line.strip():
                continue
            parts = line.split("\t")
            if len(parts) != len(COLUMNS):
                raise ValueError(f"{path}:{n}: expected {len(COLUMNS)} tab-separated fields, got {len(parts)}")
            try:
                dur = float(parts[4])
            except ValueError:
                raise ValueError(f"{path}:{n}: duration {parts[4]!r} is not a number") from None
            rows.append((parts[0], parts[1], parts[2], parts[3], dur))
        return cls.from_rows(rows)
