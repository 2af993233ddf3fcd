"""In-batch augmentation on the training device (issue 15): SNRs, dry level, the odds of the
loader-side path, determinism per (seed, epoch, index), file sources, and exact resume."""
import os
import signal

import numpy as np
import pytest
import soundfile as sf
import torch

from ssrl_lab.data.augment import KINDS, AugmentConfig, Augmenter
from ssrl_lab.data.batch_augment import BatchAugmenter, augment_batch_fn, uniforms
from ssrl_lab.data.datasets import item_rng


def _only(kind, **kw):
    return AugmentConfig(**{f"p_{k}": float(k == kind) for k in KINDS}, bank_clips=4, bank_clip_s=2.0, **kw)


def _speech(b=12, n=16000, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    rows = [(0.2 + 0.1 * i) * np.sin(2 * np.pi * (110 + 13 * i) * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
            + 0.01 * rng.standard_normal(n) for i in range(b)]
    return torch.tensor(np.stack(rows), dtype=torch.float32)


def _snr(clean, mixed):
    c = clean.double()
    return 10 * torch.log10(c.square().mean(1) / (mixed.double() - c).square().mean(1))


@pytest.fixture
def musan(tmp_path):
    """A tiny MUSAN-layout folder (noise/, music/, speech/) and an RIR folder of wav files."""
    rng = np.random.default_rng(5)
    for sub, n_files in (("noise", 3), ("music", 2), ("speech", 4)):
        (tmp_path / "musan" / sub).mkdir(parents=True)
        for i in range(n_files):
            sf.write(tmp_path / "musan" / sub / f"{sub}{i}.wav", (0.1 * rng.standard_normal(16000 * (1 + i))), 16000)
    (tmp_path / "rirs").mkdir()
    for i in range(3):
        h = np.zeros(4000)
        h[10 + i] = 1.0
        h[20:] += 0.05 * rng.standard_normal(3980) * np.exp(-np.arange(3980) / 800)
        sf.write(tmp_path / "rirs" / f"r{i}.wav", h, 16000)
    return tmp_path


@pytest.mark.parametrize("source", ["builtin", "musan"])
@pytest.mark.parametrize("kind", ["noise", "music", "babble", "babble_music"])
def test_measured_snr_within_half_a_db_of_its_target(kind, source, musan):
    kw = {"musan_dir": str(musan / "musan")} if source == "musan" else {}
    cfg = _only(kind, **kw)
    aug = BatchAugmenter(cfg, seed=3)
    x = _speech()
    idx = torch.arange(100, 100 + len(x))
    y = aug(x, idx, epoch=2)
    assert y.shape == x.shape and torch.isfinite(y).all() and not torch.equal(y, x)
    target = torch.from_numpy(aug.draws(idx.numpy(), 2)["snr_db"])
    lo, hi = getattr(cfg, f"snr_{kind}")
    assert ((target >= lo) & (target <= hi)).all()
    assert (_snr(x, y) - target).abs().max() < 0.5
    if source == "musan" and kind != "babble_music":
        assert "MUSAN" in aug.sources()[kind]


def test_table_babble_mixes_other_utterances_of_the_batch():
    from ssrl_lab.data.table import UtteranceTable

    table = UtteranceTable.from_rows([(f"u{i}", "s", "s/a", f"/nonexistent/u{i}.flac", 2.0) for i in range(4)])
    aug = BatchAugmenter(_only("babble"), babble_table=table, seed=1)
    assert aug.babble_mode == "table" and "batch" in aug.sources()["babble"]
    x = _speech(6)
    idx = torch.arange(6)
    y = aug(x, idx, epoch=0)
    assert (_snr(x, y) - torch.from_numpy(aug.draws(idx.numpy(), 0)["snr_db"])).abs().max() < 0.5
    # the babble lies in the span of the other rows, never of the row itself
    for b in range(6):
        others = torch.cat([x[:b], x[b + 1:]]).double()
        noise = (y[b] - x[b]).double()
        coef = torch.linalg.lstsq(others.T, noise.unsqueeze(1)).solution
        assert (others.T @ coef).squeeze(1).sub(noise).norm() < 1e-3 * noise.norm()
    # a batch of one cannot babble with batchmates: synthetic babble, at the target SNR still
    y1 = aug(x[:1], idx[:1], epoch=0)
    assert (_snr(x[:1], y1) - torch.from_numpy(aug.draws([0], 0)["snr_db"])).abs().max() < 0.5


@pytest.mark.parametrize("source", ["synthetic", "files"])
def test_reverberated_crops_keep_their_dry_level(source, musan):
    kw = {"rir_dir": str(musan / "rirs")} if source == "files" else {}
    aug = BatchAugmenter(_only("reverb", **kw), seed=0)
    x = _speech()
    y = aug(x, torch.arange(len(x)), epoch=0)
    assert not torch.allclose(y, x, atol=1e-3)
    np.testing.assert_allclose(y.double().square().mean(1), x.double().square().mean(1), rtol=1e-4)


def test_reverb_matches_the_loader_side_reverberate():
    from ssrl_lab.data.augment import reverberate, synthetic_rir
    from ssrl_lab.data.batch_augment import reverberate_rows

    rng = np.random.default_rng(0)
    x = _speech(3).numpy()
    rirs = [synthetic_rir(rng) for _ in range(3)]
    L = max(len(h) for h in rirs)
    bank = torch.zeros(3, L)
    for i, h in enumerate(rirs):
        bank[i, : len(h)] = torch.from_numpy(h)
    direct = torch.tensor([int(np.argmax(np.abs(h))) for h in rirs])
    y = reverberate_rows(torch.from_numpy(x), bank, direct).numpy()
    for i in range(3):
        np.testing.assert_allclose(y[i], reverberate(x[i], rirs[i]), atol=2e-5)
    # the augmenter's path (RIR spectra cached per crop length) gives the same rows
    aug = BatchAugmenter(_only("reverb"), seed=0)
    xb = _speech(6)
    yb = aug(xb, torch.arange(6), epoch=0)
    pick = np.minimum((aug.draws(np.arange(6), 0)["u"][:, 2] * aug._rirs.n).astype(np.int64), aug._rirs.n - 1)
    bank = aug._ref._synthetic_rirs()
    for i in range(6):
        np.testing.assert_allclose(yb[i].numpy(), reverberate(xb[i].numpy(), bank[pick[i]]), atol=2e-5)


@pytest.mark.parametrize("profile", ["dino", "student"])
def test_the_two_paths_draw_the_same_distribution_of_kinds(profile):
    # dino: reverb 0.4, noise / music / babble 0.133 each, none 0.2; student (SSRL, the authors'):
    # reverb 1/3, none 1/3, noise / music / babble / babble_music 1/12 each
    cfg = AugmentConfig.profile(profile)
    n = 30000
    loader = Augmenter(cfg, seed=0)
    k_loader = np.array([KINDS.index(loader.choose(item_rng(0, 1, i))) for i in range(n)])
    k_batch = BatchAugmenter(cfg, seed=0).kinds(np.arange(n), epoch=1)
    p = cfg.probabilities()
    for j in range(len(KINDS)):
        sd = np.sqrt(p[j] * (1 - p[j]) / n)
        fa, fb = np.mean(k_loader == j), np.mean(k_batch == j)
        assert abs(fa - p[j]) <= 4.5 * sd and abs(fb - p[j]) <= 4.5 * sd, (KINDS[j], fa, fb, p[j])
        assert abs(fa - fb) <= 4.5 * np.sqrt(2) * sd


def test_deterministic_per_seed_epoch_index_whatever_the_batch():
    aug = BatchAugmenter(AugmentConfig(babble_source="synthetic", bank_clips=4, bank_clip_s=2.0), seed=7)
    x = _speech(8)
    idx = torch.arange(40, 48)
    whole = aug(x, idx, epoch=3)
    halves = torch.cat([aug(x[:4], idx[:4], epoch=3), aug(x[4:], idx[4:], epoch=3)])
    perm = torch.randperm(8)
    shuffled = aug(x[perm], idx[perm], epoch=3)
    torch.testing.assert_close(whole, halves, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(whole[perm], shuffled, rtol=1e-5, atol=1e-6)
    assert not torch.equal(aug(x, idx, epoch=4), whole)  # another epoch, other draws
    assert not torch.equal(aug(x, idx, epoch=3, stream=1), whole)  # another view, other draws
    u = uniforms(7, 3, np.arange(1000), 0, 4)
    assert u.min() >= 0 and u.max() < 1 and abs(u.mean() - 0.5) < 0.02


def test_hook_augments_views_and_student_only():
    aug = BatchAugmenter(_only("noise"), seed=0)
    hook = augment_batch_fn(aug)
    x = _speech(4)
    batch = {"views": [x, x[:, :8000].clone()], "student": x, "teacher": x, "index": torch.arange(4)}
    out = hook(batch, 0)
    wave = hook({"wave": x, "label": torch.zeros(4), "index": torch.arange(4)}, 0)  # classifier batches
    assert not torch.equal(wave["wave"], x) and torch.equal(wave["wave"], out["student"])
    assert not torch.equal(out["views"][0], x) and not torch.equal(out["views"][1], x[:, :8000])
    assert not torch.equal(out["views"][0][:, :8000], out["views"][1])  # each view its own draws
    assert not torch.equal(out["student"], x) and out["teacher"] is x
    assert augment_batch_fn(None)(batch, 0) is batch
    with pytest.raises(ValueError, match="indices"):
        aug(x, torch.arange(3), 0)


def test_unreadable_source_files_are_counted_and_replaced(tmp_path, caplog):
    (tmp_path / "noise").mkdir()
    (tmp_path / "noise" / "bad.wav").write_bytes(b"not a wav")
    aug = BatchAugmenter(_only("noise", musan_dir=str(tmp_path)), seed=0)
    x = _speech(3)
    y = aug(x, torch.arange(3), 0)
    assert aug.skip_log.total == 1 and "corrupt" in aug.skip_log.summary()
    assert (_snr(x, y) - torch.from_numpy(aug.draws(np.arange(3), 0)["snr_db"])).abs().max() < 0.5
    assert "built-in" in caplog.text


# -- the trainers with augment_on="batch" --------------------------------------------------
def _dino_cfg(corpus, run_dir, **kw):
    from ssrl_lab.train import dino

    kw = {"augment": {}, "augment_on": "batch", **kw}
    return dino.DINOConfig.profile("smoke", corpus=str(corpus), run_dir=str(run_dir), device="cpu", num_workers=0,
                                   eval_every=0, epochs=2, max_steps_per_epoch=2, **kw)


def test_dino_with_in_batch_augmentation_resumes_exactly(smoke_corpus, tmp_path, monkeypatch):
    from ssrl_lab.data import batch_augment
    from ssrl_lab.train import dino
    from ssrl_lab.train.signals import TrainingInterrupted
    from ssrl_lab.utils.io import read_jsonl

    calls = {"n": 0}
    real = batch_augment.BatchAugmenter.__call__

    def counted(self, *a, **kw):
        calls["n"] += 1
        return real(self, *a, **kw)

    monkeypatch.setattr(batch_augment.BatchAugmenter, "__call__", counted)
    ref = dino.train(_dino_cfg(smoke_corpus, tmp_path / "straight"), progress=False)
    assert calls["n"] == 2 * 2 * 4  # epochs x steps x views: the hook ran on every view
    def strip(obj):  # wall-clock fields dropped, recursively; everything else must match exactly
        if isinstance(obj, dict):
            return {k: strip(v) for k, v in obj.items() if not k.startswith("seconds")}
        return [strip(v) for v in obj] if isinstance(obj, list) else obj
    m_ref = strip(read_jsonl(tmp_path / "straight" / "metrics.jsonl"))

    real_ema = dino.ema_update
    n = {"k": 0}

    def stop_at_third(*a, **kw):
        out = real_ema(*a, **kw)
        n["k"] += 1
        if n["k"] == 3:  # epoch 2, step 1 (0-based)
            os.kill(os.getpid(), signal.SIGTERM)
        return out

    monkeypatch.setattr(dino, "ema_update", stop_at_third)
    with pytest.raises(TrainingInterrupted):
        dino.train(_dino_cfg(smoke_corpus, tmp_path / "resumed"), progress=False)
    monkeypatch.setattr(dino, "ema_update", real_ema)
    res = dino.train(_dino_cfg(smoke_corpus, tmp_path / "resumed"), resume=True, progress=False)
    assert strip(read_jsonl(tmp_path / "resumed" / "metrics.jsonl")) == m_ref
    assert res["eer"] == ref["eer"]
    a = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=False)
    for k, v in a["teacher"].items():
        assert torch.equal(v, b["teacher"][k]), k


def test_loader_side_builds_no_batch_augmenter_and_batch_side_no_loader_augmenter():
    from ssrl_lab.config import ConfigError
    from ssrl_lab.data.augment import build_augmenter
    from ssrl_lab.data.batch_augment import build_batch_augment
    from ssrl_lab.train.dino import DINOConfig

    cfg = DINOConfig.profile("smoke", augment={})
    assert build_augmenter(cfg, None) is not None
    batch = {"views": [_speech(2)], "index": torch.arange(2)}
    assert build_batch_augment(cfg, None, torch.device("cpu"))(batch, 0) is batch
    noise_only = {"p_reverb": 0.0, "p_music": 0.0, "p_babble": 0.0, "p_none": 0.0, "bank_clips": 2}
    cfg_b = cfg.replace(augment_on="batch", augment=noise_only)
    assert build_augmenter(cfg_b, None) is None
    out = build_batch_augment(cfg_b, None, torch.device("cpu"))(batch, 0)["views"][0]
    assert out.shape == batch["views"][0].shape and not torch.equal(out, batch["views"][0])
    with pytest.raises(ConfigError, match="augment_on"):
        cfg.replace(augment_on="gpu")


def test_ssrl_and_vox_profiles_with_in_batch_augmentation(smoke_corpus, smoke_dino, tmp_path, monkeypatch):
    from ssrl_lab.data import batch_augment
    from ssrl_lab.train import dino, ssrl

    assert dino.DINOConfig.profile("vox").augment_on == "batch"
    assert ssrl.SSRLConfig.profile("vox", dino_run="x").augment_on == "batch"
    for p in ("smoke", "demo"):  # the CPU profiles keep the loader-side path (their reference numbers)
        assert dino.DINOConfig.profile(p).augment_on == "loader"
        assert ssrl.SSRLConfig.profile(p, dino_run="x").augment_on == "loader"
    seen = []
    real = batch_augment.BatchAugmenter.__call__
    monkeypatch.setattr(batch_augment.BatchAugmenter, "__call__",
                        lambda self, x, *a, **kw: (seen.append(tuple(x.shape)), real(self, x, *a, **kw))[1])
    cfg = ssrl.SSRLConfig.profile("smoke", corpus=str(smoke_corpus), run_dir=str(tmp_path / "s"), dino_run=str(smoke_dino),
                                  device="cpu", epochs=1, max_steps_per_epoch=2, augment={}, augment_on="batch")
    res = ssrl.train(cfg, progress=False)
    assert seen == [(8, 16000)] * 2 and 0 <= res["eer"] <= 100  # the student crops only, every step
