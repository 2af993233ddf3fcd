"""The dev split in evaluation: ``dev_`` metrics in evaluate(), results.json and per-epoch eval
records; a corpus without a dev split gives the same test metrics with the dev keys None."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from ssrl_lab.data.corpus import open_corpus, write_corpus_json
from ssrl_lab.eval.evaluate import DEV_KEYS, dev_cache_path, evaluate, score_embeddings
from ssrl_lab.train import dino, random_init
from ssrl_lab.train.results import RESULT_KEYS
from ssrl_lab.utils.io import read_jsonl


class MeanNet(torch.nn.Module):
    """A fixed random projection of framed audio, mean-pooled: (B, T) -> (B, 8)."""

    emb_dim = 8

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv1d(1, 8, kernel_size=400, stride=160)

    def forward(self, wave):
        return torch.relu(self.conv(wave[:, None])).mean(-1)


@pytest.fixture(scope="module")
def corpora(smoke_corpus, tmp_path_factory):
    """The smoke corpus (with its dev split) and the same corpus described without one."""
    nodev = tmp_path_factory.mktemp("nodev")
    spec = json.loads((smoke_corpus / "corpus.json").read_text())
    write_corpus_json(nodev, "synthvox-smoke-nodev", str(smoke_corpus / "train.tsv"), str(smoke_corpus / "test.tsv"),
                      str(smoke_corpus / spec["trials"]))
    return open_corpus(smoke_corpus), open_corpus(nodev), smoke_corpus, nodev


def test_evaluate_scores_the_dev_split_like_the_test_split(corpora, tmp_path):
    with_dev, without, _, _ = corpora
    assert with_dev.dev is not None and len(with_dev.dev_trials) > 0 and without.dev is None
    model = MeanNet()
    ev = evaluate(model, with_dev, max_len_s=1.5, cache_path=tmp_path / "e.npz", cache_key="k")
    ev0 = evaluate(model, without, max_len_s=1.5)
    for k in ("eer", "eer_all_pairs", "mindcf_0.01", "mindcf_0.05", "n_trials", "n_pairs"):
        assert ev[k] == ev0[k], k  # the test metrics do not depend on the dev split
    assert all(ev0[k] is None for k in DEV_KEYS)
    # the dev metrics are what the test-split evaluation gives on the dev table and trials
    as_test = dataclasses.replace(with_dev, test=with_dev.dev, trials=with_dev.dev_trials, dev=None, dev_trials=None)
    ref = evaluate(model, as_test, max_len_s=1.5)
    for k in ("eer", "eer_all_pairs", "mindcf_0.01", "mindcf_0.05", "mindcf_0.01_all_pairs", "n_trials", "n_pairs",
              "n_target"):
        assert ev[f"dev_{k}"] == ref[k], k
    assert ev["dev_n_trials"] == len(with_dev.dev_trials) and "dev_seconds" not in ev
    assert 0 <= ev["dev_eer"] <= 100 and ev["dev_n_pairs"] == len(with_dev.dev) * (len(with_dev.dev) - 1) // 2
    assert (tmp_path / "e.npz").exists() and dev_cache_path(tmp_path / "e.npz") == tmp_path / "e.dev.npz"
    assert (tmp_path / "e.dev.npz").exists()
    # trial list only (all_pairs off): dev all-pairs metrics None; no dev trial list: all pairs only
    ev_t = evaluate(model, with_dev, max_len_s=1.5, all_pairs=False)
    assert ev_t["dev_eer"] == ev["dev_eer"] and ev_t["dev_eer_all_pairs"] is None
    ev_p = evaluate(model, dataclasses.replace(with_dev, dev_trials=None), max_len_s=1.5)
    assert ev_p["dev_eer"] is None and ev_p["dev_eer_all_pairs"] == ev["dev_eer_all_pairs"]
    assert evaluate(model, dataclasses.replace(with_dev, dev_trials=None), max_len_s=1.5,
                    all_pairs=False)["dev_n_trials"] is None  # nothing to score on dev: not extracted


def test_score_embeddings_without_trials_gives_all_pairs_only():
    rng = np.random.default_rng(0)
    emb = np.repeat(rng.standard_normal((3, 4)), 4, axis=0) + 0.01 * rng.standard_normal((12, 4))
    out = score_embeddings(emb, None, np.repeat(np.arange(3), 4))
    assert out["eer"] is None and out["n_trials"] == 0 and out["eer_all_pairs"] == 0.0 and out["n_pairs"] == 66


def test_runs_record_dev_metrics_and_runs_without_dev_are_unchanged(corpora, tmp_path):
    _, _, with_dir, without_dir = corpora
    common = dict(device="cpu", seed=1)
    a = random_init.train(random_init.RandomInitConfig.profile("smoke", corpus=str(with_dir), run_dir=str(tmp_path / "a"),
                                                               **common), progress=False)
    b = random_init.train(random_init.RandomInitConfig.profile("smoke", corpus=str(without_dir),
                                                               run_dir=str(tmp_path / "b"), **common), progress=False)
    on_disk = json.loads((tmp_path / "a" / "results.json").read_text())
    assert set(RESULT_KEYS) <= set(on_disk) and 0 <= on_disk["dev_eer"] <= 100
    assert on_disk["dev_eer_all_pairs"] is not None and on_disk["dev_n_trials"] > 0
    assert read_jsonl(tmp_path / "a" / "metrics.jsonl")[0]["eval"]["dev_eer"] == on_disk["dev_eer"]
    for k in RESULT_KEYS:
        if k.startswith("dev_"):
            assert b[k] is None, k
        else:
            assert a[k] == b[k], k
    # a trainer that evaluates per epoch carries the dev metrics in the epoch's eval record
    res = dino.train(dino.DINOConfig.profile("smoke", corpus=str(with_dir), run_dir=str(tmp_path / "dino"), epochs=1,
                                             max_steps_per_epoch=2, eval_every=1, **common), progress=False)
    rec = read_jsonl(tmp_path / "dino" / "metrics.jsonl")[-1]
    assert 0 <= rec["eval"]["dev_eer"] <= 100 and rec["eval"]["dev_eer_all_pairs"] is not None
    assert res["dev_eer"] == rec["eval"]["dev_eer"] and res["dev_mindcf_0.01"] == rec["eval"]["dev_mindcf_0.01"]


def test_results_carry_speaker_bootstrap_intervals_and_scores_rescore_the_run(corpora, tmp_path):
    """results.json holds the 95 % intervals; scores.npz rescores the run to the same EERs, the
    basis of the paired comparisons."""
    from ssrl_lab.eval.metrics import verification_metrics
    from ssrl_lab.eval.saved_scores import compare_runs, load_scores

    _, _, with_dir, _ = corpora
    runs = [tmp_path / f"r{s}" for s in (1, 2)]
    for s, d in zip((1, 2), runs):
        random_init.train(random_init.RandomInitConfig.profile("smoke", corpus=str(with_dir), run_dir=str(d),
                                                               device="cpu", seed=s), progress=False)
    res = json.loads((runs[0] / "results.json").read_text())
    assert res["ci_reps"] == 1000 and res["ci_level"] == 0.95
    for k in ("eer", "mindcf_0.01", "mindcf_0.05", "eer_all_pairs", "mindcf_0.01_all_pairs", "mindcf_0.05_all_pairs"):
        lo, hi = res[f"{k}_ci"]
        assert 0 <= lo < hi, k
    for k in ("eer", "eer_all_pairs"):  # a percentile interval of the speaker bootstrap holds its point estimate
        assert res[f"{k}_ci"][0] <= res[k] <= res[f"{k}_ci"][1], k
    saved = load_scores(runs[0] / "scores.npz")
    s, tr, _ = saved.trial_list()
    assert verification_metrics(s, tr.labels)["eer"] == pytest.approx(res["eer"])
    s, tr, _ = saved.all_pairs()
    assert verification_metrics(s, tr.labels)["eer"] == pytest.approx(res["eer_all_pairs"], abs=1e-6)
    assert len(tr) == res["n_pairs"]
    c = compare_runs([runs[0] / "scores.npz"], [runs[1] / "scores.npz"], on="all_pairs", n_reps=100)
    assert c["outcome"] in ("better", "worse", "not separable") and c["ci"][0] <= c["ci"][1]
