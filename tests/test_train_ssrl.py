import math

import numpy as np
import pytest
import torch

from ssrl_lab.config import ConfigError
from ssrl_lab.data.corpus import open_corpus
from ssrl_lab.train.ssrl import SSRLConfig, lr_schedule, train
from ssrl_lab.utils.io import read_jsonl


def _cfg(corpus, dino, run_dir, **kw):
    return SSRLConfig.profile("smoke", corpus=str(corpus), run_dir=str(run_dir), dino_run=str(dino), device="cpu", **kw)


def _strip(rec):
    out = {}
    for k, v in rec.items():
        if k.startswith("seconds") or k in ("epoch_end_share", "teacher_share"):
            continue
        out[k] = _strip(v) if isinstance(v, dict) else v
    return out


def test_smoke_run_writes_everything_and_resumes_identically(smoke_corpus, smoke_dino, tmp_path):
    a = train(_cfg(smoke_corpus, smoke_dino, tmp_path / "a"), progress=False)
    run_a = tmp_path / "a"
    for name in ("config.json", "metrics.jsonl", "checkpoint.pt", "results.json", "scores.npz", "history.npz",
                 "embeddings/dino_train.npz"):
        assert (run_a / name).exists(), name
    rows = read_jsonl(run_a / "metrics.jsonl")
    assert [(r["stage"], r["epoch"]) for r in rows] == [("kmeans", 0), ("ssrl", 1), ("ssrl", 2)]
    km, e1, e2 = rows
    assert 0 < km["nmi"] <= 1 and km["n_clusters"] <= 16
    for key in ("loss", "teacher_loss", "lr", "momentum", "label_change_rate", "queue_agreement", "frac_clean",
                "nmi", "purity", "inverse_purity", "accuracy", "seconds", "seconds_epoch_end", "epoch_end_share",
                "teacher_share"):
        assert math.isfinite(e1[key]) and math.isfinite(e2[key]), key
    assert e1["label_change_rate"] == 0.0 and e1["nmi"] == km["nmi"]  # epoch 1 keeps the k-means labels
    assert e1["gmm"]["means"][0] < e1["gmm"]["means"][1] and 0 < e1["teacher_share"] < 1
    assert set(e2["clean_split"]) >= {"precision_noisy", "recall_noisy", "label_accuracy"}
    for e in (e1, e2):  # collecting epochs: p_clean's reliability curve over every training utterance
        rel = e["reliability"]
        assert sum(rel["n"]) == len(open_corpus(smoke_corpus).train)
        assert len(rel["n"]) == len(rel["share_right"]) == len(rel["edges"]) - 1 and 0 <= rel["ece"] <= 1
    assert e2["momentum"] == pytest.approx(0.95) and "eval" not in e1 and "eval" in e2
    assert 0 <= e2["eval"]["eer"] <= 100 and 0 <= e2["eval_student"]["eer"] <= 100
    counts = [r["n_clusters"] for r in rows]
    assert counts == sorted(counts, reverse=True)  # the cluster count never rises
    assert a["system"] == "ssrl" and a["evaluated"] == "teacher" and a["eer"] == e2["eval"]["eer"]
    assert a["eval_student"]["eer"] == e2["eval_student"]["eer"] and a["n_true_speakers"] == 8
    h = np.load(run_a / "history.npz")
    assert h["labels"].shape == (2, 48) and h["p_clean"].shape == (2, 48) and h["gmm"].shape == (2, 3, 2)
    ck = torch.load(run_a / "checkpoint.pt", weights_only=False)
    assert torch.equal(ck["labels"], torch.as_tensor(h["labels"][-1]).long())
    assert int(ck["active"].sum()) == e2["n_clusters"] == len(np.unique(h["labels"][-1]))
    assert ck["queue"]["filled"] == 3  # 1 seed copy + 2 pushes (collecting from epoch 1)

    # 1 epoch, stop, resume 1 epoch: identical metrics, parameters, queue, labels, p_clean
    assert train(_cfg(smoke_corpus, smoke_dino, tmp_path / "b"), progress=False, stop_after_epoch=1) is None
    assert not (tmp_path / "b" / "results.json").exists()
    b = train(_cfg(smoke_corpus, smoke_dino, tmp_path / "b"), resume=True, progress=False)
    assert [_strip(r) for r in read_jsonl(tmp_path / "b" / "metrics.jsonl")] == [_strip(r) for r in rows]
    assert b["eer"] == a["eer"] and b["eer_all_pairs"] == a["eer_all_pairs"]
    cb = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)
    for part in ("student", "teacher"):
        for k, v in ck[part].items():
            assert torch.equal(v, cb[part][k]), (part, k)
    for k in ("labels", "p_clean", "active"):
        assert torch.equal(ck[k], cb[k]), k
    assert torch.equal(ck["queue"]["labels"], cb["queue"]["labels"])
    hb = np.load(tmp_path / "b" / "history.npz")
    assert np.array_equal(hb["labels"], h["labels"]) and np.array_equal(hb["loss"], h["loss"], equal_nan=True)
    assert train(_cfg(smoke_corpus, smoke_dino, tmp_path / "b"), resume=True, progress=False) == b


