"""Torch datasets used by training; every item carries the row ``index`` of its utterance.

* :class:`MultiCropDataset` - DINO: ``n_global`` long and ``n_local`` short random crops of one
  utterance, each independently cropped and independently augmented (``{"views", "index"}``,
  global views first).
* :class:`LabelledCropDataset` - classifier training: one augmented random crop and its label
  (``{"wave", "label", "index"}``).
* :class:`PairCropDataset` - SSRL: an augmented short crop for the student and a clean long crop
  for the teacher from the same utterance (``{"student", "teacher", "index"}``).

Randomness: each item draws from a numpy generator seeded by ``(seed, epoch, index)``
(:meth:`set_epoch` chooses the epoch), so an epoch is identical with any number of workers and
after a resume.

Bad files: by default an unreadable / empty / silent file raises :class:`AudioError` naming it.
With ``skip_bad=True`` another random utterance is substituted and the file is counted in
:attr:`skip_log` (and logged) and noted for the run's skip ledger (:meth:`_CropBase.take_skips`).

``preload=True`` decodes the whole table once into one int16 array (``WaveCache``) so epochs do
no file I/O; crops then come from memory.
"""
from __future__ import annotations

import logging
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .audio import SAMPLE_RATE, AudioError, SkipLog, load_audio, pad_to, random_crop
from .table import UtteranceTable

log = logging.getLogger("ssrl_lab.data.datasets")

