"""The install routes agree: versions live in pyproject.toml only, and every route installs from it.

The plain pip route itself is exercised by ``make check-install`` (a throwaway venv; minutes,
so not part of ``make test``); conda is not available here, so its file is checked statically.
"""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([0-9][0-9A-Za-z.+\-]*)$")
VERSION_IN_TEXT = re.compile(r"[A-Za-z0-9_\-]+\s*(==|>=|<=|~=)\s*[0-9]")


def _requirements() -> list[str]:
    reqs = list(PROJECT["dependencies"])
    for extra in PROJECT["optional-dependencies"].values():
        reqs += extra
    return reqs


def test_every_dependency_is_pinned_exactly():
    loose = [r for r in _requirements() if not PIN.match(r)]
    assert not loose, f"pyproject.toml: pin these with == (the one source of versions): {loose}"


def test_geodistk_is_an_optional_extra_not_a_core_dependency():
    core = [PIN.match(r).group(1).lower() for r in PROJECT["dependencies"]]
    assert "geodistk" not in core, "GeodisTK needs a compiler flag to build; keep it in the [geodesic] extra"
    assert PROJECT["optional-dependencies"]["geodesic"] == ["GeodisTK==0.1.7"]


def test_packages_the_code_imports_are_declared():
    core = {PIN.match(r).group(1).lower() for r in PROJECT["dependencies"]}
    # cv2: tests/test_cam.py compares with OpenCV's resize; grad-cam imports it too
    for name in ("opencv-python-headless", "torch", "torchvision", "grad-cam", "monai", "numpy"):
        assert name in core


@pytest.mark.parametrize("name", ["pytest", "jupyterlab", "ruff", "pre-commit"])
def test_dev_extra_holds_the_tools(name):
    assert any(r.lower().startswith(name + "==") for r in PROJECT["optional-dependencies"]["dev"])


def test_environment_yml_installs_from_pyproject_and_pins_nothing_else():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda, pip = [], []
    for dep in env["dependencies"]:
        (pip.extend(dep["pip"]) if isinstance(dep, dict) else conda.append(dep))
    # Python: the same minor version as requires-python's floor and the Makefile's default
    python = [d for d in conda if d.split("=")[0] == "python"]
    assert python == ["python=3.11"]
    assert PROJECT["requires-python"] == ">=3.11"
    assert "PYTHON ?= python3.11" in (ROOT / "Makefile").read_text()
    others = [d for d in conda if d.split("=")[0] != "python"]
    assert all(re.fullmatch(r"[A-Za-z0-9_\-]+", d) for d in others), f"conda packages carry versions: {others}"
    assert pip == ["-e .[dev]"], "the pip step must install the study itself (versions from pyproject.toml)"


def test_makefile_pins_no_version_and_adds_geodistk_with_its_flag():
    text = (ROOT / "Makefile").read_text()
    assert not VERSION_IN_TEXT.search(text), "versions belong in pyproject.toml, not the Makefile"
    line = next(ln for ln in text.splitlines() if "pip install" in ln and "geodesic]" in ln)
    assert "CPPFLAGS=-DNPY_IN_ARRAY=NPY_ARRAY_IN_ARRAY" in line and "--no-build-isolation" in line
    stamp_recipe = text.split("$(STAMP): pyproject.toml", 1)[1].split("\n\n", 1)[0]
    assert "$(call install_geodesic,$(PY))" in stamp_recipe


def test_ci_lints_before_it_tests():
    lines = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert "make test" in lines
    assert any(ln.startswith("make lint") for ln in lines[:lines.index("make test")])


def test_notebook_output_check_flags_and_strips(tmp_path):
    import json
    import subprocess
    import sys

    nb = {"cells": [{"cell_type": "markdown", "metadata": {}, "source": ["# t"]},
                    {"cell_type": "code", "execution_count": 3, "metadata": {}, "outputs": [{"output_type": "stream",
                     "name": "stdout", "text": ["x"]}], "source": ["print('x')"]}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "n.ipynb"
    path.write_text(json.dumps(nb))
    tool = [sys.executable, str(ROOT / "tools" / "check_notebooks.py")]
    bad = subprocess.run([*tool, str(path)], capture_output=True, text=True)
    assert bad.returncode == 1 and "cells [1]" in bad.stderr
    assert subprocess.run([*tool, "--fix", str(path)], capture_output=True).returncode == 0
    assert subprocess.run([*tool, str(path)], capture_output=True).returncode == 0
    assert json.loads(path.read_text())["cells"][1]["outputs"] == []


def test_pre_commit_runs_ruff_and_the_notebook_check():
    cfg = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    entries = [h["entry"] for repo in cfg["repos"] for h in repo["hooks"]]
    assert any("ruff check" in e for e in entries)
    assert any("tools/check_notebooks.py" in e for e in entries)


def test_committed_notebooks_pass_the_output_check():
    import subprocess
    import sys

    notebooks = sorted(str(p) for p in (ROOT / "notebooks").glob("*.ipynb"))
    res = subprocess.run([sys.executable, str(ROOT / "tools" / "check_notebooks.py"), *notebooks],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
