"""Tracking (issue 24): smoke runs write TensorBoard event files and MLflow runs (a real sqlite
store) that equal ``metrics.jsonl``; a resumed run continues the same TensorBoard folder and the
same MLflow run without a step twice; an unreachable MLflow server warns once and the run finishes."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from ssrl_lab.config import ConfigError
from ssrl_lab.tracking import TrackingWarning, flat_config, scalars
from ssrl_lab.utils.io import read_jsonl

#: timing fields: a step a killed attempt logged keeps its first values in MLflow (see MLflowSink)
TIMING = ("seconds", "_share", "samples_per_s")


def _dino(corpus, run_dir, **kw):
    from ssrl_lab.train.dino import DINOConfig

    return DINOConfig.profile("smoke", corpus=str(corpus), run_dir=str(run_dir), device="cpu", **kw)


def _tb(run_dir: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0, "histograms": 0, "tensors": 0})
    acc.Reload()
    return acc


def _expected(run_dir: Path) -> dict[tuple[str, int], float]:
    """``{(tag, step): value}`` of every scalar in metrics.jsonl (step = the line's position)."""
    return {(k, i): v for i, rec in enumerate(read_jsonl(run_dir / "metrics.jsonl")) for k, v in scalars(rec).items()}


def _interrupt_after_epoch_2(train, cfg) -> None:
    """Train epochs 1-2 of a 3-epoch run, then tear the checkpoint written after epoch 2 (as a kill
    in the middle of that write would): the resume goes back to epoch 1's checkpoint and logs
    epoch 2 again, which the killed attempt had already sent to the tracker."""
    assert train(cfg, stop_after_epoch=2, progress=False) is None
    ckpt = Path(cfg.run_dir) / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    assert len(read_jsonl(Path(cfg.run_dir) / "metrics.jsonl")) == 2
    train(cfg, resume=True, progress=False)


def test_tracking_field_is_validated_and_not_part_of_a_runs_identity(tmp_path):
    from ssrl_lab.train.dino import DINOConfig
    from ssrl_lab.train.run import RunDir

    assert DINOConfig.profile("smoke").tracking == "tensorboard"
    with pytest.raises(ConfigError, match="tracking must be one of 'tensorboard', 'mlflow', 'none', got 'tb'"):
        DINOConfig.profile("smoke", tracking="tb")
    with pytest.raises(ConfigError, match="unknown"):
        DINOConfig.from_dict({**DINOConfig.profile("smoke").to_dict(), "trackin": "none"})
    # a run directory written before the field existed (no "tracking" key) is the same run
    cfg = DINOConfig.profile("smoke", run_dir=str(tmp_path / "r")).to_dict()
    old = {k: v for k, v in cfg.items() if k != "tracking"}
    RunDir(tmp_path / "r", old)
    (tmp_path / "r" / "metrics.jsonl").write_text('{"epoch": 1}\n')
    RunDir(tmp_path / "r", {**cfg, "tracking": "mlflow"}, resume=True)  # no ConfigError: tracking is ignored
    with pytest.raises(ConfigError, match="differing keys: epochs"):
        RunDir(tmp_path / "r", {**cfg, "epochs": 99})


@pytest.mark.slow
def test_tensorboard_scalars_histograms_and_hparams_equal_the_run(smoke_corpus, smoke_dino, tmp_path):
    from tensorboard.plugins.hparams import plugin_data_pb2

    from ssrl_lab.train.ssrl import SSRLConfig, train

    run_dir = tmp_path / "ssrl"
    cfg = SSRLConfig.profile("smoke", corpus=str(smoke_corpus), run_dir=str(run_dir), dino_run=str(smoke_dino),
                             device="cpu", eval_every=1)
    results = train(cfg, progress=False)
    acc = _tb(run_dir)
    got = {(tag, ev.step): ev.value for tag in acc.Tags()["scalars"] for ev in acc.Scalars(tag)
           if not tag.startswith("final/")}
    want = _expected(run_dir)
    assert set(got) == set(want)
    assert all(got[k] == pytest.approx(want[k], rel=1e-6, abs=1e-30) for k in want)
    tags = {tag for tag, _ in want}
    for tag in ("loss", "eval/eer", "eval/eer_all_pairs", "eval/dev_eer", "eval/dev_eer_all_pairs", "nmi",
                "n_clusters", "frac_clean", "clean_split/label_accuracy"):
        assert tag in tags, f"{tag} missing from {sorted(tags)}"
    assert any(t.startswith("eval/mindcf") for t in tags)
    # p_clean's histogram after every update: one per SSRL epoch line, over every utterance
    lines = read_jsonl(run_dir / "metrics.jsonl")
    ssrl_steps = [i for i, r in enumerate(lines) if r["stage"] == "ssrl"]
    hist = acc.Histograms("p_clean")
    assert [h.step for h in hist] == ssrl_steps
    n_utts = np.load(run_dir / "history.npz")["p_clean"].shape[-1]
    assert [h.histogram_value.num for h in hist] == [n_utts] * len(ssrl_steps)
    # hparams: the config, with the final results as metrics (HParams tab)
    content = acc.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hp = start.session_start_info.hparams
    assert hp["k"].number_value == cfg.k and hp["noise_model"].string_value == cfg.noise_model
    assert acc.Scalars("final/eer")[-1].value == pytest.approx(results["eer"], rel=1e-6)


@pytest.mark.slow
def test_tensorboard_resume_appends_without_duplicate_steps(smoke_corpus, tmp_path):
    from ssrl_lab.train.dino import train

    cfg = _dino(smoke_corpus, tmp_path / "dino", epochs=3)
    _interrupt_after_epoch_2(train, cfg)
    acc = _tb(tmp_path / "dino")
    assert len(list((tmp_path / "dino" / "tb").glob("events.out.tfevents.*"))) == 2  # one folder, two sessions
    for tag in ("loss", "eval/eer"):
        steps = [ev.step for ev in acc.Scalars(tag)]
        assert steps == [0, 1, 2]
    want = _expected(tmp_path / "dino")
    assert {(tag, ev.step): ev.value for tag in acc.Tags()["scalars"] for ev in acc.Scalars(tag)
            if not tag.startswith("final/")} == pytest.approx(want, rel=1e-6)


@pytest.fixture
def mlflow_store(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    (tmp_path / "mlruns").mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "ssrl-lab-test")
    return uri


def _history(client, run_id: str) -> dict[tuple[str, int], list[float]]:
    out: dict[tuple[str, int], list[float]] = {}
    for key in client.get_run(run_id).data.metrics:
        for m in client.get_metric_history(run_id, key):
            out.setdefault((key, m.step), []).append(m.value)
    return out


@pytest.mark.slow
def test_mlflow_run_params_metrics_artifacts_and_resume(smoke_corpus, tmp_path, mlflow_store):
    import mlflow
    from mlflow.tracking import MlflowClient

    from ssrl_lab.train.dino import train

    run_dir = tmp_path / "dino"
    cfg = _dino(smoke_corpus, run_dir, epochs=3, tracking="mlflow")
    assert train(cfg, stop_after_epoch=2, progress=False) is None
    run_id = json.loads((run_dir / "mlflow.json").read_text())["run_id"]
    ckpt = run_dir / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:100])  # torn: the resume goes back to epoch 1 and logs epoch 2 again
    results = train(cfg, resume=True, progress=False)
    assert json.loads((run_dir / "mlflow.json").read_text())["run_id"] == run_id  # the same MLflow run

    mlflow.set_tracking_uri(mlflow_store)
    runs = mlflow.search_runs(experiment_names=["ssrl-lab-test"], output_format="list")
    assert [r.info.run_id for r in runs] == [run_id]
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.params == {k: str(v) for k, v in flat_config(json.loads((run_dir / "config.json").read_text())).items()}
    client = MlflowClient(mlflow_store)
    hist = _history(client, run_id)
    assert all(len(v) == 1 for v in hist.values()), "a step logged twice"
    want = _expected(run_dir)
    got = {k: v[0] for k, v in hist.items() if not k[0].startswith("final/")}
    assert set(got) == set(want)
    assert {k: v for k, v in got.items() if not any(t in k[0] for t in TIMING)} == \
        {k: v for k, v in want.items() if not any(t in k[0] for t in TIMING)}
    assert run.data.metrics["final/eer"] == results["eer"]
    assert "results.json" in [a.path for a in client.list_artifacts(run_id)]


