"""Batched acoustic features on the model side: log-Mel filterbanks and SpecAugment.

:class:`Fbank` turns a batch of 16 kHz waveforms ``(B, T)`` into mean-normalised log-Mel
filterbanks ``(B, n_mels, frames)`` on the input's device, in float32 even under autocast.
Framing follows Kaldi's ``snip_edges=True`` convention: ``frames = 1 + (T - win) // hop``
(400-sample windows and 160-sample hops at 16 kHz), so no padding is added at either end.

:class:`SpecAugment` masks random frequency bands and time spans, independently per
example, in training mode only.
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torchaudio

__all__ = ["Fbank", "SpecAugment", "build_spec_augment", "n_frames"]


def n_frames(n_samples: int, sample_rate: int = 16000, win_ms: float = 25.0, hop_ms: float = 10.0) -> int:
    """Number of frames :class:`Fbank` gives for ``n_samples`` (0 when shorter than a window)."""
    win = int(round(sample_rate * win_ms / 1000))
    hop = int(round(sample_rate * hop_ms / 1000))
    if n_samples < win:
        return 0
    return 1 + (n_samples - win) // hop


def max_normalize(wave: torch.Tensor) -> torch.Tensor:
    """Divide each ``(B, T)`` row by its peak magnitude (silent rows unchanged)."""
    peak = wave.abs().amax(dim=1, keepdim=True)
    return wave / torch.where(peak > 0, peak, torch.ones_like(peak))


class Fbank(nn.Module):
    """Log-Mel filterbank with per-utterance mean normalisation.

    Steps, all batched: framing into ``win_ms`` windows every ``hop_ms`` (no edge padding), per-frame
    DC removal and pre-emphasis (``x[t] - a * x[t-1]``, as Kaldi), Hamming window, zero-padding to ``n_fft``,
    power spectrum, HTK-style triangular Mel filters between ``f_min`` and ``f_max`` (Nyquist when
    ``None``), ``log(max(energy, floor))``, then subtraction of each Mel bin's mean over time.

    Args:
        n_mels: number of Mel bins (80).
        sample_rate: expected sampling rate in Hz (16000).
        win_ms, hop_ms: window and hop in milliseconds (25, 10).
        n_fft: FFT size; must be at least the window length (512).
        f_min, f_max: filterbank edges in Hz (20, Nyquist).
        pre_emphasis: pre-emphasis coefficient; 0 turns it off (0.97, as Kaldi).
        log_floor: energy floor before the log (1e-6).
        mean_norm: subtract the per-utterance mean of each Mel bin (True).

    Input ``(B, T)`` float waveform; output ``(B, n_mels, 1 + (T - win) // hop)`` float32.
    Raises ``ValueError`` for a non 2-D input, a clip shorter than one window, or NaN/inf samples.
    """

    def __init__(
        self,
        n_mels: int = 80,
        sample_rate: int = 16000,
        win_ms: float = 25.0,
        hop_ms: float = 10.0,
        n_fft: int = 512,
        f_min: float = 20.0,
        f_max: float | None = None,
        pre_emphasis: float = 0.97,
        log_floor: float = 1e-6,
        mean_norm: bool = True,
    ) -> None:
        super().__init__()
        self.n_mels = int(n_mels)
        self.sample_rate = int(sample_rate)
        self.win_length = int(round(sample_rate * win_ms / 1000))
        self.hop_length = int(round(sample_rate * hop_ms / 1000))
        self.n_fft = int(n_fft)
        f_max = sample_rate / 2 if f_max is None else float(f_max)
        if self.n_mels < 1:
            raise ValueError(f"Fbank: n_mels must be >= 1, got {n_mels}")
        if self.win_length < 2 or self.hop_length < 1:
            raise ValueError(f"Fbank: win_ms={win_ms} / hop_ms={hop_ms} give too few samples")
        if self.n_fft < self.win_length:
            raise ValueError(f"Fbank: n_fft={n_fft} is shorter than the window ({self.win_length} samples)")
        if not 0 <= f_min < f_max <= sample_rate / 2:
            raise ValueError(f"Fbank: need 0 <= f_min < f_max <= {sample_rate / 2}, got f_min={f_min}, f_max={f_max}")
        if not 0.0 <= pre_emphasis < 1.0:
            raise ValueError(f"Fbank: pre_emphasis must be in [0, 1), got {pre_emphasis}")
        if not log_floor > 0:
            raise ValueError(f"Fbank: log_floor must be > 0, got {log_floor}")
        self.pre_emphasis = float(pre_emphasis)
        self.log_floor = float(log_floor)
        self.mean_norm = bool(mean_norm)
        window = torch.hamming_window(self.win_length, periodic=False, dtype=torch.float32)
        mel = torchaudio.functional.melscale_fbanks(
            n_freqs=self.n_fft // 2 + 1,
            f_min=float(f_min),
            f_max=f_max,
            n_mels=self.n_mels,
            sample_rate=self.sample_rate,
            norm=None,
            mel_scale="htk",
        )  # (n_freqs, n_mels)
        # Constants, rebuilt from the arguments: kept out of the state_dict.
        self.register_buffer("window", window, persistent=False)
        self.register_buffer("mel_fb", mel.T.contiguous(), persistent=False)  # (n_mels, n_freqs)

    def extra_repr(self) -> str:
        return (
            f"n_mels={self.n_mels}, sample_rate={self.sample_rate}, win={self.win_length}, "
            f"hop={self.hop_length}, n_fft={self.n_fft}, pre_emphasis={self.pre_emphasis}"
        )

    def n_frames(self, n_samples: int) -> int:
        """Frames produced for a clip of ``n_samples`` samples (0 when shorter than a window)."""
        if n_samples < self.win_length:
            return 0
        return 1 + (n_samples - self.win_length) // self.hop_length

    def _check(self, wave: torch.Tensor) -> None:
        if not isinstance(wave, torch.Tensor):
            raise ValueError(f"Fbank: expected a torch.Tensor waveform, got {type(wave).__name__}")
        if wave.dim() != 2:
            raise ValueError(f"Fbank: expected a (batch, samples) waveform, got shape {tuple(wave.shape)}")
        if wave.shape[1] < self.win_length:
            raise ValueError(
                f"Fbank: clips of {wave.shape[1]} samples are shorter than one window "
                f"({self.win_length} samples)"
            )
        if not wave.is_floating_point():
            raise ValueError(f"Fbank: expected a float waveform, got dtype {wave.dtype}")
        finite = torch.isfinite(wave)
        if not bool(finite.all()):
            bad_rows = (~finite).any(dim=1).nonzero().flatten().tolist()
            n_nan = int(torch.isnan(wave).sum())
            n_inf = int(torch.isinf(wave).sum())
            raise ValueError(
                f"Fbank: waveform has non-finite samples ({n_nan} NaN, {n_inf} inf) "
                f"in batch row(s) {bad_rows[:10]}{'...' if len(bad_rows) > 10 else ''}"
            )

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        self._check(wave)
        with torch.autocast(device_type=wave.device.type, enabled=False):
            x = wave.float()
            frames = x.unfold(1, self.win_length, self.hop_length)  # (B, F, win), a view
            frames = frames - frames.mean(dim=-1, keepdim=True)
            if self.pre_emphasis > 0:  # per frame, first sample against itself (as Kaldi)
                a = self.pre_emphasis
                frames = torch.cat([frames[..., :1] * (1 - a), frames[..., 1:] - a * frames[..., :-1]], dim=-1)
            frames = frames * self.window
            spec = torch.fft.rfft(frames, n=self.n_fft, dim=-1)  # (B, F, n_fft/2+1)
            power = spec.real.square() + spec.imag.square()
            mel = torch.matmul(power, self.mel_fb.T)  # (B, F, n_mels)
            logmel = torch.log(mel.clamp_min(self.log_floor)).transpose(1, 2)  # (B, n_mels, F)
            if self.mean_norm:
                logmel = logmel - logmel.mean(dim=2, keepdim=True)
            return logmel.contiguous()


class SpecAugment(nn.Module):
    """Random frequency and time masking on ``(B, F, T)`` features, in training mode only.

    Each example gets ``freq_masks`` bands of width uniform in ``[0, freq_width]`` bins and
    ``time_masks`` spans of width uniform in ``[0, time_width]`` frames (clipped to the input),
    at uniform positions, drawn independently per example; masked cells are set to ``value``
    (0, the mean after :class:`Fbank`'s mean normalisation). In eval mode the input is returned
    unchanged. Fully vectorised; random numbers come from the global generator of the input's
    device (or ``generator`` when given, which must live on that device).
    """

    def __init__(
        self,
        freq_masks: int = 2,
        freq_width: int = 8,
        time_masks: int = 2,
        time_width: int = 10,
        value: float = 0.0,
    ) -> None:
        super().__init__()
        for name, v in (("freq_masks", freq_masks), ("freq_width", freq_width),
                        ("time_masks", time_masks), ("time_width", time_width)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"SpecAugment: {name} must be an integer >= 0, got {v!r}")
        if not math.isfinite(value):
            raise ValueError(f"SpecAugment: value must be finite, got {value}")
        self.freq_masks = freq_masks
        self.freq_width = freq_width
        self.time_masks = time_masks
        self.time_width = time_width
        self.value = float(value)

    def extra_repr(self) -> str:
        return (
            f"freq_masks={self.freq_masks}, freq_width={self.freq_width}, "
            f"time_masks={self.time_masks}, time_width={self.time_width}"
        )

    @staticmethod
    def _axis_mask(
        batch: int, size: int, n_masks: int, max_width: int, device, generator
    ) -> torch.Tensor:
        """Boolean (batch, size) mask: union of ``n_masks`` random spans per row."""
        if n_masks == 0 or max_width == 0 or size == 0:
            return torch.zeros(batch, size, dtype=torch.bool, device=device)
        max_width = min(max_width, size)
        width = torch.randint(0, max_width + 1, (batch, n_masks, 1), device=device, generator=generator)
        u = torch.rand(batch, n_masks, 1, device=device, generator=generator)
        start = (u * (size - width + 1).float()).floor().long()  # start in [0, size - width]
        pos = torch.arange(size, device=device).view(1, 1, size)
        return ((pos >= start) & (pos < start + width)).any(dim=1)

    def forward(self, feats: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        if feats.dim() != 3:
            raise ValueError(f"SpecAugment: expected (batch, freq, time) features, got shape {tuple(feats.shape)}")
        if not self.training:
            return feats
        b, f, t = feats.shape
        fmask = self._axis_mask(b, f, self.freq_masks, self.freq_width, feats.device, generator)
        tmask = self._axis_mask(b, t, self.time_masks, self.time_width, feats.device, generator)
        mask = fmask.unsqueeze(2) | tmask.unsqueeze(1)
        return feats.masked_fill(mask, self.value)


def build_spec_augment(cfg):
    """The SpecAugment of a training config (``cfg.spec_augment``; None when off)."""
    if not cfg.spec_augment:
        return None
    return SpecAugment()
