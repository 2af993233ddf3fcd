# ssrl-lab: `make demo` and `make test` do all set-up on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DEMO_CORPUS ?= data/synthvox-demo
DEMO_OUT    ?= outputs/demo
PYTEST_ARGS ?=

.PHONY: env test demo study corpus bench lab clean-env

env: $(STAMP)

# The environment is (re)built only when missing or when pyproject.toml changed:
# a second `make test` installs nothing.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	@touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

corpus: $(STAMP)
	$(PY) -m ssrl_lab.data.synthvox --profile demo --out $(DEMO_CORPUS)

demo: corpus
	$(PY) -m ssrl_lab.demo --corpus $(DEMO_CORPUS) --out $(DEMO_OUT)

# The compute-matched study (issue: evidence): about 3 h on 2 idle cores, resumable; a second
# `make study` only trains what is missing. STUDY_OUT relocates it.
STUDY_OUT ?= outputs/study
study: corpus
	$(PY) -m ssrl_lab.study --profile demo --corpus $(DEMO_CORPUS) --out $(STUDY_OUT)

bench: $(STAMP)
	$(PY) bench/trivial_baseline.py
	$(PY) bench/kmeans.py

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

clean-env:
	rm -rf $(VENV)
