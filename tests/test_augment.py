import numpy as np
import pytest

from ssrl_lab.config import ConfigError
from ssrl_lab.data.augment import (
    KINDS,
    AugmentConfig,
    Augmenter,
    coloured_noise,
    mix_at_snr,
    reverberate,
    synthetic_babble,
    synthetic_music,
    synthetic_rir,
)
from ssrl_lab.data.readers import read_voxceleb


def snr_of(clean, mixed):
    noise = mixed.astype(np.float64) - clean
    return 10 * np.log10(np.mean(clean.astype(np.float64) ** 2) / np.mean(noise ** 2))


@pytest.fixture
def speech(tone):
    return tone(2.0, 16000, freq=150, seed=3)


def test_mix_at_snr_exact(speech, rng):
    for snr in (-5.0, 0.0, 7.5, 20.0):
        noise = 3.0 * rng.standard_normal(5000).astype(np.float32)  # shorter: repeated
        out = mix_at_snr(speech, noise, snr)
        assert out.dtype == np.float32 and out.shape == speech.shape
        assert abs(snr_of(speech, out) - snr) < 0.05
    np.testing.assert_array_equal(mix_at_snr(speech, np.zeros(100, np.float32), 5), speech)


@pytest.mark.parametrize("kind", ["noise", "music", "babble"])
@pytest.mark.parametrize("snr", [0.0, 5.0, 12.0, 20.0])
def test_every_kind_hits_target_snr(speech, rng, kind, snr):
    aug = Augmenter(AugmentConfig(bank_clips=2, bank_clip_s=1.0), seed=0)
    out = aug.apply(speech, kind, rng, snr_db=snr)
    assert out.shape == speech.shape and np.isfinite(out).all()
    assert abs(snr_of(speech, out) - snr) < 0.5


def test_drawn_snr_within_kind_range(speech, rng):
    cfg = AugmentConfig(snr_noise=(3.0, 4.0), snr_music=(10.0, 10.0), snr_babble=(15.0, 16.0), bank_clips=2,
                        bank_clip_s=1.0)
    aug = Augmenter(cfg, seed=1)
    for kind, (lo, hi) in (("noise", (3, 4)), ("music", (10, 10)), ("babble", (15, 16))):
        for _ in range(3):
            s = snr_of(speech, aug.apply(speech, kind, rng))
            assert lo - 0.5 < s < hi + 0.5


def test_reverb_length_alignment_level(speech, rng):
    aug = Augmenter(AugmentConfig(bank_clips=2), seed=0)
    for _ in range(5):
        out = aug.apply(speech, "reverb", rng)
        assert out.shape == speech.shape and out.dtype == np.float32 and np.isfinite(out).all()
        assert abs(np.mean(out ** 2) / np.mean(speech ** 2) - 1) < 1e-3  # dry level kept
        assert not np.allclose(out, speech, atol=1e-3)
    # an impulse stays in place (aligned on the direct path)
    imp = np.zeros(4000, np.float32)
    imp[1000] = 1.0
    h = synthetic_rir(rng, rt60=0.5)
    assert len(h) >= int(0.5 * 16000) and abs(np.sum(h.astype(np.float64) ** 2) - 1) < 1e-4
    assert np.argmax(np.abs(reverberate(imp, h))) == 1000
    # RT60: energy 0.3 s after the direct path is ~ 36 dB down for rt60 = 0.5 s (60 dB per rt60)
    d = int(np.argmax(np.abs(h)))
    e = lambda a, b: np.mean(h[d + int(a * 16000): d + int(b * 16000)].astype(np.float64) ** 2)
    drop = 10 * np.log10(e(0.02, 0.06) / e(0.30, 0.34))
    assert 25 < drop < 45


def test_generators(rng):
    n = 16000
    for x in (coloured_noise(n, rng), synthetic_music(n, rng), synthetic_babble(n, rng, 4)):
        assert x.shape == (n,) and x.dtype == np.float32 and np.isfinite(x).all()
        assert abs(np.mean(x.astype(np.float64) ** 2) - 1) < 1e-3
    # slope 0 is flat, slope 2 puts most power in the lowest frequencies
    spec = lambda x: np.abs(np.fft.rfft(x)) ** 2
    white, brown = spec(coloured_noise(n, rng, 0.0)), spec(coloured_noise(n, rng, 2.0))
    low = slice(1, 200)
    assert white[low].sum() / white.sum() < 0.05 and brown[low].sum() / brown.sum() > 0.9


