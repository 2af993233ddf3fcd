import numpy as np
import pytest
import torch
from torch import nn

from ssrl_lab.train.ema import ema_update, make_teacher
from ssrl_lab.train.schedules import cosine_schedule, linear_schedule, momentum_schedule, warmup_constant_schedule


def test_cosine_endpoints_and_warmup():
    s = cosine_schedule(1.0, 0.01, epochs=10, steps_per_epoch=5, warmup_epochs=2)
    assert len(s) == 50
    assert s[0] == 0.0
    # linear warm-up: step k of 10 is k/10 of the base
    assert s[5] == pytest.approx(0.5)
    assert s[10] == pytest.approx(1.0)          # first step after warm-up uses the base value
    assert s[49] == pytest.approx(0.01)         # last step reaches the final value
    vals = s.values[10:]
    assert np.all(np.diff(vals) <= 1e-12)       # cosine part decreases monotonically
    assert s[10_000] == pytest.approx(0.01)     # past the end: clamped
    with pytest.raises(IndexError):
        s[-1]


def test_cosine_without_warmup_midpoint():
    s = cosine_schedule(1.0, 0.0, epochs=1, steps_per_epoch=101)
    assert s[0] == pytest.approx(1.0)
    assert s[50] == pytest.approx(0.5)
    assert s[100] == pytest.approx(0.0)


def test_momentum_schedules():
    lin = momentum_schedule(0.999, 0.9999, 4, 10, kind="linear")
    assert lin[0] == pytest.approx(0.999) and lin[39] == pytest.approx(0.9999)
    assert lin[20] == pytest.approx(0.999 + (0.9999 - 0.999) * 20 / 39)
    cos = momentum_schedule(0.99, 0.996, 4, 10, kind="cosine")
    assert cos[0] == pytest.approx(0.99) and cos[39] == pytest.approx(0.996)
    assert np.all(np.diff(cos.values) >= 0)
    with pytest.raises(ValueError):
        momentum_schedule(0.9, 0.99, 1, 1, kind="exp")
    assert linear_schedule(2.0, 4.0, 1, 3).values.tolist() == [2.0, 3.0, 4.0]


def test_teacher_temperature_warmup():
    s = warmup_constant_schedule(0.02, 0.04, warmup_epochs=1, epochs=3, steps_per_epoch=5)
    assert s[0] == pytest.approx(0.02) and s[4] == pytest.approx(0.04) and s[14] == pytest.approx(0.04)


def test_ema_moves_exactly_one_minus_m_of_the_gap():
    torch.manual_seed(0)
    student = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3))
    teacher = make_teacher(student)
    assert all(not p.requires_grad for p in teacher.parameters())
    with torch.no_grad():
        for p in student.parameters():
            p.add_(torch.randn_like(p))
    student.train()
    student(torch.randn(8, 4))  # changes BN running stats and num_batches_tracked
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    target = student.state_dict()
    m = 0.9
    ema_update(teacher, student, m)
    after = teacher.state_dict()
    for k, v in after.items():
        if v.dtype.is_floating_point:
            gap = target[k] - before[k]
            assert torch.allclose(v - before[k], (1 - m) * gap, atol=1e-6), k
            assert gap.abs().max() > 0, k
        else:
            assert torch.equal(v, target[k])  # integer buffers are copied
    ema_update(teacher, student, 0.0)
    assert all(torch.allclose(teacher.state_dict()[k].float(), target[k].float()) for k in target)
    with pytest.raises(ValueError):
        ema_update(teacher, student, 1.5)


def test_ema_leaves_non_persistent_buffers_alone():
    student = nn.Linear(2, 2)
    student.register_buffer("const", torch.tensor([0.1, 0.3]), persistent=False)
    teacher = make_teacher(student)
    with torch.no_grad():
        student.const.add_(1.0)  # even if the student's copy differs, the teacher's constant stays
    for _ in range(3):
        ema_update(teacher, student, 0.7)
    assert torch.equal(teacher.const, torch.tensor([0.1, 0.3]))
