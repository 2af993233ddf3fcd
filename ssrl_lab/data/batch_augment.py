"""Waveform augmentation of a whole ``(B, T)`` batch on the training device, after the loader.

:class:`BatchAugmenter` applies the same kinds, odds and SNR ranges as the loader-side
:class:`~ssrl_lab.data.augment.Augmenter` (reverberation; additive noise, music and babble at a
per-crop SNR; babble and music together; or nothing), but to the batch tensor on the device where the model runs, so the
DataLoader workers only decode and crop:

* **Sources** are loaded once per process and kept on the device as one flat tensor per kind:
  MUSAN ``noise/``, ``music/``, ``speech/`` files (int16, whole files) and ``rir_dir`` files when
  configured, else the very clips of the built-in banks the loader-side augmenter draws from
  (:class:`~ssrl_lab.data.augment.SourceBank`, same seeds; synthetic RIRs likewise).
* **Reverberation** is one batched FFT convolution of the reverberated rows with their RIRs,
  aligned on each RIR's direct path and rescaled to the dry power (as :func:`reverberate`).
* **Additive** kinds gather a segment of a source per row and scale it so that
  ``10 log10(P_speech / P_noise)`` is the row's SNR (as :func:`mix_at_snr`). Babble sums 3-6
  unit-power talkers: MUSAN speech files, or, with the training table as the babble source
  (``babble_source="table"`` / ``"auto"`` without MUSAN), the clean crops of *other utterances of
  the same batch* (the loader-side path reads other utterances of the table from disk; a batch
  of one falls back to synthetic babble).
* **Randomness** is a counter-based hash of ``(seed, epoch, index, stream, draw)``: each row's
  kind, SNR, source, offset and polarity depend only on those, never on the worker count or on
  what ran before, so an interrupted and resumed run augments exactly as a straight one.
  ``stream`` is the crop's position in its item (DINO views 0..5; the SSRL student crop 0).

Bad source files are skipped when the sources are loaded (counted in ``skip_log``); a kind
whose files are all unreadable falls back to its built-in source with a warning.
:func:`augment_batch_fn` is the trainers' hook: ``batch = hook(batch, epoch)``.
"""
from __future__ import annotations

import logging
from typing import Callable, Sequence

import numpy as np
import torch

from .audio import SAMPLE_RATE, SkipLog, load_audio
from .augment import ADDITIVE, KINDS, SOURCES, AugmentConfig, Augmenter
from .table import UtteranceTable

log = logging.getLogger("ssrl_lab.data.batch_augment")

_EPS = 1e-12
_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)
#: batch keys whose crops are augmented (DINO views, classifier crops, the SSRL student crop)
AUGMENTED_KEYS = ("views", "wave", "student")
# draws per row: kind, snr, source, offset, polarity, talkers, the music part of babble_music
# (source, offset, polarity), then one (source, offset) per talker
_D_KIND, _D_SNR, _D_SRC, _D_OFF, _D_SIGN, _D_TALK, _D_MSRC, _D_MOFF, _D_MSIGN, _D_BABBLE = range(10)