def test_draw_odds_and_none(speech):
    aug = Augmenter(AugmentConfig.profile("dino", bank_clips=2, bank_clip_s=1.0), seed=0)
    r = np.random.default_rng(0)
    kinds = [aug.choose(r) for _ in range(3000)]
    frac = {k: kinds.count(k) / len(kinds) for k in KINDS}
    assert abs(frac["reverb"] - 0.4) < 0.03 and abs(frac["none"] - 0.2) < 0.03
    assert abs(frac["noise"] + frac["music"] + frac["babble"] - 0.4) < 0.03
    np.testing.assert_array_equal(aug.apply(speech, "none"), speech)
    out = aug(speech, r)
    assert out.shape == speech.shape
    with pytest.raises(ValueError, match="unknown augmentation kind"):
        aug.apply(speech, "chorus")
    only_none = Augmenter(AugmentConfig(p_reverb=0, p_noise=0, p_music=0, p_babble=0, p_none=1))
    np.testing.assert_array_equal(only_none(speech), speech)


def test_student_profile_is_the_authors_augmentation(speech):
    # reverb, additive or none with equal odds; additive = noise, music, babble + music or
    # babble of 3-8 talkers, evenly; every SNR uniform in 0-20 dB
    cfg = AugmentConfig.profile("student", bank_clips=2, bank_clip_s=1.0)
    assert cfg.babble_speakers == (3, 8)
    assert all(getattr(cfg, f"snr_{k}") == (0.0, 20.0) for k in ("noise", "music", "babble", "babble_music"))
    aug = Augmenter(cfg, seed=0)
    r = np.random.default_rng(1)
    kinds = [aug.choose(r) for _ in range(6000)]
    frac = {k: kinds.count(k) / len(kinds) for k in KINDS}
    assert abs(frac["reverb"] - 1 / 3) < 0.025 and abs(frac["none"] - 1 / 3) < 0.025
    for k in ("noise", "music", "babble", "babble_music"):
        assert abs(frac[k] - 1 / 12) < 0.015, (k, frac[k])
    out = aug.apply(speech, "babble_music", np.random.default_rng(2), snr_db=5.0)
    noise = out - speech
    snr = 10 * np.log10(np.mean(speech.astype(np.float64) ** 2) / np.mean(noise.astype(np.float64) ** 2))
    assert abs(snr - 5.0) < 0.1
    assert "babble_music" in aug.sources()


def test_adding_the_babble_music_kind_keeps_old_draws():
    # configs without babble_music draw exactly what they drew before the kind existed: the new
    # kind comes last, so the cumulative odds of the first five are unchanged
    aug = Augmenter(AugmentConfig.profile("dino", bank_clips=2, bank_clip_s=1.0), seed=0)
    p5 = np.array([0.4, 0.4 / 3, 0.4 / 3, 0.4 / 3, 0.2])
    r1, r2 = np.random.default_rng(7), np.random.default_rng(7)
    old = ["reverb", "noise", "music", "babble", "none"]
    assert [aug.choose(r1) for _ in range(500)] == [old[int(r2.choice(5, p=p5 / p5.sum()))] for _ in range(500)]


def test_config_validation():
    with pytest.raises(ConfigError, match="snr_noise: low 10.0 dB is above high 5.0"):
        AugmentConfig(snr_noise=(10.0, 5.0))
    with pytest.raises(ConfigError, match="p_music"):
        AugmentConfig(p_music=-0.1)
    with pytest.raises(ConfigError, match="must not all be 0"):
        AugmentConfig(p_reverb=0, p_noise=0, p_music=0, p_babble=0, p_none=0)
    with pytest.raises(ConfigError, match="pair"):
        AugmentConfig(snr_babble=(1.0, 2.0, 3.0))
    with pytest.raises(ConfigError, match="rt60"):
        AugmentConfig(rt60=(0.0, 0.5))
    with pytest.raises(ConfigError, match="unknown parameter"):
        AugmentConfig.from_dict({"p_chorus": 0.3})
    with pytest.raises(ConfigError, match="unknown augmentation profile"):
        AugmentConfig.profile("heavy")
    s = AugmentConfig.profile("student")
    assert s.snr_noise == (0.0, 20.0) and np.allclose(s.probabilities(), [1 / 3, 1 / 12, 1 / 12, 1 / 12, 1 / 3, 1 / 12])
    assert AugmentConfig.from_dict(s.to_dict()) == s


