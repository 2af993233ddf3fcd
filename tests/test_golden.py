"""Behaviour is kept: every trainer on the smoke profile matches the committed golden record
(tests/golden/make_golden.py wrote it from the code before the training-loop refactor)."""
import importlib.util
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

GOLDEN = Path(__file__).with_name("golden")
REPO = GOLDEN.parents[1]


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


def _reference(mg, smoke_corpus, tmp_path) -> dict:
    """golden.json on the machine that wrote it; elsewhere the same record rebuilt from the
    reference commit's code (its make_golden.py, on this machine)."""
    want = json.loads((GOLDEN / "golden.json").read_text())
    recorded = want.pop("_machine")
    here = mg.machine()
    if {k: recorded[k] for k in here} == here:
        return want
    commit = recorded["commit"]
    src = tmp_path / "reference"
    src.mkdir(parents=True)
    try:
        tar = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", commit], check=True,
                             capture_output=True).stdout
    except (OSError, subprocess.CalledProcessError) as e:
        pytest.skip(f"golden.json was written on another machine ({recorded}) and the reference commit {commit} "
                    f"is not in this checkout's history ({e}): cannot rebuild the record here")
    (tmp_path / "ref.tar").write_bytes(tar)
    with tarfile.open(tmp_path / "ref.tar") as t:
        t.extractall(src, filter="data")
    out = tmp_path / "reference.json"
    env = {**os.environ, "PYTHONPATH": str(src)}
    subprocess.run([sys.executable, str(src / "tests" / "golden" / "make_golden.py"), "--corpus", str(smoke_corpus),
                    "--out", str(out)], cwd=src, env=env, check=True, capture_output=True)
    ref = json.loads(out.read_text())
    ref.pop("_machine", None)
    return ref


#: record keys added since the reference commit (new diagnostics that change no training): the
#: reference's code cannot write them, so they are compared only where the reference has them
ADDED_SINCE_REFERENCE = {
    "reliability": "SSRL's p_clean reliability curve per collecting epoch (issue 23)",
}


def without_added(got, want):
    """``got`` without the :data:`ADDED_SINCE_REFERENCE` keys that ``want`` lacks at the same place."""
    if isinstance(got, dict) and isinstance(want, dict):
        return {k: without_added(v, want.get(k)) for k, v in got.items()
                if k in want or k not in ADDED_SINCE_REFERENCE}
    if isinstance(got, list) and isinstance(want, list) and len(got) == len(want):
        return [without_added(g, w) for g, w in zip(got, want)]
    return got


def test_added_keys_are_dropped_only_where_the_reference_lacks_them():
    want = {"m": [{"loss": 1.0}, {"loss": 2.0, "reliability": {"ece": 0.1}}]}
    got = {"m": [{"loss": 1.0, "reliability": {"ece": 0.3}}, {"loss": 2.0, "reliability": {"ece": 0.2}}]}
    trimmed = without_added(got, want)
    assert trimmed["m"][0] == {"loss": 1.0}
    assert trimmed["m"][1]["reliability"] == {"ece": 0.2}  # still compared where the reference has it
    assert without_added({"surprise": 1}, {}) == {"surprise": 1}  # any other new key stays unexpected


def test_every_trainer_matches_the_golden_record(smoke_corpus, tmp_path):
    mg = _make_golden()
    want = _reference(mg, smoke_corpus, tmp_path / "ref")
    got = without_added(mg.record(smoke_corpus, tmp_path / "now"), want)
    assert sorted(got) == sorted(want)
    diffs = mg.compare(json.loads(json.dumps(got)), want)
    assert not diffs, f"{len(diffs)} difference(s) from the golden record, first: " + "; ".join(diffs[:10])
