import numpy as np
import pytest

from ssrl_lab.data.table import UtteranceTable
from ssrl_lab.data.trials import TrialError, TrialList, parse_trials, write_trials

UTTS = ["id10270/x6uYqmx31kE/00001.wav", "id10270/8jEAjG6SegY/00008.wav",
        "id10271/abcdefghijk/00001.wav", "id10271/abcdefghijk/00002.wav"]


@pytest.fixture
def table():
    return UtteranceTable(UTTS, [u.split("/")[0] for u in UTTS], [u.split("/")[1] for u in UTTS],
                          [f"/x/{u}" for u in UTTS], np.ones(4))


def test_parse_valid_and_roundtrip(tmp_path, table):
    p = tmp_path / "trials.txt"
    p.write_text(f"# comment\n1 {UTTS[0]} {UTTS[1]}\n\n0 {UTTS[0]} {UTTS[2]}\n1 {UTTS[2]} {UTTS[3]}\n")
    tr, rep = parse_trials(p, table)
    assert len(tr) == 3 and rep.ok and rep.n_trials == 3 and rep.n_lines == 3
    assert tr.label.dtype == np.int8 and tr.enroll.dtype == np.int64 and tr.test.dtype == np.int64
    np.testing.assert_array_equal(tr.label, [1, 0, 1])
    np.testing.assert_array_equal(tr.enroll, [0, 0, 2])
    np.testing.assert_array_equal(tr.test, [1, 2, 3])
    assert tr.n_target == 2
    np.testing.assert_array_equal(tr.utterances(), [0, 1, 2, 3])
    out = write_trials(tmp_path / "out.txt", table, tr.label, tr.enroll, tr.test)
    assert out.read_text().splitlines()[0] == f"1 {UTTS[0]} {UTTS[1]}"
    tr2, _ = parse_trials(out, table)
    np.testing.assert_array_equal(tr2.test, tr.test)
    write_trials(tmp_path / "out2.txt", table, tr)  # a TrialList works too
    assert (tmp_path / "out2.txt").read_text() == out.read_text()
    with pytest.raises(IndexError):
        write_trials(tmp_path / "bad.txt", table, [1], [0], [9])


def test_kaldi_labels(tmp_path, table):
    p = tmp_path / "trials"
    p.write_text(f"{UTTS[0]} {UTTS[1]} target\n{UTTS[0]} {UTTS[3]} nontarget\n")
    tr, _ = parse_trials(p, table)
    np.testing.assert_array_equal(tr.label, [1, 0])


def test_missing_and_malformed_lines_named(tmp_path, table):
    p = tmp_path / "trials.txt"
    p.write_text("\n".join([
        f"1 {UTTS[0]} {UTTS[1]}",                      # 1 ok
        f"1 {UTTS[0]} id99999/gone/00001.wav",         # 2 missing
        f"2 {UTTS[0]} {UTTS[1]}",                      # 3 bad label
        f"1 {UTTS[0]}",                                # 4 wrong field count
        f"0 {UTTS[2]} {UTTS[1]}",                      # 5 ok
    ]) + "\n")
    with pytest.raises(TrialError) as e:
        parse_trials(p, table)
    msg = str(e.value)
    assert "trials.txt" in msg
    assert "2 malformed line(s): line 3: label '2' is not 0 or 1; line 4: expected 3 fields, got 2" in msg
    assert "1 utterance reference(s) missing from the table: line 2: id99999/gone/00001.wav" in msg
    # skipping missing utterances only still refuses malformed lines
    with pytest.raises(TrialError, match="line 3"):
        parse_trials(p, table, on_missing="skip")
    tr, rep = parse_trials(p, table, on_missing="skip", on_malformed="skip")
    assert len(tr) == 2 and rep.n_skipped == 3
    np.testing.assert_array_equal(tr.enroll, [0, 2])
    assert [n for n, _ in rep.missing] == [2] and [n for n, _ in rep.malformed] == [3, 4]


def test_many_missing_lists_first_and_total(tmp_path, table):
    p = tmp_path / "t.txt"
    p.write_text("".join(f"1 {UTTS[0]} nope/{i}.wav\n" for i in range(12)))
    with pytest.raises(TrialError) as e:
        parse_trials(p, table)
    msg = str(e.value)
    assert "12 utterance reference(s) missing" in msg and "line 5: nope/4.wav" in msg
    assert "line 6:" not in msg and msg.endswith("...")
    with pytest.raises(TrialError, match="no usable trials"):
        parse_trials(p, table, on_missing="skip")
    with pytest.raises(FileNotFoundError):
        parse_trials(tmp_path / "none.txt", table)
    with pytest.raises(ValueError, match="on_missing"):
        parse_trials(p, table, on_missing="ignore")


def test_trial_list_validation():
    with pytest.raises(ValueError):
        TrialList([1, 0], [0], [1, 2])
    with pytest.raises(ValueError, match="0 or 1"):
        TrialList([2], [0], [1])
    assert len(TrialList([], [], [])) == 0