@pytest.mark.parametrize("kw", [
    dict(queue_len=1, noise_model="gate", gate_threshold=2.0, use_sinkhorn=True),
    dict(noise_model="none", tie_break="recent", teacher_margin=False, label_fixed_epochs=0),
])
def test_ablation_switches_run(smoke_corpus, smoke_dino, tmp_path, kw):
    res = train(_cfg(smoke_corpus, smoke_dino, tmp_path / "r", max_steps_per_epoch=3, **kw), progress=False)
    rows = [r for r in read_jsonl(tmp_path / "r" / "metrics.jsonl") if r["stage"] == "ssrl"]
    assert len(rows) == kw.get("epochs", 2) and res["system"] == "ssrl" and math.isfinite(res["eer"])
    counts = [r["n_clusters"] for r in rows]
    assert counts == sorted(counts, reverse=True)
    if kw["noise_model"] == "gate":
        assert all(w in (0.0, 1.0) for w in np.unique(np.load(tmp_path / "r" / "history.npz")["p_clean"][-1]))
        assert rows[0]["gmm"] is None and rows[0]["visited"] == pytest.approx(24 / 48)  # 3 steps of 8
    if kw["noise_model"] == "none":
        assert all(r["frac_clean"] == 1.0 and r["mean_weight"] == 1.0 for r in rows)
        assert all(r["updating_labels"] for r in rows)  # label_fixed_epochs=0: labels may move from epoch 1


def test_config_profiles_and_validation():
    vox = SSRLConfig.profile("vox")
    assert (vox.k, vox.queue_len, vox.seed_copies, vox.label_fixed_epochs, vox.epochs) == (8000, 5, 2, 5, 105)
    assert vox.collect_start == 2 and vox.tie_break == "oldest" and vox.noise_model == "gmm"
    assert (vox.lr_fixed, vox.lr_update, vox.lr_final, vox.weight_decay) == (1e-4, 5e-4, 1e-5, 5e-5)
    assert (vox.ema_start, vox.ema_end, vox.ema_schedule, vox.batch_size) == (0.999, 0.9999, "linear", 480)
    assert (vox.student_s, vox.teacher_s, vox.aam_scale, vox.aam_margin) == (2.0, 6.0, 32.0, 0.2)
    demo = SSRLConfig.profile("demo")
    # K = 1.33x the 200 speakers, chosen on dev (tests/test_study.py checks it against the archive)
    assert demo.k == 266 and demo.collect_start == 0 and demo.teacher_s > demo.student_s
    assert SSRLConfig.profile("demo", queue_len=1).seed_copies == 1
    lr = lr_schedule(vox.replace(epochs=10, label_fixed_epochs=5), 4)
    assert lr[0] == pytest.approx(1e-4) and lr[19] == pytest.approx(1e-5) and lr[20] == pytest.approx(5e-4)
    assert lr[39] == pytest.approx(1e-5)
    for bad in (dict(k=1), dict(queue_len=0), dict(queue_len=3, queue_seed_copies=4), dict(noise_model="bayes"),
                dict(noise_model="gate"), dict(tie_break="newest"), dict(collect_start_epoch=7),
                dict(label_fixed_epochs=200), dict(ema_end=1.5), dict(kmeans_backend="gpu")):
        with pytest.raises(ConfigError):
            SSRLConfig.profile("vox", **bad)
    with pytest.raises(ConfigError, match="nope"):
        SSRLConfig.profile("smoke", nope=1)
