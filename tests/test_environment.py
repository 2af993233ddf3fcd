"""environment.yml (the conda recipe for GPU servers) carries every runtime dependency of pyproject.toml."""
import re
from pathlib import Path

import tomllib
import yaml

ROOT = Path(__file__).resolve().parents[1]
# pip name -> the conda package that provides it on the GPU servers
CONDA_NAME = {"torch": "pytorch", "soundfile": "pysoundfile", "faiss-cpu": "faiss-gpu", "kaleido": "python-kaleido"}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].strip().lower()


def _environment_packages() -> set[str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    names = set()
    for dep in env["dependencies"]:
        if isinstance(dep, dict):  # the pip: section
            names.update(_name(d) for d in dep.get("pip", []))
        else:
            names.add(_name(dep))
    return names


def test_every_runtime_dependency_is_in_environment_yml():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    available = _environment_packages()
    missing = [d for d in (_name(x) for x in deps) if CONDA_NAME.get(d, d) not in available]
    assert not missing, f"environment.yml lacks {missing}"


def test_environment_pins_the_torch_pair_and_python():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    flat = [d for d in env["dependencies"] if isinstance(d, str)]
    assert "python=3.11" in flat
    assert "pytorch=2.11.0" in flat and "torchaudio=2.11.0" in flat
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert "torch==2.11.0" in deps and "torchaudio==2.11.0" in deps
