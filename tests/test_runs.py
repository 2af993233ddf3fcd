"""Reading run directories in the documented format."""
import numpy as np
import pytest

from ssrl_lab import runs
from ssrl_lab.utils.io import append_jsonl, atomic_numpy_save, atomic_write_json


def _make(d):
    atomic_write_json(d / "config.json", {"system": "dino", "lr": 0.1})
    append_jsonl(d / "metrics.jsonl", {"stage": "dino", "epoch": 1, "loss": 3.0})
    append_jsonl(d / "metrics.jsonl", {"stage": "dino", "epoch": 2, "loss": 2.0, "eval": {"eer": 20.0}})
    with open(d / "metrics.jsonl", "a") as fh:
        fh.write('{"stage": "dino", "epo')  # a torn last line is dropped
    return d


def test_run_reads_every_file(tmp_path):
    d = _make(tmp_path / "dino")
    r = runs.open_run(d)
    assert r.system == "dino" and not r.finished and r.results is None and r.scores() is None and r.history() is None
    assert len(r.metrics) == 2
    x, y = r.series("eval.eer")
    assert x.tolist() == [2.0] and y.tolist() == [20.0]
    assert runs.series(r.metrics, "loss", stage="other")[0].size == 0
    atomic_write_json(d / "results.json", {"system": "dino_teacher", "eer": 10.0})
    atomic_numpy_save(d / "scores.npz", scores=np.array([0.1, 0.9], np.float32), labels=np.array([0, 1], np.int8))
    atomic_numpy_save(d / "embeddings" / "train.npz", emb=np.ones((2, 3), np.float32), utt_id=np.array(["a", "b"]))
    atomic_numpy_save(d / "history.npz", labels=np.zeros((2, 2), np.int32), utt_id=np.array(["a", "b"]))
    assert r.finished and r.system == "dino_teacher"
    s, lab = r.scores()
    assert lab.tolist() == [0, 1] and s.dtype == np.float64
    assert r.embedding_names() == ["train"]
    emb, utt = r.embeddings("train")
    assert emb.shape == (2, 3) and utt.tolist() == ["a", "b"]
    assert r.history()["labels"].shape == (2, 2)
    with pytest.raises(runs.RunError, match="available: train"):
        r.embeddings("test")


def test_open_and_list(tmp_path):
    with pytest.raises(runs.RunError, match="does not exist"):
        runs.open_run(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(runs.RunError, match="not a run directory"):
        runs.open_run(tmp_path / "empty")
    _make(tmp_path / "a")
    (tmp_path / "sweeps" / "x").mkdir(parents=True)
    _make(tmp_path / "sweeps" / "x")
    assert [r.path.name for r in runs.list_runs(tmp_path)] == ["a", "x"]
    assert runs.get({"a": {"b": 1}}, "a.b") == 1 and runs.get({"a.b": 2}, "a.b") == 2 and runs.get({}, "a") is None


def test_bad_npz_is_reported(tmp_path):
    d = _make(tmp_path / "r")
    (d / "scores.npz").write_bytes(b"not a zip")
    with pytest.raises(runs.RunError, match="scores.npz: unreadable"):
        runs.open_run(d).scores()
