"""Two studies side by side (ssrl_lab.study_compare): every number is the one its study printed."""
import json

import pytest

from ssrl_lab.study_compare import StudyCompareError, compare_markdown, load_studies, main


def _summary(n_speakers: int, half: float, with_stage1: bool = True) -> dict:
    table = [{"system": "ssrl", "budget": 30, "n_seeds": 5, "eer_mean": 4.9, "eer_ci": [4.9 - half, 4.9 + half],
              "eer_all_pairs_mean": 4.8, "eer_all_pairs_ci": [4.8 - half, 4.8 + half]}]
    claims = [{"claim": "SSRL better than iterative_finetune at E = 30", "outcome": "better" if half < 0.5 else "not separable",
               "diff": -0.6, "diff_ci": [-0.6 - half, -0.6 + half], "outcome_all_pairs": None,
               "reason_all_pairs": "no all-pairs scores"}]
    if with_stage1:
        table.append({"system": "iterative_stage1", "budget": 30, "n_seeds": 3, "eer_mean": 6.4, "eer_ci": None,
                      "eer_all_pairs_mean": 6.7, "eer_all_pairs_ci": None})
    power = {"b": "iterative_finetune",
             "estimates": [{"on": "trials", "n_speakers": n_speakers, "n_speakers_observed": n_speakers,
                            "extrapolated": False, "n_seeds": 3, "mdd": 2.2 * 40 / n_speakers},
                           {"on": "trials", "n_speakers": 999, "n_speakers_observed": n_speakers,
                            "extrapolated": True, "n_seeds": 3, "mdd": 0.01}]}
    return {"table": table, "claims": claims, "power": power}


def test_mdd_rows_pair_the_same_rival_across_studies(tmp_path):
    # the 40-speaker study's rule chose finetune; the 200-speaker one's chose stage1 on dev and
    # reports finetune too because its design gave finetune extra seeds: each row is one rival
    s40 = _summary(40, 1.5)
    s200 = _summary(200, 0.4)
    s200["power_more"] = [s200["power"]]
    s200["power"] = {"b": "iterative_stage1", "estimates": [
        {"on": "trials", "n_speakers": 200, "n_speakers_observed": 200, "extrapolated": False, "n_seeds": 3, "mdd": 0.7}]}
    md = compare_markdown(load_studies([f"40={_write(tmp_path, 'a', s40)}", f"200={_write(tmp_path, 'b', s200)}"]))
    assert "| iterative_finetune | 2.20 (40 speakers, 3 seeds) | 0.44 (200 speakers, 3 seeds) |" in md
    assert "| iterative_stage1 | - | 0.70 (200 speakers, 3 seeds) |" in md


def test_mdd_is_read_on_the_whole_test_set_not_a_smaller_subset(tmp_path):
    # a 200-speaker study also reports the MDD of 40 of its speakers (m-out-of-n), listed first
    s200 = _summary(200, 0.4)
    est = s200["power"]["estimates"]
    s200["power"]["estimates"] = [dict(e, n_speakers=40, mdd=1.53) for e in est] + est
    md = compare_markdown(load_studies([f"200={_write(tmp_path, 'b', s200)}", f"again={_write(tmp_path, 'c', s200)}"]))
    assert "| iterative_finetune | 0.44 (200 speakers, 3 seeds) | 0.44 (200 speakers, 3 seeds) |" in md
    assert "1.53" not in md


def _write(tmp_path, name, summary):
    p = tmp_path / name / "study.json"
    p.parent.mkdir()
    p.write_text(json.dumps(summary))
    return p


def test_side_by_side_rows_intervals_and_missing_rows(tmp_path):
    a = _write(tmp_path, "s40", _summary(40, 1.5))
    b = _write(tmp_path, "s200", _summary(200, 0.4, with_stage1=False))
    studies = load_studies([str(a), f"big={b}"])
    assert [label for label, _ in studies] == ["40 speakers", "big"]
    md = compare_markdown(studies)
    assert "| system | stage-2 epochs | 40 speakers | big |" in md
    assert "| ssrl | 30 | 4.90 [3.40, 6.40] (±1.50, 5 seeds) | 4.90 [4.50, 5.30] (±0.40, 5 seeds) |" in md
    # a row only one study has reads '-' in the other; a row without an interval shows its mean only
    assert "| iterative_stage1 | 30 | 6.40 | - |" in md
    # the measured MDD, never the projected one
    assert "| iterative_finetune | 2.20 (40 speakers, 3 seeds) | 0.44 (200 speakers, 3 seeds) |" in md
    assert "0.01" not in md
    assert ("| SSRL better than iterative_finetune at E = 30 | **not separable** (-0.60 [-2.10, 0.90], ±1.50) "
            "| **better** (-0.60 [-1.00, -0.20], ±0.40) |") in md
    interim = _summary(200, 0.4)
    interim["partial"] = {"finished": 7, "planned": 28, "missing": []}
    c = _write(tmp_path, "s200-partial", interim)
    assert load_studies([str(a), str(c)])[1][0] == "200 speakers (interim: 7 of 28 points)"
    pairs = compare_markdown(studies, on="all_pairs")
    assert "n/a (no all-pairs scores)" in pairs and "4.80 [3.30, 6.30]" in pairs


def test_bad_input_is_a_clear_error(tmp_path):
    good = _write(tmp_path, "good", _summary(40, 1.0))
    with pytest.raises(StudyCompareError, match="no such study file"):
        load_studies([str(good), str(tmp_path / "missing.json")])
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(StudyCompareError, match="unreadable"):
        load_studies([str(good), str(bad)])
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"table": []}))
    with pytest.raises(StudyCompareError, match="not a finished study summary"):
        load_studies([str(good), str(partial)])
    with pytest.raises(StudyCompareError, match="at least two"):
        load_studies([str(good)])
    with pytest.raises(StudyCompareError, match="share a label"):
        load_studies([f"x={good}", f"x={good}"])
    with pytest.raises(StudyCompareError, match="on must be"):
        compare_markdown(load_studies([f"a={good}", f"b={good}"]), on="pairs")


def test_cli_writes_the_markdown(tmp_path, capsys):
    a = _write(tmp_path, "a", _summary(40, 1.5))
    b = _write(tmp_path, "b", _summary(200, 0.4))
    out = tmp_path / "cmp" / "compare.md"
    assert main([f"40={a}", f"200={b}", "--out", str(out)]) == 0
    text = out.read_text()
    assert "Test EER % (trial list)" in text and "Test EER % (all pairs)" in text
    with pytest.raises(SystemExit) as e:
        main([str(a), str(tmp_path / "nope.json")])
    assert e.value.code == 2
    assert "no such study file" in capsys.readouterr().err
