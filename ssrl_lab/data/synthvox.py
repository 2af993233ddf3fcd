"""SynthVox: an embedded synthetic multi-speaker corpus in the VoxCeleb layout.

Speech comes from espeak-ng (:mod:`ssrl_lab.data.espeak`). A *speaker* is a point in a continuous
voice space: an English base voice (accent) and a variant (m1..m8, f1..f5, klatt..., named
variants), espeak pitch, pitch range, rate and word gap, plus a spectral character applied to the
waveform: a vocal-tract-length warp of the spectral envelope (formants move by a factor ``warp``
while the harmonics stay put) and a fixed, smooth speaker EQ. Speakers that sit close in this
space are confusable. Within a speaker, utterances differ in text (a small sentence generator)
and carry small pitch / range / rate / warp jitter. Each speaker has several *sessions* (like
VoxCeleb videos), each with its own channel: a first-order EQ tilt, reverberation on about half
of them (synthetic RIR), coloured noise and a gain.

Layout (``DIR``)::

    train/sv0001/sess01/00001.flac ...   16 kHz mono flac
    test/sv0201/sess01/00001.flac ...
    dev/sv0241/sess01/00001.flac ...     the dev split (for choosing settings; never the test split)
    train.tsv, test.tsv, dev.tsv         UtteranceTable (utt_id relative to the split root)
    trials.txt                           VoxCeleb format "1 enroll test" over test speakers only
    dev_trials.txt                       the same construction over dev speakers only
    corpus.json, speakers.json (train and test voices), dev_speakers.json, build.json

The dev split: speakers disjoint from train and test (their own voices and ids, numbered after
the test speakers), made by the same recipe as the test split (sessions, channels, durations) with
a trial list built the same way. It never changes the train and test split: every draw is keyed by
the speaker's global index (dev indices follow the test ones, so no dev draw shares a seed sequence
with a train or test draw), dev trials use their own stream, and the dev split is synthesised after
train and test. So a corpus built without it (``--no-dev``, or by an older ssrl-lab) is extended in
place by running the same command again: the dev files are written to a temporary directory, moved
in, and ``corpus.json`` (the commit point) is rewritten last; train and test files stay untouched.

Difficulty (``--difficulty X``, 0 <= X <= 3, default 1):

* speaker spread: the half-widths of the pitch / range / rate / warp / EQ distributions are
  multiplied by ``1 / (1 + X / 2)``: speakers crowd together as X grows (each speaker keeps its
  direction in voice space, so the same seed gives "the same people" at every difficulty);
* within-speaker jitter grows linearly with X (none at X = 0);
* channel severity grows with X: at 0 there is no channel at all (clean); at 1 the EQ tilt
  coefficient is within +-0.8, reverb (RT60 0.2-0.6 s) on half the sessions, noise at 5-20 dB SNR,
  gain within +-10 dB; at 2 tilt +-0.9, reverb on 70 % (RT60 up to 0.8 s), SNR 0-12 dB, gain +-15 dB.

Determinism: every random draw comes from a numpy Generator seeded by (seed, role, speaker,
session, utterance), and espeak runs in a child forked from a pristine process per speaker
(:func:`ssrl_lab.data.espeak.run_isolated`), so the same seed gives byte-identical flac files
whatever the number of workers or their order.

CLI: ``python -m ssrl_lab.data.synthvox --profile {smoke,demo,study,bench} --out DIR [--seed N]
[--difficulty X] [--workers N] [--force] [--no-dev]``. Python: :func:`build_synthvox`.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ..config import Config, ConfigError, check
from ..utils.io import atomic_write_json, atomic_write_text
from .table import UtteranceTable

log = logging.getLogger("ssrl_lab.data.synthvox")

SAMPLE_RATE = 16000
VERSION = 1  # bump when the generator changes what a seed produces
MAX_DIFFICULTY = 3.0


class SynthVoxError(RuntimeError):
    """A SynthVox build was refused or failed."""


# ------------------------------------------------------------------------------------------
# Profiles
# ------------------------------------------------------------------------------------------
@dataclasses.dataclass
class SynthVoxProfile(Config):
    """Corpus size and utterance lengths of one build profile."""

    name: str = "demo"
    train_speakers: int = 200
    train_sessions: int = 3
    train_utts: int = 24  # per speaker, spread over its sessions
    test_speakers: int = 40
    test_sessions: int = 4
    test_utts: int = 20
    min_dur: float = 4.0
    max_dur: float = 8.0
    mean_dur: float = 5.5
    n_trials: int = 8000
    dev_speakers: int = 40  # 0: no dev split
    dev_sessions: int = 4
    dev_utts: int = 20
    n_dev_trials: int = 8000

    def validate(self) -> None:
        check(self.train_speakers >= 2, f"train_speakers={self.train_speakers}: need at least 2")
        check(self.test_speakers >= 2, f"test_speakers={self.test_speakers}: need at least 2 (trials need non-targets)")
        check(self.dev_speakers == 0 or self.dev_speakers >= 2,
              f"dev_speakers={self.dev_speakers}: 0 (no dev split) or at least 2 (trials need non-targets)")
        check(self.train_speakers + self.test_speakers + self.dev_speakers <= 9999,
              "at most 9999 speakers (names are sv0001..sv9999)")
        for split in ("train", "test") + (("dev",) if self.dev_speakers else ()):
            sess, utts = getattr(self, f"{split}_sessions"), getattr(self, f"{split}_utts")
            check(sess >= 3, f"{split}_sessions={sess}: every speaker needs at least 3 sessions")
            check(utts >= sess, f"{split}_utts={utts} must be >= {split}_sessions={sess}")
        check(0.5 <= self.min_dur < self.max_dur <= 30, f"durations: need 0.5 <= min_dur < max_dur <= 30, got "
              f"{self.min_dur}, {self.max_dur}")
        check(self.min_dur < self.mean_dur < self.max_dur, f"mean_dur={self.mean_dur} must lie in "
              f"({self.min_dur}, {self.max_dur})")
        check(self.n_trials >= 2, f"n_trials={self.n_trials}: need at least 2")
        check(self.n_dev_trials >= 2, f"n_dev_trials={self.n_dev_trials}: need at least 2")


PROFILES: dict[str, SynthVoxProfile] = {
    "smoke": SynthVoxProfile("smoke", 8, 3, 6, 6, 3, 8, 2.0, 3.0, 2.5, 200, 4, 3, 6, 120),
    "demo": SynthVoxProfile("demo", 200, 3, 24, 40, 4, 20, 4.0, 8.0, 5.5, 8000, 40, 4, 20, 8000),
    "bench": SynthVoxProfile("bench", 1000, 4, 20, 100, 4, 20, 4.0, 8.0, 5.5, 20000, 100, 4, 20, 20000),
    # the study's test set with power (issue 23): demo's 200 training speakers and their audio byte for
    # byte (the same train fields and seed give the same draws), 200 test speakers (40,000 trials,
    # 7.98 M all pairs) and 80 dev speakers; test speakers sv0201..sv0400, dev sv0401..sv0480
    "study": SynthVoxProfile("study", 200, 3, 24, 200, 4, 20, 4.0, 8.0, 5.5, 40000, 80, 4, 20, 20000),
}

#: the profile fields that decide the train split's audio (with the seed and difficulty): profiles
#: equal in these have byte-identical train files (tests/test_synthvox.py)
TRAIN_FIELDS = ("train_speakers", "train_sessions", "train_utts", "min_dur", "max_dur", "mean_dur")


# ------------------------------------------------------------------------------------------
# Difficulty
# ------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Difficulty:
    """What ``--difficulty`` sets (see the module docstring)."""

    level: float
    spread: float  # multiplies speaker parameter half-widths
    jitter: float  # multiplies within-speaker jitter
    tilt_max: float
    reverb_prob: float
    rt60: tuple[float, float]
    snr_db: tuple[float, float] | None  # None: no noise
    gain_db: float

    @classmethod
    def at(cls, x: float) -> "Difficulty":
        if not (0.0 <= x <= MAX_DIFFICULTY) or not np.isfinite(x):
            raise ConfigError(f"difficulty={x}: must be within [0, {MAX_DIFFICULTY}] (0 easy, 1 default, 2 hard)")
        lo1, hi1 = min(x, 1.0), max(x - 1.0, 0.0)
        if x == 0:
            snr = None
        elif x <= 1:
            snr = (5.0 + 30.0 * (1 - x), 20.0 + 30.0 * (1 - x))
        else:
            snr = (5.0 - 5.0 * hi1, 20.0 - 8.0 * hi1)
        return cls(
            level=float(x),
            spread=1.0 / (1.0 + 0.5 * x),
            jitter=float(x),
            tilt_max=min(0.8 * lo1 + 0.1 * hi1, 0.95),
            reverb_prob=min(0.5 * lo1 + 0.2 * hi1, 0.9),
            rt60=(0.2, 0.2 + 0.4 * lo1 + 0.2 * hi1),
            snr_db=snr,
            gain_db=10.0 * lo1 + 5.0 * hi1,
        )


# ------------------------------------------------------------------------------------------
# Text
# ------------------------------------------------------------------------------------------
_WORDS = {
    "det": "the a this that every one my your our their some another".split(),
    "adj": ("small large quiet bright dark cold warm early late happy tired careful quick slow old new "
            "green red blue yellow silver wooden heavy gentle strange simple clever busy empty famous").split(),
    "noun": ("house river garden window teacher doctor village station letter market mountain engine "
             "table kitchen student captain painter island bridge forest basket camera morning evening "
             "machine orchestra library harbour farmer sister brother neighbour journey question answer "
             "picture message lantern compass blanket ticket bottle carpet pocket valley meadow").split(),
    "verb": ("found opened carried watched painted followed visited repaired remembered noticed "
             "borrowed described moved cleaned ordered counted discovered measured delivered "
             "photographed collected welcomed answered finished").split(),
    "prep": "near behind under beside across beyond inside before after around towards".split(),
    "adv": "slowly quietly suddenly carefully happily again yesterday today often never always".split(),
    "conj": "and but because while although when".split(),
    "name": ("Anna Peter Maria David Laura Thomas Sofia Daniel Clara Martin Elena Oliver Grace Henry "
             "Julia Simon Nora Victor").split(),
    "num": "two three four five six seven eight nine ten twelve twenty forty".split(),
}
_TEMPLATES = (
    "det adj noun verb det noun prep det noun .",
    "name verb det adj noun adv .",
    "det noun prep det noun verb det adj noun .",
    "name and name verb num adj noun prep det noun .",
    "adv , det adj noun verb det noun .",
    "det noun verb det noun conj det adj noun verb adv .",
    "did name verb det adj noun prep det noun ?",
    "name verb num noun prep det adj noun conj verb det noun .",
)


def make_sentence(rng: np.random.Generator) -> str:
    """One random English sentence from the built-in grammar."""
    template = _TEMPLATES[rng.integers(len(_TEMPLATES))].split()
    words = []
    for slot in template:
        if slot in _WORDS:
            pool = _WORDS[slot]
            words.append(pool[rng.integers(len(pool))])
        else:
            words.append(slot)
    text = " ".join(words).replace(" .", ".").replace(" ?", "?").replace(" ,", ",")
    return text[0].upper() + text[1:]


def make_text(rng: np.random.Generator, n_words: int) -> str:
    """Sentences until at least ``n_words`` words."""
    sentences, count = [], 0
    while count < n_words:
        s = make_sentence(rng)
        sentences.append(s)
        count += len(s.split())
    return " ".join(sentences)


# ------------------------------------------------------------------------------------------
# Speakers and sessions
# ------------------------------------------------------------------------------------------
_EQ_FREQS = np.array([100.0, 250.0, 500.0, 1000.0, 2000.0, 3500.0, 5500.0, 8000.0])


@dataclasses.dataclass
class SpeakerVoice:
    """A point in voice space (everything that makes a speaker)."""

    name: str
    split: str
    index: int
    base: str
    variant: str
    gender: str
    pitch: float  # espeak 0-100
    pitch_range: float  # espeak 0-100
    rate: float  # words per minute
    wordgap: int  # units of 10 ms
    warp: float  # spectral-envelope frequency warp (>1: shorter vocal tract, formants up)
    eq_db: list[float]  # speaker EQ gains at _EQ_FREQS

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["eq_freqs_hz"] = _EQ_FREQS.tolist()
        return d


@dataclasses.dataclass
class SessionChannel:
    """The recording channel of one session."""

    tilt: float  # first-order EQ: y[n] = x[n] - tilt * x[n-1]
    reverb: bool
    rt60: float
    noise_snr_db: float | None
    noise_beta: float  # noise spectrum ~ 1/f^beta
    gain_db: float
    seed: int  # RIR seed


def sample_speaker(seed: int, index: int, name: str, split: str, diff: Difficulty,
                   bases: list[str], variants: list[str], genders: dict[str, str]) -> SpeakerVoice:
    """Draw speaker ``index``: its direction in voice space does not depend on the difficulty."""
    rng = np.random.default_rng([seed, 1, index])
    base = bases[int(rng.integers(len(bases)))]
    variant = variants[int(rng.integers(len(variants)))]
    u = rng.uniform(-1.0, 1.0, size=6)
    eq = rng.standard_normal(len(_EQ_FREQS))
    s = diff.spread
    return SpeakerVoice(
        name=name, split=split, index=index, base=base, variant=variant, gender=genders.get(variant, "unknown"),
        pitch=float(50 + 42 * s * u[0]),
        pitch_range=float(50 + 40 * s * u[1]),
        rate=float(165 + 45 * s * u[2]),
        wordgap=int(round(2 * s * (u[3] + 1))),
        warp=float(np.exp(0.14 * s * u[4])),
        eq_db=[float(v) for v in 3.0 * s * eq],
    )


def sample_session(seed: int, index: int, session: int, diff: Difficulty) -> SessionChannel:
    rng = np.random.default_rng([seed, 2, index, session])
    u = rng.uniform(0.0, 1.0, size=7)
    return SessionChannel(
        tilt=float(diff.tilt_max * (2 * u[0] - 1)),
        reverb=bool(u[1] < diff.reverb_prob),
        rt60=float(diff.rt60[0] + (diff.rt60[1] - diff.rt60[0]) * u[2]),
        noise_snr_db=None if diff.snr_db is None else float(diff.snr_db[0] + (diff.snr_db[1] - diff.snr_db[0]) * u[3]),
        noise_beta=float(2.0 * u[4]),
        gain_db=float(diff.gain_db * (2 * u[5] - 1)),
        seed=int(rng.integers(2**31 - 1)),
    )


# ------------------------------------------------------------------------------------------
# Signal processing
# ------------------------------------------------------------------------------------------
_N_FFT, _HOP = 512, 256
_WIN = np.sqrt(np.hanning(_N_FFT + 1)[:-1]).astype(np.float32)  # sqrt periodic Hann: analysis x synthesis
# window products overlap-add to exactly 1 at hop N/2


def _stft(x: np.ndarray) -> np.ndarray:
    from scipy import fft

    pad = np.pad(x.astype(np.float32), (_N_FFT // 2, _N_FFT // 2 + _HOP))
    frames = np.lib.stride_tricks.sliding_window_view(pad, _N_FFT)[::_HOP]
    return fft.rfft(frames * _WIN, axis=1)


def _istft(spec: np.ndarray, length: int) -> np.ndarray:
    from scipy import fft

    frames = fft.irfft(spec, n=_N_FFT, axis=1) * _WIN
    n_frames = frames.shape[0]
    out = np.zeros((n_frames + 1, _HOP), dtype=np.float32)
    out[:-1] += frames[:, :_HOP]
    out[1:] += frames[:, _HOP:]
    return out.reshape(-1)[_N_FFT // 2:_N_FFT // 2 + length].astype(np.float64)


def speaker_colour(x: np.ndarray, warp: float, eq_db: np.ndarray, n_cep: int = 24) -> np.ndarray:
    """Warp the spectral envelope by ``warp`` (formant shift, harmonics kept) and apply the EQ.

    The envelope is the cepstrally smoothed log magnitude (first ``n_cep`` quefrencies, below the
    pitch period of any voice here); each frame is multiplied by env(f / warp) / env(f) * EQ(f).
    """
    from scipy import fft

    spec = _stft(x)
    logmag = np.log(np.abs(spec) + np.float32(1e-7))
    cep = fft.irfft(logmag, n=_N_FFT, axis=1)
    cep[:, n_cep:_N_FFT - n_cep + 1] = 0.0
    env = fft.rfft(cep, axis=1).real
    n_bins = env.shape[1]
    src = np.clip(np.arange(n_bins) / warp, 0, n_bins - 1)
    i0 = np.floor(src).astype(int)
    i1 = np.minimum(i0 + 1, n_bins - 1)
    frac = src - i0
    env_w = env[:, i0] * (1 - frac) + env[:, i1] * frac
    freqs = np.arange(n_bins) * SAMPLE_RATE / _N_FFT
    eq = np.interp(np.log(np.maximum(freqs, 50.0)), np.log(_EQ_FREQS), eq_db) * (np.log(10) / 20)
    gain = np.exp(np.clip(env_w - env, -4.0, 4.0) + eq.astype(np.float32))
    return _istft(spec * gain, len(x))


def synthetic_rir(rt60: float, rng: np.random.Generator) -> np.ndarray:
    """Exponentially decaying noise tail after a direct path (normalised to unit direct gain)."""
    n = int(SAMPLE_RATE * min(1.2 * rt60, 1.0))
    t = np.arange(n) / SAMPLE_RATE
    tail = rng.standard_normal(n) * np.exp(-6.908 * t / rt60)
    pre = int(SAMPLE_RATE * 0.003)
    tail[:pre] = 0.0
    tail *= 0.35 / np.sqrt(np.sum(tail**2) + 1e-12)  # direct-to-reverberant energy about 9 dB
    tail[0] = 1.0
    return tail


def coloured_noise(n: int, beta: float, rng: np.random.Generator) -> np.ndarray:
    """Noise with power spectrum ~ 1/f^beta, unit RMS."""
    from scipy import fft

    m = fft.next_fast_len(n, real=True)
    spec = fft.rfft(rng.standard_normal(m))
    f = np.maximum(np.fft.rfftfreq(m, 1.0 / SAMPLE_RATE), 20.0)
    noise = fft.irfft(spec * f ** (-beta / 2), n=m)[:n]
    return noise / (np.sqrt(np.mean(noise**2)) + 1e-12)


def active_rms(x: np.ndarray, frame: int = 320) -> float:
    """RMS over frames within 40 dB of the loudest (speech, not pauses)."""
    n = len(x) // frame
    if n == 0:
        return float(np.sqrt(np.mean(x**2) + 1e-12))
    e = np.mean(x[:n * frame].reshape(n, frame) ** 2, axis=1)
    keep = e > e.max() * 1e-4
    return float(np.sqrt(np.mean(e[keep]) + 1e-12))


def apply_channel(x: np.ndarray, ch: SessionChannel, rng: np.random.Generator, jitter: float) -> np.ndarray:
    """Session channel: EQ tilt, reverb, coloured noise at the session SNR, gain (level -30 dBFS)."""
    from scipy.signal import fftconvolve, lfilter

    y = lfilter([1.0, -ch.tilt], [1.0], x) if ch.tilt else x
    if ch.reverb:
        rir = synthetic_rir(ch.rt60, np.random.default_rng([ch.seed, 7]))
        y = fftconvolve(y, rir)[: len(y)]
    y = y / active_rms(y)
    if ch.noise_snr_db is not None:
        snr = ch.noise_snr_db + jitter * rng.normal(0.0, 1.0)
        y = y + coloured_noise(len(y), ch.noise_beta, rng) * 10 ** (-snr / 20)
    gain_db = -30.0 + ch.gain_db + jitter * rng.normal(0.0, 1.0)
    return y * 10 ** (gain_db / 20)


# ------------------------------------------------------------------------------------------
# One speaker (runs in a worker; espeak calls in a pristine forked child)
# ------------------------------------------------------------------------------------------
@dataclasses.dataclass
class _SpeakerJob:
    voice: SpeakerVoice
    seed: int
    difficulty: float
    n_sessions: int
    n_utts: int
    profile: SynthVoxProfile
    split_dir: str  # where files are written (inside the temporary build dir)
    final_split_dir: str  # absolute path the tables record


def _target_duration(rng: np.random.Generator, p: SynthVoxProfile) -> float:
    m = (p.mean_dur - p.min_dur) / (p.max_dur - p.min_dur)
    return float(p.min_dur + (p.max_dur - p.min_dur) * rng.beta(4 * m, 4 * (1 - m)))


def _synth_utterance(job: _SpeakerJob, session: int, utt: int, channel: SessionChannel) -> np.ndarray:
    from scipy.signal import resample_poly

    from .espeak import get_espeak

    v, diff = job.voice, Difficulty.at(job.difficulty)
    rng = np.random.default_rng([job.seed, 3, v.index, session, utt])
    target = _target_duration(rng, job.profile)
    j = diff.jitter
    pitch = int(np.clip(round(v.pitch + 3.0 * j * rng.normal()), 0, 100))
    prange = int(np.clip(round(v.pitch_range + 4.0 * j * rng.normal()), 0, 100))
    rate = int(np.clip(round(v.rate * np.exp(0.05 * j * rng.normal())), 90, 400))
    warp = float(v.warp * np.exp(0.01 * j * rng.normal()))
    lead = float(rng.uniform(0.05, 0.3))
    es = get_espeak()
    pieces, have = [], 0.0
    while have < target + lead + 0.2:
        n_words = int(np.ceil((target + lead - have) * rate / 60 * 1.3)) + 2
        text = make_text(rng, n_words)
        raw = es.synthesize(text, voice=f"{v.base}+{v.variant}", rate=rate, pitch=pitch, pitch_range=prange,
                            wordgap=v.wordgap, seed=int(rng.integers(2**31 - 1)))
        if len(raw) == 0:
            raise SynthVoxError(f"espeak produced no audio for {v.name} ({v.base}+{v.variant}), text {text!r}")
        pieces.append(raw.astype(np.float64) / 32768.0)
        pieces.append(np.zeros(int(es.sample_rate * rng.uniform(0.15, 0.4))))
        have += sum(len(p) for p in pieces[-2:]) / es.sample_rate
    x = resample_poly(np.concatenate(pieces), SAMPLE_RATE, es.sample_rate)
    # start shortly before the first speech, cut to the target length
    n = int(round(target * SAMPLE_RATE))
    loud = np.nonzero(np.abs(x) > 0.02 * np.abs(x).max())[0]
    start = max(0, int(loud[0]) - int(lead * SAMPLE_RATE)) if len(loud) else 0
    x = x[start:start + n]
    if len(x) < n:
        x = np.pad(x, (0, n - len(x)))
    x = speaker_colour(x, warp, np.asarray(v.eq_db))
    fade = int(0.02 * SAMPLE_RATE)
    x[-fade:] *= np.linspace(1.0, 0.0, fade)
    x = x / active_rms(x)
    return apply_channel(x, channel, rng, diff.jitter)


def _speaker_rows(job: _SpeakerJob) -> list[tuple]:
    """Synthesise and write every utterance of one speaker; return its table rows."""
    import soundfile as sf

    diff = Difficulty.at(job.difficulty)
    rows = []
    counts = [job.n_utts // job.n_sessions + (1 if s < job.n_utts % job.n_sessions else 0)
              for s in range(job.n_sessions)]
    for s, count in enumerate(counts, start=1):
        channel = sample_session(job.seed, job.voice.index, s, diff)
        sess = f"sess{s:02d}"
        for u in range(1, count + 1):
            wave = _synth_utterance(job, s, u, channel)
            pcm = np.round(np.clip(wave, -1.0, 32767 / 32768) * 32768).astype(np.int16)
            rel = f"{job.voice.name}/{sess}/{u:05d}.flac"
            path = Path(job.split_dir) / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(str(path), pcm, SAMPLE_RATE, format="FLAC", subtype="PCM_16")
            rows.append((rel, job.voice.name, f"{job.voice.name}/{sess}", str(Path(job.final_split_dir) / rel),
                         len(pcm) / SAMPLE_RATE))
    return rows


def _worker_init() -> None:
    import scipy.signal  # noqa: F401  (import here once: forked children would each re-import it)
    import soundfile  # noqa: F401

    from .espeak import get_espeak

    get_espeak()  # initialise once per worker, never synthesise here: children fork from this state


def _speaker_task(job: _SpeakerJob) -> list[tuple]:
    from .espeak import run_isolated

    return run_isolated(_speaker_rows, job)


# ------------------------------------------------------------------------------------------
# Trials
# ------------------------------------------------------------------------------------------
def make_trials(table: UtteranceTable, n_trials: int, rng: np.random.Generator) -> list[tuple[int, str, str]]:
    """Balanced trials (half targets, half non-targets, each unordered pair at most once).

    When fewer target pairs exist than ``n_trials / 2``, all of them are used and the
    non-targets match their number.
    """
    codes, _ = table.speaker_codes()
    by_spk: dict[int, np.ndarray] = {c: np.nonzero(codes == c)[0] for c in np.unique(codes)}
    target_pairs = [(int(a), int(b)) for idx in by_spk.values() for i, a in enumerate(idx) for b in idx[i + 1:]]
    n_t = min(n_trials // 2, len(target_pairs))
    chosen = rng.choice(len(target_pairs), size=n_t, replace=False)
    trials = [(1, *target_pairs[i]) for i in sorted(chosen)]
    n = len(table)
    n_nontarget_pairs = n * (n - 1) // 2 - len(target_pairs)
    if n_t > n_nontarget_pairs:
        raise SynthVoxError(f"only {n_nontarget_pairs} non-target pairs for {n_t} targets")
    seen: set[tuple[int, int]] = set()
    while len(seen) < n_t:
        a, b = (int(v) for v in rng.integers(n, size=2))
        if codes[a] == codes[b]:
            continue
        pair = (min(a, b), max(a, b))
        if pair not in seen:
            seen.add(pair)
            trials.append((0, *pair))
    order = rng.permutation(len(trials))
    return [(trials[i][0], table.utt_id[trials[i][1]], table.utt_id[trials[i][2]]) for i in order]


# ------------------------------------------------------------------------------------------
# Build
# ------------------------------------------------------------------------------------------
#: the files of the dev split (besides ``corpus.json`` naming them and ``build.json`` counting them)
DEV_FILES = ("dev", "dev.tsv", "dev_trials.txt", "dev_speakers.json")


def _build_params(profile: str, seed: int, difficulty: float) -> dict:
    return {"profile": profile, "seed": int(seed), "difficulty": float(difficulty), "version": VERSION}


def _write_corpus_json(root: Path, name: str, dev: bool = False) -> None:
    from .corpus import write_corpus_json

    train, test = {"format": "table", "path": "train.tsv"}, {"format": "table", "path": "test.tsv"}
    description = "SynthVox: synthetic espeak-ng speakers in the VoxCeleb layout (ssrl_lab.data.synthvox)"
    extra = {"dev_spec": {"format": "table", "path": "dev.tsv"}, "dev_trials": "dev_trials.txt"} if dev else {}
    write_corpus_json(root, name, train, test, "trials.txt", description=description, **extra)


def has_dev_split(out) -> bool:
    """Whether the SynthVox corpus in ``out`` holds a complete dev split (named by corpus.json)."""
    out = Path(out)
    try:
        spec = json.loads((out / "corpus.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return (isinstance(spec, dict) and "dev" in spec and "dev_trials" in spec
            and all((out / name).exists() for name in DEV_FILES))


def build_synthvox(out, profile: str = "demo", seed: int = 0, difficulty: float = 1.0,
                   workers: int | None = None, force: bool = False, dev: bool = True) -> Path:
    """Build SynthVox into ``out`` (atomically) and return its path.

    An existing ``out`` built with the same (profile, seed, difficulty, version) is left as it is,
    except that when ``dev`` is set and it has no dev split, the dev split is added in place
    (see the module doc: train and test files are not touched). One built with other parameters
    is refused unless ``force``. ``dev=False`` builds train and test only (byte-identical to the
    train and test of a build with ``dev``); it never removes an existing dev split.
    """
    if profile not in PROFILES:
        raise ConfigError(f"profile={profile!r}: unknown; choose one of {', '.join(PROFILES)}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed={seed!r}: must be a non-negative integer")
    diff = Difficulty.at(float(difficulty))
    if workers is not None and workers < 1:
        raise ConfigError(f"workers={workers}: must be >= 1")
    prof = PROFILES[profile]
    dev = bool(dev and prof.dev_speakers)
    out = Path(out).resolve()
    params = _build_params(profile, seed, diff.level)
    if out.is_dir() and not any(out.iterdir()):
        out.rmdir()  # an empty directory holds nothing to protect
    if out.exists():
        existing = _read_build_params(out)
        if existing == params:
            if dev and not has_dev_split(out):
                _add_dev_in_place(out, prof, int(seed), diff, workers)
                return out
            log.info("SynthVox %s already built with %s: nothing to do", out, params)
            return out
        if not force:
            raise SynthVoxError(f"{out} exists and holds {'no SynthVox build' if existing is None else existing}, "
                                f"not {params}; choose another --out or pass --force to replace it")
    t0 = time.time()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{out.name}.tmp-", dir=out.parent))
    try:
        _build_into(tmp, out, prof, int(seed), diff, workers, dev)
        counts = json.loads((tmp / "build.json").read_text())["counts"]
        atomic_write_json(tmp / "build.json", {**params, "counts": counts, "seconds": round(time.time() - t0, 2)})
        if out.exists():
            old = out.with_name(f"{out.name}.old-{os.getpid()}")
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("SynthVox %s built in %.1f s", out, time.time() - t0)
    return out


def _read_build_params(out: Path) -> dict | None:
    try:
        info = json.loads((out / "build.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return {k: info.get(k) for k in ("profile", "seed", "difficulty", "version")}


def _voice_inventory() -> tuple[list[str], list[str], dict[str, str]]:
    from .espeak import ENGLISH_BASES, list_base_voices, list_variants, variant_info

    available = set(list_base_voices("en"))
    bases = [b for b in ENGLISH_BASES if b in available]
    variants = list_variants(human_only=True)
    if not bases or not variants:
        raise SynthVoxError(f"espeak data lacks English voices ({sorted(available)}) or variants ({variants})")
    return bases, variants, {v: variant_info(v)["gender"] for v in variants}


def _split_ranges(prof: SynthVoxProfile) -> dict[str, range]:
    """Global speaker indices of each split: train, then test, then dev (names sv<index + 1>)."""
    a, b = prof.train_speakers, prof.train_speakers + prof.test_speakers
    return {"train": range(0, a), "test": range(a, b), "dev": range(b, b + prof.dev_speakers)}


def _make_jobs(splits, tmp: Path, final: Path, prof: SynthVoxProfile, seed: int,
               diff: Difficulty) -> tuple[list[SpeakerVoice], list[_SpeakerJob]]:
    bases, variants, genders = _voice_inventory()
    speakers, jobs = [], []
    ranges = _split_ranges(prof)
    for split in splits:
        for i in ranges[split]:
            voice = sample_speaker(seed, i, f"sv{i + 1:04d}", split, diff, bases, variants, genders)
            speakers.append(voice)
            jobs.append(_SpeakerJob(voice, seed, diff.level, getattr(prof, f"{split}_sessions"),
                                    getattr(prof, f"{split}_utts"), prof, str(tmp / split), str(final / split)))
    return speakers, jobs


def _synthesise(jobs: list[_SpeakerJob], workers: int | None) -> dict[str, list[tuple]]:
    """Run the speaker jobs in a pool of pristine workers; table rows per split, in job order."""
    n_workers = workers or min(2, os.cpu_count() or 1)
    rows: dict[str, list[tuple]] = {}
    ctx = multiprocessing.get_context("spawn")  # workers start pristine (no inherited espeak or torch state)
    t0, n_total = time.time(), len(jobs)
    with ctx.Pool(n_workers, initializer=_worker_init) as pool:
        for k, (job, res) in enumerate(zip(jobs, pool.imap(_speaker_task, jobs, chunksize=1)), start=1):
            rows.setdefault(job.voice.split, []).extend(res)
            if k % max(1, n_total // 10) == 0 or k == n_total:
                log.info("synthvox: %d/%d speakers (%.0f s)", k, n_total, time.time() - t0)
    return rows


def _write_dev_files(tmp: Path, table: UtteranceTable, voices: list[SpeakerVoice], prof: SynthVoxProfile,
                     seed: int, diff: Difficulty) -> dict:
    """dev.tsv, dev_trials.txt, dev_speakers.json into ``tmp``; returns the dev counts."""
    table.save(tmp / "dev.tsv")
    trials = make_trials(table, prof.n_dev_trials, np.random.default_rng([seed, 5]))  # test trials use [seed, 4]
    atomic_write_text(tmp / "dev_trials.txt", "".join(f"{lab} {a} {b}\n" for lab, a, b in trials))
    atomic_write_json(tmp / "dev_speakers.json", {"difficulty": dataclasses.asdict(diff),
                                                  "speakers": [v.to_dict() for v in voices]})
    return {"dev_speakers": prof.dev_speakers, "dev_utterances": len(table), "dev_trials": len(trials),
            "dev_target_trials": sum(t[0] for t in trials),
            "dev_hours": round(float(table.duration.sum()) / 3600, 3)}


def _build_into(tmp: Path, final: Path, prof: SynthVoxProfile, seed: int, diff: Difficulty,
                workers: int | None, dev: bool = True) -> None:
    splits = ("train", "test", "dev") if dev else ("train", "test")
    speakers, jobs = _make_jobs(splits, tmp, final, prof, seed, diff)
    rows = _synthesise(jobs, workers)
    tables = {split: UtteranceTable.from_rows(rows.get(split, [])) for split in splits}
    for split in ("train", "test"):
        tables[split].save(tmp / f"{split}.tsv")
    trials = make_trials(tables["test"], prof.n_trials, np.random.default_rng([seed, 4]))
    atomic_write_text(tmp / "trials.txt", "".join(f"{lab} {a} {b}\n" for lab, a, b in trials))
    atomic_write_json(tmp / "speakers.json", {
        "difficulty": dataclasses.asdict(diff),
        "speakers": [v.to_dict() for v in speakers if v.split != "dev"],
    })
    counts = {
        "train_speakers": prof.train_speakers, "test_speakers": prof.test_speakers,
        "train_utterances": len(tables["train"]), "test_utterances": len(tables["test"]),
        "trials": len(trials), "target_trials": sum(t[0] for t in trials),
        "train_hours": round(float(tables["train"].duration.sum()) / 3600, 3),
        "test_hours": round(float(tables["test"].duration.sum()) / 3600, 3),
    }
    if dev:
        counts.update(_write_dev_files(tmp, tables["dev"], [v for v in speakers if v.split == "dev"], prof, seed, diff))
    _write_corpus_json(tmp, f"synthvox-{prof.name}", dev=dev)
    atomic_write_json(tmp / "build.json", {"counts": counts})


def _add_dev_in_place(out: Path, prof: SynthVoxProfile, seed: int, diff: Difficulty, workers: int | None) -> None:
    """Add the dev split to the finished build ``out`` without touching its train and test files.

    The dev split is synthesised into a temporary sibling directory, its files are moved into
    ``out`` (replacing leftovers of an interrupted extension, which corpus.json did not name), then
    ``build.json`` gains the dev counts and ``corpus.json`` is rewritten with ``dev`` /
    ``dev_trials``: until that last atomic write, the corpus reads as one without dev.
    """
    t0 = time.time()
    log.info("SynthVox %s has no dev split: adding %d dev speakers in place", out, prof.dev_speakers)
    tmp = Path(tempfile.mkdtemp(prefix=f"{out.name}.dev-tmp-", dir=out.parent))
    try:
        voices, jobs = _make_jobs(("dev",), tmp, out, prof, seed, diff)
        table = UtteranceTable.from_rows(_synthesise(jobs, workers).get("dev", []))
        dev_counts = _write_dev_files(tmp, table, voices, prof, seed, diff)
        for name in DEV_FILES:
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
            os.replace(tmp / name, target)
        info = json.loads((out / "build.json").read_text())
        info["counts"] = {**info.get("counts", {}), **dev_counts}
        info["dev_seconds"] = round(time.time() - t0, 2)
        atomic_write_json(out / "build.json", info)
        spec = json.loads((out / "corpus.json").read_text())
        spec.update({"dev": {"format": "table", "path": "dev.tsv"}, "dev_trials": "dev_trials.txt"})
        from .corpus import write_corpus_json

        write_corpus_json(out, spec)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("SynthVox %s: dev split added in %.1f s", out, time.time() - t0)


# ------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------
def _difficulty_arg(text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (0.0 <= x <= MAX_DIFFICULTY):
        raise argparse.ArgumentTypeError(f"{x} is outside [0, {MAX_DIFFICULTY}] (0 easy, 1 default, 2 hard)")
    return x


def _nonneg_int(text: str) -> int:
    try:
        x = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if x < 0:
        raise argparse.ArgumentTypeError(f"{x} is negative")
    return x


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ssrl_lab.data.synthvox",
                                 description="Build the SynthVox synthetic speaker corpus.")
    ap.add_argument("--profile", choices=sorted(PROFILES), default="demo")
    ap.add_argument("--out", required=True, help="corpus directory to create")
    ap.add_argument("--seed", type=_nonneg_int, default=0)
    ap.add_argument("--difficulty", type=_difficulty_arg, default=1.0,
                    help="0 easy (clean, distinct voices), 1 default, 2 hard")
    ap.add_argument("--workers", type=int, default=None, help="processes (default: min(2, cpus))")
    ap.add_argument("--force", action="store_true", help="replace an existing corpus built with other parameters")
    ap.add_argument("--no-dev", dest="dev", action="store_false",
                    help="build train and test only (an existing dev split is kept); without this flag a corpus "
                         "built without a dev split gains one in place")
    args = ap.parse_args(argv)
    if args.workers is not None and args.workers < 1:
        ap.error(f"--workers {args.workers}: must be >= 1")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    out = Path(args.out).resolve()
    before = _read_build_params(out) if out.exists() else None
    had_dev = has_dev_split(out)
    t0 = time.time()
    try:
        build_synthvox(out, args.profile, args.seed, args.difficulty, args.workers, args.force, dev=args.dev)
    except (SynthVoxError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    c = json.loads((out / "build.json").read_text())["counts"]
    dev_text = (f"; dev: {c['dev_speakers']} speakers, {c['dev_utterances']} utterances, {c['dev_trials']} trials"
                if "dev_utterances" in c else "; no dev split")
    if before == _build_params(args.profile, args.seed, args.difficulty):
        if has_dev_split(out) and not had_dev:
            print(f"{out}: dev split added in place in {time.time() - t0:.1f} s (train and test untouched){dev_text}")
        else:
            print(f"{out}: already built with profile={args.profile} seed={args.seed} difficulty={args.difficulty}; "
                  f"nothing to do{dev_text}")
    else:
        print(f"{out}: {c['train_speakers']} train / {c['test_speakers']} test speakers, "
              f"{c['train_utterances']} + {c['test_utterances']} utterances ({c['train_hours'] + c['test_hours']:.2f} h), "
              f"{c['trials']} trials{dev_text}, built in {time.time() - t0:.1f} s")
    return 0

if __name__ == "__main__":
    sys.exit(main())
