"""The compute-matched study on the smoke profile: 06_study under papermill, tuning on dev,
budgets made of rounds of equal length, the table and the plot."""
import json

import nbformat
import pytest

from ssrl_lab import study as st
from ssrl_lab.config import ConfigError
from ssrl_lab.notebook_params import repo_root
from ssrl_lab.study_power import WHY_DESIGN, WHY_DEV


def test_study_config_checks():
    with pytest.raises(ConfigError, match="systems"):
        st.StudyConfig(systems=["ssrl", "simclr"])
    with pytest.raises(ConfigError, match="whole number of rounds"):
        st.StudyConfig(budgets=[12, 30], rounds=["12:5", "30:5"])
    with pytest.raises(ConfigError, match="no rounds entry"):
        st.StudyConfig(budgets=[12, 20], rounds=["12:2"])
    with pytest.raises(ConfigError, match="tuning budget"):
        st.StudyConfig(max_settings=5)
    assert all(len(v) <= 4 for v in st.SETTINGS.values()) and set(st.SETTINGS) == set(st.SYSTEMS)
    m0, m1 = st.ema_from_share([0.01, 0.1], 1000)
    assert abs(1 / (1 - m0) - 10) < 1e-9 and abs(1 / (1 - m1) - 100) < 1e-9


def test_iterative_points_reuse_the_longest_run_of_equal_rounds(tmp_path):
    cfg = st.StudyConfig(out=str(tmp_path), systems=["ssrl", "iterative_new"], budgets=[12, 30], seeds=[0])
    choice = {s: {"chosen": st.SETTINGS[s][0]} for s in cfg.systems}
    pts = {(p["system"], p["budget"]): p for p in st.study_points(cfg, choice)}
    # SSRL trains each budget; the iterative E=12 point (2 x 6) is round 2 of the E=30 run (5 x 6)
    assert pts["ssrl", 12]["run_dir"] != pts["ssrl", 30]["run_dir"]
    assert pts["iterative_new", 12]["run_dir"] == pts["iterative_new", 30]["run_dir"]
    assert pts["iterative_new", 12]["results"].name == "results_round2.json"
    assert pts["iterative_new", 30]["results"].name == "results_round5.json"


def test_extra_points_add_seeds_at_one_budget_and_train_last(tmp_path):
    cfg = st.StudyConfig(out=str(tmp_path), systems=["ssrl", "iterative_finetune"], budgets=[12, 30], seeds=[0],
                         extra_points=["ssrl:30:3", "iterative_finetune:30:3", "ssrl:30:0", "ssrl:30:3"])
    assert cfg.extra == [("ssrl", 30, 3), ("iterative_finetune", 30, 3)]  # seed 0 is a study seed; no repeats
    choice = {s: {"chosen": st.SETTINGS[s][0]} for s in cfg.systems}
    pts = st.study_points(cfg, choice)
    extra = [p for p in pts if p.get("extra")]
    assert [(p["system"], p["budget"], p["seed"]) for p in extra] == [("ssrl", 30, 3), ("iterative_finetune", 30, 3)]
    # counted at their budget only: the finetune run's round 2 (E = 12) is not a point of seed 3
    assert {(p["system"], p["budget"]) for p in pts if p["seed"] == 3} == {("ssrl", 30), ("iterative_finetune", 30)}
    assert extra[1]["results"] == tmp_path / "runs" / "iterative_finetune" / "E30" / "seed3" / "results_round5.json"
    with pytest.raises(ConfigError, match="system:budget:seed"):
        st.StudyConfig(extra_points=["ssrl:30"])
    with pytest.raises(ConfigError, match="budget 20 is not among"):
        st.StudyConfig(extra_points=["ssrl:20:3"])
    with pytest.raises(ConfigError, match="is not among"):
        st.StudyConfig(systems=["ssrl"], extra_points=["iterative_new:30:3"])


