"""Masked argmax, cluster masking, Sinkhorn balancing, and relabelling on a toy problem."""
import pytest
import torch

from ssrl_lab.labels.epoch_end import epoch_end_update
from ssrl_lab.labels.queue import LabelQueue
from ssrl_lab.labels.relabel import (
    active_from_labels,
    cosine_scores,
    label_change_rate,
    masked_argmax,
    sinkhorn_assign,
    update_active,
)


def test_masked_argmax_never_picks_inactive():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(200, 10, generator=g)
    active = torch.tensor([True, False, True, False, True, True, False, True, False, True])
    idx = masked_argmax(logits, active)
    assert active[idx].all()
    ref = logits.clone()
    ref[:, ~active] = -1e9
    assert torch.equal(idx, ref.argmax(1))
    # inactive column dominating, and rows with all active logits -inf / NaN
    logits[:, 1] = 100.0
    logits[0, active] = float("-inf")
    logits[1, active] = float("nan")
    idx = masked_argmax(logits, active)
    assert active[idx].all() and idx[0] == 0 and idx[1] == 0
    with pytest.raises(ValueError, match="no active"):
        masked_argmax(logits, torch.zeros(10, dtype=torch.bool))


def test_active_masking_only_falls():
    k = 6
    active = active_from_labels(torch.tensor([0, 1, 1, 3, 4]), k)
    assert active.tolist() == [True, True, False, True, True, False]
    active2 = update_active(active, torch.tensor([0, 2, 2, 3, 5]), k)  # 2 and 5 cannot come back
    assert active2.tolist() == [True, False, False, True, False, False]
    assert active_from_labels(torch.tensor([0, 1, 1, 3]), k, min_size=2).tolist() == [False, True] + [False] * 4
    with pytest.raises(ValueError, match=r"\[0, 6\)"):
        active_from_labels(torch.tensor([0, 6]), k)


def test_sinkhorn_balances_uniform_preferences():
    # every sample prefers cluster 0 a little: argmax puts all there, Sinkhorn spreads them
    g = torch.Generator().manual_seed(1)
    n, k = 600, 6
    scores = 0.05 * torch.randn(n, k, generator=g)
    scores[:, 0] += 0.1
    active = torch.ones(k, dtype=torch.bool)
    active[5] = False
    assert torch.bincount(scores.argmax(1), minlength=k)[0] > 400
    lab = sinkhorn_assign(scores, active, n_iter=50, epsilon=0.05, chunk_size=128)
    sizes = torch.bincount(lab, minlength=k)
    assert sizes[5] == 0
    assert sizes[:5].min() >= 100 and sizes[:5].max() <= 140  # ideal 120 each


def test_sinkhorn_respects_strong_preferences():
    # three well-separated balanced groups: Sinkhorn must keep the obvious assignment
    g = torch.Generator().manual_seed(2)
    n, k = 300, 3
    truth = torch.arange(n) % k
    scores = 0.1 * torch.randn(n, k, generator=g)
    scores[torch.arange(n), truth] += 1.0
    lab = sinkhorn_assign(scores, torch.ones(k, dtype=torch.bool), n_iter=3, epsilon=0.05)
    assert (lab == truth).float().mean() > 0.98
    # log softmax(s / 0.05) differs from s / 0.05 by a per-row constant, which Sinkhorn absorbs
    probs = torch.softmax(scores / 0.05, dim=1)
    lab_p = sinkhorn_assign(probs, torch.ones(k, dtype=torch.bool), kind="probs", epsilon=1.0)
    assert torch.equal(lab_p, lab)


def test_sinkhorn_chunking_and_score_function_agree():
    g = torch.Generator().manual_seed(3)
    emb, w = torch.randn(257, 16, generator=g), torch.randn(7, 16, generator=g)
    active = torch.ones(7, dtype=torch.bool)
    fn = cosine_scores(emb, w)
    full = fn(0, 257)
    a = sinkhorn_assign(full, active, chunk_size=10_000)
    b = sinkhorn_assign(full, active, chunk_size=31)
    c = sinkhorn_assign(fn, active, chunk_size=50)
    assert torch.equal(a, b) and torch.equal(a, c)


def test_label_change_rate():
    assert label_change_rate(torch.tensor([1, 2, 3, 4]), torch.tensor([1, 0, 3, 0])) == 0.5
    assert label_change_rate(torch.tensor([], dtype=torch.long), torch.tensor([], dtype=torch.long)) == 0.0


def _toy(n_cls=5, per=60, dim=8, noise=0.3, seed=0):
    g = torch.Generator().manual_seed(seed)
    means = torch.nn.functional.normalize(torch.randn(n_cls, dim, generator=g), dim=1)
    truth = torch.arange(n_cls).repeat_interleave(per)
    x = torch.nn.functional.normalize(means[truth] + noise * torch.randn(len(truth), dim, generator=g) / dim**0.5, dim=1)
    return means, truth, x, g