def test_musan_and_rir_dirs(speech, rng, musan_dir, rir_dir, tmp_path):
    cfg = AugmentConfig(musan_dir=str(musan_dir.parent), rir_dir=str(rir_dir))  # parent of musan/ works
    aug = Augmenter(cfg, seed=0)
    src = aug.sources()
    assert src == {"reverb": "2 RIR files", "noise": "2 MUSAN noise files", "music": "2 MUSAN music files",
                   "babble": "2 MUSAN speech files"}
    for kind in ("noise", "music", "babble"):
        for snr in (0.0, 10.0):
            out = aug.apply(speech, kind, rng, snr_db=snr)
            assert abs(snr_of(speech, out) - snr) < 0.5
    out = aug.apply(speech, "reverb", rng)
    assert out.shape == speech.shape and np.isfinite(out).all()
    # the fixture RIR has its direct path at sample 20: an impulse stays in place
    imp = np.zeros(3000, np.float32)
    imp[500] = 1
    assert np.argmax(np.abs(reverberate(imp, aug.rir(rng)))) == 500
    assert aug.skip_log.total == 0
    # a musan_dir without music refuses when music is wanted
    (tmp_path / "m2/noise/a").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="noise"):
        Augmenter(AugmentConfig(musan_dir=str(tmp_path / "m2")))
    with pytest.raises(FileNotFoundError, match="rir_dir"):
        Augmenter(AugmentConfig(rir_dir=str(tmp_path / "none")))


def test_babble_from_table(speech, rng, voxceleb_tree):
    root, _ = voxceleb_tree(n_speakers=2, n_videos=2, n_utts=1, exts=("flac", "wav"), duration_s=1.0)
    table = read_voxceleb(root, cache=False)
    aug = Augmenter(AugmentConfig(babble_speakers=(3, 3)), babble_table=table, seed=0)
    assert aug.babble_mode == "table" and aug.sources()["babble"] == "4 table utterances"
    for snr in (13.0, 20.0):  # table files are shorter than the 2 s crop: wrapped
        assert abs(snr_of(speech, aug.apply(speech, "babble", rng, snr_db=snr)) - snr) < 0.5
    # an unreadable table entry is skipped and counted
    (root / table.utt_id[0]).write_bytes(b"junk")
    aug2 = Augmenter(AugmentConfig(babble_speakers=(6, 6)), babble_table=table, seed=0)
    out = aug2.apply(speech, "babble", rng, snr_db=15.0)
    assert abs(snr_of(speech, out) - 15.0) < 0.5 and aug2.skip_log.summary().get("corrupt", 0) >= 1
    with pytest.raises(ConfigError, match="babble_table"):
        Augmenter(AugmentConfig(babble_source="table"))


def test_fresh_generation_without_bank(speech, rng):
    aug = Augmenter(AugmentConfig(bank_clips=0), seed=0)
    for kind in ("noise", "music", "babble"):
        assert abs(snr_of(speech, aug.apply(speech, kind, rng, snr_db=8.0)) - 8.0) < 0.5
    assert aug.apply(speech, "reverb", rng).shape == speech.shape


def test_pickled_augmenter_draws_the_same(speech):
    import pickle

    aug = Augmenter(AugmentConfig(bank_clips=2, bank_clip_s=1.0), seed=5).prepare()
    clone = pickle.loads(pickle.dumps(aug))
    assert clone._banks["noise"].clips is None  # banks travel without audio
    for kind in ("reverb", "noise", "music", "babble"):
        a = aug.apply(speech, kind, np.random.default_rng(9))
        b = clone.apply(speech, kind, np.random.default_rng(9))
        np.testing.assert_array_equal(a, b)
