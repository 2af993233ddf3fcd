"""Waveform augmentation: reverberation, additive noise, music and babble at a chosen SNR.

:class:`Augmenter` draws one kind per call (probabilities in :class:`AugmentConfig`) and
applies it to a 16 kHz float32 1-D crop. Sources:

* MUSAN (``musan_dir`` with ``noise/``, ``music/``, ``speech/`` subfolders of wav files) and
  room impulse responses (``rir_dir``: wav/flac files found recursively), when given;
* otherwise built-in generators: coloured noise (spectral slope from white to brown),
  synthetic "music" (sustained harmonic notes with onsets), babble from 3-6 other utterances of
  a table (or modulated speech-shaped noise without one), and synthetic RIRs (direct path,
  early reflections and an exponentially decaying tail with RT60 in 0.2-0.8 s).

Additive kinds go through :func:`mix_at_snr` (the speech keeps its level; the noise is scaled so
``10 log10(P_speech / P_noise) = snr_db``); reverberation through :func:`reverberate` (same
length, aligned on the direct path, rescaled to the dry level).
"""
from __future__ import annotations

import dataclasses
import logging
import math
from collections import OrderedDict
from pathlib import Path
from typing import Literal

import numpy as np
import scipy.fft as sfft
import soundfile as sf

from ..config import Config, ConfigError, check
from .audio import SAMPLE_RATE, SkipLog, load_audio, pad_to
from .table import UtteranceTable

# "babble_music" (babble plus music, the authors' fourth additive kind) comes last so that
# configs without it draw exactly the same kinds as before it existed.
KINDS = ("reverb", "noise", "music", "babble", "none", "babble_music")
ADDITIVE = ("noise", "music", "babble", "babble_music")
#: the additive kinds with a source of their own (babble_music mixes babble and music)
SOURCES = ("noise", "music", "babble")
_EPS = 1e-12

log = logging.getLogger("ssrl_lab.data.augment")


@dataclasses.dataclass
class AugmentConfig(Config):
    """Which augmentation to draw and how strong.

    ``p_*``: relative odds of each kind (normalised; need not sum to 1); ``babble_music`` is
    babble and music together (unit-power sum), mixed at ``snr_babble_music``. ``snr_*``: uniform SNR
    range in dB per additive kind. ``babble_speakers``: how many utterances a babble mixes.
    ``rt60``: synthetic-RIR reverberation time range in seconds. ``musan_dir`` / ``rir_dir``:
    real sources (``None``: built-in generators). ``babble_source``: ``auto`` uses MUSAN speech
    when ``musan_dir`` is set, else the babble table when given, else synthetic babble.
    ``bank_clips`` / ``bank_clip_s``: the built-in noise, music and synthetic babble are drawn as
    random crops of a bank of that many clips of that length, generated once per augmenter
    (fast enough for a data loader); ``bank_clips=0`` generates fresh audio on every call.
    """

    p_reverb: float = 0.2
    p_noise: float = 0.2
    p_music: float = 0.2
    p_babble: float = 0.2
    p_none: float = 0.2
    p_babble_music: float = 0.0
    snr_noise: tuple[float, ...] = (0.0, 15.0)
    snr_music: tuple[float, ...] = (5.0, 15.0)
    snr_babble: tuple[float, ...] = (13.0, 20.0)
    snr_babble_music: tuple[float, ...] = (13.0, 20.0)
    babble_speakers: tuple[int, ...] = (3, 6)
    rt60: tuple[float, ...] = (0.2, 0.8)
    musan_dir: str | None = None
    rir_dir: str | None = None
    babble_source: Literal["auto", "musan", "table", "synthetic"] = "auto"
    bank_clips: int = 16
    bank_clip_s: float = 8.0

    def validate(self) -> None:
        # (pairs are annotated tuple[float, ...]: config._coerce mishandles fixed-length tuples)
        for name in ("snr_noise", "snr_music", "snr_babble", "snr_babble_music", "babble_speakers", "rt60"):
            check(len(getattr(self, name)) == 2, f"{name} must be a (low, high) pair, got {getattr(self, name)}")
        for k in KINDS:
            p = getattr(self, f"p_{k}")
            check(math.isfinite(p) and p >= 0, f"p_{k} must be a finite probability >= 0, got {p}")
        check(sum(getattr(self, f"p_{k}") for k in KINDS) > 0, "the probabilities p_* must not all be 0")
        for k in ADDITIVE:
            lo, hi = getattr(self, f"snr_{k}")
            check(math.isfinite(lo) and math.isfinite(hi), f"snr_{k} must be finite, got {(lo, hi)}")
            check(lo <= hi, f"snr_{k}: low {lo} dB is above high {hi} dB")
        lo, hi = self.babble_speakers
        check(1 <= lo <= hi, f"babble_speakers must satisfy 1 <= low <= high, got {(lo, hi)}")
        check(self.bank_clips >= 0, f"bank_clips must be >= 0, got {self.bank_clips}")
        check(self.bank_clip_s >= 0.5, f"bank_clip_s must be >= 0.5 s, got {self.bank_clip_s}")
        lo, hi = self.rt60
        check(0 < lo <= hi <= 3.0, f"rt60 must satisfy 0 < low <= high <= 3 s, got {(lo, hi)}")

    def probabilities(self) -> np.ndarray:
        """Odds of :data:`KINDS`, normalised to sum to 1."""
        p = np.array([getattr(self, f"p_{k}") for k in KINDS], dtype=np.float64)
        return p / p.sum()

    @classmethod
    def profile(cls, name: str, **overrides) -> "AugmentConfig":
        """``student`` (SSRL as the authors' script: reverb, additive or none with equal odds, the
        additive kind one of noise, music, babble + music or babble of 3-8 talkers, all at 0-20 dB),
        ``dino`` (reverb 0.4, noise/music/babble 0.4 together, none 0.2; MUSAN-style SNRs) or
        ``musan`` (the field defaults)."""
        if name == "student":
            base = dict(STUDENT_AUG)
        elif name == "dino":
            base = dict(p_reverb=0.4, p_noise=0.4 / 3, p_music=0.4 / 3, p_babble=0.4 / 3, p_none=0.2)
        elif name == "musan":
            base = {}
        else:
            raise ConfigError(f"unknown augmentation profile {name!r}; valid: student, dino, musan")
        return cls.from_dict({**base, **overrides})


