"""summary.json / summary.md from run directories, and the ordering checks."""
import json

import pytest

from ssrl_lab import summary
from ssrl_lab.utils.io import atomic_write_json


def _run(d, system, eer, eer_all, seconds, **extra):
    atomic_write_json(d / "config.json", {"seed": 0})
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
    holds = {c["claim"]: c["holds"] for c in s["ordering"]}
    assert holds == {"DINO better than random": True, "SSRL better than iterative round 1": True,
                     "SSRL better than iterative round N": False,
                     "SSRL better than fine-tuned iterative round N": None}  # no such run here
    assert s["missing"][0]["run_dir"].endswith("unfinished")
    j, m = summary.write_summary(s, tmp_path / "out")
    assert json.loads(j.read_text())["systems"]["dino"]["eer"] == 12.0
    md = m.read_text()
    assert "| iterative_rN (round 2) | 8.00 | 8.40 |" in md
    assert "| SSRL better than iterative round N | NO | NO |" in md


def test_missing_system_gives_none():
    checks = summary.ordering_checks({"dino": {"eer": 5.0, "eer_all_pairs": 5.0}})
    assert all(c["holds"] is None for c in checks)
    assert "n/a" in summary.to_markdown({"systems": {}, "seconds": {"total": 0.0}, "ordering": checks})


def test_duplicate_system_refused(tmp_path):
    a = _run(tmp_path / "a", "dino", 1.0, 1.0, 1.0)
    b = _run(tmp_path / "b", "dino", 2.0, 2.0, 1.0)
    with pytest.raises(ValueError, match="appears twice"):
        summary.collect([a, b])


def test_finetuned_iterative_run_is_a_separate_baseline(tmp_path):
    new = _run(tmp_path / "iterative", "iterative", 8.0, 8.4, 50.0, round=2, init="new")
    ft = _run(tmp_path / "iterative_ft", "iterative", 6.5, 6.6, 40.0, round=2, init="finetune")
    atomic_write_json(ft / "results_round1.json", {"system": "iterative", "round": 1, "eer": 7.0, "eer_all_pairs": 7.1,
                                                   "init": "finetune"})
    s = summary.collect([_run(tmp_path / "ssrl", "ssrl", 7.0, 7.2, 30.0), ft, new])
    assert list(s["systems"]) == ["iterative_rN", "iterative_finetune_r1", "iterative_finetune_rN", "ssrl"]
    checks = {c["claim"]: (c["holds"], c["eer"]) for c in s["ordering"]}
    assert checks["SSRL better than iterative round N"] == (True, [7.0, 8.0])
    assert checks["SSRL better than fine-tuned iterative round N"] == (False, [7.0, 6.5])
    md = summary.to_markdown(s)
    assert "| iterative_finetune_rN (round 2) | 6.50 | 6.60 |" in md
    assert "| SSRL better than fine-tuned iterative round N | NO | NO |" in md


def test_dev_eer_beside_test_eer(tmp_path):
    s = summary.collect([_run(tmp_path / "ssrl", "ssrl", 7.0, 7.2, 30.0, dev_eer=6.5, dev_eer_all_pairs=6.75,
                              dev_n_trials=None),
                         _run(tmp_path / "dino", "dino", 9.0, 9.5, 10.0)])  # a corpus without dev
    assert s["systems"]["ssrl"]["dev_eer"] == 6.5 and "dev_n_trials" not in s["systems"]["ssrl"]
    assert "dev_eer" not in s["systems"]["dino"]
    md = summary.to_markdown(s)
    assert "| dev EER % (trials) | dev EER % (all pairs) |" in md
    assert "| ssrl | 7.00 | 7.20 | 6.50 | 6.75 | 0.900 |" in md and "| dino | 9.00 | 9.50 | - | - | 0.900 |" in md
