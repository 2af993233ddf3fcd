"""Issue 8, reliability: interruption (SIGTERM / SIGINT / SIGKILL), determinism, numerical guards,
configuration range checks. Smoke profile on CPU; the CLI runs are subprocesses."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ssrl_lab.config import ConfigError
from ssrl_lab.train import dino, ssrl
from ssrl_lab.train.guards import CollapseGuard, TrainingDiverged, check_world
from ssrl_lab.train.run import read_checkpoint
from ssrl_lab.train.signals import TrainingInterrupted, interruptible
from ssrl_lab.utils.io import read_jsonl

TIMING = ("seconds",)  # wall-clock fields; everything else must match exactly


def _strip(obj):
    """Drop timing fields (``seconds*``, ``*_share``) recursively."""
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if not (k.startswith("seconds") or k.endswith("_share"))}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def _metrics(run_dir) -> list[dict]:
    return _strip(read_jsonl(Path(run_dir) / "metrics.jsonl"))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from ssrl_lab.data.synthvox import build_synthvox

    return build_synthvox(tmp_path_factory.mktemp("rel") / "corpus", "smoke", seed=0)


DINO_KW = dict(device="cpu", num_workers=0, eval_every=0, epochs=3, max_steps_per_epoch=2)


def _dino_cfg(corpus, run_dir, **kw):
    return dino.DINOConfig.profile("smoke", corpus=str(corpus), run_dir=str(run_dir), **{**DINO_KW, **kw})


@pytest.fixture(scope="module")
def dino_straight(corpus, tmp_path_factory):
    """An uninterrupted smoke DINO run (the reference every interrupted run must reproduce)."""
    run_dir = tmp_path_factory.mktemp("rel") / "dino-straight"
    res = dino.train(_dino_cfg(corpus, run_dir), progress=False)
    return run_dir, res


def _signal_at_call(monkeypatch, module, n_call: int, signum=signal.SIGTERM):
    """Make the ``n_call``-th EMA update of ``module``'s trainer send ``signum`` to this process."""
    real = module.ema_update
    calls = {"n": 0}

    def wrapped(*a, **kw):
        out = real(*a, **kw)
        calls["n"] += 1
        if calls["n"] == n_call:
            os.kill(os.getpid(), signum)
        return out

    monkeypatch.setattr(module, "ema_update", wrapped)


# -- SIGTERM / SIGINT: save at the next step boundary, resume exactly --------------------------------
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_dino_signal_mid_epoch_saves_and_resumes_exactly(corpus, dino_straight, tmp_path, monkeypatch, signum):
    ref_dir, ref = dino_straight
    run_dir = tmp_path / "dino"
    _signal_at_call(monkeypatch, dino, 3, signum)  # step 3 of 6 = epoch 2, step 1 (0-based)
    previous = signal.getsignal(signum)
    with pytest.raises(TrainingInterrupted, match=rf"{signal.Signals(signum).name} at epoch 2, step 1") as e:
        dino.train(_dino_cfg(corpus, run_dir), progress=False)
    assert e.value.exit_code == 128 + signum
    assert signal.getsignal(signum) is previous  # handlers restored
    ck = read_checkpoint(run_dir)
    assert ck["epoch"] == 1 and ck["partial"]["step"] == 1 and ck["step"] == 3
    monkeypatch.undo()
    res = dino.train(_dino_cfg(corpus, run_dir), resume=True, progress=False)
    assert _metrics(run_dir) == _metrics(ref_dir)
    assert res["eer"] == ref["eer"] and res["eer_all_pairs"] == ref["eer_all_pairs"]
    a, b = read_checkpoint(ref_dir), read_checkpoint(run_dir)
    for k, v in a["teacher"].items():
        assert torch.equal(v, b["teacher"][k]), k


SSRL_KW = dict(device="cpu", num_workers=0, eval_every=0, epochs=3, label_fixed_epochs=1, max_steps_per_epoch=3)


def _ssrl_cfg(corpus, dino_dir, run_dir, **kw):
    return ssrl.SSRLConfig.profile("smoke", corpus=str(corpus), run_dir=str(run_dir), dino_run=str(dino_dir),
                                   **{**SSRL_KW, **kw})