@pytest.mark.slow
def test_mlflow_unreachable_warns_once_and_the_run_finishes(smoke_corpus, tmp_path, monkeypatch):
    from ssrl_lab.train.dino import train

    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")  # discard port: nothing listens
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
    run_dir = tmp_path / "dino"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = train(_dino(smoke_corpus, run_dir, epochs=2, tracking="mlflow"), progress=False)
    ours = [w for w in caught if issubclass(w.category, TrackingWarning)]
    assert len(ours) == 1, [str(w.message) for w in ours]
    assert "127.0.0.1:9" in str(ours[0].message) or "onnect" in str(ours[0].message)
    assert results["eer"] is not None and (run_dir / "results.json").exists()
    assert [r["epoch"] for r in read_jsonl(run_dir / "metrics.jsonl")] == [1, 2]
    assert not (run_dir / "mlflow.json").exists()


@pytest.mark.slow
def test_sweep_runs_are_children_of_one_parent_named_after_the_sweep(smoke_corpus, tmp_path, mlflow_store):
    from mlflow.tracking import MlflowClient

    from ssrl_lab.tracking.mlflow_sink import PARENT_STATE
    from ssrl_lab.tracking.sweeps import after_notebook, sweep_parent
    from ssrl_lab.train.dino import train

    folder = tmp_path / "sweeps" / "01_dino"
    notebook = folder / "point" / "01_dino.ipynb"
    with sweep_parent(folder):
        train(_dino(smoke_corpus, folder / "point", epochs=1, max_steps_per_epoch=1, tracking="mlflow"),
              progress=False)
        notebook.write_text("{}")  # what papermill wrote
        after_notebook(folder / "point", notebook, folder)
    client = MlflowClient(mlflow_store)
    parent_id = json.loads((folder / PARENT_STATE).read_text())["run_id"]
    child_id = json.loads((folder / "point" / "mlflow.json").read_text())["run_id"]
    parent, child = client.get_run(parent_id), client.get_run(child_id)
    assert child.data.tags["mlflow.parentRunId"] == parent_id
    assert parent.info.run_name.endswith("sweeps/01_dino") and parent.info.status == "FINISHED"
    assert {"01_dino.ipynb", "results.json"} <= {a.path for a in client.list_artifacts(child_id)}


