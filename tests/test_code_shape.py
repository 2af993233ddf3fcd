"""The training code stays readable: one loop, small trainers, SSRL's step on one screen.

Limits from the training-loop refactor (``docs/ARCHITECTURE.md``, "The training loop and the
method plug-ins"): no trainer file over 250 lines, ``SSRLMethod.step`` within 60 lines, no function
in ``ssrl_lab/train/`` over 100 lines. Lines are counted as in the file, docstrings and comments
included.
"""
import ast
from pathlib import Path

TRAIN = Path(__file__).resolve().parents[1] / "ssrl_lab" / "train"
#: the trainers (a method each) and the loop that drives them
TRAINERS = ("dino.py", "ssrl.py", "classifier.py", "iterative.py", "supervised.py", "random_init.py", "loop.py")


def _functions(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            yield node.name, node.end_lineno - first + 1


def test_trainer_files_are_short():
    long = {name: n for name in TRAINERS if (n := len((TRAIN / name).read_text().splitlines())) > 250}
    assert not long, f"trainer files over 250 lines: {long}"


def test_ssrl_step_fits_on_one_screen():
    tree = ast.parse((TRAIN / "ssrl.py").read_text())
    method = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "SSRLMethod")
    step = next(n for n in method.body if isinstance(n, ast.FunctionDef) and n.name == "step")
    assert step.end_lineno - step.lineno + 1 <= 60


def test_no_function_in_train_is_over_100_lines():
    long = [(p.name, name, n) for p in sorted(TRAIN.glob("*.py")) for name, n in _functions(p) if n > 100]
    assert not long, f"functions over 100 lines: {long}"


def test_the_counter_counts(tmp_path):
    """The checks above can fail: a 101-line function (decorator included) is found."""
    path = tmp_path / "long.py"
    path.write_text("@staticmethod\ndef f():\n" + "    x = 1\n" * 99 + "\n\ndef g():\n    pass\n")
    assert dict(_functions(path)) == {"f": 101, "g": 2}
