"""Shared test fixtures: tiny generated audio, VoxCeleb-layout trees, MUSAN/RIR trees.

Fixtures return builder functions so that tests choose sizes; everything is written under
pytest's ``tmp_path`` and stays small (fractions of a second of audio).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf


def make_tone(duration_s: float = 0.5, sr: int = 16000, freq: float = 220.0, channels: int = 1,
              seed: int = 0, amplitude: float = 0.3) -> np.ndarray:
    """A harmonic tone plus a little noise, float32; ``(n,)`` or ``(n, channels)``."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(duration_s * sr))) / sr
    x = sum(np.sin(2 * np.pi * freq * h * t) / h for h in (1, 2, 3))
    x = amplitude * x / 1.8 + 0.01 * rng.standard_normal(len(t))
    x = x.astype(np.float32)
    if channels > 1:
        x = np.stack([x * (1.0 - 0.2 * c) for c in range(channels)], axis=1)
    return x


def write_m4a(path, wave: np.ndarray, sr: int = 16000) -> Path:
    """Write mono or ``(n, 2)`` float audio as AAC in an MP4 container with PyAV."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    wave = np.asarray(wave, dtype=np.float32)
    planar = wave[None, :] if wave.ndim == 1 else np.ascontiguousarray(wave.T)
    layout = "mono" if planar.shape[0] == 1 else "stereo"
    with av.open(str(path), "w", format="mp4") as c:
        st = c.add_stream("aac", rate=sr)
        st.layout = layout
        for i in range(0, planar.shape[1], 1024):
            fr = av.AudioFrame.from_ndarray(np.ascontiguousarray(planar[:, i:i + 1024]), format="fltp", layout=layout)
            fr.sample_rate = sr
            fr.pts = i
            for p in st.encode(fr):
                c.mux(p)
        for p in st.encode(None):
            c.mux(p)
    return path


def write_any(path, wave: np.ndarray, sr: int = 16000) -> Path:
    """Write ``wave`` in the format named by the extension (.wav, .flac, .m4a)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".m4a":
        return write_m4a(path, wave, sr)
    sf.write(str(path), wave, sr, subtype="PCM_16" if path.suffix in (".wav", ".flac") else None)
    return path


def build_voxceleb_tree(root, n_speakers: int = 2, n_videos: int = 2, n_utts: int = 2,
                        exts=("wav", "flac", "m4a"), duration_s: float = 0.4, sr: int = 16000,
                        seed: int = 0) -> list[str]:
    """``root/id1000k/<video>/0000u.<ext>`` files; extensions cycle over ``exts``.

    Returns the utt_ids (relative paths) in sorted order; durations grow with the index so that
    tests can check them (``duration_s + 0.05 * i``).
    """
    root = Path(root)
    utts, i = [], 0
    for s in range(n_speakers):
        for v in range(n_videos):
            for u in range(n_utts):
                ext = exts[i % len(exts)]
                rel = f"id{10001 + s}/vid{s}{v}x/{u + 1:05d}.{ext}"
                wave = make_tone(duration_s + 0.05 * i, sr, freq=120 + 40 * s, seed=seed + i)
                write_any(root / rel, wave, sr)
                utts.append(rel)
                i += 1
    return sorted(utts)


def build_musan_tree(root, n_files: int = 2, duration_s: float = 1.0, sr: int = 16000, seed: int = 0) -> Path:
    """A MUSAN-layout tree ``root/musan/{noise,music,speech}/<sub>/*.wav``; returns ``root/musan``."""
    rng = np.random.default_rng(seed)
    musan = Path(root) / "musan"
    n = int(duration_s * sr)
    for kind in ("noise", "music", "speech"):
        for i in range(n_files):
            if kind == "noise":
                w = 0.1 * rng.standard_normal(n)
            elif kind == "music":
                w = make_tone(duration_s, sr, freq=rng.uniform(200, 600), seed=seed + i)
            else:
                w = make_tone(duration_s, sr, freq=rng.uniform(90, 250), seed=seed + 10 + i)
                w = w * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * np.arange(n) / sr))
            write_any(musan / kind / f"{kind}-sub" / f"{kind}-{i:04d}.wav", np.asarray(w, np.float32), sr)
    return musan


def build_rir_tree(root, n_files: int = 2, sr: int = 16000, seed: int = 0) -> Path:
    """Decaying-noise impulse responses in nested folders ``root/rirs/room*/...wav``."""
    rng = np.random.default_rng(seed)
    base = Path(root) / "rirs"
    for i in range(n_files):
        n = int(0.3 * sr)
        h = rng.standard_normal(n) * np.exp(-np.arange(n) / (0.05 * sr))
        h[:20] = 0.0
        h[20] = 1.0
        write_any(base / f"room{i}" / "sub" / f"rir{i}.wav", (0.5 * h / np.abs(h).max()).astype(np.float32), sr)
    return base


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


@pytest.fixture
def tone():
    """``tone(duration_s, sr, freq, channels, seed)`` -> float32 test signal."""
    return make_tone


@pytest.fixture
def write_wave():
    """``write_wave(path, wave, sr)`` writing .wav/.flac (soundfile) or .m4a (PyAV AAC)."""
    return write_any


@pytest.fixture
def voxceleb_tree(tmp_path):
    """``voxceleb_tree(root=None, **kw) -> (root, utt_ids)``; see :func:`build_voxceleb_tree`."""

    def build(root=None, **kw):
        root = Path(root) if root is not None else tmp_path / "vox"
        return root, build_voxceleb_tree(root, **kw)

    return build


@pytest.fixture
def musan_dir(tmp_path) -> Path:
    return build_musan_tree(tmp_path / "musan_root")


@pytest.fixture
def rir_dir(tmp_path) -> Path:
    return build_rir_tree(tmp_path / "rir_root")


# -- shared session fixtures: one smoke corpus and one smoke DINO run for all trainer tests ----------
@pytest.fixture(scope="session")
def smoke_corpus(tmp_path_factory):
    """The SynthVox smoke corpus, built once per test session."""
    from ssrl_lab.data.synthvox import build_synthvox

    return build_synthvox(tmp_path_factory.getbasetemp() / "smoke-corpus", "smoke", seed=0)


@pytest.fixture(scope="session")
def smoke_dino(smoke_corpus, tmp_path_factory):
    """A one-epoch smoke DINO run (reused when another test file made it already)."""
    from ssrl_lab.train.dino import DINOConfig
    from ssrl_lab.train.dino import train as dino_train

    run_dir = tmp_path_factory.getbasetemp() / "ssrl-dino-smoke"
    dino_train(DINOConfig.profile("smoke", corpus=str(smoke_corpus), run_dir=str(run_dir), device="cpu", epochs=1,
                                  eval_every=0), resume=True, progress=False)
    return run_dir
