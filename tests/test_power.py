"""The minimal detectable difference (ssrl_lab.eval.power) on synthetic scores whose truth is known.

Two systems embed the same utterances of a speaker population: a speaker centre plus that
utterance's noise, scaled per speaker (some voices are harder, so trials cluster by speaker) and
per system (B's noise is smaller, so B is better by a known margin). Independent test sets drawn
from the population give the true spread of the paired EER difference; the bootstrap predicts
it from a single test set, and the predicted power must match how often the difference is seen.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from ssrl_lab.eval.bootstrap import TrialSpeakers
from ssrl_lab.eval.metrics import eer
from ssrl_lab.eval.power import detectable_difference, detectable_difference_runs, power_at, z_sum
from ssrl_lab.eval.scoring import all_pairs

SIGMA_A, SIGMA_B = 0.9, 0.84
#: how much of an utterance's noise the two systems share (the rest is each system's own)
SHARED = 0.6


def _test_set(rng, n_spk, n_utt=8, dim=24, seeds=1, seed_noise=0.0):
    """All-pairs scores of systems A and B (``seeds`` runs each) on one test set of ``n_spk``
    speakers drawn from the population, and its trial speakers."""
    centres = rng.normal(size=(n_spk, dim))
    hard = rng.lognormal(0.0, 0.35, size=n_spk)  # per-speaker difficulty: speaker-clustered errors
    spk = np.repeat(np.arange(n_spk), n_utt)
    z = rng.normal(size=(spk.size, dim))
    out = {}
    for name, sigma in (("a", SIGMA_A), ("b", SIGMA_B)):
        own = rng.normal(size=(spk.size, dim))
        runs = []
        for _ in range(seeds):
            jitter = seed_noise * rng.normal(size=(spk.size, dim))  # what another training seed changes
            noise = SHARED * z + math.sqrt(1 - SHARED ** 2) * own + jitter
            emb = centres[spk] + sigma * hard[spk, None] * noise
            s, lab, i, j = all_pairs(emb, spk, return_pairs=True)
            runs.append(s.astype(np.float64))
        out[name] = runs
    tr = TrialSpeakers.from_rows(i, j, spk, lab)
    return out["a"], out["b"], tr


@pytest.fixture(scope="module")
def monte_carlo():
    """The paired EER difference A - B on 150 independent 30-speaker test sets."""
    rng = np.random.default_rng(7)
    diffs = []
    for _ in range(150):
        a, b, tr = _test_set(rng, 30)
        diffs.append(100 * (eer(a[0], tr.labels) - eer(b[0], tr.labels)))
    return np.asarray(diffs)


def test_z_and_power_formula():
    assert z_sum() == pytest.approx(1.95996 + 0.84162, abs=1e-4)
    assert power_at(z_sum(), 1.0) == pytest.approx(0.8, abs=1e-3)  # a true difference of one MDD: 80 %
    assert power_at(0.0, 1.0) == pytest.approx(0.05, abs=1e-3)
    with pytest.raises(ValueError):
        z_sum(alpha=0)


def test_bootstrap_se_matches_the_spread_over_independent_test_sets(monte_carlo):
    true_sd = float(np.std(monte_carlo, ddof=1))
    assert monte_carlo.mean() > 0.5 and true_sd > 0.3  # B is better, and 30 speakers leave real doubt
    rng = np.random.default_rng(11)
    same, larger, wrong = [], [], []
    for _ in range(3):
        a, b, tr = _test_set(rng, 30)
        same.append(detectable_difference(a, b, tr, n_reps=300, seed_sd=0.0)["se_speakers"])
        a, b, tr = _test_set(rng, 120)
        r = detectable_difference(a, b, tr, n_speakers=30, n_reps=300, seed_sd=0.0)  # m-out-of-n: 30 of 120
        assert r["n_speakers_observed"] == 120 and not r["extrapolated"]
        larger.append(r["se_speakers"])
        wrong.append(detectable_difference(a, b, tr, n_reps=300, seed_sd=0.0)["se_speakers"])  # 120 speakers
    for name, est in (("30 of 30", same), ("30 of 120", larger)):
        ratio = float(np.mean(est)) / true_sd
        assert 0.7 < ratio < 1.4, f"{name}: predicted SE {np.mean(est):.3f} against {true_sd:.3f} measured"
    # the instrument can fail: the 120-speaker SE is about half the 30-speaker one (1 / sqrt(4))
    assert 0.35 < float(np.mean(wrong)) / true_sd < 0.65


def test_predicted_power_matches_how_often_the_difference_is_detected(monte_carlo):
    rng = np.random.default_rng(5)
    a, b, tr = _test_set(rng, 120)
    r = detectable_difference(a, b, tr, n_speakers=30, n_reps=400, seed_sd=0.0)
    true_diff = float(monte_carlo.mean())
    predicted = power_at(true_diff, r["se"])
    detected = float(np.mean(np.abs(monte_carlo) > 1.959964 * r["se"]))
    assert 0.15 < predicted < 0.95  # a comparison near the edge of what 30 speakers resolve
    assert abs(detected - predicted) < 0.15, f"detected in {detected:.2f} of test sets, predicted {predicted:.2f}"
    assert r["mdd"] == pytest.approx(z_sum() * r["se"])


def test_seeds_add_their_variance_and_more_seeds_shrink_it():
    rng = np.random.default_rng(3)
    a, b, tr = _test_set(rng, 20, seeds=3, seed_noise=0.3)
    r3 = detectable_difference(a, b, tr, n_reps=200)
    assert r3["n_seeds"] == 3 and r3["seed_sd_a"] > 0 and r3["seed_sd_b"] > 0
    assert r3["se"] == pytest.approx(math.sqrt(r3["se_speakers"] ** 2 + (r3["seed_sd_a"] ** 2 + r3["seed_sd_b"] ** 2) / 3))
    r12 = detectable_difference(a, b, tr, n_seeds=12, n_reps=200)
    assert r12["se_seeds"] == pytest.approx(r3["se_seeds"] / 2)
    assert r12["mdd"] < r3["mdd"]
    one = detectable_difference(a[:1], b[:1], tr, n_reps=200)  # one seed each: the seed term is unknown
    assert one["mdd"] is None and one["se"] is None and one["mdd_speakers_only"] > 0
    big = detectable_difference(a, b, tr, n_speakers=80, n_reps=200)
    assert big["extrapolated"] and big["se_speakers"] < r3["se_speakers"]


def test_bad_input_is_refused(tmp_path):
    rng = np.random.default_rng(0)
    a, b, tr = _test_set(rng, 6)
    with pytest.raises(ValueError, match="at least one run"):
        detectable_difference([], b, tr)
    with pytest.raises(ValueError, match="metric"):
        detectable_difference(a, b, tr, metric="auc")
    with pytest.raises(ValueError, match="n_draws"):
        detectable_difference(a, b, tr, n_speakers=1)
    from ssrl_lab.eval.saved_scores import ScoresError

    with pytest.raises(ScoresError, match="does not exist"):
        detectable_difference_runs([tmp_path / "none.npz"], [tmp_path / "none.npz"])


def test_study_power_on_the_archived_40_speaker_study():
    """The deciding pair of the committed demo study (SSRL against finetune at E = 30, 3 seeds)."""
    import json

    from ssrl_lab.notebook_params import repo_root
    from ssrl_lab.study_power import power_markdown, study_power

    archive = repo_root() / "outputs" / "study-archive"
    summary = json.loads((archive / "study.json").read_text())
    rows = [{**p, "scores_file": str(archive / p["scores_file"][p["scores_file"].index("/runs/") + 1:])}
            for p in summary["points"]]
    from ssrl_lab.study import strongest_protocol

    rival = "iterative_" + strongest_protocol(summary)
    pw = study_power(rows, rival, [12, 30], speakers=(40, 160), n_reps=100)
    assert (pw["a"], pw["b"], pw["budget"], pw["n_seeds"]) == ("ssrl", "iterative_finetune", 30, [3, 3])
    est = {(r["on"], r["n_speakers"]): r for r in pw["estimates"]}
    assert set(est) == {("trials", 40), ("trials", 160), ("all_pairs", 40), ("all_pairs", 160)}
    assert not est["trials", 40]["extrapolated"] and est["trials", 160]["extrapolated"]
    # a quarter of the speaker variance at 4x the speakers: the speaker SE about halves
    assert 0.35 < est["trials", 160]["se_speakers"] / est["trials", 40]["se_speakers"] < 0.7
    # the 40-speaker MDD is about the half-width of the archived claim's interval times 2.8 / 1.96
    claim = next(c for c in summary["claims"] if c["claim"] == "SSRL better than iterative_finetune at E = 30")
    half = (claim["diff_ci"][1] - claim["diff_ci"][0]) / 2
    assert 0.6 < est["trials", 40]["mdd"] / (half * z_sum() / 1.959964) < 1.6
    assert est["trials", 40]["diff"] == pytest.approx(claim["diff"])
    text = power_markdown(pw)
    assert "160 (projected)" in text and "iterative_finetune" in text
    assert power_markdown(None).startswith("Not estimated")
    none = study_power(rows, None, [12, 30])
    assert none["estimates"] == [] and "no iterative protocol" in power_markdown(none)
