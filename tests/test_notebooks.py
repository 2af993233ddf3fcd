"""The notebooks: committed clean, parameters first, and every one executed with papermill on the
smoke profile (00 builds the SynthVox smoke corpus once per session; 01 -> 02, 03; 04 over them;
05 on the 03 run), checking that no cell errored and that the expected HTML plots exist."""
import json
from pathlib import Path

import nbformat
import pytest

from ssrl_lab import sweep
from ssrl_lab.notebook_params import repo_root

NB_DIR = repo_root() / "notebooks"
NOTEBOOKS = ["00_corpus.ipynb", "01_dino.ipynb", "02_iterative.ipynb", "03_ssrl.ipynb", "04_compare.ipynb",
             "05_explore.ipynb", "06_study.ipynb"]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_notebook_is_clean_and_parameterised(name):
    nb = nbformat.read(NB_DIR / name, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    for i, c in enumerate(code):
        assert c.outputs == [], f"{name}: code cell {i} carries outputs"
        assert c.execution_count is None, f"{name}: code cell {i} carries an execution count"
    assert "parameters" in code[0].metadata.get("tags", []), f"{name}: first code cell is not tagged parameters"
    assert nb.metadata["kernelspec"]["name"] == "python3"
    params = sweep.notebook_params(NB_DIR / name)
    assert {"profile", "corpus", "run_dir"} <= set(params), f"{name}: missing common parameters"
    assert params["profile"].default == '"demo"'
    # the cell after the parameters checks them
    assert "nbp.setup(" in code[1].source
    # method parameters default to None (= the profile's value) and are typed
    for p in params.values():
        if p.default == "None":
            assert p.annotation.startswith("Optional["), f"{name}: {p.name} has no Optional[...] annotation"
    # notebooks hold no training loops
    assert not any("backward(" in c.source or "optimizer" in c.source for c in code)


def _execute(name, out_dir: Path, **params) -> Path:
    import papermill as pm

    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / name
    pm.execute_notebook(str(NB_DIR / name), str(out), parameters=params, kernel_name="python3", progress_bar=False,
                        cwd=str(NB_DIR))
    nb = nbformat.read(out, as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.get("output_type") == "error"]
    assert not errors, f"{name}: {errors[0]['ename']}: {errors[0]['evalue']}"
    return out


def _plots(run_dir: Path) -> set[str]:
    return {p.name for p in (run_dir / "plots").glob("*.html")}


def test_bad_parameter_fails_fast_with_a_clear_message(tmp_path):
    import papermill as pm

    with pytest.raises(pm.PapermillExecutionError, match="profile='bogus' is not one of"):
        pm.execute_notebook(str(NB_DIR / "04_compare.ipynb"), str(tmp_path / "x.ipynb"),
                            parameters={"profile": "bogus", "run_dir": str(tmp_path / "c")}, kernel_name="python3",
                            progress_bar=False)
    assert not (tmp_path / "c").exists()



#: one misspelt parameter per notebook and the name the error must suggest
MISSPELT = {"00_corpus.ipynb": ("n_listn", "n_listen"), "01_dino.ipynb": ("epoch", "epochs"),
            "02_iterative.ipynb": ("round", "rounds"), "03_ssrl.ipynb": ("queue_length", "queue_len"),
            "04_compare.ipynb": ("run", "runs"), "05_explore.ipynb": ("page_sise", "page_size"),
            "06_study.ipynb": ("seed", "seeds")}


def test_every_notebook_is_covered_by_the_misspelt_parameter_test():
    assert set(MISSPELT) == {p.name for p in NB_DIR.glob("*.ipynb")}, "add the new notebook to MISSPELT"


@pytest.mark.parametrize("name", sorted(MISSPELT))
def test_misspelt_parameter_is_refused_before_anything_runs(name, tmp_path):
    """papermill injects an undeclared name as a new cell; the cell after the parameters refuses it,
    names the closest valid parameter, lists the valid ones, and no run directory appears."""
    import papermill as pm

    bad, good = MISSPELT[name]
    run_dir = tmp_path / "run"
    with pytest.raises(pm.PapermillExecutionError) as e:
        pm.execute_notebook(str(NB_DIR / name), str(tmp_path / name), kernel_name="python3", progress_bar=False,
                            parameters={"profile": "smoke", bad: 3, "run_dir": str(run_dir),
                                        "corpus": str(tmp_path / "corpus")}, cwd=str(NB_DIR))
    assert e.value.ename == "ParameterError"
    msg = e.value.evalue
    assert f"unknown parameter {bad} (did you mean {good}?)" in msg
    assert "Valid parameters: profile, corpus, run_dir" in msg and good in msg.split("Valid parameters:")[1]
    assert not run_dir.exists() and not (tmp_path / "corpus").exists()
    nb = nbformat.read(tmp_path / name, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    failed = [i for i, c in enumerate(code) if any(o.get("output_type") == "error" for o in c.outputs)]
    assert failed == [2], f"{name}: the check must fail in the cell right after the injected parameters"


@pytest.fixture(scope="session")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("notebooks")


@pytest.fixture(scope="session")
def corpus(work):
    d = work / "corpus"
    _execute("00_corpus.ipynb", work / "executed", profile="smoke", corpus=str(d), run_dir=str(work / "corpus_plots"),
             synthvox_profile="smoke", n_listen=1)
    return d


@pytest.fixture(scope="session")
def dino(work, corpus):
    d = work / "dino"
    _execute("01_dino.ipynb", work / "executed", profile="smoke", corpus=str(corpus), run_dir=str(d))
    return d


@pytest.fixture(scope="session")
def iterative(work, corpus, dino):
    d = work / "iterative"
    _execute("02_iterative.ipynb", work / "executed", profile="smoke", corpus=str(corpus), run_dir=str(d),
             dino_run=str(dino))
    return d


@pytest.fixture(scope="session")
def ssrl(work, corpus, dino):
    d = work / "ssrl"
    _execute("03_ssrl.ipynb", work / "executed", profile="smoke", corpus=str(corpus), run_dir=str(d), dino_run=str(dino))
    return d


@pytest.mark.slow
def test_00_corpus(work, corpus):
    assert (corpus / "corpus.json").exists()
    assert {"utterances_per_speaker.html", "sessions_per_speaker.html", "durations.html"} <= _plots(work / "corpus_plots")


@pytest.mark.slow
def test_01_dino(dino):
    assert json.loads((dino / "results.json").read_text())["system"] == "dino"
    assert {"training.html", "collapse.html", "eer.html", "det.html", "scores.html"} <= _plots(dino)


@pytest.mark.slow
def test_02_iterative(iterative):
    assert {"eer_rounds.html", "pseudo_labels.html", "loss_rounds.html", "det.html"} <= _plots(iterative)


@pytest.mark.slow
def test_03_ssrl(ssrl):
    assert {"training.html", "eer.html", "cluster_count.html", "pseudo_labels.html", "purity_vs_size.html",
            "label_dynamics.html", "sankey.html", "loss_gmm.html", "detector.html"} <= _plots(ssrl)


@pytest.mark.slow
def test_04_compare(work, corpus, dino, iterative, ssrl):
    from ssrl_lab.train.random_init import RandomInitConfig, train

    rnd = work / "random"
    train(RandomInitConfig.profile("smoke", corpus=str(corpus), run_dir=str(rnd)), resume=True, progress=False)
    out = work / "compare"
    _execute("04_compare.ipynb", work / "executed", profile="smoke", run_dir=str(out), summary_out=str(out),
             runs=[str(rnd), str(dino), str(iterative), str(ssrl)])
    summ = json.loads((out / "summary.json").read_text())
    assert list(summ["systems"]) == ["random", "dino", "iterative_r1", "iterative_rN", "ssrl"]
    assert {"det.html", "score_distributions.html", "seconds.html", "ssrl_vs_iterative.html"} <= _plots(out)
    md = (out / "summary.md").read_text()
    assert "## Claims" in md and "DINO better than random" in md
    claims = {c["claim"]: c for c in summ["ordering"]}
    assert claims["DINO better than random"]["outcome"] in ("better", "worse", "not separable")
    assert claims["SSRL better than iterative round N"]["outcome_all_pairs"] in ("better", "worse", "not separable")
    assert all(len(summ["systems"][k]["eer_ci"]) == 2 for k in ("random", "dino", "iterative_r1", "ssrl"))


@pytest.mark.slow
def test_05_explore(work, corpus, ssrl):
    _execute("05_explore.ipynb", work / "executed", profile="smoke", corpus=str(corpus), run_dir=str(ssrl),
             runs_root=str(work))
    assert {"explore_map.html", "explore_purity.html", "explore_utterance.html"} <= _plots(ssrl)


def test_demo_refuses_a_missing_corpus(tmp_path, capsys):
    from ssrl_lab import demo

    assert demo.main(["--corpus", str(tmp_path / "none"), "--out", str(tmp_path / "out")]) == 2
    assert "python -m ssrl_lab.data.synthvox" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
