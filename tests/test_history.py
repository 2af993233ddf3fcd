"""EpochHistory save/load, subsets, aggregates; clean_split_quality on a constructed case."""
import numpy as np
import pytest
import torch

from ssrl_lab.labels.history import (
    EpochHistory,
    clean_split_quality,
    load_history,
    majority_true_label,
    p_clean_reliability,
)
from ssrl_lab.labels.noise import fit_clean_posterior


def test_majority_true_label():
    pseudo = torch.tensor([0, 0, 0, 1, 1, 2, 2, 7, 7])
    true = torch.tensor([5, 5, 3, 4, 9, 8, -1, -1, -1])
    # cluster 0 -> 5; cluster 1 ties 4/9 -> 4 (smallest); cluster 2 -> 8; cluster 7 unknown -> -1
    assert majority_true_label(pseudo, true).tolist() == [5, 5, 5, 4, 4, 8, 8, -1, -1]


def test_clean_split_quality_constructed_case():
    # cluster 0: speakers [1,1,1,2] (row 3 wrong); cluster 1: [3,3,4,4,4] (rows 4,5 wrong)
    pseudo = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    true = torch.tensor([1, 1, 1, 2, 3, 3, 4, 4, 4, -1])
    # predicted noisy (p <= 0.5): rows 0, 3, 4 -> hits 3 and 4; misses 5
    p = torch.tensor([0.2, 0.9, 0.8, 0.1, 0.5, 0.7, 0.9, 0.6, 0.95, 0.0])
    q = clean_split_quality(p, pseudo, true)
    assert q["n"] == 9 and q["n_wrong"] == 3 and q["n_pred_noisy"] == 3
    assert q["precision_noisy"] == pytest.approx(2 / 3)
    assert q["recall_noisy"] == pytest.approx(2 / 3)
    assert q["f1_noisy"] == pytest.approx(2 / 3)
    assert q["precision_clean"] == pytest.approx(5 / 6)  # predicted clean: 1,2,5,6,7,8; row 5 wrong
    assert q["recall_clean"] == pytest.approx(5 / 6)   # right rows: 0,1,2,6,7,8; row 0 missed
    assert q["label_accuracy"] == pytest.approx(6 / 9)
    # no predicted noisy at all: undefined precision reported as 0
    q0 = clean_split_quality(torch.ones(10), pseudo, true)
    assert q0["precision_noisy"] == 0.0 and q0["recall_noisy"] == 0.0 and q0["recall_clean"] == 1.0


def test_p_clean_reliability_constructed_case():
    # the constructed case above: right rows 0, 1, 2, 6, 7, 8; wrong 3, 4, 5; row 9 unknown (left out)
    pseudo = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    true = torch.tensor([1, 1, 1, 2, 3, 3, 4, 4, 4, -1])
    p = torch.tensor([0.2, 0.9, 0.8, 0.1, 0.5, 0.7, 0.9, 0.6, 1.0, 0.0])
    r = p_clean_reliability(p, pseudo, true, n_bins=2)
    assert r["edges"] == [0.0, 0.5, 1.0]
    # bin [0, 0.5): rows 0 (right), 3 (wrong); bin [0.5, 1]: rows 1, 2, 6, 7, 8 right, 4, 5 wrong (1.0 in the last bin)
    assert r["n"] == [2, 7]
    assert r["mean_p"] == pytest.approx([0.15, (0.9 + 0.8 + 0.5 + 0.7 + 0.9 + 0.6 + 1.0) / 7])
    assert r["share_right"] == pytest.approx([0.5, 5 / 7])
    assert r["ece"] == pytest.approx((2 * abs(0.5 - 0.15) + 7 * abs(5 / 7 - 5.4 / 7)) / 9)
    # calibrated by construction: in each bin the share right equals the mean p
    r10 = p_clean_reliability(torch.tensor([0.25, 0.25, 0.25, 0.25]), torch.tensor([0, 0, 0, 0]),
    torch.tensor([1, 2, 3, 3]), n_bins=4)
    assert r10["n"] == [0, 4, 0, 0] and r10["mean_p"][0] is None and r10["ece"] == pytest.approx(0.25)
    assert r10["share_right"][1] == pytest.approx(0.5)  # cluster 0's majority is speaker 3: 2 of 4 right
    with pytest.raises(ValueError, match="NaN is not a probability"):
        p_clean_reliability(torch.tensor([float("nan")]), torch.tensor([0]), torch.tensor([0]))
    with pytest.raises(ValueError, match="equal 1-D shapes"):
        p_clean_reliability(torch.ones(3), torch.zeros(2, dtype=torch.long), torch.zeros(3, dtype=torch.long))


