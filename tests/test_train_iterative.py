import math

import pytest

from ssrl_lab.config import ConfigError
from ssrl_lab.train import dino, iterative, random_init, supervised
from ssrl_lab.utils.io import read_jsonl


def test_two_round_iterative_supervised_and_random(smoke_corpus, tmp_path):
    common = dict(corpus=str(smoke_corpus), device="cpu", max_steps_per_epoch=2)
    dino.train(dino.DINOConfig.profile("smoke", run_dir=str(tmp_path / "dino"), epochs=1, eval_every=0, **common),
               progress=False)
    cfg = iterative.IterativeConfig.profile("smoke", run_dir=str(tmp_path / "it"), dino_run=str(tmp_path / "dino"),
                                            epochs=1, loss_gates=[50.0, 0.5], **common)
    res = iterative.train(cfg, progress=False)
    rows = read_jsonl(tmp_path / "it" / "metrics.jsonl")
    rounds = [r for r in rows if r["stage"] == "iterative"]
    assert [r["round"] for r in rounds] == [1, 2]
    for r in rounds:
        assert 0 <= r["eval"]["eer"] <= 100 and r["eval"]["eer_all_pairs"] is not None
        assert 0 < r["pseudo_labels"]["nmi"] <= 1 and r["k"] == 6
        assert r["init"] == "new" and r["evaluated"] == "student"
        assert r["seconds_cluster"] >= 0 and r["seconds_train"] > 0
    epochs = [r for r in rows if r["stage"].startswith("round")]
    assert [e["kept_fraction"] for e in epochs][0] == 1.0  # gate 50 keeps everything
    assert epochs[1]["kept_fraction"] < 1.0               # gate 0.5 drops high-loss samples
    for name in ("results.json", "results_round1.json", "results_round2.json", "scores.npz", "checkpoint.pt"):
        assert (tmp_path / "it" / name).exists(), name
    assert res["system"] == "iterative" and res["round"] == 2 and len(res["rounds"]) == 2
    assert iterative.train(cfg, resume=True, progress=False) == res

    sup = supervised.train(supervised.SupervisedConfig.profile("smoke", run_dir=str(tmp_path / "sup"), epochs=1,
                                                               **common), progress=False)
    assert sup["system"] == "supervised" and math.isfinite(sup["eer"]) and sup["n_speakers"] == 8
    rnd = random_init.train(random_init.RandomInitConfig.profile("smoke", run_dir=str(tmp_path / "rnd"),
                                                                 corpus=str(smoke_corpus), device="cpu"), progress=False)
    assert rnd["system"] == "random" and (tmp_path / "rnd" / "scores.npz").exists()


def test_iterative_config_checks():
    with pytest.raises(ConfigError, match="init"):
        iterative.IterativeConfig.profile("smoke", init="warm")
    with pytest.raises(ConfigError, match="loss_gates"):
        iterative.IterativeConfig.profile("smoke", rounds=3, loss_gates=[1.0])
    with pytest.raises(ConfigError, match="kmeans_backend"):
        iterative.IterativeConfig.profile("smoke", kmeans_backend="cuml")
    vox = iterative.IterativeConfig.profile("vox")
    assert (vox.aam_scale, vox.aam_margin, vox.init, vox.rounds) == (32.0, 0.2, "new", 5)


def test_stage1_protocol_restarts_from_dino_and_clusters_with_the_last_round(smoke_corpus, smoke_dino, tmp_path,
                                                                            monkeypatch):
    """init="stage1" (loss-gated learning's public code): every round clusters with the previous
    round's model, then trains the stage-1 (DINO) model again with a fresh head."""
    import torch

    dino_state = {k: v.clone() for k, v in dino.load_teacher_backbone(smoke_dino, "cpu").state_dict().items()}
    started, embedded = [], []
    real_fit, real_embed = iterative.fit, iterative._embed

    def spy_fit(cfg, run, model, *a, **kw):
        started.append(({k: v.clone() for k, v in model.backbone.state_dict().items()},
                        model.head.weight.detach().clone()))
        out = real_fit(cfg, run, model, *a, **kw)
        trained.append({k: v.clone() for k, v in out[0].state_dict().items()})
        return out

    def spy_embed(model, *a, **kw):
        embedded.append({k: v.clone() for k, v in model.state_dict().items()})
        return real_embed(model, *a, **kw)

    trained = []
    monkeypatch.setattr(iterative, "fit", spy_fit)
    monkeypatch.setattr(iterative, "_embed", spy_embed)
    cfg = iterative.IterativeConfig.profile("smoke", corpus=str(smoke_corpus), device="cpu", max_steps_per_epoch=2,
                                            run_dir=str(tmp_path / "it"), dino_run=str(smoke_dino), epochs=1,
                                            init="stage1")
    res = iterative.train(cfg, progress=False)
    assert res["init"] == "stage1" and res["round"] == 2
    same = lambda a, b: a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # both rounds start from the DINO backbone, not from the previous round's model
    assert len(started) == 2 and all(same(s[0], dino_state) for s in started)
    assert not same(trained[0], dino_state)
    # round 1 clusters with DINO, round 2 with round 1's trained model
    assert same(embedded[0], dino_state) and same(embedded[1], trained[0])
    # a fresh head each round (different seeds), not k-means centroids of the starting model
    assert not torch.equal(started[0][1], started[1][1])


def test_a_round_does_not_depend_on_how_many_rounds_follow(smoke_corpus, smoke_dino, tmp_path):
    """The study reads the E = 2 x 6 point from round 2 of the 5 x 6 run: round r of a longer
    run must equal round r of a shorter one with the same settings."""
    common = dict(corpus=str(smoke_corpus), device="cpu", max_steps_per_epoch=2, dino_run=str(smoke_dino), epochs=1)
    short = iterative.train(iterative.IterativeConfig.profile("smoke", run_dir=str(tmp_path / "a"), rounds=1, **common),
                            progress=False)
    iterative.train(iterative.IterativeConfig.profile("smoke", run_dir=str(tmp_path / "b"), rounds=2, **common),
                    progress=False)
    import json

    long_r1 = json.loads((tmp_path / "b" / "results_round1.json").read_text())
    for key in ("eer", "eer_all_pairs", "mindcf_0.01", "pseudo_labels"):
        assert long_r1[key] == short[key], key