@pytest.mark.slow
def test_study_notebook_runs_on_smoke_and_tunes_on_dev(smoke_corpus, smoke_dino, tmp_path):
    import papermill as pm

    nb = repo_root() / "notebooks" / "06_study.ipynb"
    out = tmp_path / "study"
    out.mkdir()
    params = dict(profile="smoke", corpus=str(smoke_corpus), run_dir=str(out), dino_run=str(smoke_dino),
                  systems=["ssrl", "iterative_stage1"], budgets=[2, 4], rounds=["2:1", "4:2"], seeds=[0, 1],
                  max_settings=2, max_steps_per_epoch=2, device="cpu", archive_to=str(tmp_path / "as-we-go"))
    pm.execute_notebook(str(nb), str(out / "06_study.ipynb"), parameters=params, kernel_name="python3",
                        progress_bar=False, cwd=str(nb.parent))
    ran = nbformat.read(out / "06_study.ipynb", as_version=4)
    errors = [o for c in ran.cells if c.cell_type == "code" for o in c.outputs if o.get("output_type") == "error"]
    assert not errors
    summary = json.loads((out / "study.json").read_text())
    # archived as it went: every finished run is in the archive (the study's own outputs come at the end)
    went = {p.relative_to(tmp_path / "as-we-go").as_posix() for p in (tmp_path / "as-we-go").rglob("*.json")}
    assert "tune/ssrl/" + summary["choice"]["ssrl"]["chosen_name"] + "/results.json" in went
    assert {"runs/ssrl/E4/seed1/results.json", "runs/iterative_stage1/E4/seed1/results_round2.json"} <= went
    # two settings tried per system at the smallest budget, the chosen one has the lowest dev EER
    for system in ("ssrl", "iterative_stage1"):
        c = summary["choice"][system]
        assert len(c["tried"]) == 2 and c["budget"] == 2
        assert c["chosen_name"] == min(c["tried"], key=lambda t: t["dev_eer"])["name"]
    # every (system, budget, seed) point has test and dev figures; the table has a row per system and budget
    assert len(summary["points"]) == 2 * 2 * 2
    assert all(p["eer"] is not None and p["dev_eer"] is not None for p in summary["points"])
    assert {(r["system"], r["budget"], r["n_seeds"]) for r in summary["table"]} == {
        ("ssrl", 2, 2), ("ssrl", 4, 2), ("iterative_stage1", 2, 2), ("iterative_stage1", 4, 2)}
    assert (out / "plots" / "study_eer_all_pairs.html").exists() and (out / "study.md").exists()
    assert "Tuning on dev" in (out / "study.md").read_text() and "## Claims" in (out / "study.md").read_text()
    # intervals of the mean over seeds, and the claims with three outcomes (2 budgets + the cross-budget one)
    assert all(r["eer_ci"][0] <= r["eer_ci"][1] and r["eer_all_pairs_ci"] is not None for r in summary["table"])
    assert [c["claim"] for c in summary["claims"]] == [
        "SSRL better than iterative_stage1 at E = 2", "SSRL better than iterative_stage1 at E = 4",
        "SSRL at E = 2 better than iterative_stage1 at E = 4 (2 rounds)"]
    assert all(c["outcome"] in ("better", "worse", "not separable") and c["n_seeds"] == [2, 2]
               for c in summary["claims"])
    # a second run trains nothing new: every run directory is finished and resumes to its results
    before = {p: p.stat().st_mtime_ns for p in out.rglob("results*.json")}
    st.run_study(st.StudyConfig(profile="smoke", corpus=str(smoke_corpus), out=str(out), dino_run=str(smoke_dino),
                                systems=["ssrl", "iterative_stage1"], budgets=[2, 4], rounds=["2:1", "4:2"],
                                seeds=[0, 1], max_settings=2, device="cpu", overrides={"max_steps_per_epoch": 2}))
    assert {p: p.stat().st_mtime_ns for p in out.rglob("results*.json")} == before
    # the archive carries the finished study to another folder (machine), where nothing retrains
    where = st.StudyConfig(out=str(out), dino_run=str(smoke_dino), budgets=[2, 4], rounds=["2:1", "4:2"])
    n = st.archive(where, tmp_path / "archive")
    files = {p.relative_to(tmp_path / "archive").as_posix() for p in (tmp_path / "archive").rglob("*") if p.is_file()}
    assert n == len(files) and "tune/choice.json" in files and "study.json" in files
    assert "runs/ssrl/E4/seed1/scores.npz" in files and "runs/iterative_stage1/E4/seed0/scores_round1.npz" in files
    assert not any(f.endswith("checkpoint.pt") for f in files)  # stage-2 checkpoints stay behind
    assert st.archive(where, tmp_path / "archive") == 0
    # an iterative run's scores are archived for the rounds that are study budgets only
    one = st.StudyConfig(out=str(out), dino_run=str(smoke_dino), budgets=[4], rounds=["4:2"])
    kept = {p.as_posix() for p in st.archive_files(one)}  # relative to the study folder
    assert "runs/iterative_stage1/E4/seed0/scores_round2.npz" in kept
    assert "runs/iterative_stage1/E4/seed0/scores_round1.npz" not in kept
    assert "runs/iterative_stage1/E4/seed0/results_round1.json" in kept
    moved = tmp_path / "moved"
    assert st.restore(st.StudyConfig(out=str(moved)), tmp_path / "archive") == n
    again = st.run_study(st.StudyConfig(profile="smoke", corpus=str(smoke_corpus), out=str(moved),
                                        dino_run=str(smoke_dino), systems=["ssrl", "iterative_stage1"],
                                        budgets=[2, 4], rounds=["2:1", "4:2"], seeds=[0, 1], max_settings=2,
                                        device="cpu", overrides={"max_steps_per_epoch": 2}))
    assert not list(moved.rglob("checkpoint.pt"))  # nothing was trained
    assert [c["outcome"] for c in again["claims"]] == [c["outcome"] for c in summary["claims"]]


