"""Tests for ssrl_lab.models.heads: DINOHead and AAMSoftmax."""
import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ssrl_lab.models import AAMSoftmax, DINOHead


def small_head(**kw) -> DINOHead:
    args = dict(in_dim=16, hidden_dim=32, bottleneck_dim=8, n_prototypes=50)
    args.update(kw)
    return DINOHead(**args)


# ---------------------------------------------------------------- DINOHead

def test_dino_head_shape_and_cosine_bound():
    torch.manual_seed(0)
    head = small_head()
    out = head(torch.randn(6, 16) * 10)
    assert out.shape == (6, 50)
    assert out.abs().max() <= 1.0 + 1e-5
    # equals the cosine of the bottleneck with each prototype
    z = head.bottleneck(torch.randn(3, 16))
    torch.testing.assert_close(z.norm(dim=1), torch.ones(3))
    proto = F.normalize(head.last_layer.weight_v, dim=1)
    torch.testing.assert_close(head.last_layer(z), z @ proto.T)


@pytest.mark.parametrize("n_layers,use_bn", [(1, True), (2, False), (3, True)])
def test_dino_head_layer_layout(n_layers, use_bn):
    head = small_head(n_layers=n_layers, use_bn=use_bn)
    linears = [m for m in head.mlp if isinstance(m, torch.nn.Linear)]
    bns = [m for m in head.mlp if isinstance(m, torch.nn.BatchNorm1d)]
    assert len(linears) == n_layers
    assert len(bns) == (n_layers - 1 if use_bn else 0)
    assert linears[-1].out_features == 8
    assert head.last_layer.weight_v.shape == (50, 8)
    assert head(torch.randn(4, 16)).shape == (4, 50)


def test_dino_last_layer_norm_stays_one_after_optimiser_steps():
    torch.manual_seed(0)
    head = small_head()
    opt = torch.optim.AdamW(head.parameters(), lr=0.1, weight_decay=0.5)
    assert head.last_layer_parameters() == [head.last_layer.weight_v]
    v0 = head.last_layer.weight_v.detach().clone()
    for _ in range(3):
        opt.zero_grad()
        head(torch.randn(8, 16)).logsumexp(dim=1).mean().backward()
        assert head.last_layer.weight_g.grad is None
        opt.step()
    assert not torch.equal(head.last_layer.weight_v, v0)  # prototypes did move
    w = head.last_layer.weight()
    torch.testing.assert_close(w.norm(dim=1), torch.ones(50))
    assert torch.equal(head.last_layer.weight_g, torch.ones(50, 1))


def test_dino_last_layer_freezing_by_zeroing_grads():
    head = small_head()
    opt = torch.optim.SGD(head.parameters(), lr=1.0)
    v0 = head.last_layer.weight_v.detach().clone()
    first = head.mlp[0].weight.detach().clone()
    head(torch.randn(8, 16)).sum().backward()
    for p in head.last_layer_parameters():
        p.grad = None
    opt.step()
    assert torch.equal(head.last_layer.weight_v, v0)
    assert not torch.equal(head.mlp[0].weight, first)


def test_dino_unnormalised_last_layer_trains_g():
    head = small_head(norm_last_layer=False)
    assert len(head.last_layer_parameters()) == 2
    opt = torch.optim.SGD(head.parameters(), lr=1.0)
    head(torch.randn(8, 16))[:, 0].sum().backward()
    opt.step()
    assert not torch.allclose(head.last_layer.weight_g, torch.ones(50, 1))


def test_dino_head_state_dict_deepcopy_and_ema():
    torch.manual_seed(0)
    student = small_head()
    student.train()
    student(torch.randn(8, 16))  # BN statistics
    teacher = copy.deepcopy(student)
    x = torch.randn(5, 16)
    student.eval(), teacher.eval()
    torch.testing.assert_close(teacher(x), student(x))
    fresh = small_head().eval()
    fresh.load_state_dict(student.state_dict())
    torch.testing.assert_close(fresh(x), student(x))
    assert set(student.state_dict()) >= {"last_layer.weight_v", "last_layer.weight_g"}
    # parameter-wise EMA towards a perturbed student keeps the teacher's prototypes unit-norm
    with torch.no_grad():
        for p in student.parameters():
            p.add_(torch.randn_like(p))
        for pt, ps in zip(teacher.parameters(), student.parameters()):
            pt.mul_(0.9).add_(ps, alpha=0.1)
    torch.testing.assert_close(teacher.last_layer.weight().norm(dim=1), torch.ones(50))
    assert teacher(x).abs().max() <= 1.0 + 1e-5


# ---------------------------------------------------------------- AAMSoftmax

def _constructed(scale=32.0, margin=0.2, easy_margin=False):
    """Three classes along the axes; embeddings at known angles to class 0."""
    aam = AAMSoftmax(2, 3, scale=scale, margin=margin, easy_margin=easy_margin)
    aam.init_from_centroids(torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]))
    return aam


