"""Audio I/O for the data side: 16 kHz mono float32 numpy arrays.

* :func:`load_audio` reads wav/flac with soundfile (partial reads: a crop never decodes the
  whole file) and m4a/aac, or anything soundfile cannot open, with PyAV; stereo is averaged to
  mono and other sample rates are resampled to :data:`SAMPLE_RATE` (polyphase filter).
* Every failure is an :class:`AudioError` naming the file and one reason among
  :data:`~ssrl_lab.data.errors.REASONS`; with ``skip=True`` the loader returns ``None`` instead and counts the file in
  a :class:`SkipLog`.
* :func:`random_crop` / :func:`fixed_crop` cut a fixed number of samples, padding short clips
  by repetition (``"wrap"``, the default) or with zeros.
* :func:`write_audio` writes flac/wav atomically.
"""
from __future__ import annotations

import dataclasses
import io
import logging
import math
import os
import threading
from fractions import Fraction
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf

from ..utils.io import atomic_write_bytes
from .errors import REASONS, AudioError

SAMPLE_RATE = 16000
SILENCE_THRESHOLD = 1e-5
SOUNDFILE_EXTENSIONS = (".wav", ".flac")

PadMode = Literal["wrap", "zeros"]

log = logging.getLogger("ssrl_lab.data.audio")


