"""Verification trial lists, checked against an utterance table.

The VoxCeleb format is one trial per line, ``<label> <enroll utt_id> <test utt_id>`` with label
1 (same speaker) or 0, e.g. ``1 id10270/x6uYqmx31kE/00001.wav id10270/8jEAjG6SegY/00008.wav``.
The Kaldi form ``<enroll> <test> target|nontarget`` is read too. Blank lines and lines starting
with ``#`` are ignored. :func:`parse_trials` reports malformed lines and utterances missing from
the table by line number.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np

from ..utils.io import atomic_write_text
from .table import UtteranceTable

log = logging.getLogger("ssrl_lab.data.trials")

_SHOW = 5  # problems listed in an error message


class TrialError(ValueError):
    """A trial list has malformed lines or names utterances missing from the table."""


@dataclasses.dataclass
class TrialList:
    """Trials as row indices into a table: ``label`` int8 (1 target, 0 non-target)."""

    label: np.ndarray
    enroll: np.ndarray
    test: np.ndarray

    def __post_init__(self) -> None:
        self.label = np.asarray(self.label, dtype=np.int8)
        self.enroll = np.asarray(self.enroll, dtype=np.int64)
        self.test = np.asarray(self.test, dtype=np.int64)
        n = self.label.shape
        if len(n) != 1 or self.enroll.shape != n or self.test.shape != n:
            raise ValueError(f"TrialList: label, enroll, test must be 1-D of one length, got "
                             f"{self.label.shape}, {self.enroll.shape}, {self.test.shape}")
        if n[0] and not np.isin(self.label, (0, 1)).all():
            raise ValueError("TrialList: labels must be 0 or 1")

    def __len__(self) -> int:
        return int(self.label.shape[0])

    @property
    def n_target(self) -> int:
        return int(self.label.sum())

    def utterances(self) -> np.ndarray:
        """Sorted unique row indices used by any trial (what embedding extraction needs)."""
        return np.unique(np.concatenate([self.enroll, self.test]))

    def subset(self, idx) -> "TrialList":
        idx = np.asarray(idx)
        return TrialList(self.label[idx], self.enroll[idx], self.test[idx])


@dataclasses.dataclass
class TrialReport:
    """What :func:`parse_trials` found: 1-based line numbers of every problem."""

    path: str
    n_lines: int = 0
    n_trials: int = 0
    malformed: list[tuple[int, str]] = dataclasses.field(default_factory=list)  # (line, reason)
    missing: list[tuple[int, str]] = dataclasses.field(default_factory=list)  # (line, utt_id)

    @property
    def n_skipped(self) -> int:
        return len({n for n, _ in self.malformed} | {n for n, _ in self.missing})

    @property
    def ok(self) -> bool:
        return not self.malformed and not self.missing

    def describe(self) -> str:
        parts = []
        if self.malformed:
            head = "; ".join(f"line {n}: {r}" for n, r in self.malformed[:_SHOW])
            parts.append(f"{len(self.malformed)} malformed line(s): {head}" + (" ..." if len(self.malformed) > _SHOW else ""))
        if self.missing:
            head = "; ".join(f"line {n}: {u}" for n, u in self.missing[:_SHOW])
            parts.append(f"{len(self.missing)} utterance reference(s) missing from the table: {head}"
                         + (" ..." if len(self.missing) > _SHOW else ""))
        return f"{self.path}: " + (" | ".join(parts) if parts else f"{self.n_trials} trials, no problems")


def _parse_line(parts: list[str]) -> tuple[int, str, str] | str:
    """``(label, enroll, test)`` or a reason string for a malformed line."""
    if len(parts) != 3:
        return f"expected 3 fields, got {len(parts)}"
    if parts[2] in ("target", "nontarget"):  # Kaldi: enroll test target|nontarget
        return int(parts[2] == "target"), parts[0], parts[1]
    if parts[0] not in ("0", "1"):
        return f"label {parts[0]!r} is not 0 or 1"
    return int(parts[0]), parts[1], parts[2]


def parse_trials(path, table: UtteranceTable, on_missing: str = "error",
                 on_malformed: str = "error") -> tuple[TrialList, TrialReport]:
    """Read a trial list and map its utt_ids to rows of ``table``.

    ``on_missing`` / ``on_malformed``: ``"error"`` raises :class:`TrialError` (listing the first
    problems with their line numbers and the total count of each kind), ``"skip"`` drops those
    trials and logs a warning. Returns the trials and a :class:`TrialReport`.
    """
    for name, v in (("on_missing", on_missing), ("on_malformed", on_malformed)):
        if v not in ("error", "skip"):
            raise ValueError(f"{name} must be 'error' or 'skip', got {v!r}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"trial list {path} does not exist")
    index = table.lookup()
    report = TrialReport(str(path))
    label, enroll, test = [], [], []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        report.n_lines += 1
        got = _parse_line(s.split())
        if isinstance(got, str):
            report.malformed.append((n, got))
            continue
        lab, e, t = got
        ie, it = index.get(e), index.get(t)
        if ie is None:
            report.missing.append((n, e))
        if it is None:
            report.missing.append((n, t))
        if ie is None or it is None:
            continue
        label.append(lab)
        enroll.append(ie)
        test.append(it)
    report.n_trials = len(label)
    fatal = (report.malformed and on_malformed == "error") or (report.missing and on_missing == "error")
    if fatal:
        raise TrialError(report.describe())
    if not report.ok:
        log.warning("%s (skipped %d line(s))", report.describe(), report.n_skipped)
    if report.n_trials == 0:
        raise TrialError(f"{path}: no usable trials" + (f" ({report.describe()})" if not report.ok else ""))
    return TrialList(np.array(label, np.int8), np.array(enroll, np.int64), np.array(test, np.int64)), report


def format_trials(table: UtteranceTable, label, enroll=None, test=None) -> str:
    """The VoxCeleb-format text of trials given as arrays (or one :class:`TrialList`)."""
    if isinstance(label, TrialList):
        trials = label
    else:
        trials = TrialList(label, enroll, test)
    n = len(table)
    if len(trials) and (max(trials.enroll.max(), trials.test.max()) >= n or min(trials.enroll.min(), trials.test.min()) < 0):
        raise IndexError(f"trial indices must lie in [0, {n}) for a table of {n} rows")
    u = table.utt_id
    return "".join(f"{int(lab)} {u[e]} {u[t]}\n" for lab, e, t in zip(trials.label, trials.enroll, trials.test))


def write_trials(path, table: UtteranceTable, label, enroll=None, test=None) -> Path:
    """Write trials (arrays of label / enroll row / test row, or one TrialList) atomically."""
    return atomic_write_text(path, format_trials(table, label, enroll, test))


__all__ = ["TrialList", "TrialReport", "TrialError", "parse_trials", "write_trials", "format_trials"]
