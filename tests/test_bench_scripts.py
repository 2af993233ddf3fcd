"""The CPU benchmarks in bench/ run end to end at tiny sizes (so that they cannot rot)."""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_fbank_bench_compares_batched_and_kaldi(capsys):
    res = _load("fbank").main(["--batch", "3", "--seconds", "0.5", "--repeats", "1", "--device", "cpu"])
    assert res["batch"] == 3 and res["batched_ms"] > 0 and res["per_file_kaldi_ms"] > 0
    assert res["speedup"] == pytest.approx(res["per_file_kaldi_ms"] / res["batched_ms"])
    assert res["mean_abs_diff"] < 0.5  # the two log-Mel implementations agree after mean normalisation
    assert "ratio per-file / batched" in capsys.readouterr().out


def test_scoring_bench_small(capsys):
    _load("scoring").main(["--trials", "4000", "--utts", "60", "--dim", "8", "--speakers", "4", "--repeat", "1"])
    out = capsys.readouterr().out
    eer = float(re.search(r"eer on 4,000 trials: [\d.]+ s \(EER ([\d.]+) %\)", out).group(1))
    assert 5.0 < eer < 40.0  # scores = noise + 2 * target: EER near 16 %
    assert "all_pairs on 60 x 8" in out and "1,770 pairs" in out  # 60 * 59 / 2


def test_ssrl_epoch_end_bench_prints_share_of_epoch(capsys):
    _load("ssrl_epoch_end").main(["--sizes", "400:20", "--repeats", "1", "--demo-batch", "8", "--threads", "1"])
    out = capsys.readouterr().out
    assert "epoch_end_update (total)" in out
    share = float(re.search(r"epoch-end share of epoch\s+([\d.]+) %", out).group(1))
    assert 0.0 < share < 100.0
    assert "measured demo step" in out and "x 50 steps" in out


def test_scale_estimate_tiny(tmp_path, capsys):
    res = _load("scale_estimate").main([
        "--encoder", "micro", "--n-prototypes", "256", "--k", "32", "--emb-dim", "64", "--repeats", "1",
        "--corpus", str(tmp_path / "none"), "--loader-items", "3", "--kmeans-n", "1000", "--kmeans-k", "8",
        "--kmeans-d", "16", "--kmeans-iters-measured", "2", "--utts", "100000", "--gpus", "1,8"])
    out = capsys.readouterr().out
    m = res["measured"]
    for name in ("DINO", "SSRL"):
        assert m[name]["flops_per_sample"] > 0 and m[name]["act_bytes_per_sample_fp32"] > 0
        assert m[name]["cpu_step_s"] > 0
        one, eight = res["estimate"][name]
        assert (one["gpus"], eight["gpus"]) == (1, 8)
        assert eight["compute_s"] == pytest.approx(one["compute_s"] / 8)
        assert eight["epoch_s"] < one["epoch_s"]
        assert one["steps"] == 100000 // m[name]["paper_batch"]
    # DINO's step sees 16 s of audio per sample (student, all crops) against SSRL's 2 s student crop
    assert m["DINO"]["flops_per_sample"] > m["SSRL"]["flops_per_sample"]
    assert res["estimate"]["kmeans"]["flops"] == pytest.approx(2.0 * 100000 * 32 * 64 * 20)
    assert res["loading"]["source"] == "generated 8-s FLAC files" and res["loading"]["SSRL"] > 0
    assert "no GPU used" in out
