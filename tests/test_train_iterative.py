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