#: SSRL's student augmentation as in the authors' script (``train_lnc_nlm_dino_ali.py``,
#: ``_augmentation``): reverb 1/3, none 1/3, additive 1/3 split evenly over noise, music,
#: babble + music and babble of 3-8 talkers, SNR uniform in 0-20 dB.
STUDENT_AUG = dict(p_reverb=1 / 3, p_none=1 / 3, p_noise=1 / 12, p_music=1 / 12, p_babble=1 / 12,
                   p_babble_music=1 / 12, snr_noise=(0.0, 20.0), snr_music=(0.0, 20.0),
                   snr_babble=(0.0, 20.0), snr_babble_music=(0.0, 20.0), babble_speakers=(3, 8))

#: The demo profiles' augmentation (the loader-side path, SynthVox's MUSAN-like sources): reverb,
#: noise, music or none with equal odds, at the field SNRs (the iterative and supervised baselines)...
DEMO_AUG = {"p_reverb": 1.0, "p_noise": 1.0, "p_music": 1.0, "p_babble": 0.0, "p_none": 1.0}
#: ... and the same kinds at 0-20 dB for SSRL's demo student
DEMO_STUDENT_AUG = {**DEMO_AUG, "snr_noise": [0.0, 20.0], "snr_music": [0.0, 20.0], "snr_babble": [0.0, 20.0]}


# -- mixing primitives ---------------------------------------------------------------------
def power(x: np.ndarray) -> float:
    return float(np.mean(np.square(x, dtype=np.float64))) if x.size else 0.0


