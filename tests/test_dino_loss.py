import math

import pytest
import torch
import torch.nn.functional as F

from ssrl_lab.train.dino import DINOLoss, teacher_stats


def _manual(student, teacher, center, t_temp, s_temp, skip_same=True):
    total, n = 0.0, 0
    for i, t in enumerate(teacher):
        q = F.softmax((t - center) / t_temp, -1)
        for v, s in enumerate(student):
            if skip_same and v == i:
                continue
            total += (-q * F.log_softmax(s / s_temp, -1)).sum(-1).mean()
            n += 1
    return total / n


def test_loss_skips_same_view_pairs():
    torch.manual_seed(0)
    K, B = 6, 4
    # student view 0 agrees perfectly with teacher view 0 and disagrees with teacher view 1:
    # including same-view pairs would lower the loss.
    t0, t1 = torch.randn(B, K) * 3, torch.randn(B, K) * 3
    s0, s1, s2 = t0.clone(), torch.randn(B, K), torch.randn(B, K)
    loss = DINOLoss(K, student_temp=0.1, center_momentum=0.9)
    got = loss([s0, s1, s2], [t0, t1], teacher_temp=0.04)
    want = _manual([s0, s1, s2], [t0, t1], torch.zeros(1, K), 0.04, 0.1, skip_same=True)
    with_same = _manual([s0, s1, s2], [t0, t1], torch.zeros(1, K), 0.04, 0.1, skip_same=False)
    assert got.item() == pytest.approx(want.item(), rel=1e-5)
    assert abs(with_same.item() - want.item()) > 1e-2


def test_centering_follows_its_ema_and_is_used():
    K = 5
    loss = DINOLoss(K, center_momentum=0.8)
    a = torch.arange(10.0).reshape(2, K)
    b = torch.ones(2, K)
    loss.update_center([a, b])
    mean1 = torch.cat([a, b]).mean(0, keepdim=True)
    assert torch.allclose(loss.center, 0.2 * mean1)
    c = torch.full((3, K), 2.0)
    loss.update_center([c])
    assert torch.allclose(loss.center, 0.8 * 0.2 * mean1 + 0.2 * c.mean(0, keepdim=True))
    # the centre is subtracted from the teacher logits before the softmax
    s = [torch.randn(3, K), torch.randn(3, K)]
    t = [torch.randn(3, K)]
    want = _manual(s, t, loss.center, 0.04, 0.1)
    assert loss(s, t, 0.04).item() == pytest.approx(want.item(), rel=1e-5)


def test_teacher_stats():
    p = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    st = teacher_stats([p])
    assert st["entropy"] == pytest.approx(0.0, abs=1e-6)
    assert st["entropy_of_mean"] == pytest.approx(math.log(2))
    assert st["argmax"].unique().numel() == 2


def test_loss_needs_two_views():
    with pytest.raises(ValueError):
        DINOLoss(3)([torch.randn(2, 3)], [torch.randn(2, 3)], 0.04)