ARCHIVE = repo_root() / "outputs" / "study-archive"


def test_strongest_protocol_reads_dev_eer_at_the_smallest_budget():
    rows = [{"system": "iterative_new", "budget": 12, "dev_eer_mean": 4.0},  # not a candidate
            {"system": "iterative_finetune", "budget": 12, "dev_eer_mean": 5.5, "eer_mean": 9.0},
            {"system": "iterative_stage1", "budget": 12, "dev_eer_mean": 5.2, "eer_mean": 1.0},
            {"system": "iterative_finetune", "budget": 30, "dev_eer_mean": 4.9},
            {"system": "iterative_stage1", "budget": 30, "dev_eer_mean": 5.0},
            {"system": "ssrl", "budget": 12, "dev_eer_mean": 3.0}]
    assert st.strongest_protocol({"table": rows}) == "stage1"
    assert st.strongest_protocol({"table": rows}, budget=30) == "finetune"
    with pytest.raises(ValueError, match="no dev EER"):
        st.strongest_protocol({"table": rows[:1]})


def test_demo_runs_the_papers_protocol_and_the_strongest_the_study_found():
    from ssrl_lab import demo

    assert demo.BASELINES[0] == "iterative" and demo.STRONGEST_PROTOCOL in ("finetune", "stage1")
    assert all(s in demo.ESTIMATES_S["demo"] and s in demo.WHAT for s in demo.BASELINES)
    summary = ARCHIVE / "study.json"
    if not summary.exists():
        pytest.skip("the study archive holds no finished study.json yet")
    assert demo.STRONGEST_PROTOCOL == st.strongest_protocol(json.loads(summary.read_text()), budget=12)


def test_demo_profiles_are_the_settings_chosen_on_dev():
    """The demo's SSRL and iterative profiles use each system's dev-chosen setting: the trainer
    config of its chosen tuning run (K, the teacher's EMA momenta, the learning rate)."""
    from ssrl_lab import demo
    from ssrl_lab.train.iterative import IterativeConfig
    from ssrl_lab.train.ssrl import SSRLConfig

    choice = json.loads((ARCHIVE / "tune" / "choice.json").read_text())

    def chosen_config(system):
        run = ARCHIVE / "tune" / system / choice[system]["chosen_name"]
        return json.loads((run / "config.json").read_text())

    ssrl, ref = SSRLConfig.profile("demo"), chosen_config("ssrl")
    assert (ssrl.k, ssrl.epochs) == (ref["k"], ref["epochs"])
    assert ssrl.ema_start == pytest.approx(ref["ema_start"], abs=1e-4) and ssrl.ema_end == pytest.approx(ref["ema_end"], abs=1e-4)
    for init in ("new", demo.STRONGEST_PROTOCOL):
        it, ref = IterativeConfig.profile("demo", init=init), chosen_config(f"iterative_{init}")
        assert (it.k, it.lr, it.epochs, it.rounds) == (ref["k"], ref["lr"], ref["epochs"], ref["rounds"]), init