# -- counter-based random numbers ----------------------------------------------------------
def _splitmix(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        x = (x + np.uint64(0x9E3779B97F4A7C15)) & _M64
        x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _M64
        x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _M64
        return x ^ (x >> np.uint64(31))


def uniforms(seed: int, epoch: int, index, stream: int, n_draws: int) -> np.ndarray:
    """``(len(index), n_draws)`` float64 uniforms in [0, 1), a pure function of
    ``(seed, epoch, index[b], stream, draw)``."""
    idx = np.asarray(index, dtype=np.int64).astype(np.uint64).reshape(-1, 1)
    h = _splitmix(np.full((1, 1), np.uint64(int(seed) & 0xFFFFFFFFFFFFFFFF)))
    h = _splitmix(h ^ np.uint64(int(epoch) & 0xFFFFFFFF))
    h = _splitmix(h ^ np.uint64(int(stream) & 0xFFFFFFFF))
    h = _splitmix(h ^ idx)
    h = _splitmix(h ^ np.arange(n_draws, dtype=np.uint64).reshape(1, -1))
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


# -- sources on the device -----------------------------------------------------------------
class DeviceSource:
    """Clips of one source as one flat tensor on the device, with per-clip starts and lengths.

    ``circular``: a crop starts anywhere in its clip and wraps around (the built-in banks);
    otherwise it starts in ``[0, len - n]`` and a clip shorter than the crop repeats (files).
    ``signed``: random polarity per crop (the built-in banks). ``scale``: stored int16 -> float.
    """

    def __init__(self, clips: Sequence[np.ndarray], device, circular: bool, signed: bool, name: str) -> None:
        if not clips:
            raise ValueError(f"DeviceSource {name}: no clips")
        self.name, self.circular, self.signed = name, circular, signed
        lengths = np.array([len(c) for c in clips], dtype=np.int64)
        as_int16 = all(c.dtype == np.int16 for c in clips)
        flat = np.concatenate(clips)
        self.scale = 1.0 / 32768.0 if as_int16 else 1.0
        self.data = torch.from_numpy(flat).to(device)
        self.starts = torch.from_numpy(np.concatenate([[0], np.cumsum(lengths)[:-1]])).to(device)
        self.lengths = torch.from_numpy(lengths).to(device)
        self.lengths_np = lengths
        self.n_clips = len(clips)

    @property
    def nbytes(self) -> int:
        return int(self.data.numel() * self.data.element_size())

    def crops(self, u_src: np.ndarray, u_off: np.ndarray, u_sign: np.ndarray | None, n: int) -> torch.Tensor:
        """``(R, n)`` float32 crops; ``u_*`` are ``(R,)`` uniforms choosing clip, offset, polarity."""
        clip = np.minimum((u_src * self.n_clips).astype(np.int64), self.n_clips - 1)
        ln = self.lengths_np[clip]
        span = ln if self.circular else np.maximum(ln - n + 1, 1)
        off = np.minimum((u_off * span).astype(np.int64), span - 1)
        dev = self.data.device
        t = torch.arange(n, device=dev, dtype=torch.int64)
        clip_t = torch.from_numpy(clip).to(dev)
        pos = (torch.from_numpy(off).to(dev).unsqueeze(1) + t) % self.lengths[clip_t].unsqueeze(1)
        x = self.data[self.starts[clip_t].unsqueeze(1) + pos].to(torch.float32)
        if self.scale != 1.0:
            x = x * self.scale
        if self.signed and u_sign is not None:
            sign = torch.from_numpy(np.where(u_sign < 0.5, -1.0, 1.0).astype(np.float32)).to(dev)
            x = x * sign.unsqueeze(1)
        return x


class DeviceRIRs:
    """Room impulse responses (unit energy) as one zero-padded ``(R, L)`` tensor on the device,
    with each one's direct-path index (its largest sample)."""

    def __init__(self, rirs: Sequence[np.ndarray], device) -> None:
        if not rirs:
            raise ValueError("DeviceRIRs: no impulse responses")
        L = max(len(h) for h in rirs)
        bank = np.zeros((len(rirs), L), dtype=np.float32)
        for i, h in enumerate(rirs):
            bank[i, : len(h)] = h
        self.bank = torch.from_numpy(bank).to(device)
        self.direct = torch.from_numpy(np.array([int(np.argmax(np.abs(h))) for h in rirs], dtype=np.int64)).to(device)
        self.n = len(rirs)

    @property
    def nbytes(self) -> int:
        return int(self.bank.numel() * 4)


def power_rows(x: torch.Tensor) -> torch.Tensor:
    """Mean square of each row, in float64 (as :func:`ssrl_lab.data.augment.power`)."""
    return x.to(torch.float64).square().mean(dim=1)


def mix_rows_at_snr(speech: torch.Tensor, noise: torch.Tensor, snr_db: torch.Tensor) -> torch.Tensor:
    """Row-wise :func:`~ssrl_lab.data.augment.mix_at_snr`: ``speech + g * noise`` with ``g`` per
    row so that ``10 log10(P_speech / P(g noise)) = snr_db``; silent rows are left as they are."""
    ps, pn = power_rows(speech), power_rows(noise)
    ok = (ps >= _EPS) & (pn >= _EPS)
    g = torch.sqrt(ps / (pn.clamp_min(_EPS) * torch.pow(10.0, snr_db.to(torch.float64) / 10.0)))
    g = torch.where(ok, g, torch.zeros_like(g)).to(speech.dtype)
    return speech + g.unsqueeze(1) * noise


def fast_fft_len(n: int) -> int:
    """The smallest ``2^a 3^b 5^c >= n`` (a length every FFT library transforms quickly)."""
    best = 1 << max(0, (n - 1).bit_length())
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def reverberate_rows(speech: torch.Tensor, rirs: torch.Tensor, direct: torch.Tensor,
                     spectra: tuple[torch.Tensor, int] | None = None) -> torch.Tensor:
    """Row-wise :func:`~ssrl_lab.data.augment.reverberate`: linear FFT convolution of each row
    with its RIR, the output aligned on the RIR's direct path (``direct``, per row) and rescaled to
    the dry power of the row. ``spectra``: ``(rfft of the RIRs, n_fft)`` when already computed
    (``n_fft`` at least :func:`reverb_fft_len` of these rows)."""
    R, n = speech.shape
    if spectra is None:
        n_fft = reverb_fft_len(n, rirs.shape[1], int(direct.max()))
        H = torch.fft.rfft(rirs[:, : min(rirs.shape[1], n_fft - n + 1)], n_fft)
    else:
        H, n_fft = spectra
    y = torch.fft.irfft(torch.fft.rfft(speech, n_fft) * H, n_fft)
    y = torch.gather(y, 1, direct.unsqueeze(1) + torch.arange(n, device=speech.device))
    py, ps = power_rows(y), power_rows(speech)
    gain = torch.where(py >= _EPS, torch.sqrt(ps / py.clamp_min(_EPS)), torch.zeros_like(py))
    out = y * gain.to(y.dtype).unsqueeze(1)
    return torch.where((py >= _EPS).unsqueeze(1), out, speech)


def reverb_fft_len(n: int, rir_len: int, max_direct: int) -> int:
    """FFT length of a linear convolution of ``n`` samples with RIRs cut to the taps that can
    reach the kept output (``n + max_direct`` of them)."""
    return fast_fft_len(n + min(rir_len, n + max_direct + 1) - 1)


class BatchAugmenter:
    """Augment ``(B, T)`` crop tensors on ``device`` (see the module doc).

    ``aug(x, index, epoch, stream=0) -> (B, T)``; ``aug.last_kinds`` holds the kind drawn per row
    of the last call (indices into :data:`KINDS`). ``babble_table`` only decides the babble mode
    (batchmates), as for :class:`Augmenter`; no table audio is read here.
    """

    def __init__(self, cfg: AugmentConfig | None = None, babble_table: UtteranceTable | None = None,
                 seed: int = 0, device="cpu", skip_log: SkipLog | None = None) -> None:
        self.cfg = cfg if cfg is not None else AugmentConfig()
        self.seed = int(seed)
        self.device = torch.device(device)
        self.skip_log = skip_log if skip_log is not None else SkipLog()
        # the loader-side augmenter resolves files, babble mode and the built-in banks (same seeds)
        self._ref = Augmenter(self.cfg, babble_table=babble_table, seed=seed, skip_log=self.skip_log)
        self.babble_mode = self._ref.babble_mode
        self._cum = np.cumsum(self.cfg.probabilities())
        self._cum[-1] = 1.0 + 1e-9
        self._sources: dict[str, DeviceSource] = {}
        self._rirs: DeviceRIRs | None = None
        self._rir_spectra: dict[int, torch.Tensor] = {}  # n_fft -> rfft of the whole (small) RIR bank
        self._loaded = False
        self.last_kinds: np.ndarray = np.zeros(0, dtype=np.int64)

    # -- sources ---------------------------------------------------------------------------
    def _load_files(self, files: list[str], kind: str) -> list[np.ndarray]:
        clips = []
        for p in files:
            w = load_audio(p, skip=True, skip_log=self.skip_log)
            if w is not None:
                clips.append(np.clip(np.round(w * 32768.0), -32768, 32767).astype(np.int16))
        if files and not clips:
            log.warning("every %s file (%d) was unreadable; using the built-in %s source", kind, len(files), kind)
        return clips

    def _bank_clips(self, kind: str) -> list[np.ndarray]:
        bank = self._ref._banks.get(kind)
        if bank is None:  # bank_clips=0: the loader generates fresh audio per call; keep 16 clips here
            from .augment import SourceBank

            lo, hi = self.cfg.babble_speakers
            j = 1 + SOURCES.index(kind)
            bank = SourceBank(kind, 16, int(self.cfg.bank_clip_s * SAMPLE_RATE), self.seed * 7 + j, (lo, hi))
        return [c.astype(np.float32) for c in bank.prepare().clips]

    def prepare(self) -> "BatchAugmenter":
        """Load every source the odds need onto the device (done on the first call otherwise)."""
        if self._loaded:
            return self
        cfg, files = self.cfg, self._ref._files
        for kind in ("noise", "music"):
            if getattr(cfg, f"p_{kind}") > 0 or (kind == "music" and cfg.p_babble_music > 0):
                clips = self._load_files(files[kind], kind)
                self._sources[kind] = (DeviceSource(clips, self.device, False, False, kind) if clips
                                       else DeviceSource(self._bank_clips(kind), self.device, True, True, kind))
        if cfg.p_babble > 0 or cfg.p_babble_music > 0:
            clips = self._load_files(files["speech"], "speech") if self.babble_mode == "musan" else []
            if clips:
                self._sources["speech"] = DeviceSource(clips, self.device, False, False, "speech")
            elif self.babble_mode == "musan":
                self.babble_mode = "synthetic"
            # synthetic babble: the mode itself, or the fallback of a batch of one in table mode
            self._sources["babble"] = DeviceSource(self._bank_clips("babble"), self.device, True, True, "babble")
        if cfg.p_reverb > 0:
            rirs = []
            for p in self._ref._rirs:
                h = load_audio(p, skip=True, skip_log=self.skip_log)
                if h is not None:
                    rirs.append((h / np.float32(np.sqrt(np.sum(np.square(h, dtype=np.float64))) + _EPS)).astype(np.float32))
            if self._ref._rirs and not rirs:
                log.warning("every RIR file (%d) was unreadable; using synthetic RIRs", len(self._ref._rirs))
            if not rirs:
                rirs = self._ref._synthetic_rirs() if cfg.bank_clips else self._fresh_rirs()
            self._rirs = DeviceRIRs(rirs, self.device)
        self._loaded = True
        log.info("in-batch augmentation on %s: %s (%.1f MiB of sources)", self.device, self.sources(),
                 self.nbytes / 2**20)
        return self

    def _fresh_rirs(self) -> list[np.ndarray]:
        from .augment import synthetic_rir

        r = np.random.default_rng(self.seed * 7 + 4)
        return [synthetic_rir(r, rt60_range=self.cfg.rt60) for _ in range(128)]

    @property
    def nbytes(self) -> int:
        return sum(s.nbytes for s in self._sources.values()) + (self._rirs.nbytes if self._rirs else 0)

    def sources(self) -> dict[str, str]:
        out = self._ref.sources()
        if self.babble_mode == "table":
            out["babble"] = "clean crops of other utterances of the batch"
        return out

    # -- drawing ---------------------------------------------------------------------------
    def kinds(self, index, epoch: int, stream: int = 0) -> np.ndarray:
        """The kind (index into :data:`KINDS`) each row gets; the odds are the config's."""
        u = uniforms(self.seed, epoch, index, stream, 1)[:, _D_KIND]
        return np.searchsorted(self._cum, u, side="right").astype(np.int64)

    def draws(self, index, epoch: int, stream: int = 0) -> dict:
        """Every random choice of each row: ``kind``, ``snr_db`` and the raw uniforms ``u``."""
        hi = self.cfg.babble_speakers[1]
        u = uniforms(self.seed, epoch, index, stream, _D_BABBLE + 2 * hi)
        kind = np.searchsorted(self._cum, u[:, _D_KIND], side="right").astype(np.int64)
        snr = np.zeros(len(kind))
        for j, k in enumerate(KINDS):
            if k in ADDITIVE:
                lo, h = getattr(self.cfg, f"snr_{k}")
                m = kind == j
                snr[m] = lo + (h - lo) * u[m, _D_SNR]
        return {"kind": kind, "snr_db": snr, "u": u}

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, index, epoch: int, stream: int = 0) -> torch.Tensor:
        if x.ndim != 2:
            raise ValueError(f"BatchAugmenter expects a (B, T) batch, got shape {tuple(x.shape)}")
        self.prepare()
        x = x.to(self.device, dtype=torch.float32, non_blocking=True)
        index = index.cpu().numpy() if isinstance(index, torch.Tensor) else np.asarray(index)
        if len(index) != x.shape[0]:
            raise ValueError(f"BatchAugmenter: {len(index)} indices for a batch of {x.shape[0]}")
        d = self.draws(index, epoch, stream)
        kind, snr, u = d["kind"], d["snr_db"], d["u"]
        self.last_kinds = kind
        out = x.clone()
        B, n = x.shape
        dev = self.device
        rows = np.flatnonzero(kind == KINDS.index("reverb"))
        if len(rows):
            pick = np.minimum((u[rows, _D_SRC] * self._rirs.n).astype(np.int64), self._rirs.n - 1)
            pick_t = torch.from_numpy(pick).to(dev)
            r_t = torch.from_numpy(rows).to(dev)
            out[r_t] = reverberate_rows(x[r_t], self._rirs.bank[pick_t], self._rirs.direct[pick_t],
                                        self._spectra(n, pick_t))
        for k in ADDITIVE:
            rows = np.flatnonzero(kind == KINDS.index(k))
            if not len(rows):
                continue
            r_t = torch.from_numpy(rows).to(dev)
            if k == "babble":
                noise = self._babble_or_bank(x, rows, u, n)
            elif k == "babble_music":  # unit-power babble plus unit-power music, as the Augmenter
                music = self._sources["music"].crops(u[rows, _D_MSRC], u[rows, _D_MOFF], u[rows, _D_MSIGN], n)
                noise = _unit(self._babble_or_bank(x, rows, u, n)) + _unit(music)
            else:
                noise = self._sources[k].crops(u[rows, _D_SRC], u[rows, _D_OFF], u[rows, _D_SIGN], n)
            out[r_t] = mix_rows_at_snr(x[r_t], noise, torch.from_numpy(snr[rows]).to(dev))
        return out

    def _babble_or_bank(self, x: torch.Tensor, rows: np.ndarray, u: np.ndarray, n: int) -> torch.Tensor:
        if self.babble_mode == "synthetic" or (self.babble_mode == "table" and x.shape[0] < 2):
            return self._sources["babble"].crops(u[rows, _D_SRC], u[rows, _D_OFF], u[rows, _D_SIGN], n)
        return self._babble(x, rows, u, n)

    def _spectra(self, n: int, pick: torch.Tensor) -> tuple[torch.Tensor, int] | None:
        """The picked RIRs' spectra for crops of ``n`` samples, from a cache per crop length when
        the bank is small (the built-in 128; up to 2,048 files), else None (computed per call)."""
        bank = self._rirs
        if bank.n > 2048:
            return None
        n_fft = reverb_fft_len(n, bank.bank.shape[1], int(bank.direct.max()))
        H = self._rir_spectra.get(n_fft)
        if H is None:
            H = torch.fft.rfft(bank.bank[:, : min(bank.bank.shape[1], n_fft - n + 1)], n_fft)
            self._rir_spectra[n_fft] = H
        return H[pick], n_fft

    def _babble(self, x: torch.Tensor, rows: np.ndarray, u: np.ndarray, n: int) -> torch.Tensor:
        """Sum of 3-6 unit-power talkers per row: MUSAN speech crops, or other rows of the batch."""
        lo, hi = self.cfg.babble_speakers
        talkers = lo + np.minimum((u[rows, _D_TALK] * (hi - lo + 1)).astype(np.int64), hi - lo)
        dev, B = self.device, x.shape[0]
        out = torch.zeros(len(rows), n, dtype=torch.float32, device=dev)
        for j in range(hi):
            use = talkers > j
            if not use.any():
                break
            r = rows[use]
            us, uo = u[r, _D_BABBLE + 2 * j], u[r, _D_BABBLE + 2 * j + 1]
            if self.babble_mode == "musan":
                t = self._sources["speech"].crops(us, uo, None, n)
            else:  # another utterance of the batch: any row but this one
                other = (r + 1 + np.minimum((us * (B - 1)).astype(np.int64), B - 2)) % B
                t = x[torch.from_numpy(other).to(dev)]
            out[torch.from_numpy(np.flatnonzero(use)).to(dev)] += _unit(t)
        return out


