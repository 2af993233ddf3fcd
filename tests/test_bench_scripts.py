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


def test_bootstrap_bench_fast_path_equals_the_dense_reference(capsys):
    rows = _load("bootstrap").main(["--reps", "20", "--dense-reps", "5", "--speakers", "6", "--per-speaker", "5",
                                    "--trials", "300"])
    assert [r["on"] for r in rows] == ["trials", "all_pairs"] and rows[1]["n"] == 30 * 29 // 2
    assert all(r["max_abs_diff"] < 1e-9 and r["seconds"] > 0 for r in rows)
    assert "share of budget" in capsys.readouterr().out


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
    assert "GPU rates are arguments: measured on one H100 by default" in out


def test_kmeans_bench_runs_faiss_for_its_own_iterations(capsys):
    _load("kmeans").main(["--n", "3000", "--k", "20", "--d", "16", "--iters", "8", "--faiss-iters", "2",
                          "--backends", "torch,faiss", "--device", "cpu", "--threads", "1", "--noise", "0.3"])
    out = capsys.readouterr().out
    rows = {m.group(1): m.group(2).split() for m in re.finditer(r"^(torch|faiss)\s+(.*)$", out, re.M)}
    assert int(rows["faiss"][6]) == 2 and 1 <= int(rows["torch"][6]) <= 8  # iterations column
    assert float(rows["faiss"][-1]) == pytest.approx(1.0)  # the per-iteration ratio column
    assert float(rows["torch"][3]) > 0.9  # NMI against the planted clusters


def test_gpu_step_bench_on_cpu(tmp_path):
    rows = _load("gpu_step").main(["--device", "cpu", "--encoder", "micro", "--n-prototypes", "64", "--k", "8",
                                   "--dino-batches", "2", "--ssrl-batches", "2,3", "--steps", "1", "--warmup", "1",
                                   "--amp", "off", "--json", str(tmp_path / "s.json")])
    assert [(r["method"], r["batch"]) for r in rows] == [("DINO", 2), ("SSRL", 2), ("SSRL", 3)]
    for r in rows:
        assert not r["oom"] and r["step_s"] > 0 and r["utts_per_s"] == pytest.approx(r["batch"] / r["step_s"])
        assert 0 < r["teacher_share"] < 1.5  # timed separately: a share, not a part of the same clock
        assert r["tflops"] == pytest.approx(r["gflop_per_utt"] * r["batch"] / r["step_s"] / 1e3)
    assert (tmp_path / "s.json").exists()


def test_embed_throughput_bench_on_cpu(tmp_path):
    rows = _load("embed_throughput").main(["--device", "cpu", "--n", "10", "--min-s", "1.0", "--max-s", "3.5",
                                           "--presets", "micro", "--batch", "4", "--chunk-s", "1.0", "--workers", "0",
                                           "--repeats", "1", "--dir", str(tmp_path)])
    (r,) = rows
    assert r["preset"] == "micro" and r["utts"] == 10 and r["utts_per_s"] > 0
    assert 10 <= r["chunks"] <= 40 and r["encoder_chunks_per_s"] > 0
    assert list(tmp_path.iterdir()) == []  # the generated files are removed


def test_train_throughput_bench_runs_the_real_trainers(tmp_path):
    res = _load("train_throughput").main(["--device", "cpu", "--encoder", "micro", "--speakers", "6", "--utts", "6",
                                          "--dino-batch", "4", "--ssrl-batch", "4", "--k", "6", "--steps", "2",
                                          "--workers", "0", "--prototypes", "64", "--dir", str(tmp_path)])
    assert res["corpus"]["train_utts"] == 36
    assert res["dino"]["steps"] == 2 and res["dino"]["utts_per_s"] > 0
    eps = res["ssrl"]["epochs"]
    # one label-fixed epoch: as in the authors' script (is_update = epoch + 1 >= label_fixed_epochs),
    # it already trains against voted targets, and its end updates the labels
    assert [e["epoch"] for e in eps] == [1, 2] and [e["updating_labels"] for e in eps] == [True, True]
    assert all(e["steps"] == 2 and 0 < e["teacher_share"] < 1 for e in eps)
    assert list(tmp_path.iterdir()) == []  # corpus and runs lived in a temporary folder


@pytest.mark.slow
def test_tracking_bench_times_the_three_modes(smoke_corpus, tmp_path):
    res = _load("tracking").main(["--corpus", str(smoke_corpus), "--epochs", "1", "--repeats", "1",
                                  "--dir", str(tmp_path)])
    assert set(res) == {"none", "tensorboard", "mlflow"}
    assert res["none"]["log_s_per_epoch"] == 0 and res["none"]["open_s"] == 0
    for mode in ("tensorboard", "mlflow"):
        assert res[mode]["open_s"] > 0 and res[mode]["finish_s"] > 0 and res[mode]["epoch_s"] > 0
    assert list(tmp_path.iterdir()) == []  # the runs and the MLflow store lived in a temporary folder
