# The two commands of the study: `make study` and `make test`.
# Both create .venv when it is missing and install everything into it.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PROFILE ?= quick
ARGS ?=

.PHONY: study test lab install bench clean-runs

study: $(STAMP)
	$(PY) -m umcam_lib.pipeline --profile $(PROFILE) $(ARGS)

test: $(STAMP)
	$(PY) -m pytest -q tests

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

install: $(STAMP)

# torch/torchvision: the versions this machine holds on disk (a CUDA build that also runs on the CPU).
# GeodisTK 0.1.7 is a source package: it needs numpy at build time and a flag to build against numpy 2.
$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; run 'make PYTHON=python3 ...' with a Python 3.11" >&2; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q numpy setuptools wheel
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	CPPFLAGS=-DNPY_IN_ARRAY=NPY_ARRAY_IN_ARRAY $(PY) -m pip install -q --no-build-isolation GeodisTK
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (umcam)" >/dev/null
	@touch $(STAMP)

clean-runs:
	rm -rf runs