def _unit(t: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit power (``x / (rms + 1e-6)``, as the Augmenter's babble)."""
    return t / (t.to(torch.float64).square().mean(dim=1, keepdim=True).sqrt() + 1e-6).to(t.dtype)


def augment_batch_fn(aug: BatchAugmenter | None) -> Callable[[dict, int], dict]:
    """The trainers' hook ``batch = hook(batch, epoch)``: augments the :data:`AUGMENTED_KEYS`
    of a collated batch on the augmenter's device (each DINO view as its own stream), leaves the
    rest as it is; the identity when ``aug`` is None (loader-side or no augmentation)."""
    if aug is None:
        return lambda batch, epoch: batch

    def hook(batch: dict, epoch: int) -> dict:
        index = batch["index"]
        out = dict(batch)
        for key in AUGMENTED_KEYS:
            if key not in batch:
                continue
            v = batch[key]
            if isinstance(v, (list, tuple)):
                out[key] = [aug(t, index, epoch, stream=s) for s, t in enumerate(v)]
            else:
                out[key] = aug(v, index, epoch, stream=0)
        return out

    return hook


__all__ = ["BatchAugmenter", "DeviceSource", "DeviceRIRs", "augment_batch_fn", "build_batch_augment", "mix_rows_at_snr",
           "reverberate_rows", "uniforms", "AUGMENTED_KEYS"]


def build_batch_augment(cfg, table, device):
    """The trainers' batch hook ``batch = hook(batch, epoch)``: with ``augment_on="batch"`` it
    augments the batch's crops on ``device`` (:class:`~ssrl_lab.data.batch_augment.BatchAugmenter`,
    sources loaded once per process); otherwise the identity."""
    if cfg.augment is None or cfg.augment_on != "batch":
        return augment_batch_fn(None)
    aug = BatchAugmenter(AugmentConfig.from_dict(cfg.augment, _prefix="augment."), babble_table=table,
                         seed=cfg.seed, device=device)
    return augment_batch_fn(aug.prepare())