@pytest.fixture(scope="module")
def ssrl_straight(corpus, dino_straight, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("rel") / "ssrl-straight"
    res = ssrl.train(_ssrl_cfg(corpus, dino_straight[0], run_dir), progress=False)
    return run_dir, res


def test_ssrl_sigterm_mid_epoch_keeps_queue_labels_p_clean_and_resumes_exactly(corpus, dino_straight, ssrl_straight,
                                                                              tmp_path, monkeypatch):
    import numpy as np

    ref_dir, ref = ssrl_straight
    run_dir = tmp_path / "ssrl"
    _signal_at_call(monkeypatch, ssrl, 5)  # epoch 2, step 1 (0-based): after the first label update
    with pytest.raises(TrainingInterrupted, match="SIGTERM at epoch 2, step 2"):
        ssrl.train(_ssrl_cfg(corpus, dino_straight[0], run_dir), progress=False)
    ck = read_checkpoint(run_dir)
    assert ck["epoch"] == 1 and ck["partial"]["step"] == 2
    for key in ("queue", "labels", "p_clean", "active"):  # the SSRL label state is in the checkpoint
        assert key in ck
    assert ck["queue"]["labels"].shape[1] == 3 and ck["p_clean"].shape == ck["labels"].shape
    assert bool(ck["partial"]["visited"].any())  # what the interrupted epoch had collected
    monkeypatch.undo()
    res = ssrl.train(_ssrl_cfg(corpus, dino_straight[0], run_dir), resume=True, progress=False)
    assert _metrics(run_dir) == _metrics(ref_dir)
    assert res["eer"] == ref["eer"] and res["nmi"] == ref["nmi"]
    a, b = read_checkpoint(ref_dir), read_checkpoint(run_dir)
    assert torch.equal(a["labels"], b["labels"]) and torch.equal(a["p_clean"], b["p_clean"])
    for k, v in a["queue"].items():
        assert (torch.equal(v, b["queue"][k]) if isinstance(v, torch.Tensor) else v == b["queue"][k]), k
    ha, hb = np.load(ref_dir / "history.npz"), np.load(run_dir / "history.npz")
    for key in ("labels", "p_clean", "loss", "queue_agreement"):
        assert np.array_equal(ha[key], hb[key], equal_nan=True), key


# -- the CLI in a subprocess: SIGKILL at any moment, SIGTERM ----------------------------------------
def _cli(corpus, run_dir, resume=False, env_extra=None) -> subprocess.Popen:
    args = [sys.executable, "-m", "ssrl_lab.train.dino", "--profile", "smoke", "--corpus", str(corpus),
            "--run-dir", str(run_dir), "--quiet"] + [f"{k}={json.dumps(v)}" for k, v in DINO_KW.items()]
    if resume:
        args.append("--resume")
    # the same intra-op thread count as this process, so that float reductions match bit for bit
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads()), **(env_extra or {})}
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(pred, proc, timeout=60.0):
    t0 = time.monotonic()
    while not pred():
        assert proc.poll() is None, f"the run ended before the moment to interrupt it: {proc.communicate()[1][-2000:]}"
        assert time.monotonic() - t0 < timeout, "timed out waiting for the run"
        time.sleep(0.01)


def _finish(corpus, run_dir):
    p = _cli(corpus, run_dir, resume=True)
    out, err = p.communicate(timeout=300)
    assert p.returncode == 0, err[-3000:]
    return json.loads(out)


SLOW = {"SSRL_LAB_TEST_SLOW_CHECKPOINT": "0.6"}


def test_sigkill_after_a_checkpoint_resumes_to_the_same_metrics(corpus, dino_straight, tmp_path):
    run_dir = tmp_path / "killed"
    p = _cli(corpus, run_dir, env_extra=SLOW)
    _wait_for(lambda: (run_dir / "checkpoint.pt").exists(), p)
    p.kill()  # SIGKILL
    p.wait()
    assert p.returncode == -signal.SIGKILL and not (run_dir / "results.json").exists()
    res = _finish(corpus, run_dir)
    assert _metrics(run_dir) == _metrics(dino_straight[0])
    assert res["eer"] == dino_straight[1]["eer"]


def test_sigkill_during_a_checkpoint_write_leaves_a_torn_temp_that_is_ignored(corpus, dino_straight, tmp_path):
    run_dir = tmp_path / "torn"
    p = _cli(corpus, run_dir, env_extra=SLOW)
    # the second checkpoint write: checkpoint.pt moved to .prev, the new one half written
    _wait_for(lambda: (run_dir / "checkpoint.prev.pt").exists() and any(run_dir.glob(".checkpoint.pt.*.tmp")), p)
    p.kill()
    p.wait()
    torn = list(run_dir.glob(".checkpoint.pt.*.tmp"))
    assert torn and not (run_dir / "checkpoint.pt").exists()
    with pytest.raises(Exception):
        torch.load(torn[0], weights_only=False)
    assert read_checkpoint(run_dir)["epoch"] == 1  # the last complete checkpoint
    _finish(corpus, run_dir)
    assert not list(run_dir.glob(".*.tmp"))  # the torn temporary was cleaned up
    assert _metrics(run_dir) == _metrics(dino_straight[0])


