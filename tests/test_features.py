"""Tests for ssrl_lab.features: Fbank and SpecAugment."""
import copy
import math

import pytest
import torch
import torchaudio

from ssrl_lab.features import Fbank, SpecAugment, n_frames


def _tone_noise(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / 16000
    return 0.3 * torch.sin(2 * math.pi * 440 * t) + 0.05 * torch.randn(n, generator=g)


@pytest.mark.parametrize("n_samples", [400, 401, 559, 560, 16000, 32123])
def test_frame_count_follows_kaldi_snip_edges(n_samples):
    fb = Fbank()
    out = fb(torch.randn(2, n_samples))
    expected = 1 + (n_samples - 400) // 160
    assert out.shape == (2, 80, expected)
    assert fb.n_frames(n_samples) == expected == n_frames(n_samples)
    assert out.dtype == torch.float32


def test_matches_kaldi_fbank_after_mean_normalisation():
    wave = torch.stack([_tone_noise(16000, 0), 0.1 * torch.randn(16000, generator=torch.Generator().manual_seed(1))])
    ours = Fbank()(wave)
    for i in range(2):
        ref = torchaudio.compliance.kaldi.fbank(
            wave[i : i + 1], num_mel_bins=80, frame_length=25, frame_shift=10, dither=0.0,
            window_type="hamming", sample_frequency=16000,
        ).T
        ref = ref - ref.mean(dim=1, keepdim=True)
        assert ref.shape == ours[i].shape
        # Only the Mel triangles differ (Hz- vs mel-domain interpolation): small log differences,
        # largest in near-empty bins of the pure tone.
        assert (ref - ours[i]).abs().max() < 0.25
        assert (ref - ours[i]).abs().mean() < 0.01
        assert torch.corrcoef(torch.stack([ref.flatten(), ours[i].flatten()]))[0, 1] > 0.9999


def test_mean_normalised_per_bin_and_batched_equals_single():
    wave = torch.stack([_tone_noise(8000, s) for s in range(3)])
    fb = Fbank()
    out = fb(wave)
    assert out.mean(dim=2).abs().max() < 1e-4
    assert out.std() > 0.5  # not all zeros
    single = torch.cat([fb(wave[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(out, single, rtol=1e-5, atol=1e-5)


def test_without_mean_norm_scale_follows_gain():
    wave = _tone_noise(8000).unsqueeze(0)
    fb = Fbank(mean_norm=False)
    diff = fb(wave * 10) - fb(wave)
    # 20 dB more power -> log energy + ln(100) in every cell
    assert torch.allclose(diff, torch.full_like(diff, math.log(100.0)), atol=1e-3)


def test_autocast_keeps_float32():
    wave = _tone_noise(8000).unsqueeze(0)
    fb = Fbank()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = fb(wave)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, fb(wave))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_input_raises(bad):
    wave = torch.zeros(3, 1600)
    wave[1, 100] = bad
    with pytest.raises(ValueError, match=r"non-finite.*row\(s\) \[1\]"):
        Fbank()(wave)


def test_bad_shapes_raise():
    fb = Fbank()
    with pytest.raises(ValueError, match="batch, samples"):
        fb(torch.zeros(1600))
    with pytest.raises(ValueError, match="shorter than one window"):
        fb(torch.zeros(2, 399))
    with pytest.raises(ValueError, match="float"):
        fb(torch.zeros(2, 1600, dtype=torch.int16))


def test_silence_hits_the_floor_not_nan():
    out = Fbank(mean_norm=False)(torch.zeros(1, 1600))
    assert torch.isfinite(out).all()
    assert torch.allclose(out, torch.full_like(out, math.log(1e-6)))


def test_fbank_state_dict_and_deepcopy():
    fb = Fbank()
    assert len(fb.state_dict()) == 0  # window and Mel matrix are rebuilt, not persisted
    fb2 = copy.deepcopy(fb)
    fb2.load_state_dict(fb.state_dict())
    wave = _tone_noise(4000).unsqueeze(0)
    torch.testing.assert_close(fb(wave), fb2(wave))


def test_specaugment_masks_only_in_training_and_per_example():
    torch.manual_seed(0)
    feats = torch.randn(16, 80, 200) + 5.0  # no zeros before masking
    sa = SpecAugment(freq_masks=2, freq_width=10, time_masks=2, time_width=20)
    sa.eval()
    assert torch.equal(sa(feats), feats)
    sa.train()
    out = sa(feats)
    masked = out == 0
    assert masked.any()
    assert out.shape == feats.shape
    # unmasked cells untouched
    assert torch.equal(out[~masked], feats[~masked])
    # masks are whole frequency rows or whole time columns
    full_rows = masked.all(dim=2)  # (B, F)
    full_cols = masked.all(dim=1)  # (B, T)
    assert torch.equal(masked, full_rows.unsqueeze(2) | full_cols.unsqueeze(1))
    # bounded widths: at most 2 x 10 bins and 2 x 20 frames per example
    assert full_rows.sum(dim=1).max() <= 20
    assert full_cols.sum(dim=1).max() <= 40
    # per-example masks differ
    patterns = {tuple(r.nonzero().flatten().tolist()) for r in full_cols}
    assert len(patterns) > 8


def test_specaugment_zero_masks_is_identity_and_validation():
    feats = torch.randn(2, 80, 50)
    sa = SpecAugment(0, 10, 0, 10).train()
    assert torch.equal(sa(feats), feats)
    with pytest.raises(ValueError, match="freq_width"):
        SpecAugment(freq_width=-1)
    with pytest.raises(ValueError, match="batch, freq, time"):
        sa(torch.randn(80, 50))
