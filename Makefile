# ssrl-lab: `make demo` and `make test` do all set-up on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# make demo QUICK=1: the whole pipeline on the smoke profile and corpus (about 2 min; numbers not comparable)
ifeq ($(QUICK),1)
DEMO_PROFILE ?= smoke
DEMO_OUT     ?= outputs/demo-quick
DEMO_FLAGS   ?= --quick
endif
DEMO_PROFILE ?= demo
DEMO_CORPUS  ?= data/synthvox-$(DEMO_PROFILE)
DEMO_OUT     ?= outputs/demo
DEMO_FLAGS   ?=
PYTEST_ARGS  ?=
# make lab LAB_ARGS="--no-browser --port 8888" (as root --allow-root is added: root is common in GPU containers)
LAB_ARGS     ?=
ALLOW_ROOT   := $(if $(filter 0,$(shell id -u 2>/dev/null)),--allow-root,)
# make board BOARD_ARGS="--bind_all --port 6006": TensorBoard over every run's event files (<run_dir>/tb/)
# under BOARD_DIR; it runs as root as it does as any user (TensorBoard has no root check)
BOARD_DIR    ?= outputs
BOARD_ARGS   ?=

.PHONY: env test demo study study-archive study-report study-compare corpus bench lab board clean-env

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
	$(PY) -m ruff check ssrl_lab tests bench
	$(PY) -m pytest -q $(PYTEST_ARGS)

corpus: $(STAMP)
	$(PY) -m ssrl_lab.data.synthvox --profile $(DEMO_PROFILE) --out $(DEMO_CORPUS)

# prints its plan and estimated times first, builds the corpus when missing, then one
# [progress] line per training epoch
demo: $(STAMP)
	$(PY) -m ssrl_lab.demo --profile $(DEMO_PROFILE) --corpus $(DEMO_CORPUS) --out $(DEMO_OUT) --build-corpus $(DEMO_FLAGS)

# The compute-matched study (issue: evidence): about 3 h on 2 idle cores, resumable; a second
# `make study` only trains what is missing. STUDY_OUT relocates it.
# STUDY_ARCHIVE (committed) carries the finished runs and the DINO model from machine to machine:
# restored where missing first, archived again when the study ends or is stopped (make study-archive).
# make study STUDY_PROFILE=study: the same study on the SynthVox 'study' corpus (demo's training
# audio byte for byte, 200 test and 80 dev speakers), from the demo study's archived DINO model,
# with seeds 3-4 more for the deciding pair (SSRL and finetune at E = 30); archived as it goes.
STUDY_PROFILE ?= demo
ifeq ($(STUDY_PROFILE),study)
STUDY_OUT     ?= outputs/study200
STUDY_ARCHIVE ?= outputs/study200-archive
STUDY_FLAGS   ?= -p dino_run outputs/study-archive/dino \
	-p extra_points '["ssrl:30:3", "ssrl:30:4", "iterative_finetune:30:3", "iterative_finetune:30:4"]'
endif
STUDY_CORPUS  ?= data/synthvox-$(STUDY_PROFILE)
STUDY_OUT     ?= outputs/study
STUDY_ARCHIVE ?= outputs/study-archive
STUDY_FLAGS   ?=
study: $(STAMP)
	$(PY) -m ssrl_lab.data.synthvox --profile $(STUDY_PROFILE) --out $(STUDY_CORPUS)
	$(PY) -m ssrl_lab.study --profile demo --corpus $(STUDY_CORPUS) --out $(STUDY_OUT) \
		--restore-from $(STUDY_ARCHIVE) --archive-to $(STUDY_ARCHIVE) $(STUDY_FLAGS)

study-archive: $(STAMP)
	$(PY) -m ssrl_lab.study --out $(STUDY_OUT) --archive-to $(STUDY_ARCHIVE) --archive-only

# the study so far (train nothing): <STUDY_OUT>/study-partial.md from the finished points, marked interim
study-report: $(STAMP)
	$(PY) -m ssrl_lab.study_partial --out $(STUDY_OUT) --restore-from $(STUDY_ARCHIVE) $(STUDY_FLAGS)

# the 40- and 200-speaker studies side by side (means, measured MDD, claims, interval half-widths)
study-compare: $(STAMP)
	$(PY) -m ssrl_lab.study_compare "40 speakers=outputs/study-archive/study.json" \
		"200 speakers=outputs/study200-archive/study.json" --out outputs/study-compare.md

bench: $(STAMP)
	$(PY) bench/trivial_baseline.py
	$(PY) bench/kmeans.py
	$(PY) bench/tracking.py

lab: $(STAMP)
	$(VENV)/bin/jupyter lab $(ALLOW_ROOT) $(LAB_ARGS) notebooks/

board: $(STAMP)
	@mkdir -p $(BOARD_DIR)
	$(VENV)/bin/tensorboard --logdir $(BOARD_DIR) $(BOARD_ARGS)

clean-env:
	rm -rf $(VENV)
