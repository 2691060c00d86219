# The two commands of the study: `make study` and `make test`.
# Both create .venv when it is missing and install everything into it.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PROFILE ?= quick
ARGS ?=

.PHONY: study lesson test test-fast lint lab book install check-install bench clean-runs

study: $(STAMP)
	$(PY) -m umcam_lib.pipeline --profile $(PROFILE) $(ARGS)

# The lab's starting point (docs/teaching.md): the lesson profile into runs/lesson, figures beside it
# (not committed); every exercise starts from it with --base runs/lesson.
lesson: $(STAMP)
	$(PY) -m umcam_lib.pipeline --profile lesson --figures runs/lesson/figures $(ARGS)

# tests/ and the Examples in the library's docstrings (doctests); the two __main__.py files call
# sys.exit(main()) on import and are not collected.
DOCTESTS := umcam_lib --doctest-modules --ignore-glob='*/__main__.py'

test: $(STAMP)
	$(PY) -m pytest -q tests $(DOCTESTS)

# The inner loop: every test except the slow ones (notebook runs, model training; tests/conftest.py
# marks every test that uses the tiny pipeline run as slow).
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow" tests $(DOCTESTS)

# ruff (rules in pyproject.toml) and the check that notebooks are committed without outputs.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) tools/check_notebooks.py notebooks/*.ipynb

# JupyterLab refuses to start as root unless told to (containers, cloud machines).
LAB_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root,)
lab: $(STAMP)
	$(VENV)/bin/jupyter lab $(LAB_ROOT) notebooks

# The study as a static site (book/conf.py: Sphinx with MyST-NB) from the committed pages and
# executed notebooks, nothing executed; open build/book/index.html. tools/book_page.py checks a
# page and takes a screenshot of it in headless Chromium.
book: $(STAMP)
	$(PY) -m sphinx -b html -q -c book . build/book
	@echo "site: build/book/index.html"

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

install: $(STAMP)

# Step 2 of the install for the python $(1): the [geodesic] extra (GeodisTK) with its build flag.
install_geodesic = CPPFLAGS=-DNPY_IN_ARRAY=NPY_ARRAY_IN_ARRAY $(1) -m pip install -q --no-build-isolation -e '.[dev,geodesic]'

# Versions come from pyproject.toml only. Step 1 installs the study and its pinned dependencies;
# step 2 adds the [geodesic] extra (GeodisTK 0.1.7, a source package): it builds against the
# numpy already installed (--no-build-isolation) and needs a flag to compile with numpy 2.
$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; run 'make PYTHON=python3 ...' with a Python 3.11" >&2; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q setuptools wheel
	$(PY) -m pip install -q -e '.[dev]'
	$(call install_geodesic,$(PY))
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (umcam)" >/dev/null
	@touch $(STAMP)

# The install routes in a throwaway venv, as a user would run them (minutes: torch is large; not
# part of make test): the plain pip route (`pip install -e '.[dev]'`, no flag, no GeodisTK) must
# install every pinned version and import the library; then make's second step must build
# GeodisTK into it.
CHECK_VENV ?= /tmp/umcam-check-install
check-install:
	rm -rf $(CHECK_VENV)
	$(PYTHON) -m venv $(CHECK_VENV)
	$(CHECK_VENV)/bin/python -m pip install -q -e '.[dev]'
	$(CHECK_VENV)/bin/python -c "import umcam_lib.gse, umcam_lib.cam, umcam_lib.models, cv2, monai, pytorch_grad_cam; print('plain pip route: ok')"
	$(CHECK_VENV)/bin/python -m pip install -q setuptools wheel
	$(call install_geodesic,$(CHECK_VENV)/bin/python)
	$(CHECK_VENV)/bin/python -c "import GeodisTK; print('geodesic extra: ok')"
	rm -rf $(CHECK_VENV)

clean-runs:
	rm -rf runs
