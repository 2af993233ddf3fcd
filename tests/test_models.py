"""Tests for ssrl_lab.models: EncoderConfig, ECAPA-TDNN, ResNet34, SpeakerNet."""
import copy

import pytest
import torch

from ssrl_lab.config import ConfigError
from ssrl_lab.features import SpecAugment
from ssrl_lab.models import EncoderConfig, SpeakerNet, build_encoder, count_parameters

# WeSpeaker's published encoder sizes (80-d fbank input).
PUBLISHED = {
    "ecapa_c512": 6.19e6,  # ECAPA_TDNN_GLOB_c512-ASTP-emb192
    "ecapa_c1024": 14.65e6,  # ECAPA_TDNN_GLOB_c1024-ASTP-emb192
    "resnet34": 6.63e6,  # ResNet34-TSTP-emb256
}


def small_resnet(**kw) -> EncoderConfig:
    return EncoderConfig.preset("resnet34", base_width=4, resnet_blocks=(1, 1, 1, 1), emb_dim=16, **kw)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_parameter_counts_match_wespeaker(name):
    n = count_parameters(build_encoder(EncoderConfig.preset(name)))
    assert abs(n - PUBLISHED[name]) / PUBLISHED[name] < 0.10, (name, n)


def test_parameter_counts_with_192_dim_embeddings():
    resnet192 = count_parameters(build_encoder(EncoderConfig.preset("resnet34", emb_dim=192)))
    assert abs(resnet192 - PUBLISHED["resnet34"]) / PUBLISHED["resnet34"] < 0.10
    assert resnet192 == count_parameters(build_encoder(EncoderConfig.preset("resnet34"))) - 64 * (5120 + 1)
    paper = count_parameters(build_encoder(EncoderConfig.preset("ssrl_paper")))
    assert 21e6 < paper < 24e6  # c1024, 3072 aggregation, 512-d


def test_small_presets_sizes():
    tiny = count_parameters(build_encoder(EncoderConfig.preset("tiny")))
    micro = count_parameters(build_encoder(EncoderConfig.preset("micro")))
    assert 0.15e6 <= tiny <= 0.6e6
    assert micro < 0.1e6


def test_config_validation_and_round_trip():
    cfg = EncoderConfig.preset("tiny")
    assert cfg.aggregation_channels == 192
    assert EncoderConfig(channels=64).aggregation_channels == 192  # 0 -> 3 * channels
    assert EncoderConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.to_dict()["dilations"] == [2, 3, 4]
    with pytest.raises(ConfigError, match="scale=3 must divide channels=64"):
        EncoderConfig.preset("tiny", scale=3)
    with pytest.raises(ConfigError, match="unknown encoder preset 'big'"):
        EncoderConfig.preset("big")
    with pytest.raises(ConfigError, match="unknown parameter"):
        EncoderConfig.preset("tiny", chanels=3)
    with pytest.raises(ConfigError, match="arch"):
        EncoderConfig(arch="tdnn")
    with pytest.raises(ConfigError, match="kernel_sizes"):
        EncoderConfig(kernel_sizes=(3, 4, 3))
    with pytest.raises(ConfigError, match="same length"):
        EncoderConfig(kernel_sizes=(3, 3), dilations=(2, 3, 4))
    with pytest.raises(ConfigError, match="first_stride"):
        EncoderConfig(first_stride=0)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("frames", [20, 37, 150])
def test_ecapa_shapes_variable_length(stride, frames):
    enc = build_encoder(EncoderConfig.preset("micro", first_stride=stride))
    enc.train()
    out = enc(torch.randn(3, 80, frames))
    assert out.shape == (3, 64) and torch.isfinite(out).all()
    enc.eval()
    with torch.no_grad():
        one = enc(torch.randn(1, 80, frames))
    assert one.shape == (1, 64) and torch.isfinite(one).all()