def test_sigterm_exits_cleanly_with_a_checkpoint_then_resumes(corpus, dino_straight, tmp_path):
    run_dir = tmp_path / "term"
    p = _cli(corpus, run_dir, env_extra=SLOW)
    _wait_for(lambda: (run_dir / "checkpoint.pt").exists(), p)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 128 + signal.SIGTERM, err[-3000:]
    assert "interrupted by SIGTERM" in err and "--resume" in err
    ck = read_checkpoint(run_dir)
    assert ck is not None and not (run_dir / "results.json").exists()
    assert ck["epoch"] < 3
    _finish(corpus, run_dir)
    assert _metrics(run_dir) == _metrics(dino_straight[0])


# -- determinism --------------------------------------------------------------------------------------
def test_same_seed_gives_identical_metrics_dino(corpus, dino_straight, tmp_path):
    """A second DINO run (a fresh process) gives the same metrics.jsonl, timing fields aside."""
    p = _cli(corpus, tmp_path / "again")
    _, err = p.communicate(timeout=300)
    assert p.returncode == 0, err[-3000:]
    rows = _metrics(tmp_path / "again")
    assert len(rows) == 3 and rows == _metrics(dino_straight[0])
    assert rows[0]["loss"] > 0


def test_same_seed_gives_identical_metrics_ssrl(corpus, dino_straight, ssrl_straight, tmp_path):
    ssrl.train(_ssrl_cfg(corpus, dino_straight[0], tmp_path / "again"), progress=False)
    rows = _metrics(tmp_path / "again")
    assert [r["stage"] for r in rows] == ["kmeans", "ssrl", "ssrl", "ssrl"]
    assert rows == _metrics(ssrl_straight[0])
    # a different seed does change them (the comparison can fail)
    ssrl.train(_ssrl_cfg(corpus, dino_straight[0], tmp_path / "other", seed=1), progress=False)
    assert _metrics(tmp_path / "other") != rows


# -- numerical guards ----------------------------------------------------------------------------------
def test_nan_loss_stops_dino_and_keeps_the_last_good_checkpoint(corpus, tmp_path, monkeypatch):
    monkeypatch.setenv("SSRL_LAB_TEST_NAN_STEP", "3")  # global step 3 = epoch 2, step 1
    with pytest.raises(TrainingDiverged, match=r"DINO loss is nan at epoch 2, step 1"):
        dino.train(_dino_cfg(corpus, tmp_path / "nan"), progress=False)
    ck = read_checkpoint(tmp_path / "nan")
    assert ck["epoch"] == 1 and ck.get("partial") is None
    assert all(torch.isfinite(v).all() for v in ck["student"].values() if v.is_floating_point())
    assert not (tmp_path / "nan" / "results.json").exists()


def test_nan_loss_stops_ssrl(corpus, dino_straight, tmp_path, monkeypatch):
    monkeypatch.setenv("SSRL_LAB_TEST_NAN_STEP", "4")  # epoch 2, step 1
    with pytest.raises(TrainingDiverged, match=r"SSRL student loss is nan at epoch 2, step 1"):
        ssrl.train(_ssrl_cfg(corpus, dino_straight[0], tmp_path / "nan"), progress=False)
    assert read_checkpoint(tmp_path / "nan")["epoch"] == 1


def test_nan_loss_stops_a_classifier_trainer_with_training_diverged(corpus, tmp_path, monkeypatch):
    """The classifier trainers (supervised, iterative rounds) stop like DINO and SSRL do: TrainingDiverged
    (the CLI's exit 3), naming the epoch and step, with the last good checkpoint kept."""
    from ssrl_lab.train import supervised

    monkeypatch.setenv("SSRL_LAB_TEST_NAN_STEP", "4")  # 3 steps per epoch: epoch 2, step 1
    cfg = supervised.SupervisedConfig.profile("smoke", corpus=str(corpus), run_dir=str(tmp_path / "nan"), device="cpu",
                                              num_workers=0, eval_every=0)
    with pytest.raises(TrainingDiverged, match=r"classifier loss is nan at epoch 2, step 1 \(global step 4\)"):
        supervised.train(cfg, progress=False)
    assert read_checkpoint(tmp_path / "nan")["epoch"] == 1
    assert not (tmp_path / "nan" / "results.json").exists()


def test_nan_weights_are_never_checkpointed():
    from ssrl_lab.train.guards import check_finite_modules

    net = torch.nn.Linear(3, 2)
    check_finite_modules([net], "here")
    with torch.no_grad():
        net.bias[1] = float("inf")
    with pytest.raises(TrainingDiverged, match="here: bias holds NaN"):
        check_finite_modules([net], "here")


