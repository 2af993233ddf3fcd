"""Behaviour is kept: every trainer on the smoke profile matches the committed golden record
(tests/golden/make_golden.py wrote it from the code before the training-loop refactor)."""
import importlib.util
import json
from pathlib import Path

GOLDEN = Path(__file__).with_name("golden")


def _make_golden():
    spec = importlib.util.spec_from_file_location("make_golden", GOLDEN / "make_golden.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_compare_is_exact_on_integers_and_relative_on_floats():
    mg = _make_golden()
    assert mg.compare({"a": 1, "b": [1.0, "x"]}, {"a": 1, "b": [1.00001, "x"]}) == []
    assert mg.compare({"a": 2}, {"a": 1}) == [".a: 2 != 1"]
    assert mg.compare({"b": [1.01]}, {"b": [1.0]}) and mg.compare({"a": 1}, {"a": 1, "c": 0})
    assert mg.clean({"seconds": 3, "eval": {"seconds_steps": 1, "eer": 5.0}}) == {"eval": {"eer": 5.0}}


def test_every_trainer_matches_the_golden_record(smoke_corpus, tmp_path):
    mg = _make_golden()
    want = json.loads((GOLDEN / "golden.json").read_text())
    got = mg.record(smoke_corpus, tmp_path)
    assert sorted(got) == sorted(want)
    diffs = mg.compare(json.loads(json.dumps(got)), want)
    assert not diffs, f"{len(diffs)} difference(s) from the golden record, first: " + "; ".join(diffs[:10])
