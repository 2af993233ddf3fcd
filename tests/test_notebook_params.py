"""The unknown-parameter check of ssrl_lab.notebook_params, cell by cell as a kernel runs them.

``run_cells`` executes cells in one namespace the way IPython does: each cell's source is
appended to the input history ``_ih`` before it runs. (tests/test_notebooks.py runs the real
notebooks under papermill.)"""
import pytest

from ssrl_lab import notebook_params as nbp
from ssrl_lab.notebook_params import ParameterError

PARAMS = '''from ssrl_lab import notebook_params as nbp
profile: str = "demo"
queue_len = None  # a comment
run_dir = None
nbp.declare(globals(), notebook="nb")
'''
SETUP = 's = nbp.setup("x", profile, None, run_dir, params=dict(queue_len=queue_len), namespace=globals())\n'


def run_cells(ns, *cells):
    ns.setdefault("_ih", [""])
    for src in cells:
        ns["_ih"].append(src)
        exec(compile(src, "<cell>", "exec"), ns)
    return ns


def test_declared_names_come_from_the_parameters_cell():
    ns = run_cells({}, PARAMS)
    assert ns[nbp._STATE]["names"] == ("profile", "queue_len", "run_dir")


def test_injected_known_parameters_pass_and_are_used():
    ns = run_cells({}, PARAMS, "# Parameters\nqueue_len = 3\nprofile = 'smoke'\n", SETUP)
    assert ns["s"].overrides == {"queue_len": 3} and ns["s"].profile == "smoke"


def test_injected_misspelt_parameter_is_refused_with_a_suggestion():
    with pytest.raises(ParameterError) as e:
        run_cells({}, PARAMS, "# Parameters\nqueue_length = 3\n", SETUP)
    msg = str(e.value)
    assert msg.startswith("nb: unknown parameter queue_length (did you mean queue_len?)")
    assert "Valid parameters: profile, queue_len, run_dir." in msg


def test_several_unknown_names_without_a_close_match():
    with pytest.raises(ParameterError, match=r"unknown parameters zzz, queue_lenn \(did you mean queue_len\?\)"):
        run_cells({}, PARAMS, "zzz = 1\nqueue_lenn = 2\n", SETUP)


def test_helper_names_with_underscore_imports_and_functions_are_not_parameters():
    ns = run_cells({}, PARAMS, "import math\n_base = '/data'\ndef f():\n    inner = 1\nrun_dir = _base + '/r'\n", SETUP)
    assert str(ns["s"].run_dir) == "/data/r"


def test_rerunning_the_setup_cell_after_later_cells_does_not_refuse_their_variables():
    ns = run_cells({}, PARAMS, SETUP, "results = {'eer': 5.0}\n", SETUP)
    assert "results" in ns


def test_fixing_the_typo_and_rerunning_from_the_parameters_cell_passes():
    ns = {}
    with pytest.raises(ParameterError):
        run_cells(ns, PARAMS, "queue_length = 3\n", SETUP)
    with pytest.raises(ParameterError):  # the typo cell ran after the parameters cell: still refused
        run_cells(ns, "queue_len = 3\n", SETUP)
    run_cells(ns, PARAMS, "queue_len = 3\n", SETUP)  # the stale name lingers in globals but was not assigned
    assert ns["s"].overrides == {"queue_len": 3} and "queue_length" in ns


def test_a_name_that_existed_before_the_parameters_cell_is_still_refused_when_reassigned():
    ns = {"queue_length": 1}
    with pytest.raises(ParameterError, match="queue_length"):
        run_cells(ns, PARAMS, "queue_length = 3\n", SETUP)


def test_without_input_history_the_new_globals_count():
    ns = {}
    exec(PARAMS, ns)
    exec("queue_length = 3\n", ns)
    with pytest.raises(ParameterError, match=r"queue_length \(did you mean queue_len\?\)"):
        exec(SETUP, ns)
    ns = {}
    exec(PARAMS, ns)
    exec("queue_len = 3\nimport json\n", ns)
    exec(SETUP, ns)
    assert ns["s"].overrides == {"queue_len": 3}


def test_setup_refuses_a_namespace_whose_parameters_cell_did_not_declare():
    with pytest.raises(ParameterError, match="end it with nbp.declare"):
        nbp.setup("x", "demo", None, None, namespace={})


def test_declare_line_is_invisible_to_papermills_parser():
    """papermill groups lines without '=' into the previous parameter; the keyword keeps the
    declare line out of the last parameter's default and help."""
    from papermill.translators import PythonTranslator

    params = PythonTranslator.inspect({"source": PARAMS})
    assert [p.name for p in params] == ["profile", "queue_len", "run_dir"]
    assert params[-1].default == "None"
