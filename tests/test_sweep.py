"""The papermill sweep: value parsing, refusal before anything runs, and a real 2-point grid."""
import json
import subprocess
import sys

import nbformat
import pytest

from ssrl_lab import sweep

PARAMS = '''from typing import Optional
profile: str = "smoke"  # smoke | demo | vox
run_dir: Optional[str] = None
queue_len: Optional[int] = None
lr: Optional[float] = None
flag: bool = False
noise_model: Optional[str] = None
'''
BODY = '''import json, pathlib
d = pathlib.Path(run_dir); d.mkdir(parents=True, exist_ok=True)
assert queue_len is None or isinstance(queue_len, int)
(d / "seen.json").write_text(json.dumps({"queue_len": queue_len, "noise_model": noise_model, "lr": lr}))
'''


@pytest.fixture
def tiny_nb(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    p = nbformat.v4.new_code_cell(PARAMS)
    p.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# tiny"), p, nbformat.v4.new_code_cell(BODY)]
    path = tmp_path / "tiny.ipynb"
    nbformat.write(nb, path)
    return path


def test_parse_value():
    assert sweep.parse_value("None") is None and sweep.parse_value("true") is True
    assert sweep.parse_value("3") == 3 and sweep.parse_value("1e-3") == 0.001 and sweep.parse_value("'3'") == "3"
    assert sweep.parse_value("[1, 2]") == [1, 2] and sweep.parse_value("gmm") == "gmm"
    assert sweep.split_values("1,2,3") == ["1", "2", "3"] and sweep.split_values("[1,2]") == ["[1,2]"]
    assert sweep.annotation_types("Optional[int]", "None") == (type(None), int)
    assert sweep.annotation_types("", "3") == (int, type(None))
    assert sweep.annotation_types("Optional[list[str]]", "None") == (type(None), list)


def test_notebook_params_types(tiny_nb):
    ps = sweep.notebook_params(tiny_nb)
    assert set(ps) == {"profile", "run_dir", "queue_len", "lr", "flag", "noise_model"}
    assert ps["queue_len"].types == (type(None), int) and ps["profile"].help == "smoke | demo | vox"


def test_grid_is_cartesian_and_typed(tiny_nb, tmp_path):
    grid = sweep.build_grid(tiny_nb, [("queue_len", "1,5"), ("noise_model", "none,gmm"), ("lr", "1"), ("profile", "smoke")],
                            tmp_path / "sw")
    assert [g.name for g in grid] == ["queue_len=1,noise_model=None", "queue_len=1,noise_model=gmm",
                                      "queue_len=5,noise_model=None", "queue_len=5,noise_model=gmm"]
    assert grid[1].params == {"queue_len": 1, "noise_model": "gmm", "lr": 1.0, "profile": "smoke"}
    assert isinstance(grid[0].params["lr"], float) and grid[0].params["noise_model"] is None
    assert grid[3].run_dir == (tmp_path / "sw" / "tiny" / "queue_len=5,noise_model=gmm").resolve()


@pytest.mark.parametrize("specs, match", [
    ([("queue_length", "1")], "(?s)unknown parameter.*queue_length.*valid parameters.*queue_len: Optional\\[int\\]"),
    ([("queue_len", "1,two")], "queue_len expects Optional\\[int\\], got 'two'"),
    ([("queue_len", "1.5")], "queue_len expects"),
    ([("flag", "None")], "flag \\(bool\\) cannot be None"),
    ([("run_dir", "x")], "set by the sweep"),
    ([("lr", "1"), ("lr", "2")], "given twice"),
])
def test_refusals(tiny_nb, tmp_path, specs, match):
    with pytest.raises(sweep.SweepError, match=match):
        sweep.build_grid(tiny_nb, specs, tmp_path)


def test_cli_dry_run_refuses_before_running(tiny_nb, tmp_path):
    out = tmp_path / "sw"
    r = subprocess.run([sys.executable, "-m", "ssrl_lab.sweep", str(tiny_nb), "-p", "queue_len", "x", "--out-root",
                        str(out)], capture_output=True, text=True)
    assert r.returncode == 2 and "queue_len expects" in r.stderr and "valid parameters" in r.stderr
    assert not out.exists()
    r = subprocess.run([sys.executable, "-m", "ssrl_lab.sweep", str(tiny_nb), "-p", "queue_len", "1,2", "--out-root",
                        str(out), "--dry-run"], capture_output=True, text=True)
    assert r.returncode == 0 and "2 grid point(s)" in r.stdout and not out.exists()


@pytest.mark.slow
def test_runs_two_point_grid(tiny_nb, tmp_path):
    out = tmp_path / "sw"
    rc = sweep.main([str(tiny_nb), "-p", "queue_len", "1,2", "-p", "noise_model", "gmm", "--out-root", str(out)])
    assert rc == 0
    for q in (1, 2):
        d = out / "tiny" / f"queue_len={q}"
        assert json.loads((d / "seen.json").read_text()) == {"queue_len": q, "noise_model": "gmm", "lr": None}
        executed = nbformat.read(d / "tiny.ipynb", as_version=4)
        assert any("injected-parameters" in c.metadata.get("tags", []) for c in executed.cells)
    manifest = json.loads((out / "tiny" / "sweep.json").read_text())
    assert [p["status"] for p in manifest["points"]] == ["ok", "ok"]
