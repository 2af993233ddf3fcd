import logging

import numpy as np
import pytest
import soundfile as sf

from ssrl_lab.data.audio import (
    SAMPLE_RATE,
    AudioError,
    SkipLog,
    audio_duration,
    check_audio,
    fixed_crop,
    load_audio,
    random_crop,
    write_audio,
)


@pytest.mark.parametrize("ext", ["wav", "flac", "m4a"])
def test_load_formats_match_source(tmp_path, tone, write_wave, ext):
    x = tone(0.5, 16000)
    p = write_wave(tmp_path / f"a.{ext}", x, 16000)
    y = load_audio(p)
    assert y.dtype == np.float32 and y.ndim == 1
    assert len(y) == len(x)
    tol = 0.05 if ext == "m4a" else 1e-3  # lossy AAC
    assert np.sqrt(np.mean((y - x) ** 2)) < tol
    assert abs(audio_duration(p) - 0.5) < 1e-3


@pytest.mark.parametrize("ext", ["wav", "flac", "m4a"])
def test_partial_read_is_the_same_segment(tmp_path, tone, write_wave, ext):
    x = tone(1.5, 16000)
    p = write_wave(tmp_path / f"a.{ext}", x, 16000)
    full = load_audio(p)
    seg = load_audio(p, start_s=0.6, dur_s=0.5)
    assert len(seg) == 8000
    np.testing.assert_allclose(seg, full[9600:17600], atol=1e-4 if ext != "m4a" else 2e-2)
    tail = load_audio(p, start_s=1.2, dur_s=1.0)  # runs past the end: shorter
    assert len(tail) == len(full) - 19200


@pytest.mark.parametrize("sr", [8000, 48000, 44100])
def test_resampled_to_16k(tmp_path, tone, write_wave, sr):
    x = tone(1.0, sr, freq=200)
    p = write_wave(tmp_path / "a.flac", x, sr)
    y = load_audio(p)
    assert len(y) == 16000
    ref = tone(1.0, 16000, freq=200)
    # same tone content: the 200 Hz fundamental keeps its power
    spec = np.abs(np.fft.rfft(y)) ** 2
    assert np.argmax(spec) == 200
    assert abs(np.sqrt(np.mean(y ** 2)) - np.sqrt(np.mean(ref ** 2))) < 0.01
    assert len(load_audio(p, start_s=0.25, dur_s=0.5)) == 8000


@pytest.mark.parametrize("ext", ["wav", "m4a"])
def test_stereo_is_averaged(tmp_path, tone, write_wave, ext):
    x = tone(0.5, 16000, channels=2)
    p = write_wave(tmp_path / f"s.{ext}", x, 16000)
    y = load_audio(p)
    assert y.ndim == 1 and len(y) == 8000
    err = np.sqrt(np.mean((y - x.mean(axis=1)) ** 2))
    assert err < (1e-3 if ext == "wav" else 0.03), err


def test_missing_corrupt_empty_silent_nonfinite(tmp_path, tone):
    rng = np.random.default_rng(0)
    with pytest.raises(AudioError, match="nothere.wav: missing"):
        load_audio(tmp_path / "nothere.wav")
    bad = tmp_path / "garbage.wav"
    bad.write_bytes(rng.integers(0, 256, 4000, dtype=np.uint8).tobytes())
    with pytest.raises(AudioError) as e:
        load_audio(bad)
    assert e.value.reason == "corrupt" and "garbage.wav" in str(e.value)
    for name, data in (("junk.flac", b"junk"), ("noise.m4a", rng.integers(0, 256, 3000, dtype=np.uint8).tobytes())):
        with pytest.raises(AudioError) as e:
            load_audio(tmp_path.joinpath(name).write_bytes(data) and tmp_path / name)
        assert e.value.reason == "corrupt" and name in str(e.value)
    zero = tmp_path / "zero.wav"
    zero.write_bytes(b"")
    with pytest.raises(AudioError, match="zero.wav: empty"):
        load_audio(zero)
    nframes = tmp_path / "noframes.wav"
    sf.write(str(nframes), np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioError, match="noframes.wav: empty"):
        load_audio(nframes)
    silent = tmp_path / "silent.flac"
    sf.write(str(silent), np.zeros(1600, np.float32), 16000)
    with pytest.raises(AudioError, match="silent.flac: silent"):
        load_audio(silent)
    assert len(load_audio(silent, check=False)) == 1600
    nan = tmp_path / "nan.wav"
    sf.write(str(nan), np.array([0.1, np.nan, 0.2] * 100, np.float32), 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="nan.wav: nonfinite"):
        load_audio(nan)
    with pytest.raises(AudioError, match="silent"):
        check_audio(np.full(10, 1e-6, np.float32), "x", silence_threshold=1e-5)
    check_audio(np.full(10, 1e-6, np.float32), "x", silence_threshold=1e-7)