TRACKED_NB_PARAMS = '''from typing import Optional
run_dir: Optional[str] = None
queue_len: int = 1
'''
#: a notebook that writes a real run directory (no training: one metrics line and the results)
TRACKED_NB_BODY = '''from ssrl_lab.train.run import RunDir
run = RunDir(run_dir, {"run_dir": run_dir, "queue_len": queue_len, "tracking": "mlflow"})
run.log_metrics({"stage": "train", "epoch": 1, "loss": 1.0 / queue_len})
run.write_results({"system": "tiny", "eer": 10.0 * queue_len})
'''


@pytest.mark.slow
def test_a_papermill_sweep_logs_its_points_as_children_with_their_notebooks(tmp_path, mlflow_store):
    import nbformat
    from mlflow.tracking import MlflowClient

    from ssrl_lab import sweep

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell(TRACKED_NB_PARAMS)
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(TRACKED_NB_BODY)]
    nbformat.write(nb, tmp_path / "tiny.ipynb")
    out = tmp_path / "sw"
    assert sweep.main([str(tmp_path / "tiny.ipynb"), "-p", "queue_len", "1,2", "--out-root", str(out)]) == 0
    client = MlflowClient(mlflow_store)
    parent_id = json.loads((out / "tiny" / "mlflow_parent.json").read_text())["run_id"]
    parent = client.get_run(parent_id)
    assert parent.info.run_name.endswith("sw/tiny") and parent.info.status == "FINISHED"
    for q in (1, 2):
        d = out / "tiny" / f"queue_len={q}"
        run = client.get_run(json.loads((d / "mlflow.json").read_text())["run_id"])
        assert run.data.tags["mlflow.parentRunId"] == parent_id
        assert run.data.params["queue_len"] == str(q) and run.data.metrics["loss"] == 1.0 / q
        assert run.data.metrics["final/eer"] == 10.0 * q and run.info.status == "FINISHED"
        assert {"tiny.ipynb", "results.json"} <= {a.path for a in client.list_artifacts(run.info.run_id)}


def test_backfill_sends_an_archived_run_to_tensorboard_beside_it_not_into_it(tmp_path, capsys):
    """The 40-speaker study's archived SSRL run (trained before tracking existed) replayed into
    TensorBoard under another folder: the scalars equal its metrics.jsonl, hparams are there, the
    archive is untouched, and a second backfill skips it."""
    import shutil

    from ssrl_lab.notebook_params import repo_root
    from ssrl_lab.tracking import backfill

    src = repo_root() / "outputs" / "study-archive" / "runs" / "ssrl" / "E12" / "seed0"
    root = tmp_path / "archive" / "runs" / "ssrl"
    shutil.copytree(src, root / "seed0")
    before = sorted(p.name for p in (root / "seed0").iterdir())
    assert backfill.main([str(tmp_path / "archive"), "--out", str(tmp_path / "board")]) == 0
    assert "1 run(s)" in capsys.readouterr().out
    dest = tmp_path / "board" / "runs" / "ssrl" / "seed0"
    acc = _tb(dest)
    got = {(t, e.step): e.value for t in acc.Tags()["scalars"] for e in acc.Scalars(t) if not t.startswith("final/")}
    want = _expected(root / "seed0")
    assert set(got) == set(want) and all(abs(got[k] - want[k]) <= 1e-6 * max(1.0, abs(want[k])) for k in want)
    assert "eval/eer_all_pairs" in acc.Tags()["scalars"] and "final/eer" in acc.Tags()["scalars"]
    assert sorted(p.name for p in (root / "seed0").iterdir()) == before  # nothing written into the run
    assert backfill.backfill(tmp_path / "archive", tmp_path / "board") == {"runs": 0, "lines": 0, "skipped": 1}
    assert backfill.main([str(tmp_path / "nothing")]) == 2
    with pytest.raises(ValueError, match="back-end"):
        backfill.backfill_run(root / "seed0", tmp_path / "x", "none")
