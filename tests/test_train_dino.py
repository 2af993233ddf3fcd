import math

import pytest
import torch

from ssrl_lab.config import ConfigError
from ssrl_lab.train.dino import DINOConfig, train
from ssrl_lab.utils.io import read_jsonl


def _cfg(corpus, run_dir, **kw):
    return DINOConfig.profile("smoke", corpus=str(corpus), run_dir=str(run_dir), device="cpu", num_workers=0,
                              eval_every=0, **kw)


def _strip(rec):
    rec = {k: v for k, v in rec.items() if not k.startswith("seconds")}
    if "eval" in rec:
        rec["eval"] = {k: v for k, v in rec["eval"].items() if k != "seconds"}
    return rec


def test_dino_smoke_run_resume_and_refusals(smoke_corpus, tmp_path):
    a = train(_cfg(smoke_corpus, tmp_path / "a"), progress=False)
    run_a = tmp_path / "a"
    for name in ("config.json", "metrics.jsonl", "checkpoint.pt", "checkpoint.prev.pt", "results.json", "scores.npz"):
        assert (run_a / name).exists(), name
    rows = read_jsonl(run_a / "metrics.jsonl")
    assert [r["epoch"] for r in rows] == [1, 2]
    for key in ("loss", "lr", "momentum", "teacher_temp", "teacher_entropy", "teacher_entropy_of_mean",
                "teacher_distinct_argmax", "seconds", "seconds_steps"):
        assert math.isfinite(rows[0][key]), key
    assert 0 < rows[1]["seconds_steps"] < rows[1]["seconds"]  # the last epoch also evaluates
    assert "eval" not in rows[0] and 0 <= rows[1]["eval"]["eer"] <= 100
    assert "eer" in rows[1]["eval_student"]
    assert rows[1]["momentum"] == pytest.approx(0.99)  # momentum schedule reaches its end
    assert a["system"] == "dino" and a["evaluated"] == "teacher" and a["eer"] == rows[1]["eval"]["eer"]

    # interrupted after epoch 1, then resumed: identical metrics and parameters
    assert train(_cfg(smoke_corpus, tmp_path / "b"), progress=False, stop_after_epoch=1) is None
    assert not (tmp_path / "b" / "results.json").exists()
    b = train(_cfg(smoke_corpus, tmp_path / "b"), resume=True, progress=False)
    rows_b = read_jsonl(tmp_path / "b" / "metrics.jsonl")
    assert [_strip(r) for r in rows_b] == [_strip(r) for r in rows]
    assert b["eer"] == a["eer"] and b["eer_all_pairs"] == a["eer_all_pairs"]
    ca = torch.load(run_a / "checkpoint.pt", weights_only=False)
    cb = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)
    for part in ("student", "teacher"):
        for k, v in ca[part].items():
            assert torch.equal(v, cb[part][k]), (part, k)
    assert torch.equal(ca["loss"]["center"], cb["loss"]["center"])

    # a finished run returns its stored results when resumed
    assert train(_cfg(smoke_corpus, tmp_path / "b"), resume=True, progress=False) == b
    # a different configuration is refused, naming the key
    with pytest.raises(ConfigError, match="lr"):
        train(_cfg(smoke_corpus, run_a, lr=0.5), progress=False)


def test_profiles_and_unknown_keys():
    vox = DINOConfig.profile("vox")
    assert (vox.n_prototypes, vox.head_hidden, vox.head_bottleneck) == (65536, 2048, 256)
    assert (vox.n_global, vox.global_s, vox.n_local, vox.local_s) == (2, 4.0, 4, 2.0)
    assert vox.encoder.channels == 1024 and vox.encoder.emb_dim == 512 and vox.momentum_schedule == "linear"
    demo = DINOConfig.profile("demo", encoder={"channels": 64}, epochs=3)
    assert demo.encoder.channels == 64 and demo.encoder.emb_dim == 192 and demo.epochs == 3
    with pytest.raises(ConfigError, match="nope"):
        DINOConfig.profile("demo", nope=1)
    with pytest.raises(ConfigError, match="profile"):
        DINOConfig.profile("huge")
    with pytest.raises(ConfigError):
        DINOConfig.profile("smoke", n_global=1, n_local=0)