def test_skip_mode_counts(tmp_path, tone, caplog):
    (tmp_path / "zero.wav").write_bytes(b"")
    sf.write(str(tmp_path / "silent.wav"), np.zeros(800, np.float32), 16000)
    sf.write(str(tmp_path / "ok.wav"), tone(0.2), 16000)
    log = SkipLog()
    names = ["zero.wav", "silent.wav", "missing.wav", "ok.wav", "missing2.wav"]
    with caplog.at_level(logging.WARNING, logger="ssrl_lab.data.audio"):
        out = [load_audio(tmp_path / n, skip=True, skip_log=log) for n in names]
    assert [o is None for o in out] == [True, True, True, False, True]
    assert log.summary() == {"empty": 1, "missing": 2, "silent": 1}
    assert log.total == 4
    assert "missing2.wav" in caplog.text and "silent.wav" in caplog.text
    import pickle

    log2 = pickle.loads(pickle.dumps(log))
    log2.merge(log)
    assert log2.total == 8


def test_crops(rng):
    x = np.arange(10, dtype=np.float32)
    # exactly the crop length: unchanged
    np.testing.assert_array_equal(random_crop(x, 10, rng), x)
    np.testing.assert_array_equal(fixed_crop(x, 10, "center"), x)
    # shorter: wrap (repeat) or zeros
    np.testing.assert_array_equal(random_crop(x[:4], 10, rng), [0, 1, 2, 3, 0, 1, 2, 3, 0, 1])
    np.testing.assert_array_equal(fixed_crop(x[:4], 6, pad="zeros"), [0, 1, 2, 3, 0, 0])
    # longer: random crops are contiguous, all offsets reachable
    offs = set()
    for _ in range(200):
        c = random_crop(x, 4, rng)
        assert len(c) == 4 and np.all(np.diff(c) == 1)
        offs.add(int(c[0]))
    assert offs == set(range(7))
    np.testing.assert_array_equal(fixed_crop(x, 4, "center"), [3, 4, 5, 6])
    np.testing.assert_array_equal(fixed_crop(x, 4, offset=2), [2, 3, 4, 5])
    np.testing.assert_array_equal(fixed_crop(x, 4, offset=99), [6, 7, 8, 9])
    for f in (lambda: random_crop(x[:0], 4, rng), lambda: fixed_crop(x[:0], 4), lambda: fixed_crop(x, 0)):
        with pytest.raises(ValueError):
            f()
    with pytest.raises(ValueError, match="pad"):
        fixed_crop(x[:3], 5, pad="reflect")


def test_write_audio_roundtrip_and_atomic(tmp_path, tone):
    x = tone(0.3)
    for ext in ("flac", "wav"):
        p = write_audio(tmp_path / "out" / f"w.{ext}", x)
        np.testing.assert_allclose(load_audio(p), x, atol=1e-4)
    assert sorted(q.name for q in (tmp_path / "out").iterdir()) == ["w.flac", "w.wav"]  # no temp files left
    loud = write_audio(tmp_path / "loud.flac", 3 * x)
    assert np.abs(load_audio(loud)).max() <= 1.0
    with pytest.raises(ValueError, match="extension"):
        write_audio(tmp_path / "w.mp3", x)
    with pytest.raises(AudioError, match="nonfinite"):
        write_audio(tmp_path / "n.flac", np.array([np.nan, 0.1], np.float32))
    assert SAMPLE_RATE == 16000
