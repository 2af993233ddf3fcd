"""The study's per-epoch trajectories (ssrl_lab.study_traces) read from the committed 40-speaker
study archive, their figures, and PNG copies through kaleido and the local Chromium."""
from __future__ import annotations

import json
import os
import shutil

import pytest

from ssrl_lab.notebook_params import repo_root
from ssrl_lab.study_traces import last_reliability, run_trace, study_traces, trace_markdown, trace_summary
from ssrl_lab.viz.save import PNGUnavailable, save_png
from ssrl_lab.viz.study import detector_figure, reliability_figure, trace_figure

ARCHIVE = repo_root() / "outputs" / "study-archive"


def _lines(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line]


def test_ssrl_trace_has_kmeans_labels_every_epoch_and_the_evaluations():
    run = ARCHIVE / "runs" / "ssrl" / "E30" / "seed0"
    tr = run_trace(run, "ssrl")
    lines = _lines(run)
    km = next(m for m in lines if m["stage"] == "kmeans")
    assert [r["x"] for r in tr] == list(range(31))
    assert tr[0]["label_accuracy"] == km["purity"] and tr[0]["n_clusters"] == km["n_clusters"] and tr[0]["eer"] is None
    evals = {m["epoch"]: m["eval"] for m in lines if m.get("stage") == "ssrl" and m.get("eval")}
    assert sorted(evals) == [6, 12, 18, 24, 30]
    for r in tr:
        assert (r["eer_all_pairs"] is not None) == (r["x"] in evals)
        if r["x"] in evals:
            assert r["eer_all_pairs"] == evals[r["x"]]["eer_all_pairs"] and r["dev_eer"] == evals[r["x"]]["dev_eer"]
    last = next(m for m in lines if m.get("epoch") == 30 and m.get("stage") == "ssrl")
    assert tr[30]["label_accuracy"] == last["clean_split"]["label_accuracy"]
    assert tr[30]["precision_clean"] == last["clean_split"]["precision_clean"] and tr[30]["frac_clean"] == last["frac_clean"]
    results = json.loads((run / "results.json").read_text())
    assert tr[30]["eer"] == pytest.approx(results["eer"])
    assert last_reliability(run) is None  # recorded only since 2026-12-06


def test_iterative_trace_puts_round_labels_at_the_round_start_and_its_eer_at_the_end():
    run = ARCHIVE / "runs" / "iterative_finetune" / "E30" / "seed0"
    tr = {r["x"]: r for r in run_trace(run, "iterative_finetune")}
    rounds = [m for m in _lines(run) if m.get("stage") == "iterative"]
    assert len(rounds) == 5 and sorted(tr) == [0, 6, 12, 18, 24, 30]
    for m in rounds:
        r = m["round"]
        assert tr[(r - 1) * 6]["label_accuracy"] == m["pseudo_labels"]["purity"]
        assert tr[(r - 1) * 6]["n_clusters"] == m["n_used"]
        assert tr[r * 6]["eer"] == m["eval"]["eer"]
    assert tr[30]["label_accuracy"] is None  # no labels are made after the last round
    assert tr[30]["eer"] == json.loads((run / "results_round5.json").read_text())["eer"]
    with pytest.raises(ValueError, match="system"):
        run_trace(run, "simclr")
    with pytest.raises(FileNotFoundError):
        run_trace(run / "nothing", "ssrl")


def test_study_traces_read_each_run_once_and_summarise(tmp_path):
    summary = json.loads((ARCHIVE / "study.json").read_text())
    points = []
    for p in summary["points"]:  # the archive's runs where the study ran them
        rel = p["run_dir"][p["run_dir"].index("/runs/") + 1:]
        points.append({**p, "run_dir": str(ARCHIVE / rel)})
    points.append({**points[0], "run_dir": str(tmp_path / "not-started")})  # skipped with a log line
    traces = study_traces(points, budget=30)
    assert {(t["system"], t["seed"]) for t in traces} == {(s, k) for s in ("ssrl", "iterative_new", "iterative_finetune",
                                                                           "iterative_stage1") for k in (0, 1, 2)}
    assert len([t for t in traces if t["system"] == "ssrl" and t["seed"] == 0]) == 31  # not twice (E12 and E30 points)
    rows = {(r["system"], r["key"]): r for r in trace_summary(traces)}
    assert rows["ssrl", "n_clusters"]["first"] == 266 and rows["ssrl", "n_clusters"]["last"] < 266
    assert rows["iterative_finetune", "label_accuracy"]["x_last"] == 24
    table = trace_markdown(trace_summary(traces))
    assert "| ssrl | label_accuracy |" in table and table.count("\n") == len(rows) + 1
    # the figures: one mean line and one seed band per system; the detector on SSRL's collecting epochs
    fig = trace_figure(traces, "label_accuracy")
    names = [t.name for t in fig.data]
    assert sum(n.endswith("seeds") for n in names) == 4 and len(names) == 8
    step = [t for t in fig.data if t.name.startswith("iterative") and not t.name.endswith("seeds")]
    assert all(t.line.shape == "hv" for t in step)
    det = detector_figure(traces)
    assert min(det.data[1].x) == 1 and max(det.data[1].x) == 30
    rel = reliability_figure({"seed 0": {"n": [0, 5, 15], "mean_p": [None, 0.4, 0.8], "share_right": [None, 0.5, 0.6],
                                         "ece": 0.15}})
    assert list(rel.data[1].x) == [0.4, 0.8] and "ECE 0.150" in rel.data[1].name


def test_png_copy_is_a_real_image_or_a_counted_skip(tmp_path):
    fig = trace_figure([{"system": "ssrl", "seed": 0, "x": 0, "nmi": 0.8}, {"system": "ssrl", "seed": 0, "x": 1, "nmi": 0.9}],
                       "nmi")
    if shutil.which("chromium") is None and os.environ.get("CI") != "true":
        pytest.skip("no chromium here (apt-get install chromium); CI installs it")
    out = save_png(fig, tmp_path, "trace", strict=True)
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert not list(tmp_path.glob("plots/.*"))  # no temporary file left behind
    with pytest.raises(ValueError, match="plot name"):
        save_png(fig, tmp_path, "../escape")


def test_png_without_a_renderer_is_skipped_and_counted(tmp_path, monkeypatch, caplog):
    from ssrl_lab.viz import save

    fig = trace_figure([], "nmi")

    def broken(*a, **k):
        raise RuntimeError("Kaleido requires Google Chrome to be installed.")

    monkeypatch.setattr(type(fig), "write_image", broken)
    before = save.PNG_SKIPPED["count"]
    assert save_png(fig, tmp_path, "x") is None
    assert save.PNG_SKIPPED["count"] == before + 1 and "Chrome" in caplog.text
    assert not (tmp_path / "plots" / "x.png").exists()
    with pytest.raises(PNGUnavailable):
        save_png(fig, tmp_path, "x", strict=True)