def _restore_subset(tmp_path, keep):
    """The committed 40-speaker study with only some runs finished: its tuning choice and the
    result and score files of the runs in ``keep`` ("system/E<budget>/seed<s>")."""
    import shutil

    out = tmp_path / "study"
    (out / "tune").mkdir(parents=True)
    shutil.copy(ARCHIVE / "tune" / "choice.json", out / "tune" / "choice.json")
    for run in keep:
        src = ARCHIVE / "runs" / run
        shutil.copytree(src, out / "runs" / run, ignore=shutil.ignore_patterns("metrics.jsonl"))
    return out


def test_partial_report_summarises_the_finished_points_only(tmp_path, monkeypatch):
    from ssrl_lab.study_partial import partial_markdown, report_partial, study_config_from_params

    monkeypatch.setattr("ssrl_lab.eval.bootstrap.CI_REPS", 200)  # intervals: fewer replicates, same code
    out = _restore_subset(tmp_path, ["ssrl/E12/seed0", "ssrl/E30/seed0", "iterative_finetune/E30/seed0",
                                     "iterative_stage1/E30/seed0"])
    archived = json.loads((ARCHIVE / "study.json").read_text())
    extra = ["ssrl:30:3", "iterative_finetune:30:3", "iterative_stage1:30:3"]
    study = study_config_from_params(str(out), {"extra_points": extra, "tracking": "none", "run_dir": "x"})
    summary = report_partial(study)
    # 24 points (4 systems x 2 budgets x 3 seeds) + 3 extra; an iterative E30 run gives its E = 12 point too
    assert (summary["partial"]["finished"], summary["partial"]["planned"]) == (6, 27)
    # power: the pair the rule chose on dev, and the other protocol the design gave extra seeds
    chosen = "iterative_" + st.strongest_protocol(summary)
    other = ({"iterative_finetune", "iterative_stage1"} - {chosen}).pop()
    assert summary["power"]["b"] == chosen and summary["power"]["why"] == WHY_DEV
    assert [(p["b"], p["why"]) for p in summary["power_more"]] == [(other, WHY_DESIGN)]
    assert summary["power_more"][0]["estimates"] and summary["power_more"][0]["n_seeds"] == [1, 1]
    assert "iterative_new E = 30 seed 0" in summary["partial"]["missing"] and "ssrl E = 30 seed 3" in summary["partial"]["missing"]
    # the interim table holds exactly the archived seed-0 figures of the finished runs
    seed0 = {(p["system"], p["budget"]): p["eer"] for p in archived["points"] if p["seed"] == 0}
    assert {(r["system"], r["budget"]): r["eer_mean"] for r in summary["table"]} == {
        (s, b): seed0[s, b] for s in ("ssrl", "iterative_finetune", "iterative_stage1") for b in (12, 30)}
    assert all(r["n_seeds"] == 1 and r["eer_ci"][0] < r["eer_mean"] < r["eer_ci"][1] for r in summary["table"])
    claims = {c["claim"]: c for c in summary["claims"]}
    assert claims["SSRL better than iterative_finetune at E = 30"]["outcome"] in ("better", "worse", "not separable")
    assert claims["SSRL better than iterative_new at E = 30"]["reason"] == "no finished run of iterative_new at E = 30"
    # one seed: the power table shows the speakers-only lower bound, and the banner says why
    md = (out / "study-partial.md").read_text()
    assert md == partial_markdown(summary)
    assert md.startswith("# Study (interim: 6 of 27 points finished)") and "≥ " in md and "lower bound" in md
    assert f"**{chosen}** ({WHY_DEV})" in md and f"**{other}** ({WHY_DESIGN})" in md
    assert not (out / "study.json").exists()  # a finished study's summary is never written by an interim one


def test_partial_report_refuses_what_it_cannot_read(tmp_path):
    from ssrl_lab.study_partial import report_partial, study_config_from_params

    with pytest.raises(ConfigError, match="unknown study parameter"):
        study_config_from_params(str(tmp_path), {"sedes": [0, 1]})
    with pytest.raises(ConfigError, match="has not finished tuning"):
        report_partial(st.StudyConfig(out=str(tmp_path)))
    out = _restore_subset(tmp_path, [])
    with pytest.raises(ConfigError, match="no study point"):
        report_partial(st.StudyConfig(out=str(out)))
    from ssrl_lab.study_partial import main

    assert main(["--out", str(out)]) == 2
    assert main(["--out", str(out), "-p", "sedes", "[0]"]) == 2