@pytest.mark.parametrize("n_mels,frames", [(80, 20), (80, 61), (41, 33)])
def test_resnet_shapes_variable_length(n_mels, frames):
    enc = build_encoder(small_resnet(n_mels=n_mels))
    assert enc.out_freq == -(-n_mels // 8)
    enc.train()
    assert enc(torch.randn(2, n_mels, frames)).shape == (2, 16)
    assert enc(torch.randn(2, 1, n_mels, frames)).shape == (2, 16)
    enc.eval()
    with torch.no_grad():
        assert enc(torch.randn(1, n_mels, frames)).shape == (1, 16)


def test_full_size_encoders_run_once():
    x = torch.randn(2, 80, 24)
    for name, dim in (("ecapa_c512", 192), ("resnet34", 256)):
        enc = build_encoder(EncoderConfig.preset(name)).eval()
        with torch.no_grad():
            assert enc(x).shape == (2, dim)


def test_wrong_feature_shape_raises():
    with pytest.raises(ValueError, match=r"\(batch, 80, frames\)"):
        build_encoder(EncoderConfig.preset("micro"))(torch.randn(2, 40, 50))
    with pytest.raises(ValueError, match=r"\(batch, 80, frames\)"):
        build_encoder(small_resnet())(torch.randn(2, 40, 50))


def test_ecapa_every_parameter_gets_a_gradient():
    enc = build_encoder(EncoderConfig.preset("micro")).train()
    enc(torch.randn(4, 80, 40)).pow(2).sum().backward()
    missing = [n for n, p in enc.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert missing == []


def test_ecapa_is_permutation_invariant_over_batch_in_eval():
    enc = build_encoder(EncoderConfig.preset("micro")).eval()
    x = torch.randn(4, 80, 40)
    with torch.no_grad():
        a = enc(x)
        b = enc(x.flip(0)).flip(0)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_speaker_net_forward_and_spec_augment():
    torch.manual_seed(0)
    net = SpeakerNet(EncoderConfig.preset("micro"), SpecAugment(2, 20, 2, 30))
    assert net.emb_dim == 64
    wave = torch.randn(4, 8000) * 0.1
    net.train()
    torch.manual_seed(1)
    plain = net(wave)
    aug = net(wave, augment_spec=True)
    assert plain.shape == aug.shape == (4, 64)
    assert not torch.allclose(plain, aug)
    net.eval()
    with torch.no_grad():
        torch.testing.assert_close(net(wave), net(wave, augment_spec=True))
        assert net(wave[:1]).shape == (1, 64)


def test_speaker_net_bf16_autocast_cpu():
    net = SpeakerNet(EncoderConfig.preset("micro")).eval()
    wave = torch.randn(2, 8000) * 0.1
    with torch.no_grad():
        ref = net(wave)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = net(wave)
    assert torch.isfinite(out).all()
    cos = torch.nn.functional.cosine_similarity(ref, out.float(), dim=1)
    assert (cos > 0.95).all()


@pytest.mark.parametrize("cfg", [EncoderConfig.preset("micro"), small_resnet()], ids=["ecapa", "resnet"])
def test_state_dict_round_trip_and_deepcopy(cfg):
    torch.manual_seed(0)
    net = SpeakerNet(cfg)
    net.train()
    net(torch.randn(4, 8000))  # move BN running statistics away from their init
    net.eval()
    wave = torch.randn(2, 6000)
    with torch.no_grad():
        ref = net(wave)
        clone = copy.deepcopy(net)
        torch.testing.assert_close(clone(wave), ref)
        fresh = SpeakerNet(cfg).eval()
        assert not torch.allclose(fresh(wave), ref)
        fresh.load_state_dict(net.state_dict())
        torch.testing.assert_close(fresh(wave), ref)
    # deep copies share no storage
    next(clone.parameters()).data.add_(1.0)
    assert not torch.equal(next(clone.parameters()), next(net.parameters()))
