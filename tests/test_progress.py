"""Live progress lines: one per epoch from RunDir.log_metrics, with stage and whole-run ETAs."""
from ssrl_lab import progress
from ssrl_lab.train.run import RunDir


def test_lines_per_epoch_with_stage_and_run_eta(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(progress.PROGRESS_ENV, "lines")
    d = tmp_path / "ssrl"
    plan = progress.write_plan(tmp_path / "plan.json", "demo", [
        progress.PlanStep("ssrl", 40.0, str(d), 4), progress.PlanStep("compare", 30.0)])
    monkeypatch.setenv(progress.PLAN_ENV, str(plan))
    run = RunDir(d, {"epochs": 4})
    run.log_metrics({"stage": "kmeans", "epoch": 0, "k": 10, "n_clusters": 10, "nmi": 0.5})
    run.log_metrics({"stage": "ssrl", "epoch": 1, "loss": 2.5, "n_clusters": 9, "nmi": 0.61, "frac_clean": 0.8,
                     "seconds": 20.0})
    run.log_metrics({"stage": "ssrl", "epoch": 2, "loss": 2.0, "n_clusters": 9, "nmi": 0.62, "frac_clean": 0.8,
                     "seconds": 20.0, "eval": {"eer": 7.5, "eer_all_pairs": 7.6}})
    err = capsys.readouterr().err.splitlines()
    lines = [l for l in err if l.startswith("[progress] ssrl  epoch")]
    assert len(lines) == 2
    assert "epoch 2/4" in lines[1] and "clusters 9" in lines[1] and "NMI 0.620" in lines[1]
    assert "clean 0.80" in lines[1] and "EER 7.50 (all pairs 7.60)" in lines[1] and "20.0 s/epoch" in lines[1]
    # 2 epochs left at 20 s; the stage runs 2x its estimate (80 s vs 40 s), so compare counts 60 s
    assert "ETA ssrl 40s, run 1m40s" in lines[1]
    assert (d / "metrics.jsonl").read_text().count("\n") == 3


def test_iterative_rounds_and_off(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(progress.PROGRESS_ENV, "lines")
    monkeypatch.delenv(progress.PLAN_ENV, raising=False)
    run = RunDir(tmp_path / "it", {"epochs": 2, "rounds": 2, "init": "finetune"})
    line = progress.report(run.path, run.config, {"stage": "round1", "round": 1, "epoch": 1, "loss": 3.0,
                                                  "train_acc": 0.2, "seconds": 10.0})
    assert line.startswith("[progress] iterative_finetune (it)  round 1/2  epoch 1/2") and "ETA iterative_finetune 30s" in line
    assert "run" not in line.split("ETA")[1]
    assert progress.system_name("round2", {"init": "stage1"}) == "iterative_stage1"
    assert progress.system_name("round2", {"init": "new"}) == progress.system_name("round1", {}) == "iterative"
    monkeypatch.setenv(progress.PROGRESS_ENV, "off")
    capsys.readouterr()
    run = RunDir(tmp_path / "dino", {"epochs": 2})
    run.log_metrics({"stage": "dino", "epoch": 1, "loss": 1.0, "seconds": 1.0})
    assert capsys.readouterr().err == ""
    assert progress.fmt_duration(3725) == "1h02m" and progress.fmt_duration(None) == "?"
