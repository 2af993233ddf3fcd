"""Replay: our SSRL label bookkeeping against a plain-Python reference of the authors' script.

The reference below is written from the description of ``train_lnc_nlm_dino_ali.py``
(ZXHY-82/SSRL, commit 553ec98) in shared/SSRL.md, not from our code: per-utterance Python
lists as queues, ``statistics.mode``, ``set`` arithmetic for the removed clusters and
scikit-learn's ``GaussianMixture`` for p_clean. Both are driven by the same synthetic stream of
teacher logits over 12 epochs; each takes its own masked argmax and its own in-step vote, and
the stream turns (self label, target) into the teacher's loss. After every epoch both must hold
the same labels in use and the same removed clusters, and p_clean within 1e-3.

The authors' scikit-learn GMM starts from an unseeded k-means; the reference gives it the
deterministic start ours uses (means at the 25th / 75th percentiles of the fitted values, both
variances their variance, equal weights), so the two fits can be compared.
"""
import statistics

import numpy as np
import pytest
import torch
from sklearn.mixture import GaussianMixture

from ssrl_lab.labels import masked_argmax
from ssrl_lab.labels.state import PseudoLabelState


class AuthorsBookkeeping:
    """The authors' WavDataset label bookkeeping and epoch loop, in plain Python."""

    def __init__(self, seed_labels, queue_len, label_fixed_epochs):
        self.queue_len = queue_len
        self.label_fixed_epochs = label_fixed_epochs
        self.evolve = [[int(lab)] * (queue_len // 2) for lab in seed_labels]  # queue_len // 2 seed copies
        self.utt2label = [int(lab) for lab in seed_labels]
        self.original_labels = set(self.utt2label)
        self.label_to_remove = []
        self.clean_label_prob = np.ones(len(seed_labels), dtype="float32")

    def collect_from(self):
        return self.label_fixed_epochs - (self.queue_len // 2 + 1)

    def is_update(self, epoch):
        return epoch + 1 >= self.label_fixed_epochs

    def self_labels(self, logits):
        out = logits.copy()
        out[:, self.label_to_remove] = -np.inf
        return out.argmax(1)

    def infer_new_labels(self, pairs, is_update):
        if not is_update:
            return [lab for _, lab in pairs]
        return [statistics.mode((self.evolve[i] + [lab])[-self.queue_len:]) for i, lab in pairs]

    def update_labels(self, new_labels, update):
        for i, lab in new_labels:
            self.evolve[i].append(lab)
            self.evolve[i] = self.evolve[i][-self.queue_len:]
        all_label = [statistics.mode(q) for q in self.evolve]
        if update:
            self.utt2label = all_label
            self.label_to_remove = sorted(self.original_labels - set(all_label))

    def update_clean_label_probability(self, teacher_loss):
        idx = np.array([i for i, _ in teacher_loss])
        loss_tr = np.log(np.array([v for _, v in teacher_loss]) + 1e-12)
        max_perc = np.percentile(loss_tr, 99.9)
        min_perc = max(np.percentile(loss_tr, 0.1), -20)
        keep = (loss_tr <= max_perc) & (loss_tr >= min_perc)
        fit_x = loss_tr[keep]
        q25, q75 = np.percentile(fit_x, [25, 75])
        var = fit_x.var()
        gmm = GaussianMixture(n_components=2, max_iter=500, tol=1e-5, weights_init=[0.5, 0.5],
                              means_init=[[q25], [q75]], precisions_init=[[[1 / var]], [[1 / var]]])
        gmm.fit(fit_x.reshape(-1, 1))
        loss_tr = np.clip(loss_tr, min_perc, max_perc)
        p = gmm.predict_proba(loss_tr.reshape(-1, 1))
        self.clean_label_prob[idx] = p[:, np.argmin(gmm.means_)] / p.sum(axis=1)


def _stream(n_spk=20, per_spk=30, k=50, epochs=12, seed=0):
    """k-means-like seed labels (each speaker split over two clusters, 10 % stray) and per-epoch
    teacher logits that drift towards one cluster per speaker, with noise."""
    rng = np.random.default_rng(seed)
    spk = np.repeat(np.arange(n_spk), per_spk)
    n = spk.size
    seed_labels = np.where(rng.random(n) < 0.5, 2 * spk, 2 * spk + 1)
    stray = rng.random(n) < 0.1
    seed_labels[stray] = rng.integers(0, k, stray.sum())
    seed_labels[:k] = np.arange(k)  # every cluster starts with a member
    logits = []
    for e in range(epochs):
        z = rng.normal(0, 1.0, (n, k))
        main = 2 * spk
        z[np.arange(n), main] += 1.0 + 0.35 * e
        z[np.arange(n), 2 * spk + 1] += 1.8 - 0.1 * e
        logits.append(z.astype(np.float32))
    return seed_labels, logits


def _loss(epoch, self_label, target, seed=0):
    """The stream's teacher loss: log-normal, ten times larger where the target disagrees with
    the teacher's own label (what a CE against a voted target does). The same draws repeat in
    every batch of 100, so the fits also see tied values at the clip bounds."""
    rng = np.random.default_rng(1000 + epoch + seed)
    base = np.exp(rng.normal(-1.5, 0.6, self_label.size))
    # float32, as both scripts compute the CE (the authors' .tolist() of a float32 tensor)
    return (base * np.where(np.asarray(self_label) == np.asarray(target), 1.0, 10.0)).astype(np.float32)


@pytest.mark.parametrize("queue_len,label_fixed", [(5, 5), (3, 2)])
def test_bookkeeping_replays_the_authors_script(queue_len, label_fixed):
    k, epochs = 50, 12
    seed_labels, logits = _stream(k=k, epochs=epochs)
    n = seed_labels.size
    ref = AuthorsBookkeeping(seed_labels, queue_len, label_fixed)
    ours = PseudoLabelState(torch.as_tensor(seed_labels), k, queue_len=queue_len, label_fixed_epochs=label_fixed,
                            tie_break="oldest", noise_model="gmm", log_floor=-20.0, gmm_recipe="authors",
                            masking="recompute")
    assert ours.collect_start == ref.collect_from() and ours.queue.filled == queue_len // 2
    idx = np.arange(n)
    seen = {"removed": 0, "changed": 0, "revived": 0, "voted_differs": 0}
    prev_removed: set = set()
    for epoch in range(epochs):
        assert ours.collecting(epoch) == (epoch >= ref.collect_from())
        assert ours.updating(epoch) == ref.is_update(epoch)
        ours.begin_epoch()
        teacher_loss, new_pairs = [], []
        if epoch >= ref.collect_from():
            # the reference: masked argmax, in-step vote, loss; collected in batches of 100
            for b in range(0, n, 100):
                rows = idx[b:b + 100]
                sl = ref.self_labels(logits[epoch][rows])
                target = ref.infer_new_labels(list(zip(rows.tolist(), sl.tolist())), ref.is_update(epoch))
                loss = _loss(epoch, sl, target)
                seen["voted_differs"] += int((np.asarray(target) != sl).sum())
                teacher_loss += list(zip(rows.tolist(), loss.tolist()))
                new_pairs += list(zip(rows.tolist(), sl.tolist()))
                # ours, on the same rows, with its own mask and vote
                t_rows = torch.as_tensor(rows)
                o_sl = masked_argmax(torch.as_tensor(logits[epoch][rows]), ours.active)
                o_target = ours.targets(t_rows, o_sl, epoch)
                ours.collect(t_rows, o_sl, torch.as_tensor(_loss(epoch, o_sl.numpy(), o_target.numpy())))
        old_labels = list(ref.utt2label)
        ref.update_labels(new_pairs, update=ref.is_update(epoch))
        if epoch >= ref.collect_from():
            ref.update_clean_label_probability(teacher_loss)
        ours.end_epoch(epoch)

        assert ours.labels.tolist() == ref.utt2label, f"epoch {epoch}: labels in use differ"
        removed = set(np.flatnonzero(~ours.active.numpy()).tolist())
        assert removed == set(ref.label_to_remove), f"epoch {epoch}: removed clusters differ"
        np.testing.assert_allclose(ours.p_clean.numpy(), ref.clean_label_prob, atol=1e-3,
                                   err_msg=f"epoch {epoch}: p_clean differs")
        seen["removed"] = max(seen["removed"], len(removed))
        seen["changed"] += sum(a != b for a, b in zip(old_labels, ref.utt2label))
        seen["revived"] += len(prev_removed - removed)
        prev_removed = removed
    # the stream exercised what it is meant to: clusters removed, labels changed, votes that
    # differ from the raw argmax, and (with the longer queue) a removed cluster coming back
    assert seen["removed"] >= 10 and seen["changed"] > 100 and seen["voted_differs"] > 50, seen
    if queue_len == 5:
        assert seen["revived"] >= 1, seen
