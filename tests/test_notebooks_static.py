"""Committed notebooks: no outputs; the title first, then a short parameters cell (profile,
overrides, folders) and the cell that loads them; every parameter of every profile read by some
notebook; one maths notation; exercises and links that resolve."""
from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from umcam_lib import config, paths, pipeline
from umcam_lib.config import notebook as notebook_params

NOTEBOOKS = sorted(paths.NOTEBOOK_DIR.glob("*.ipynb"))


def _cells(path):
    return json.loads(path.read_text())["cells"]


def _src(cell) -> str:
    return "".join(cell.get("source", ""))


def test_every_registered_notebook_exists():
    missing = [n for n in pipeline.NOTEBOOKS.values() if not (paths.NOTEBOOK_DIR / n).is_file()]
    assert not missing, f"registered notebooks missing: {missing}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_title_first_then_a_short_parameters_cell_then_the_loader(path):
    cells = _cells(path)
    with_out = [i for i, c in enumerate(cells) if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count"))]
    assert not with_out, f"{path.name}: cells {with_out} have outputs"
    tagged = [i for i, c in enumerate(cells) if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert tagged == [1], f"{path.name}: the parameters cell must be the second cell, and the only one (found {tagged})"
    assert cells[0]["cell_type"] == "markdown" and _src(cells[0]).startswith(f"# {path.name[:2]} ")
    assert "**What you will learn**" in _src(cells[0])
    tree = ast.parse(_src(cells[1]))
    declared = {}
    for node in tree.body:
        assert isinstance(node, ast.Assign), f"{path.name}: parameters cell holds a non-assignment"
        declared[node.targets[0].id] = ast.literal_eval(node.value)
    assert declared == notebook_params.CELL_DEFAULTS, f"{path.name}: parameters cell declares {declared}"
    assert "notebook_params.load(profile, overrides)" in _src(cells[2]), f"{path.name}: cell 3 must load the parameters"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_parameters_are_read_by_literal_key_only(path):
    keys = notebook_params.keys_read(path)          # raises when `params` escapes
    assert set(keys) <= set(config.schema_defaults()), f"{path.name} reads keys the schema lacks: {keys}"


@pytest.mark.parametrize("profile", sorted(p.stem for p in paths.PARAMS_DIR.glob("*.yaml")))
def test_every_parameter_of_every_profile_is_read_by_some_notebook(profile):
    read = set()
    for path in NOTEBOOKS:
        read |= set(notebook_params.keys_read(path))
    params = config.load_params(config.profile_path(profile))
    unread = sorted(set(params) - read - {"profile", "last_notebook"})  # the pipeline reads these two
    assert not unread, f"params/{profile}.yaml sections no notebook reads: {unread}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_no_variable_shadows_a_subpackage(path):
    """`cam` and `gse` are subpackages of umcam_lib; the parameter sections are `cam_params`, `gse_params`."""
    for i, cell in enumerate(_cells(path)):
        if cell["cell_type"] != "code":
            continue
        for node in ast.walk(ast.parse(_src(cell))):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                assert node.id not in ("cam", "gse"), f"{path.name}, cell {i}: assigns `{node.id}`"


_UNICODE_MATHS = re.compile(r"[\u0391-\u03c9\u2070-\u209f\u1d2c-\u1d6a\u2200-\u22ff]")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_maths_is_latex(path):
    """Greek letters, sub/superscripts and maths operators only inside $...$ (LaTeX commands there)."""
    for i, cell in enumerate(_cells(path)):
        if cell["cell_type"] != "markdown":
            continue
        hits = _UNICODE_MATHS.findall(_src(cell))
        assert not hits, f"{path.name}, cell {i}: Unicode maths {sorted(set(hits))}; write LaTeX ($\\beta$, $A^k$)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_ends_with_exercises_and_links_resolve(path):
    cells = _cells(path)
    last = _src(cells[-1])
    assert cells[-1]["cell_type"] == "markdown" and last.startswith("## Exercises") and "--set " in last
    text = "\n".join(_src(c) for c in cells if c["cell_type"] == "markdown")
    links = re.findall(r"\]\((\.\./[^)#\s]+)", text)
    assert any(link.startswith("../docs/method.md") for link in links), f"{path.name}: no link to the method page"
    assert any(link.startswith("../figures/quick/") for link in links), f"{path.name}: no link to a committed figure"
    missing = sorted({link for link in links if not (path.parent / link).exists()})
    assert not missing, f"{path.name}: links to files that do not exist: {missing}"


def test_method_page_anchors_exist():
    """Every `docs/method.md#anchor` a notebook links to is a heading of the page (GitHub's slugs)."""
    page = Path(paths.REPO_ROOT / "docs" / "method.md").read_text(encoding="utf-8")
    slugs = set()
    for line in page.splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            slugs.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    for path in NOTEBOOKS:
        text = "\n".join(_src(c) for c in _cells(path) if c["cell_type"] == "markdown")
        for anchor in re.findall(r"docs/method\.md#([\w\-]+)", text):
            assert anchor in slugs, f"{path.name}: docs/method.md has no heading for #{anchor}"