def _epoch_data(n, k, e, g):
    labels = torch.randint(0, k, (n,), generator=g)
    loss = torch.rand(n, generator=g) * 3 + 0.01
    p, fit = fit_clean_posterior(loss)
    agr = torch.randint(1, 6, (n,), generator=g).float() / 5
    return labels, p, loss, agr, fit


def test_history_round_trip(tmp_path):
    g = torch.Generator().manual_seed(0)
    n, k = 300, 12
    true = torch.randint(-1, 8, (n,), generator=g)
    ids = [f"id{i // 10:03d}/v/{i:05d}.wav" for i in range(n)]
    h = EpochHistory(n, true=true, utt_id=ids)
    recs = []
    for e in range(3):
        recs.append(_epoch_data(n, k, e, g))
        agg = h.append(e + 5, *recs[-1])
        assert agg["n_clusters"] == float(torch.unique(recs[-1][0]).numel())
        assert 0 <= agg["f1_noisy"] <= 1
    assert agg["change_rate"] == pytest.approx(float((recs[1][0] != recs[2][0]).float().mean()))
    path = h.save(tmp_path / "run" / "history.npz")
    d = load_history(path)
    assert d["labels"].shape == (3, n) and d["labels"].dtype == np.int32
    assert d["p_clean"].dtype == np.float16 and d["queue_agreement"].dtype == np.float16
    assert d["loss"].dtype == np.float32 and d["gmm"].shape == (3, 3, 2) and d["clip"].shape == (3, 2)
    assert d["epoch"].tolist() == [5, 6, 7]
    assert d["true"].tolist() == true.tolist() and d["utt_id"].tolist() == ids
    assert np.array_equal(d["labels"][1], recs[1][0].numpy())
    assert np.allclose(d["p_clean"][2], recs[2][1].numpy(), atol=1e-3)
    assert np.array_equal(d["loss"][0], recs[0][2].numpy())
    assert np.allclose(d["gmm"][0, 1], recs[0][4].means, atol=1e-5)
    assert d["agg_change_rate"][0] == 0.0 and d["agg_n_clusters"].shape == (3,)
    # resume: load, truncate to 2 epochs, append again
    h2 = EpochHistory.load(path)
    h2.truncate(2)
    h2.append(7, *recs[2])
    d2 = h2.arrays()
    for key in ("labels", "p_clean", "loss", "queue_agreement", "gmm", "epoch", "agg_change_rate"):
        assert np.array_equal(d2[key], d[key], equal_nan=d2[key].dtype.kind == "f"), key


def test_history_subset_keeps_aggregates_over_all(tmp_path):
    g = torch.Generator().manual_seed(1)
    n = 1000
    h = EpochHistory(n, utterance_subset=100, seed=3)
    assert h.subset_size == 100 and np.all(np.diff(h.index) > 0)
    labels, p, loss, agr, fit = _epoch_data(n, 50, 0, g)
    agg = h.append(0, labels, p, loss, agr, fit)
    assert agg["n_clusters"] == float(torch.unique(labels).numel())  # over all 1000 rows
    assert agg["mean_loss"] == pytest.approx(float(loss.mean()), rel=1e-6)
    d = load_history(h.save(tmp_path / "h.npz"))
    assert d["labels"].shape == (1, 100) and int(d["n_total"]) == n
    assert np.array_equal(d["labels"][0], labels.numpy()[d["index"]])
    assert d["utt_id"].tolist() == [str(i) for i in d["index"]]
    assert np.isnan(d["agg_f1_noisy"][0])  # no true labels
    # the automatic rule: full history up to max_utterances
    assert EpochHistory(500, max_utterances=400).subset_size == 400
    assert EpochHistory(500).subset_size == 500
    with pytest.raises(ValueError, match="shape"):
        h.append(1, labels[:10], p, loss, agr)