def test_relabelling_fixes_noisy_labels_and_queue_converges():
    # prototypes = true class means (plus 3 spare clusters nobody is near), 30 % noisy k-means labels
    n_cls, k = 5, 8
    means, truth, x, g = _toy(n_cls)
    n = len(truth)
    spare = -means[:3]  # opposite directions: never the argmax
    protos = torch.cat([means, spare])
    init = truth.clone()
    flip = torch.rand(n, generator=g) < 0.3
    init[flip] = torch.randint(0, k, (int(flip.sum()),), generator=g)
    assert (init == truth).float().mean() < 0.8
    active = active_from_labels(init, k)
    q = LabelQueue(n, length=5, seed_labels=init, seed_copies=2, n_labels=k)
    accs, changes, agree = [], [], []
    for epoch in range(5):
        logits = 32 * x @ protos.T
        teacher = masked_argmax(logits, active)
        assert (teacher == truth).all()  # the argmax of the true prototypes is right
        labels = q.vote(active)
        loss = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
        out = epoch_end_update(q, teacher, loss, active, push=True, noise_model="gmm")
        active = out["active"]
        accs.append(float((out["labels"] == truth).float().mean()))
        changes.append(out["changed"])
        agree.append(out["agreement"])
    # [k, k, t] keeps the k-means label; [k, k, t, t] switches to t (recent tie-break)
    assert accs[0] == pytest.approx(float((init == truth).float().mean()))
    assert accs[1] == 1.0 and accs[-1] == 1.0
    assert changes[1] > 0.2 and changes[-1] == 0.0
    assert out["n_clusters"] == n_cls and active[:n_cls].all() and not active[n_cls:].any()
    wrong = float((init != truth).float().mean())
    assert agree[2] == pytest.approx(1.0 - 0.4 * wrong, abs=1e-6)  # queue [k, k, t, t, t]
    assert agree[-1] == 1.0  # seeds have dropped out


def test_epoch_end_noise_models_and_fixed_epochs():
    means, truth, x, g = _toy(3, per=40)
    n, k = len(truth), 4
    q = LabelQueue(n, seed_labels=truth, n_labels=k)
    active = torch.ones(k, dtype=torch.bool)
    loss = torch.rand(n, generator=g)
    out = epoch_end_update(q, truth, loss, active, push=False, noise_model="none")
    assert q.filled == 2 and out["changed"] == 0.0 and torch.all(out["p_clean"] == 1)
    assert out["n_clusters"] == 3 and out["n_masked"] == 1 and out["gmm"] is None
    assert active.all()  # the input mask is not modified in place
    out = epoch_end_update(q, truth, loss, out["active"], noise_model="gate", gate_threshold=0.5)
    assert q.filled == 3 and torch.equal(out["p_clean"], (loss < 0.5).float())
    with pytest.raises(ValueError, match="gate_threshold"):
        epoch_end_update(q, truth, loss, active, noise_model="gate")
    with pytest.raises(ValueError, match="noise_model"):
        epoch_end_update(q, truth, loss, active, noise_model="bayes")


def test_epoch_end_fixed_labels_visited_and_log_floor():
    from ssrl_lab.labels.queue import LabelQueue

    n, k = 40, 5
    seed = torch.arange(n) % k
    q = LabelQueue(n, length=3, seed_labels=seed, seed_copies=1, tie_break="oldest")
    teacher = torch.zeros(n, dtype=torch.int64)  # the teacher puts everyone in cluster 0
    visited = torch.ones(n, dtype=torch.bool)
    visited[:5] = False
    loss = torch.cat([torch.full((20,), 1e-30), torch.full((20,), 2.0)])
    prev_p = torch.full((n,), 0.25)
    active = torch.ones(k, dtype=torch.bool)
    out = epoch_end_update(q, teacher, loss, active, labels_in_use=seed, update_labels=False, visited=visited,
                           prev_p_clean=prev_p, noise_model="gate", gate_threshold=1.0, log_floor=-20.0)
    assert torch.equal(out["labels"], seed) and out["n_clusters"] == k  # fixed labels, nothing masked
    assert q.latest()[:5].tolist() == seed[:5].tolist()  # unvisited rows pushed their label in use
    assert int(q.latest()[5:].max()) == 0
    assert out["p_clean"][:5].tolist() == [0.25] * 5 and out["p_clean"][5:20].eq(1).all() and out["p_clean"][20:].eq(0).all()
    out = epoch_end_update(q, teacher, loss, out["active"], labels_in_use=seed, update_labels=True, noise_model="none")
    # queue rows [s, 0, 0] (visited) -> 0; unvisited rows [s, s, 0] -> s; empty clusters are masked
    assert out["labels"][5:].eq(0).all() and torch.equal(out["labels"][:5], seed[:5])
    assert out["n_clusters"] == k and out["changed"] == pytest.approx(28 / 40)  # rows 5..39 not already in 0
