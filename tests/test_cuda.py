"""CUDA paths against their CPU references (skipped without a GPU; bench/gpu_check.sh runs them).

What runs on the GPU in training must compute what the CPU computes: the log-Mel front end,
the encoders (float32, and bf16 autocast within bf16's precision), the AAM head's margin and
masking under autocast, the label queue's vote, the vectorised relabelling helpers and the torch
k-means backend. Inputs are fresh random data, never zeros.
"""
import numpy as np
import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(autouse=True)
def _exact_fp32():
    """Full float32 matmuls/convolutions for the float32 comparisons (TF32 would blur them)."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return float((a - b).norm() / b.norm())


def test_fbank_on_gpu_matches_cpu():
    from ssrl_lab.features import Fbank

    g = torch.Generator().manual_seed(1)
    wave = 0.1 * torch.randn(4, 32000, generator=g)
    fb = Fbank()
    ref = fb(wave)
    out = fb.cuda()(wave.cuda())
    assert out.dtype == torch.float32 and out.shape == ref.shape
    assert _rel(out, ref) < 1e-4
    with torch.autocast("cuda", dtype=torch.bfloat16):  # the front end stays float32 under autocast
        out_amp = fb(wave.cuda())
    assert out_amp.dtype == torch.float32 and _rel(out_amp, ref) < 1e-4


@pytest.mark.parametrize("preset", ["tiny", "ecapa_c512", "resnet34"])
def test_encoder_on_gpu_matches_cpu_and_bf16_is_close(preset):
    from ssrl_lab.models import EncoderConfig, SpeakerNet

    torch.manual_seed(0)
    net = SpeakerNet(EncoderConfig.preset(preset)).eval()
    wave = 0.1 * torch.randn(3, 32000, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        ref = net(wave)
        net.cuda()
        out = net(wave.cuda())
        with torch.autocast("cuda", dtype=torch.bfloat16):
            amp = net(wave.cuda()).float()
    assert torch.isfinite(out).all() and torch.isfinite(amp).all()
    assert _rel(out, ref) < 1e-3
    assert _rel(amp, ref) < 5e-2
    cos = torch.nn.functional.cosine_similarity(amp.cpu(), ref, dim=1)
    assert (cos > 0.99).all(), cos


def test_aam_head_under_autocast_matches_cpu():
    from ssrl_lab.models import AAMSoftmax

    torch.manual_seed(0)
    head = AAMSoftmax(16, 10, scale=30.0, margin=0.2)
    head.active[[3, 7]] = False
    emb = torch.randn(6, 16)
    y = torch.tensor([0, 1, 2, 4, 5, 9])
    ref = head(emb, y)
    head.cuda()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = head(emb.cuda(), y.cuda())
    assert out.dtype == torch.float32
    assert torch.isneginf(out[:, [3, 7]]).all()
    finite = torch.isfinite(ref)
    assert torch.equal(finite, torch.isfinite(out.cpu()))
    assert _rel(out.cpu()[finite], ref[finite]) < 1e-4


def test_label_queue_vote_on_gpu_equals_cpu():
    from ssrl_lab.labels.queue import LabelQueue

    rng = np.random.default_rng(0)
    n, k = 5000, 40
    seed = rng.integers(0, k, n)
    pushes = [rng.integers(0, k, n) for _ in range(6)]
    active = torch.from_numpy(rng.random(k) > 0.2)
    votes = {}
    for dev in ("cpu", "cuda"):
        q = LabelQueue(n, length=5, seed_labels=seed, seed_copies=2, n_labels=k, device=dev, tie_break="oldest")
        for p in pushes:
            q.push(torch.from_numpy(p))
        votes[dev] = (q.vote().cpu(), q.vote(active=active.to(dev)).cpu(), q.entries.cpu())
    for a, b in zip(votes["cpu"], votes["cuda"]):
        assert torch.equal(a, b)


def test_torch_kmeans_on_gpu_agrees_with_cpu():
    from ssrl_lab.cluster.kmeans import spherical_kmeans
    from ssrl_lab.cluster.metrics import nmi

    rng = np.random.default_rng(0)
    k, d = 30, 24
    c = rng.normal(size=(k, d))
    c /= np.linalg.norm(c, axis=1, keepdims=True)
    y = rng.integers(0, k, 6000)
    x = (c[y] + 0.2 * rng.normal(size=(6000, d))).astype(np.float32)
    cpu = spherical_kmeans(x, k, n_iter=30, seed=0, backend="torch", device="cpu")
    gpu = spherical_kmeans(x, k, n_iter=30, seed=0, backend="torch", device="cuda")
    assert nmi(gpu.labels, y) > 0.95
    assert nmi(gpu.labels, cpu.labels) > 0.99
    assert gpu.inertia == pytest.approx(cpu.inertia, rel=1e-3)
    # the device-side final assignment is the nearest normalised centroid
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    sim = xn @ gpu.centroids.T
    agree = (gpu.labels == sim.argmax(axis=1)).mean()
    assert agree > 0.999  # float rounding may flip exact near-ties only


def test_ema_update_on_gpu_equals_cpu():
    import copy

    from ssrl_lab.models import EncoderConfig, SpeakerNet
    from ssrl_lab.train.ema import ema_update

    torch.manual_seed(0)
    s = SpeakerNet(EncoderConfig.preset("tiny"))
    t = copy.deepcopy(s)
    with torch.no_grad():
        for p in s.parameters():
            p.add_(0.1 * torch.randn_like(p))
    t_cpu = copy.deepcopy(t)
    ema_update(t_cpu, s, 0.99)
    t.cuda()
    ema_update(t, copy.deepcopy(s).cuda(), 0.99)
    for a, b in zip(t.state_dict().values(), t_cpu.state_dict().values()):
        assert torch.allclose(a.cpu(), b, rtol=0, atol=1e-6)