Augment = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def item_rng(seed: int, epoch: int, index: int, stream: int = 0) -> np.random.Generator:
    """The generator of item ``index`` in ``epoch`` (independent of worker count and order)."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(epoch), int(index), int(stream)])


class WaveCache:
    """Every utterance of a table decoded once into one int16 array with offsets.

    Unreadable files get length 0 (and are counted in ``skip_log``); ``get(i)`` then raises
    :class:`AudioError` so the dataset's bad-file policy applies.
    """

    def __init__(self, table: UtteranceTable, skip_log: SkipLog | None = None) -> None:
        self.paths = list(table.path)
        self.skip_log = skip_log if skip_log is not None else SkipLog()
        self.errors: dict[int, AudioError] = {}
        chunks, lengths = [], np.zeros(len(table), dtype=np.int64)
        for i, p in enumerate(table.path):
            try:
                w = load_audio(p)
            except AudioError as e:
                self.errors[i] = e
                self.skip_log.add_error(e)
                continue
            q = np.clip(np.round(w * 32767.0), -32768, 32767).astype(np.int16)
            chunks.append(q)
            lengths[i] = q.size
        self.offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        self.data = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)

    @property
    def nbytes(self) -> int:
        return int(self.data.nbytes)

    def get(self, i: int) -> np.ndarray:
        if i in self.errors:
            raise self.errors[i]
        a, b = self.offsets[i], self.offsets[i + 1]
        return self.data[a:b].astype(np.float32) / 32767.0


class _CropBase(Dataset):
    """Shared machinery: crop reading (file or cache), augmentation, bad-file policy, epochs."""

    def __init__(self, table: UtteranceTable, augmenter: Augment | None, seed: int,
                 skip_bad: bool = False, preload: bool | WaveCache = False, pad: str = "wrap") -> None:
        if len(table) == 0:
            raise ValueError(f"{type(self).__name__}: the utterance table is empty")
        self.table = table
        self.augmenter = augmenter
        self.seed = int(seed)
        self.skip_bad = bool(skip_bad)
        self.pad = pad
        self.epoch = 0
        self.skip_log = SkipLog()
        self.new_skips: list[tuple[str, str, str]] = []  # since take_skips(); see ssrl_lab.train.skips
        if isinstance(preload, WaveCache):
            self.cache: WaveCache | None = preload
        elif preload:
            self.cache = WaveCache(table, self.skip_log)
        else:
            self.cache = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.table)

    def rng(self, index: int, stream: int = 0) -> np.random.Generator:
        return item_rng(self.seed, self.epoch, index, stream)

    # -- reading ---------------------------------------------------------------------------
    def read_crop(self, i: int, seconds: float, rng: np.random.Generator) -> np.ndarray:
        """A random ``seconds``-long crop of utterance ``i`` (padded by wrapping when short)."""
        n = int(round(seconds * SAMPLE_RATE))
        if self.cache is not None:
            return random_crop(self.cache.get(i), n, rng, pad=self.pad)
        dur = float(self.table.duration[i])
        if np.isfinite(dur) and dur > seconds + 0.01:
            start = float(rng.uniform(0.0, dur - seconds))
            wave = load_audio(self.table.path[i], start_s=start, dur_s=seconds)
            return pad_to(wave, n, self.pad) if wave.size < n else wave[:n]
        return random_crop(load_audio(self.table.path[i]), n, rng, pad=self.pad)

    def read_crops(self, index: int, seconds: Sequence[float], rng: np.random.Generator) -> tuple[int, list[np.ndarray]]:
        """Crops of ``index`` (or, with ``skip_bad``, of a substitute); returns (row used, crops)."""
        i = index
        for _ in range(100):
            try:
                if self.cache is None and len(seconds) > 1:
                    # several crops of one utterance (multi-crop, SSRL pairs): decode the file once
                    wave = load_audio(self.table.path[i])
                    return i, [random_crop(wave, int(round(s * SAMPLE_RATE)), rng, pad=self.pad) for s in seconds]
                return i, [self.read_crop(i, s, rng) for s in seconds]
            except AudioError as e:
                if not self.skip_bad:
                    raise AudioError(e.path, e.reason, (e.detail + "; " if e.detail else "")
                                     + "pass skip_bad=True to substitute another utterance") from None
                self.skip_log.add_error(e)
                self.new_skips.append((e.path, e.reason, e.detail))
                i = int(rng.integers(len(self.table)))
        raise RuntimeError(f"{type(self).__name__}: 100 consecutive unreadable utterances; is the corpus readable?")

    def take_skips(self) -> list[tuple[str, str, str]]:
        """The ``(path, reason, detail)`` of files skipped since the last call (the training loader
        carries them to the run's skip ledger)."""
        out, self.new_skips = self.new_skips, []
        return out

    def augment(self, wave: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.augmenter is None:
            return wave
        return np.asarray(self.augmenter(wave, rng), dtype=np.float32)


def _tensor(wave: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))


class MultiCropDataset(_CropBase):
    """DINO multi-crop views: ``n_global`` crops of ``global_s`` seconds then ``n_local`` of ``local_s``."""

    def __init__(self, table: UtteranceTable, n_global: int = 2, global_s: float = 2.0, n_local: int = 2,
                 local_s: float = 1.0, augmenter: Augment | None = None, seed: int = 0, *,
                 skip_bad: bool = False, preload: bool | WaveCache = False) -> None:
        if n_global < 1 or n_local < 0 or global_s <= 0 or local_s <= 0:
            raise ValueError(f"MultiCropDataset: bad crops n_global={n_global} global_s={global_s} "
                             f"n_local={n_local} local_s={local_s}")
        super().__init__(table, augmenter, seed, skip_bad, preload)
        self.lengths = [global_s] * n_global + [local_s] * n_local

    def __getitem__(self, index: int) -> dict:
        rng = self.rng(index)
        _, crops = self.read_crops(index, self.lengths, rng)
        return {"views": [_tensor(self.augment(c, rng)) for c in crops], "index": int(index)}


class LabelledCropDataset(_CropBase):
    """One augmented random crop of ``crop_s`` seconds and its integer label.

    A substituted (bad) utterance brings its own label and index.
    """

    def __init__(self, table: UtteranceTable, labels, crop_s: float = 2.0, augmenter: Augment | None = None,
                 seed: int = 0, *, skip_bad: bool = False, preload: bool | WaveCache = False) -> None:
        super().__init__(table, augmenter, seed, skip_bad, preload)
        labels = np.asarray(labels, dtype=np.int64)
        if labels.shape != (len(table),):
            raise ValueError(f"LabelledCropDataset: labels have shape {labels.shape}, table has {len(table)} rows")
        self.labels = labels
        self.crop_s = float(crop_s)

    def set_labels(self, labels) -> None:
        labels = np.asarray(labels, dtype=np.int64)
        if labels.shape != self.labels.shape:
            raise ValueError(f"set_labels: shape {labels.shape} != {self.labels.shape}")
        self.labels = labels

    def __getitem__(self, index: int) -> dict:
        rng = self.rng(index)
        i, (crop,) = self.read_crops(index, [self.crop_s], rng)
        return {"wave": _tensor(self.augment(crop, rng)), "label": int(self.labels[i]), "index": int(i)}


class PairCropDataset(_CropBase):
    """SSRL pairs: augmented ``student_s`` crop and clean ``teacher_s`` crop of the same utterance."""

    def __init__(self, table: UtteranceTable, student_s: float = 2.0, teacher_s: float = 6.0,
                 augmenter: Augment | None = None, seed: int = 0, *, skip_bad: bool = False,
                 preload: bool | WaveCache = False) -> None:
        super().__init__(table, augmenter, seed, skip_bad, preload)
        self.student_s = float(student_s)
        self.teacher_s = float(teacher_s)

    def __getitem__(self, index: int) -> dict:
        rng = self.rng(index)
        i, (s, t) = self.read_crops(index, [self.student_s, self.teacher_s], rng)
        return {"student": _tensor(self.augment(s, rng)), "teacher": _tensor(t), "index": int(i)}