def mix_at_snr(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``speech + g * noise`` with ``g`` such that ``10 log10(P_speech / P(g * noise)) = snr_db``.

    ``noise`` is repeated or cut to the speech length. Silent speech or noise: speech returned.
    """
    speech = np.asarray(speech, dtype=np.float32)
    noise = np.asarray(noise, dtype=np.float32)
    if speech.size == 0 or noise.size == 0:
        return speech.copy()
    noise = pad_to(noise, len(speech))[: len(speech)]
    ps, pn = power(speech), power(noise)
    if ps < _EPS or pn < _EPS:
        return speech.copy()
    g = math.sqrt(ps / (pn * 10.0 ** (snr_db / 10.0)))
    return (speech + np.float32(g) * noise).astype(np.float32, copy=False)


def reverberate(speech: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """Convolve with ``rir``; same length as ``speech``, aligned on the RIR's direct-path peak
    (its largest sample) and rescaled to the power of the dry input."""
    speech = np.asarray(speech, dtype=np.float32)
    rir = np.asarray(rir, dtype=np.float32)
    if speech.size == 0 or rir.size == 0:
        return speech.copy()
    d = int(np.argmax(np.abs(rir)))
    rir = rir[: d + len(speech)]  # later taps cannot reach the kept output
    n_fft = sfft.next_fast_len(len(speech) + len(rir) - 1, real=True)  # linear, not circular
    y = sfft.irfft(sfft.rfft(speech, n_fft) * sfft.rfft(rir, n_fft), n_fft)[d: d + len(speech)]
    py = power(y)
    if py < _EPS:
        return speech.copy()
    return (y * np.float32(math.sqrt(power(speech) / py))).astype(np.float32, copy=False)


# -- built-in sources ----------------------------------------------------------------------
def coloured_noise(n: int, rng: np.random.Generator, slope: float | None = None) -> np.ndarray:
    """Unit-power noise with power spectrum ``~ f^-slope``; ``slope`` in [0, 2] (white .. brown),
    drawn uniformly when ``None``."""
    if slope is None:
        slope = rng.uniform(0.0, 2.0)
    m = n // 2 + 1
    spec = rng.standard_normal(m) + 1j * rng.standard_normal(m)
    f = np.arange(m, dtype=np.float64)
    f[0] = 1.0
    spec *= f ** (-slope / 2.0)
    spec[0] = 0.0
    x = np.fft.irfft(spec, n).astype(np.float32)
    return x / np.float32(math.sqrt(power(x)) + _EPS)


def synthetic_music(n: int, rng: np.random.Generator, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Unit-power "music": harmonic notes (random timbre, pitch 65-1000 Hz) with sharp onsets,
    0.2-1.5 s long, a few overlapping, on a sustained drone."""
    table_len = 2048
    k = np.arange(table_len) / table_len
    n_harm = int(rng.integers(3, 8))
    amps = rng.uniform(0.2, 1.0, n_harm) / np.arange(1, n_harm + 1) ** rng.uniform(0.5, 1.5)
    table = np.zeros(table_len, dtype=np.float32)
    for h, a in enumerate(amps, start=1):  # one period of the instrument's waveform
        table += np.float32(a) * np.sin(2 * np.pi * h * k + rng.uniform(0, 2 * np.pi)).astype(np.float32)
    out = np.zeros(n, dtype=np.float32)
    dur_s = n / sr
    n_notes = max(1, int(rng.poisson(3.0 * dur_s)) + 1)
    for j in range(n_notes + 1):
        midi = rng.integers(36, 84)
        f0 = 440.0 * 2 ** ((midi - 69) / 12)
        if j == 0:  # drone across the whole crop
            on, length, decay = 0, n, 1e9
        else:
            on = int(rng.integers(0, n))
            length = min(n - on, int(rng.uniform(0.2, 1.5) * sr))
            decay = rng.uniform(0.2, 1.0) * sr
        if length <= 0:
            continue
        t = np.arange(length, dtype=np.float32)
        idx = ((t * np.float32(f0 * table_len / sr) + rng.integers(0, table_len)) % table_len).astype(np.int32)
        env = np.exp(-t / np.float32(decay))
        att = min(length, int(0.01 * sr))
        env[:att] *= np.linspace(0.0, 1.0, att, dtype=np.float32)
        out[on: on + length] += np.float32(rng.uniform(0.3, 1.0)) * table[idx] * env
    return out / np.float32(math.sqrt(power(out)) + _EPS)


def synthetic_babble(n: int, rng: np.random.Generator, n_talkers: int, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Unit-power babble substitute: ``n_talkers`` speech-shaped noises, each gated by its own
    syllable-rate (3-7 Hz) envelope with pauses."""
    m = 2 * n
    spec = rng.standard_normal(m // 2 + 1) + 1j * rng.standard_normal(m // 2 + 1)
    f = np.fft.rfftfreq(m, 1.0 / sr)
    shape = (f / (f + 120.0)) / np.sqrt(1.0 + (f / 600.0) ** 2) / (1.0 + (f / 5000.0) ** 4)
    base = np.fft.irfft(spec * shape, m).astype(np.float32)
    out = np.zeros(n, dtype=np.float32)
    t = np.arange(n, dtype=np.float32)
    for _ in range(n_talkers):
        rate = rng.uniform(3.0, 7.0)
        n_ctrl = int(n / sr * rate) + 2
        ctrl = rng.uniform(0.0, 1.0, n_ctrl) ** 2 * (rng.uniform(size=n_ctrl) > 0.25)
        env = np.interp(t, np.linspace(0, n, n_ctrl), ctrl).astype(np.float32)
        off = int(rng.integers(0, m - n))
        out += base[off: off + n] * env
    return out / np.float32(math.sqrt(power(out)) + _EPS)


def synthetic_rir(rng: np.random.Generator, rt60: float | None = None, rt60_range=(0.2, 0.8),
                  sr: int = SAMPLE_RATE, drr_db: float | None = None) -> np.ndarray:
    """A unit-energy room impulse response: a direct path (the largest sample), 4-10 early
    reflections within 50 ms, and a Gaussian tail decaying by 60 dB over ``rt60`` seconds
    (drawn from ``rt60_range``) with a direct-to-reverberant ratio ``drr_db`` (-3 .. 10 dB)."""
    if rt60 is None:
        rt60 = rng.uniform(*rt60_range)
    if drr_db is None:
        drr_db = rng.uniform(-3.0, 10.0)
    n = max(int(rt60 * sr), 16)
    pre = int(rng.integers(0, 32))
    h = np.zeros(pre + n, dtype=np.float32)
    t = np.arange(n, dtype=np.float32) / sr
    decay = np.exp(-6.908 * t / rt60).astype(np.float32)  # 60 dB amplitude decay at rt60
    tail = rng.standard_normal(n).astype(np.float32) * decay
    ramp = min(n, int(0.005 * sr))
    tail[:ramp] *= np.linspace(0.0, 1.0, ramp, dtype=np.float32)
    tail *= np.float32(math.sqrt(10 ** (-drr_db / 10) / (power(tail) * n + _EPS)))
    h[pre:] += tail
    k = int(rng.integers(4, 11))
    delays = rng.integers(int(0.001 * sr), int(0.05 * sr), k)
    amps = rng.uniform(0.2, 0.7, k) * rng.choice([-1.0, 1.0], k) * np.exp(-6.908 * delays / sr / rt60)
    np.add.at(h, pre + delays[delays < n], amps[delays < n].astype(np.float32))
    h[pre] = max(1.0, 1.01 * float(np.abs(h).max()))  # the direct path stays the largest peak
    return h / np.float32(np.sqrt(np.sum(np.square(h, dtype=np.float64))))


def _bank_clip(kind: str, n: int, rng: np.random.Generator, i: int, n_clips: int, talkers: tuple[int, int]) -> np.ndarray:
    """Clip ``i`` of a built-in source bank (slopes and talker counts spread over the clips)."""
    if kind == "noise":
        return coloured_noise(n, rng, 2.0 * i / max(1, n_clips - 1))
    if kind == "music":
        return synthetic_music(n, rng)
    if kind == "babble":
        return synthetic_babble(n, rng, talkers[0] + i % (talkers[1] - talkers[0] + 1))
    raise ValueError(f"no built-in bank for {kind!r}")


class SourceBank:
    """``n_clips`` clips of one built-in source (``noise``, ``music``, ``babble``), generated on
    first use from ``seed``; :meth:`draw` returns a random circular crop with random polarity.
    Pickles without its clips (a spawned worker regenerates the same ones)."""

    def __init__(self, kind: str, n_clips: int, clip_len: int, seed: int, talkers: tuple[int, int] = (3, 6)) -> None:
        self.kind, self.n_clips, self.clip_len, self.seed, self.talkers = kind, n_clips, clip_len, seed, tuple(talkers)
        self.clips: list[np.ndarray] | None = None

    def prepare(self) -> "SourceBank":
        if self.clips is None:
            rng = np.random.default_rng(self.seed)
            self.clips = [_bank_clip(self.kind, self.clip_len, rng, i, self.n_clips, self.talkers).astype(np.float32)
                          for i in range(self.n_clips)]
        return self

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        clips = self.prepare().clips
        c = clips[int(rng.integers(len(clips)))]
        off = int(rng.integers(len(c)))
        x = c[off: off + n]
        if len(x) < n:
            x = pad_to(np.concatenate([x, c[:off]]), n)[:n]
        return -x if rng.random() < 0.5 else x.copy()

    def __getstate__(self):
        return {**self.__dict__, "clips": None}


# -- file sources --------------------------------------------------------------------------
_AUDIO = (".wav", ".flac")


def _find_audio(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.rglob("*") if p.suffix.lower() in _AUDIO and p.is_file())


def _musan_root(musan_dir) -> Path:
    d = Path(musan_dir).expanduser()
    if not d.is_dir():
        raise FileNotFoundError(f"musan_dir {d} is not a directory")
    if not any((d / k).is_dir() for k in ("noise", "music", "speech")) and (d / "musan").is_dir():
        d = d / "musan"  # the parent of the MUSAN folder was given
    return d


class Augmenter:
    """Draw and apply augmentations to 16 kHz float32 1-D waves.

    ``aug(wave, rng)`` draws a kind with the config's odds; ``aug.apply(wave, kind, rng,
    snr_db=None)`` applies one kind (SNR drawn from the kind's range unless given). ``rng``: a
    ``numpy.random.Generator`` (default: the augmenter's own, seeded with ``seed``; DataLoader
    workers should pass their own). Unreadable source files are skipped (counted in
    ``skip_log``) and replaced by the built-in generator for that call.
    """

    def __init__(self, cfg: AugmentConfig | None = None, babble_table: UtteranceTable | None = None,
                 seed: int = 0, skip_log: SkipLog | None = None, rir_cache_size: int = 2048) -> None:
        self.cfg = cfg if cfg is not None else AugmentConfig()
        self.rng = np.random.default_rng(seed)
        self._seed = seed
        self._rir_bank: list[np.ndarray] | None = None
        self.skip_log = skip_log if skip_log is not None else SkipLog()
        self._p = self.cfg.probabilities()
        self._files: dict[str, list[str]] = {"noise": [], "music": [], "speech": []}
        self._durations: dict[str, float] = {}
        if self.cfg.musan_dir:
            root = _musan_root(self.cfg.musan_dir)
            bm = self.cfg.p_babble_music > 0
            need = {"noise": self.cfg.p_noise > 0, "music": self.cfg.p_music > 0 or bm,
                    "speech": (self.cfg.p_babble > 0 or bm) and self.cfg.babble_source in ("auto", "musan")}
            for sub, needed in need.items():
                self._files[sub] = _find_audio(root / sub) if (root / sub).is_dir() else []
                if needed and not self._files[sub]:
                    raise FileNotFoundError(f"musan_dir {root}: no wav/flac files under {root / sub}")
        self._rirs: list[str] = []
        if self.cfg.rir_dir:
            d = Path(self.cfg.rir_dir).expanduser()
            if not d.is_dir():
                raise FileNotFoundError(f"rir_dir {d} is not a directory")
            self._rirs = _find_audio(d)
            if not self._rirs:
                raise FileNotFoundError(f"rir_dir {d}: no wav/flac files found (searched recursively)")
        self._rir_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._rir_cache_size = rir_cache_size
        src = self.cfg.babble_source
        if src == "musan" and not self._files["speech"]:
            raise ConfigError("babble_source='musan' needs a musan_dir with speech/")
        if src == "table" and (babble_table is None or len(babble_table) == 0):
            raise ConfigError("babble_source='table' needs a non-empty babble_table")
        self.babble_table = babble_table
        if src == "auto":
            src = "musan" if self._files["speech"] else ("table" if babble_table is not None and len(babble_table) else "synthetic")
        self.babble_mode = src
        lo, hi = self.cfg.babble_speakers
        n_bank, clip = self.cfg.bank_clips, int(self.cfg.bank_clip_s * SAMPLE_RATE)
        self._banks: dict[str, SourceBank] = {}
        if n_bank:
            self._banks = {kind: SourceBank(kind, n_bank, clip, seed * 7 + j, (lo, hi))
                           for j, kind in enumerate(SOURCES, start=1)}

    def __getstate__(self):  # spawned DataLoader workers regenerate banks and caches (same seed, same audio)
        return {**self.__dict__, "_rir_bank": None, "_rir_cache": OrderedDict()}

    def prepare(self) -> "Augmenter":
        """Generate the built-in source banks now (e.g. before forking DataLoader workers, which
        then share them) instead of on first use."""
        for kind, bank in self._banks.items():
            if self._needs_bank(kind):
                bank.prepare()
        if self._banks and self.cfg.p_reverb > 0 and not self._rirs:
            self._synthetic_rirs()
        return self

    def _needs_bank(self, kind: str) -> bool:
        p = getattr(self.cfg, f"p_{kind}")
        if kind in ("music", "babble"):
            p += self.cfg.p_babble_music
        if p <= 0:
            return False
        if kind == "babble":
            return self.babble_mode == "synthetic"
        return not self._files[kind]

    def _synthetic(self, kind: str, n: int, rng: np.random.Generator, n_talkers: int | None = None) -> np.ndarray:
        bank = self._banks.get(kind)
        if bank is not None:
            return bank.draw(n, rng)
        if kind == "noise":
            return coloured_noise(n, rng)
        if kind == "music":
            return synthetic_music(n, rng)
        lo, hi = self.cfg.babble_speakers
        return synthetic_babble(n, rng, n_talkers or int(rng.integers(lo, hi + 1)))

    def sources(self) -> dict[str, str]:
        """Where each kind comes from (for logs and notebooks)."""
        out = {
            "reverb": f"{len(self._rirs)} RIR files" if self._rirs else "synthetic RIRs",
            "noise": f"{len(self._files['noise'])} MUSAN noise files" if self._files["noise"] else "coloured noise",
            "music": f"{len(self._files['music'])} MUSAN music files" if self._files["music"] else "synthetic music",
            "babble": {"musan": f"{len(self._files['speech'])} MUSAN speech files",
                       "table": f"{len(self.babble_table) if self.babble_table is not None else 0} table utterances",
                       "synthetic": "synthetic babble"}[self.babble_mode],
        }
        if self.cfg.p_babble_music > 0:
            out["babble_music"] = "babble + music, from the sources above"
        return out

    # -- drawing ---------------------------------------------------------------------------
    def choose(self, rng: np.random.Generator | None = None) -> str:
        rng = rng if rng is not None else self.rng
        return KINDS[int(rng.choice(len(KINDS), p=self._p))]

    def __call__(self, wave: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
        rng = rng if rng is not None else self.rng
        return self.apply(wave, self.choose(rng), rng)

    def apply(self, wave: np.ndarray, kind: str, rng: np.random.Generator | None = None,
              snr_db: float | None = None) -> np.ndarray:
        """Apply ``kind`` (one of :data:`KINDS`) to ``wave``; returns a new float32 array of the
        same length (``"none"`` returns the input as float32)."""
        rng = rng if rng is not None else self.rng
        wave = np.asarray(wave, dtype=np.float32)
        if wave.ndim != 1:
            raise ValueError(f"Augmenter expects a 1-D wave, got shape {wave.shape}")
        if kind == "none" or wave.size == 0:
            if kind not in KINDS:
                raise ValueError(f"unknown augmentation kind {kind!r}; valid: {', '.join(KINDS)}")
            return wave
        if kind == "reverb":
            return reverberate(wave, self.rir(rng))
        if kind not in ADDITIVE:
            raise ValueError(f"unknown augmentation kind {kind!r}; valid: {', '.join(KINDS)}")
        if snr_db is None:
            snr_db = float(rng.uniform(*getattr(self.cfg, f"snr_{kind}")))
        return mix_at_snr(wave, self.noise(kind, len(wave), rng), snr_db)

    # -- sources ---------------------------------------------------------------------------
    def noise(self, kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` samples of interference of an additive ``kind`` (noise, music, babble)."""
        if kind == "noise":
            x = self._file_crop(self._files["noise"], n, rng) if self._files["noise"] else None
            return x if x is not None else self._synthetic("noise", n, rng)
        if kind == "music":
            x = self._file_crop(self._files["music"], n, rng) if self._files["music"] else None
            return x if x is not None else self._synthetic("music", n, rng)
        if kind == "babble":
            return self._babble(n, rng)
        if kind == "babble_music":
            babble = self._babble(n, rng)
            music = self.noise("music", n, rng)
            return (babble / np.float32(math.sqrt(power(babble)) + 1e-6)
                    + music / np.float32(math.sqrt(power(music)) + 1e-6)).astype(np.float32)
        raise ValueError(f"{kind!r} is not an additive kind; valid: {', '.join(ADDITIVE)}")

    def rir(self, rng: np.random.Generator) -> np.ndarray:
        """A room impulse response: a random file of ``rir_dir``, else a synthetic one."""
        if self._rirs:
            path = self._rirs[int(rng.integers(len(self._rirs)))]
            h = self._rir_cache.get(path)
            if h is None:
                h = load_audio(path, skip=True, skip_log=self.skip_log)
                if h is not None:
                    h = (h / np.float32(np.sqrt(np.sum(np.square(h, dtype=np.float64))) + _EPS)).astype(np.float32)
                    self._rir_cache[path] = h
                    if len(self._rir_cache) > self._rir_cache_size:
                        self._rir_cache.popitem(last=False)
            else:
                self._rir_cache.move_to_end(path)
            if h is not None:
                return h
        if self.cfg.bank_clips:
            return self._synthetic_rirs()[int(rng.integers(8 * self.cfg.bank_clips))]
        return synthetic_rir(rng, rt60_range=self.cfg.rt60)

    def _synthetic_rirs(self) -> list[np.ndarray]:
        if self._rir_bank is None:
            r = np.random.default_rng(self._seed * 7 + 4)
            self._rir_bank = [synthetic_rir(r, rt60_range=self.cfg.rt60) for _ in range(8 * self.cfg.bank_clips)]
        return self._rir_bank

    def _duration(self, path: str) -> float:
        d = self._durations.get(path)
        if d is None:
            try:
                d = sf.info(path).duration
            except Exception:  # unreadable: load_audio below will report it
                d = float("nan")
            self._durations[path] = d
        return d

    def _load_crop(self, path: str, n: int, rng: np.random.Generator, duration: float | None = None) -> np.ndarray | None:
        dur_s = n / SAMPLE_RATE
        total = self._duration(path) if duration is None else duration
        start = float(rng.uniform(0.0, total - dur_s)) if math.isfinite(total) and total > dur_s else None
        x = load_audio(path, start_s=start, dur_s=dur_s if start is not None else None, skip=True,
                       skip_log=self.skip_log)
        if x is None:
            return None
        x = pad_to(x, n)
        return x[:n] if start is not None or len(x) == n else x[int(rng.integers(0, len(x) - n + 1)):][:n]

    def _file_crop(self, files: list[str], n: int, rng: np.random.Generator) -> np.ndarray | None:
        return self._load_crop(files[int(rng.integers(len(files)))], n, rng)

    def _babble(self, n: int, rng: np.random.Generator) -> np.ndarray:
        if self.babble_mode == "synthetic":
            return self._synthetic("babble", n, rng)
        lo, hi = self.cfg.babble_speakers
        k = int(rng.integers(lo, hi + 1))
        out, used = np.zeros(n, dtype=np.float32), 0
        if self.babble_mode == "musan":
            files = self._files["speech"]
            picks = [(files[int(i)], None) for i in rng.integers(0, len(files), k)]
        else:
            t = self.babble_table
            picks = [(t.path[int(i)], float(t.duration[int(i)])) for i in rng.integers(0, len(t), k)]
        for path, dur in picks:
            x = self._load_crop(path, n, rng, dur)
            if x is None:
                continue
            out += x / np.float32(math.sqrt(power(x)) + 1e-6)
            used += 1
        return out if used else self._synthetic("babble", n, rng, k)


__all__ = ["KINDS", "ADDITIVE", "SOURCES", "STUDENT_AUG", "AugmentConfig", "Augmenter", "mix_at_snr", "reverberate", "coloured_noise", "synthetic_music",
           "synthetic_babble", "synthetic_rir", "power", "SourceBank", "build_augmenter"]


def build_augmenter(cfg, table):
    """The loader-side waveform Augmenter of a training config's ``augment`` (None when
    augmentation is off or done in the batch, ``augment_on="batch"``); ``table`` gives the babble."""
    if cfg.augment is None or cfg.augment_on == "batch":
        return None
    return Augmenter(AugmentConfig.from_dict(cfg.augment, _prefix="augment."), babble_table=table, seed=cfg.seed)
