import json

import pytest
import torch

from ssrl_lab.config import ConfigError
from ssrl_lab.train.cli import parse_overrides
from ssrl_lab.train.run import RunDir, config_diff


def test_new_run_dir_writes_config_and_layout(tmp_path):
    run = RunDir(tmp_path / "r", {"lr": 0.1, "encoder": {"channels": 32}})
    assert json.loads((tmp_path / "r" / "config.json").read_text()) == {"lr": 0.1, "encoder": {"channels": 32}}
    assert (tmp_path / "r" / "embeddings").is_dir() and (tmp_path / "r" / "plots").is_dir()
    run.log_metrics({"epoch": 1, "loss": 2.0})
    run.log_metrics({"epoch": 2, "loss": 1.5})
    assert [r["loss"] for r in run.read_metrics()] == [2.0, 1.5]


def test_different_config_is_refused_naming_keys(tmp_path):
    RunDir(tmp_path, {"lr": 0.1, "encoder": {"channels": 32, "emb_dim": 64}, "run_dir": "a"})
    with pytest.raises(ConfigError) as e:
        RunDir(tmp_path, {"lr": 0.2, "encoder": {"channels": 64, "emb_dim": 64}, "run_dir": "b"})
    msg = str(e.value)
    assert "encoder.channels" in msg and "lr" in msg and "emb_dim" not in msg and "run_dir" not in msg
    # resuming accepts it (and records the new config)
    RunDir(tmp_path, {"lr": 0.2, "encoder": {"channels": 64, "emb_dim": 64}}, resume=True)
    assert json.loads((tmp_path / "config.json").read_text())["lr"] == 0.2


def test_existing_run_without_resume_is_refused(tmp_path):
    run = RunDir(tmp_path, {"lr": 0.1})
    run.save_checkpoint({"epoch": 1})
    with pytest.raises(ConfigError, match="resume"):
        RunDir(tmp_path, {"lr": 0.1})


def test_checkpoint_keeps_previous_and_survives_a_torn_write(tmp_path):
    run = RunDir(tmp_path, {"x": 1})
    run.log_metrics({"epoch": 1})
    run.save_checkpoint({"epoch": 1, "w": torch.ones(2)})
    run.log_metrics({"epoch": 2})
    run.save_checkpoint({"epoch": 2, "w": torch.zeros(2)})
    assert run.load_checkpoint()["epoch"] == 2
    assert run.load_checkpoint()["n_metrics"] == 2
    assert torch.load(tmp_path / "checkpoint.prev.pt", weights_only=False)["epoch"] == 1
    (tmp_path / "checkpoint.pt").write_bytes(b"torn")
    assert run.load_checkpoint()["epoch"] == 1
    run.log_metrics({"epoch": 3})
    run.truncate_metrics(1)
    assert run.read_metrics() == [{"epoch": 1}]


def test_config_diff_and_overrides():
    assert config_diff({"a": {"b": 1}, "c": 2}, {"a": {"b": 2}, "c": 2, "d": 0}) == ["a.b", "d"]
    o = parse_overrides(["encoder.channels=64", "lr=1e-3", "amp=off", "crops=[1, 2]", "flag=true", "name=\"x\""])
    assert o == {"encoder": {"channels": 64}, "lr": 1e-3, "amp": "off", "crops": [1, 2], "flag": True, "name": "x"}
    with pytest.raises(ConfigError):
        parse_overrides(["novalue"])
