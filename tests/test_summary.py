"""summary.json / summary.md from run directories, and the ordering checks."""
import json

import numpy as np
import pytest

from ssrl_lab import summary
from ssrl_lab.eval.evaluate import score_embeddings
from ssrl_lab.utils.io import atomic_write_json

N_SPK, PER_SPK = 30, 6
SPEAKERS = np.repeat(np.arange(N_SPK), PER_SPK)


class _Trials:
    rng = np.random.default_rng(0)
    enroll = rng.integers(0, SPEAKERS.size, 2500)
    test = (enroll + rng.integers(1, SPEAKERS.size, 2500)) % SPEAKERS.size
    label = (SPEAKERS[enroll] == SPEAKERS[test]).astype(np.int8)


def _scores(d, noise, seed, name="scores.npz"):
    """A real scores.npz: embeddings of speaker centroids plus ``noise``, scored as evaluate does."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).normal(size=(N_SPK, 16))
    emb = centres[SPEAKERS] + noise * rng.normal(size=(SPEAKERS.size, 16))
    ev = score_embeddings(emb, _Trials, SPEAKERS, return_scores=True)
    np.savez(d / name, scores=ev["scores"], labels=ev["labels"], embeddings=ev["embeddings"],
             speakers=ev["speakers"], trial_rows=ev["trial_rows"])
    return ev


def _run(d, system, eer, eer_all, seconds, noise=None, seed=0, **extra):
    d.mkdir(parents=True, exist_ok=True)
    atomic_write_json(d / "config.json", {"seed": seed})
    if noise is not None:
        ev = _scores(d, noise, seed)
        eer, eer_all = ev["eer"], ev["eer_all_pairs"]
    atomic_write_json(d / "results.json", {"system": system, "eer": eer, "eer_all_pairs": eer_all,
                                           "mindcf_0.01": 0.9, "mindcf_0.05": 0.7, "seconds": seconds, **extra})
    return d


def test_collect_orders_systems_and_checks_claims(tmp_path):
    runs = [_run(tmp_path / "ssrl", "ssrl", 9.0, 9.5, 30.0),
            _run(tmp_path / "random", "random", 40.0, 41.0, 2.0),
            _run(tmp_path / "dino", "dino", 12.0, 12.5, 100.0),
            _run(tmp_path / "iterative", "iterative", 8.0, 8.4, 50.0, round=2)]
    atomic_write_json(tmp_path / "iterative" / "results_round1.json",
                      {"system": "iterative", "round": 1, "eer": 11.0, "eer_all_pairs": 11.2, "seconds": 20.0})
    (tmp_path / "unfinished").mkdir()
    atomic_write_json(tmp_path / "unfinished" / "config.json", {})
    s = summary.collect(runs + [tmp_path / "unfinished"])
    assert list(s["systems"]) == ["random", "dino", "iterative_r1", "iterative_rN", "ssrl"]
    assert s["systems"]["iterative_r1"]["eer"] == 11.0 and "seconds" not in s["systems"]["iterative_r1"]
    assert s["seconds"] == {"random": 2.0, "dino": 100.0, "iterative_rN": 50.0, "ssrl": 30.0, "total": 182.0}
    out = {c["claim"]: c["outcome"] for c in s["ordering"]}
    assert out["SSRL better than fine-tuned iterative round N"] is None  # no such run here
    assert all(v is None for v in out.values())  # these runs saved no scores: no claim can be judged
    assert "scores.npz does not exist" in s["ordering"][0]["reason"]
    assert s["missing"][0]["run_dir"].endswith("unfinished")
    j, m = summary.write_summary(s, tmp_path / "out")
    assert json.loads(j.read_text())["systems"]["dino"]["eer"] == 12.0
    md = m.read_text()
    assert "| iterative_rN (round 2) | 1 | 8.00 | 8.40 |" in md
    assert "| SSRL better than fine-tuned iterative round N | n/a (no iterative_finetune_rN run) |" in md


def test_missing_system_gives_none():
    checks = summary.ordering_checks({"dino": {"eer": 5.0, "eer_all_pairs": 5.0}})
    assert all(c["outcome"] is None and c["outcome_all_pairs"] is None for c in checks)
    assert "n/a" in summary.to_markdown({"systems": {}, "seconds": {"total": 0.0}, "ordering": checks})


def test_duplicate_system_refused(tmp_path):
    a = _run(tmp_path / "a", "dino", 1.0, 1.0, 1.0)
    b = _run(tmp_path / "b", "dino", 2.0, 2.0, 1.0)
    with pytest.raises(ValueError, match="appears twice"):
        summary.collect([a, b])


def test_claims_have_three_outcomes_from_paired_bootstrap_over_seeds(tmp_path):
    """Clean embeddings beat noisy ones (better / worse); two systems of equal noise are not separable."""
    ssrl = [_run(tmp_path / f"ssrl{s}", "ssrl", 0, 0, 10.0, noise=0.9, seed=s) for s in range(3)]
    dino = [_run(tmp_path / f"dino{s}", "dino", 0, 0, 10.0, noise=1.6, seed=s) for s in range(2)]
    it = _run(tmp_path / "it", "iterative", 0, 0, 10.0, noise=0.9, seed=7, round=2)
    _scores(it, 0.9, 8, "scores_round1.npz")
    atomic_write_json(it / "results_round1.json", {"system": "iterative", "round": 1, "eer": 1.0})
    rnd = _run(tmp_path / "random", "random", 0, 0, 1.0, noise=3.0, seed=0)
    s = summary.collect(ssrl + dino + [it, rnd], n_reps=300)
    assert s["systems"]["ssrl"]["seeds"] == [0, 1, 2] and len(s["systems"]["ssrl"]["runs"]) == 3
    assert s["systems"]["ssrl"]["eer"] == pytest.approx(np.mean([r["eer"] for r in s["systems"]["ssrl"]["runs"]]))
    c = {x["claim"]: x for x in s["ordering"]}
    assert c["DINO better than random"]["outcome"] == "better" == c["DINO better than random"]["outcome_all_pairs"]
    assert c["DINO better than random"]["n_seeds"] == [2, 1]
    for claim in ("SSRL better than iterative round 1", "SSRL better than iterative round N"):
        assert c[claim]["outcome"] == "not separable", c[claim]
        lo, hi = c[claim]["diff_ci"]
        assert lo < 0 < hi
    md = summary.to_markdown(s)
    assert "| ssrl | 3 |" in md and "**better**" in md and "**not separable**" in md
    with pytest.raises(ValueError, match="appears twice"):
        summary.collect([ssrl[0], _run(tmp_path / "again", "ssrl", 0, 0, 1.0, noise=1.0, seed=0)])
    flipped = summary.ordering_checks({"dino": s["systems"]["random"], "random": s["systems"]["dino"]}, n_reps=300)
    assert flipped[0]["outcome"] == "worse"


def test_finetuned_iterative_run_is_a_separate_baseline(tmp_path):
    new = _run(tmp_path / "iterative", "iterative", 8.0, 8.4, 50.0, round=2, init="new")
    ft = _run(tmp_path / "iterative_ft", "iterative", 6.5, 6.6, 40.0, round=2, init="finetune")
    atomic_write_json(ft / "results_round1.json", {"system": "iterative", "round": 1, "eer": 7.0, "eer_all_pairs": 7.1,
                                                   "init": "finetune"})
    s = summary.collect([_run(tmp_path / "ssrl", "ssrl", 7.0, 7.2, 30.0), ft, new])
    assert list(s["systems"]) == ["iterative_rN", "iterative_finetune_r1", "iterative_finetune_rN", "ssrl"]
    checks = {c["claim"]: c["eer"] for c in s["ordering"]}
    assert checks["SSRL better than iterative round N"] == [7.0, 8.0]
    assert checks["SSRL better than fine-tuned iterative round N"] == [7.0, 6.5]
    md = summary.to_markdown(s)
    assert "| iterative_finetune_rN (round 2) | 1 | 6.50 | 6.60 |" in md


def test_dev_eer_beside_test_eer(tmp_path):
    s = summary.collect([_run(tmp_path / "ssrl", "ssrl", 7.0, 7.2, 30.0, dev_eer=6.5, dev_eer_all_pairs=6.75,
                              dev_n_trials=None),
                         _run(tmp_path / "dino", "dino", 9.0, 9.5, 10.0)])  # a corpus without dev
    assert s["systems"]["ssrl"]["dev_eer"] == 6.5 and "dev_n_trials" not in s["systems"]["ssrl"]
    assert "dev_eer" not in s["systems"]["dino"]
    md = summary.to_markdown(s)
    assert "| dev EER % (trials) | dev EER % (all pairs) |" in md
    assert "| ssrl | 1 | 7.00 | 7.20 | 6.50 | 6.75 | 0.900 |" in md and "| dino | 1 | 9.00 | 9.50 | - | - | 0.900 |" in md