# -- skip bookkeeping ----------------------------------------------------------------------
class SkipLog:
    """Counts files skipped by reason; each skip is logged at WARNING with the file name.

    ``summary()`` gives ``{reason: count}``; ``total`` the number of skips; ``files`` keeps the
    first ``keep`` ``(path, reason, detail)`` entries for inspection.
    """

    def __init__(self, keep: int = 1000) -> None:
        self.keep = keep
        self.counts: dict[str, int] = {}
        self.files: list[tuple[str, str, str]] = []
        self._lock = threading.Lock()

    def add(self, path, reason: str, detail: str = "") -> None:
        with self._lock:
            self.counts[reason] = self.counts.get(reason, 0) + 1
            if len(self.files) < self.keep:
                self.files.append((str(path), reason, detail))
        log.warning("skipped %s: %s%s", path, reason, f" ({detail})" if detail else "")

    def add_error(self, err: AudioError) -> None:
        self.add(err.path, err.reason, err.detail)

    def summary(self) -> dict[str, int]:
        return dict(sorted(self.counts.items()))

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def merge(self, other: "SkipLog") -> None:
        """Add the counts of ``other`` (e.g. collected in a DataLoader worker)."""
        with self._lock:
            for k, v in other.counts.items():
                self.counts[k] = self.counts.get(k, 0) + v
            self.files.extend(other.files[: max(0, self.keep - len(self.files))])

    def __getstate__(self):
        state = self.__dict__.copy()
        del state["_lock"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SkipLog(total={self.total}, {self.summary()})"


#: The log used when ``load_audio(..., skip=True)`` is called without an explicit one.
DEFAULT_SKIP_LOG = SkipLog()


# -- header information --------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class AudioInfo:
    sample_rate: int
    frames: int
    channels: int

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def _missing(path: Path) -> AudioError | None:
    if not path.exists():
        return AudioError(path, "missing", "no such file")
    if not path.is_file():
        return AudioError(path, "missing", "not a regular file")
    if path.stat().st_size == 0:
        return AudioError(path, "empty", "zero-byte file")
    return None


def audio_info(path) -> AudioInfo:
    """Sample rate, frame count and channels from the file header (no decoding)."""
    path = Path(path)
    err = _missing(path)
    if err is not None:
        raise err
    try:
        i = sf.info(str(path))
        return AudioInfo(int(i.samplerate), int(i.frames), int(i.channels))
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        sf_error = str(e)
    try:
        import av

        with av.open(str(path)) as c:
            if not c.streams.audio:
                raise AudioError(path, "corrupt", "no audio stream")
            st = c.streams.audio[0]
            sr = int(st.codec_context.sample_rate or st.rate or 0)
            ch = int(st.codec_context.channels or 1)
            if st.duration is not None and st.time_base is not None:
                seconds = float(st.duration * st.time_base)
            elif c.duration is not None:
                seconds = c.duration / 1_000_000
            else:
                seconds = float("nan")
            if not sr:
                raise AudioError(path, "corrupt", "sample rate unknown")
            frames = int(round(seconds * sr)) if math.isfinite(seconds) else 0
            return AudioInfo(sr, frames, ch)
    except AudioError:
        raise
    except Exception as e:  # PyAV raises many error types (InvalidDataError, ValueError ...)
        raise AudioError(path, "corrupt", f"soundfile: {sf_error}; PyAV: {e}") from None


def audio_duration(path) -> float:
    """Duration in seconds from the header (soundfile; PyAV stream duration for m4a/aac)."""
    return audio_info(path).duration


# -- decoding ------------------------------------------------------------------------------
def _read_soundfile(path: Path, start_s: float | None, dur_s: float | None) -> tuple[np.ndarray, int]:
    with sf.SoundFile(str(path)) as f:
        sr = f.samplerate
        start = int(round(start_s * sr)) if start_s else 0
        if start > 0:
            if start >= f.frames:
                return np.zeros((0, f.channels), np.float32), sr
            f.seek(start)
        frames = int(round(dur_s * sr)) if dur_s is not None else -1
        data = f.read(frames, dtype="float32", always_2d=True)
    return data, sr


def _frame_to_float(frame) -> np.ndarray:
    """A PyAV AudioFrame as float32 ``(samples, channels)``."""
    a = frame.to_ndarray()
    ch = len(frame.layout.channels)
    if frame.format.is_planar:
        a = a.T  # (channels, samples) -> (samples, channels)
    else:
        a = a.reshape(-1, ch)
    if a.dtype.kind == "i":
        a = a.astype(np.float32) / float(np.iinfo(a.dtype).max + 1)
    elif a.dtype.kind == "u":  # u8 PCM is offset binary
        a = (a.astype(np.float32) - 128.0) / 128.0
    return a.astype(np.float32, copy=False)


_SEEK_PREROLL_S = 0.25


def _read_pyav(path: Path, start_s: float | None, dur_s: float | None) -> tuple[np.ndarray, int]:
    import av

    with av.open(str(path)) as c:
        if not c.streams.audio:
            raise AudioError(path, "corrupt", "no audio stream")
        st = c.streams.audio[0]
        sr = int(st.codec_context.sample_rate or st.rate)
        total = None
        if st.duration is not None and st.time_base is not None:
            total = int(round(float(st.duration * st.time_base) * sr))
        start = int(round(start_s * sr)) if start_s else 0
        want = int(round(dur_s * sr)) if dur_s is not None else None
        if start_s and start_s > _SEEK_PREROLL_S and st.time_base is not None:
            # decoders such as AAC need the previous frame (MDCT overlap): seek a little early
            # and drop the pre-roll, so the segment equals the same part of a full decode
            try:
                c.seek(int((start_s - _SEEK_PREROLL_S) / st.time_base), stream=st, backward=True, any_frame=False)
            except av.error.FFmpegError:
                c.seek(0, stream=st)
        chunks, pos, got, n_frames = [], None, 0, 0
        for frame in c.decode(st):
            n_frames += 1
            a = _frame_to_float(frame)
            if frame.pts is not None and frame.time_base is not None:
                fpos = int(round(float(frame.pts * frame.time_base) * sr))
            else:
                fpos = 0 if pos is None else pos
            pos = fpos + len(a)
            if total is not None and fpos >= total:
                break
            if total is not None and pos > total:  # encoder padding after the last sample
                a = a[: total - fpos]
            if pos <= start:
                continue
            if fpos < start:
                a = a[start - fpos:]
            chunks.append(a)
            got += len(a)
            if want is not None and got >= want:
                break
        if n_frames == 0:
            if total == 0:
                raise AudioError(path, "empty", "no audio frames")
            raise AudioError(path, "corrupt", "no audio frame could be decoded")
        data = np.concatenate(chunks) if chunks else np.zeros((0, 1), np.float32)
        if want is not None:
            data = data[:want]
    return data, sr


def resample(wave: np.ndarray, orig_sr: int, target_sr: int = SAMPLE_RATE) -> np.ndarray:
    """Polyphase resampling (``scipy.signal.resample_poly``); output ``ceil(n * target / orig)``."""
    if orig_sr == target_sr:
        return wave.astype(np.float32, copy=False)
    from scipy.signal import resample_poly

    f = Fraction(int(target_sr), int(orig_sr))
    return resample_poly(wave, f.numerator, f.denominator, axis=0).astype(np.float32)


def check_audio(wave: np.ndarray, path="<array>", silence_threshold: float = SILENCE_THRESHOLD) -> np.ndarray:
    """Return ``wave`` or raise :class:`AudioError` when it is empty, non-finite or silent."""
    if wave.size == 0:
        raise AudioError(path, "empty", "zero samples")
    if not np.isfinite(wave).all():
        raise AudioError(path, "nonfinite", f"{int((~np.isfinite(wave)).sum())} NaN/inf samples")
    peak = float(np.max(np.abs(wave)))
    if peak < silence_threshold:
        raise AudioError(path, "silent", f"peak {peak:.2e} below {silence_threshold:.0e}")
    return wave


def _decode(path: Path, start_s, dur_s) -> tuple[np.ndarray, int]:
    if str(path).endswith(tuple("0123456789")) and ".pcm16@" in str(path):  # a packed corpus (ssrl_lab.data.packed)
        from .packed import parse_packed_path, read_segment

        if parse_packed_path(path) is not None:
            return read_segment(path, start_s, dur_s)
    err = _missing(path)
    if err is not None:
        raise err
    if path.suffix.lower() in SOUNDFILE_EXTENSIONS:
        try:
            return _read_soundfile(path, start_s, dur_s)
        except (sf.LibsndfileError, RuntimeError, TypeError) as e:
            sf_error = str(e)
    else:
        sf_error = "not tried"
    try:
        return _read_pyav(path, start_s, dur_s)
    except AudioError:
        raise
    except Exception as e:
        raise AudioError(path, "corrupt", f"soundfile: {sf_error}; PyAV: {type(e).__name__}: {e}") from None


def load_audio(
    path,
    start_s: float | None = None,
    dur_s: float | None = None,
    *,
    sample_rate: int = SAMPLE_RATE,
    check: bool = True,
    silence_threshold: float = SILENCE_THRESHOLD,
    skip: bool = False,
    skip_log: SkipLog | None = None,
) -> np.ndarray | None:
    """Read ``path`` as float32 mono at ``sample_rate`` (16 kHz).

    ``start_s`` / ``dur_s`` select a segment (seconds; only that part is read for wav/flac);
    a segment running past the end is returned shorter. Raises :class:`AudioError` (missing,
    corrupt, empty, silent, nonfinite; the last three only with ``check``), or with ``skip=True``
    returns ``None`` and counts the file in ``skip_log`` (default :data:`DEFAULT_SKIP_LOG`).
    """
    try:
        return load_audio_info(path, start_s, dur_s, sample_rate=sample_rate, check=check,
                               silence_threshold=silence_threshold)[0]
    except AudioError as e:
        if not skip:
            raise
        (skip_log if skip_log is not None else DEFAULT_SKIP_LOG).add_error(e)
        return None


def load_audio_info(
    path,
    start_s: float | None = None,
    dur_s: float | None = None,
    *,
    sample_rate: int = SAMPLE_RATE,
    check: bool = True,
    silence_threshold: float = SILENCE_THRESHOLD,
) -> tuple[np.ndarray, AudioInfo]:
    """:func:`load_audio` (without ``skip``) that also returns what the file held before the
    conversion: its sample rate, decoded frames and channels (``ssrl_lab.data.check``)."""
    if start_s is not None and start_s < 0:
        raise ValueError(f"load_audio({path}): start_s must be >= 0, got {start_s}")
    if dur_s is not None and dur_s <= 0:
        raise ValueError(f"load_audio({path}): dur_s must be > 0, got {dur_s}")
    path = Path(path)
    data, sr = _decode(path, start_s, dur_s)
    if data.ndim != 2 or not sr or sr <= 0:
        raise AudioError(path, "corrupt", f"decoder returned samples of shape {data.shape} at {sr} Hz")
    info = AudioInfo(int(sr), int(data.shape[0]), int(data.shape[1]))
    wave = data.mean(axis=1) if data.shape[1] > 1 else data.reshape(-1)
    wave = resample(np.ascontiguousarray(wave, dtype=np.float32), sr, sample_rate)
    if dur_s is not None:
        wave = wave[: int(round(dur_s * sample_rate))]
    if check:
        if wave.size == 0 and start_s:
            raise AudioError(path, "empty", f"no samples after start {start_s:.3f} s")
        check_audio(wave, path, silence_threshold)
    return wave, info


# -- cropping ------------------------------------------------------------------------------
def pad_to(wave: np.ndarray, n_samples: int, pad: PadMode = "wrap") -> np.ndarray:
    """Lengthen ``wave`` to ``n_samples`` by repeating it (``"wrap"``) or appending zeros."""
    if wave.size == 0:
        raise ValueError("cannot pad an empty waveform")
    if len(wave) >= n_samples:
        return wave
    if pad == "wrap":
        return np.resize(wave, n_samples)  # np.resize repeats the array cyclically
    if pad == "zeros":
        out = np.zeros(n_samples, dtype=wave.dtype)
        out[: len(wave)] = wave
        return out
    raise ValueError(f"pad must be 'wrap' or 'zeros', got {pad!r}")


def _needs_padding(wave: np.ndarray, n_samples: int) -> bool:
    """Validate a crop request; True when ``wave`` is no longer than the crop (pad it instead)."""
    if n_samples <= 0:
        raise ValueError(f"n_samples must be > 0, got {n_samples}")
    if wave.size == 0:
        raise ValueError("cannot crop an empty waveform")
    return len(wave) <= n_samples


def random_crop(wave: np.ndarray, n_samples: int, rng: np.random.Generator, pad: PadMode = "wrap") -> np.ndarray:
    """``n_samples`` consecutive samples from a uniformly random offset (padded when short)."""
    if _needs_padding(wave, n_samples):
        return pad_to(wave, n_samples, pad)
    off = int(rng.integers(0, len(wave) - n_samples + 1))
    return wave[off: off + n_samples]


def fixed_crop(
    wave: np.ndarray, n_samples: int, offset: int | Literal["center"] = 0, pad: PadMode = "wrap"
) -> np.ndarray:
    """``n_samples`` from ``offset`` (samples, clipped to fit) or the centre; padded when short."""
    if _needs_padding(wave, n_samples):
        return pad_to(wave, n_samples, pad)
    room = len(wave) - n_samples
    if offset == "center":
        off = room // 2
    elif isinstance(offset, (int, np.integer)):
        off = min(max(int(offset), 0), room)
    else:
        raise ValueError(f"offset must be an int or 'center', got {offset!r}")
    return wave[off: off + n_samples]


# -- writing -------------------------------------------------------------------------------
_WRITE_FORMATS = {".flac": "FLAC", ".wav": "WAV"}


def write_audio(path, wave: np.ndarray, sr: int = SAMPLE_RATE, subtype: str = "PCM_16") -> Path:
    """Write a mono (or ``(n, channels)``) float wave as flac/wav, atomically; clipped to [-1, 1]."""
    path = Path(path)
    fmt = _WRITE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"write_audio({path}): extension must be one of {sorted(_WRITE_FORMATS)}")
    wave = np.asarray(wave, dtype=np.float32)
    if not np.isfinite(wave).all():
        raise AudioError(path, "nonfinite", "refusing to write NaN/inf samples")
    if subtype.startswith("PCM"):
        wave = np.clip(wave, -1.0, 1.0)
    buf = io.BytesIO()
    sf.write(buf, wave, int(sr), format=fmt, subtype=subtype)
    return atomic_write_bytes(path, buf.getvalue())