def test_dino_collapse_to_uniform_outputs_stops_the_run(corpus, tmp_path):
    # a huge teacher temperature makes every teacher output uniform: the guard trips after 3 steps
    cfg = _dino_cfg(corpus, tmp_path / "flat", teacher_temp=100.0, warmup_teacher_temp=100.0, collapse_patience=3)
    with pytest.raises(TrainingDiverged, match=r"DINO collapsed at epoch 2, step 0 .*uniform"):
        dino.train(cfg, progress=False)
    assert read_checkpoint(tmp_path / "flat")["epoch"] == 1
    # with the guard off the same run finishes
    res = dino.train(cfg.replace(collapse_guard=False, run_dir=str(tmp_path / "off"), epochs=1), progress=False)
    assert res["epochs"] == 1


def test_collapse_guard_modes_and_patience():
    import math

    g = CollapseGuard(n_prototypes=64, low=0.1, high=0.98, patience=3)
    assert g.reason(entropy=0.2, entropy_of_mean=3.0) is None  # sharp but spread: healthy
    assert "one prototype" in g.reason(entropy=0.01, entropy_of_mean=0.02)
    assert "uniform" in g.reason(entropy=0.99 * math.log(64), entropy_of_mean=math.log(64))
    g.update(0.01, 0.02, 0, 0)
    g.update(0.01, 0.02, 0, 1)
    g.update(0.2, 3.0, 0, 2)  # a healthy step resets the count (the early-epoch dip is transient)
    g.update(0.01, 0.02, 0, 3)
    g.update(0.01, 0.02, 0, 4)
    with pytest.raises(TrainingDiverged, match="epoch 1, step 5 .3 steps in a row.: one prototype"):
        g.update(0.01, 0.02, 0, 5)


# -- configuration range checks ------------------------------------------------------------------------
@pytest.mark.parametrize("cls,kw,match", [
    (ssrl.SSRLConfig, {"k": 1}, "k must be >= 2"),
    (ssrl.SSRLConfig, {"queue_len": 0}, "queue_len must be >= 1"),
    (dino.DINOConfig, {"augment": {"snr_noise": [20.0, 0.0]}}, "snr_noise: low 20.0 dB is above high 0.0 dB"),
    (dino.DINOConfig, {"collapse_high": 1.5}, "collapse_high"),
    (dino.DINOConfig, {"n_prototypes": 1}, "n_prototypes must be >= 2"),
])
def test_out_of_range_configuration_is_refused(cls, kw, match):
    with pytest.raises(ConfigError, match=match):
        cls.profile("smoke", **kw)


def test_more_processes_than_utterances_is_refused():
    check_world(8, 8)
    with pytest.raises(ConfigError, match=r"world size 9 \(processes / GPUs\) is larger than the number of "
                                          r"training utterances \(8\)"):
        check_world(8, 9)


def test_interruptible_outside_the_main_thread_installs_nothing():
    import threading

    seen = {}

    def worker():
        with interruptible() as stop:
            seen["requested"] = stop.requested()
            seen["handler"] = signal.getsignal(signal.SIGTERM)

    before = signal.getsignal(signal.SIGTERM)
    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen == {"requested": False, "handler": before}


def test_classifier_trainers_stop_at_a_step_boundary_and_resume_exactly(corpus, tmp_path, monkeypatch):
    """supervised (and iterative, through the same ``fit``): SIGINT mid-epoch, then an exact resume."""
    from ssrl_lab.train import classifier, supervised

    def cfg(d):
        return supervised.SupervisedConfig.profile("smoke", corpus=str(corpus), run_dir=str(d), device="cpu",
                                                   num_workers=0, eval_every=0)

    ref = supervised.train(cfg(tmp_path / "ref"), progress=False)
    real, calls = classifier.classifier_step, {"n": 0}

    def step(*a, **kw):
        out = real(*a, **kw)
        calls["n"] += 1
        if calls["n"] == 4:  # epoch 2, step 0
            os.kill(os.getpid(), signal.SIGINT)
        return out

    monkeypatch.setattr(classifier, "classifier_step", step)
    with pytest.raises(TrainingInterrupted, match="SIGINT at epoch 2, step 1"):
        supervised.train(cfg(tmp_path / "int"), progress=False)
    ck = read_checkpoint(tmp_path / "int")
    assert ck["epoch"] == 1 and ck["partial"]["step"] == 1
    monkeypatch.undo()
    res = supervised.train(cfg(tmp_path / "int"), resume=True, progress=False)
    assert _metrics(tmp_path / "int") == _metrics(tmp_path / "ref")
    assert res["eer"] == ref["eer"]


def test_notebook_parameter_of_the_wrong_type_is_refused_by_name():
    from ssrl_lab.notebook_params import ParameterError, check_type

    assert check_type("epochs", 3, int) == 3 and check_type("lr", 1, float) == 1
    with pytest.raises(ParameterError, match=r"parameter epochs='10' has type str; expected int"):
        check_type("epochs", "10", int)
    with pytest.raises(ParameterError, match=r"parameter resume=1 has type int; expected bool"):
        check_type("resume", 1, bool, optional=False)