@pytest.mark.parametrize("theta", [0.1, 0.7, 1.4, 2.0])
def test_aam_margin_on_target(theta):
    aam = _constructed()
    emb = torch.tensor([[math.cos(theta), math.sin(theta)]]) * 3.0
    labels = torch.tensor([0])
    plain = aam(emb)
    marg = aam(emb, labels)
    c = math.cos(theta)
    assert plain[0, 0].item() == pytest.approx(32 * c, abs=1e-4)
    assert marg[0, 0].item() == pytest.approx(32 * math.cos(math.acos(c) + 0.2), abs=1e-4)
    assert marg[0, 0] < plain[0, 0]
    torch.testing.assert_close(marg[0, 1:], plain[0, 1:])  # non-targets untouched
    torch.testing.assert_close(aam.cosine(emb)[0, 0], torch.tensor(c), atol=1e-6, rtol=0)


def test_aam_fallback_past_pi_minus_margin():
    m = 0.2
    aam = _constructed(margin=m)
    theta = math.pi - 0.05  # theta + m would wrap past pi
    emb = torch.tensor([[math.cos(theta), math.sin(theta)]])
    out = aam(emb, torch.tensor([0]))
    c = math.cos(theta)
    assert out[0, 0].item() == pytest.approx(32 * (c - math.sin(m) * m), abs=1e-4)
    easy = _constructed(margin=m, easy_margin=True)
    assert easy(emb, torch.tensor([0]))[0, 0].item() == pytest.approx(32 * c, abs=1e-4)


def test_aam_masked_classes_get_minus_inf_and_never_win():
    torch.manual_seed(0)
    aam = AAMSoftmax(8, 10)
    keep = torch.ones(10, dtype=torch.bool)
    keep[[2, 5]] = False
    assert aam.mask_classes(keep) == 8
    assert aam.n_active == 8
    # masking accumulates: keeping everything does not switch 2 and 5 back on
    assert aam.mask_classes(torch.ones(10, dtype=torch.bool)) == 8
    # embeddings equal to the masked classes' weights still never pick them
    emb = torch.cat([aam.weight.detach()[[2, 5]], torch.randn(30, 8)])
    logits = aam(emb)
    assert logits.dtype == torch.float32
    assert torch.isinf(logits[:, [2, 5]]).all() and (logits[:, [2, 5]] < 0).all()
    assert torch.isfinite(logits[:, keep]).all()
    assert not np.isin(logits.argmax(dim=1).numpy(), [2, 5]).any()
    labels = torch.tensor([0, 1] + [3] * 30)
    loss = F.cross_entropy(aam(emb, labels), labels)
    assert torch.isfinite(loss)
    with pytest.raises(ValueError, match=r"inactive.*\[5\]"):
        aam(emb[:2], torch.tensor([5, 0]))
    with pytest.raises(ValueError, match="bool tensor of shape"):
        aam.mask_classes(torch.ones(9, dtype=torch.bool))
    aam.reset_mask()
    assert aam.n_active == 10


def test_aam_bf16_autocast_keeps_float32_and_inf():
    aam = AAMSoftmax(8, 5)
    aam.mask_classes(torch.tensor([True, True, False, True, True]))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = aam(torch.randn(4, 8, dtype=torch.bfloat16), torch.tensor([0, 1, 3, 4]))
    assert out.dtype == torch.float32
    assert torch.isneginf(out[:, 2]).all()


def test_aam_init_from_centroids_argmax_is_nearest_centroid():
    rng = np.random.default_rng(0)
    centroids = rng.normal(size=(20, 16)).astype(np.float32) * 5
    aam = AAMSoftmax(16, 20)
    aam.init_from_centroids(centroids)
    torch.testing.assert_close(aam.weight.norm(dim=1), torch.ones(20))
    x = rng.normal(size=(200, 16)).astype(np.float32)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    cn = centroids / np.linalg.norm(centroids, axis=1, keepdims=True)
    nearest = (xn @ cn.T).argmax(axis=1)
    pred = aam(torch.from_numpy(x)).argmax(dim=1).numpy()
    assert (pred == nearest).all()
    with pytest.raises(ValueError, match=r"expected \(20, 16\)"):
        aam.init_from_centroids(centroids[:5])


def test_aam_gradients_and_round_trips():
    torch.manual_seed(0)
    aam = AAMSoftmax(8, 6)
    aam.mask_classes(torch.tensor([True] * 5 + [False]))
    emb = torch.randn(4, 8, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 3])
    F.cross_entropy(aam(emb, labels), labels).backward()
    assert torch.isfinite(emb.grad).all() and emb.grad.abs().sum() > 0
    assert aam.weight.grad[5].abs().sum() == 0  # masked class gets no gradient
    clone = copy.deepcopy(aam)
    fresh = AAMSoftmax(8, 6)
    fresh.load_state_dict(aam.state_dict())
    for other in (clone, fresh):
        assert torch.equal(other.active, aam.active)
        torch.testing.assert_close(other(emb.detach(), labels), aam(emb.detach(), labels))
    clone.mask_classes(torch.tensor([False] + [True] * 5))
    assert aam.n_active == 5 and clone.n_active == 4