def write_m4a(path, wave: np.ndarray, sr: int = SAMPLE_RATE) -> Path:
    """Write a mono float wave as AAC in an m4a container (VoxCeleb2's format) with PyAV, atomically;
    clipped to [-1, 1]. For test fixtures and benchmarks: AAC is lossy."""
    import tempfile

    import av

    path = Path(path)
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim != 1:
        raise ValueError(f"write_m4a({path}): expected a mono (1-D) wave, got shape {wave.shape}")
    if not np.isfinite(wave).all():
        raise AudioError(path, "nonfinite", "refusing to write NaN/inf samples")
    pcm = (np.clip(wave, -1.0, 1.0)[None] * 32767).astype(np.int16)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".m4a")
    os.close(fd)
    try:
        with av.open(tmp, "w", format="mp4") as c:
            stream = c.add_stream("aac", rate=int(sr))
            stream.layout = "mono"
            frame = av.AudioFrame.from_ndarray(pcm, format="s16", layout="mono")
            frame.sample_rate = int(sr)
            for pkt in stream.encode(frame):
                c.mux(pkt)
            for pkt in stream.encode(None):
                c.mux(pkt)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


__all__ = [
    "SAMPLE_RATE", "SILENCE_THRESHOLD", "REASONS", "AudioError", "AudioInfo", "SkipLog", "DEFAULT_SKIP_LOG",
    "audio_info", "audio_duration", "load_audio", "load_audio_info", "check_audio", "resample", "pad_to", "random_crop",
    "fixed_crop", "write_audio", "write_m4a",
]
