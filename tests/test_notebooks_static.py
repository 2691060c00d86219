"""Committed notebooks: no outputs, one parameters cell whose defaults are the quick profile,
and every key of every parameter file declared by some notebook (papermill only warns)."""
from __future__ import annotations

import ast
import json

import pytest

from umcam_lib import config, pipeline

NOTEBOOKS = sorted(pipeline.NOTEBOOK_DIR.glob("*.ipynb"))


def _parameters(path):
    nb = json.loads(path.read_text())
    cells = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    return nb, cells


def test_every_registered_notebook_exists():
    missing = [n for n in pipeline.NOTEBOOKS.values() if not (pipeline.NOTEBOOK_DIR / n).is_file()]
    assert not missing, f"registered notebooks missing: {missing}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs_and_one_parameters_cell(path):
    nb, cells = _parameters(path)
    with_out = [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count"))]
    assert not with_out, f"{path.name}: cells {with_out} have outputs"
    assert len(cells) == 1, f"{path.name}: {len(cells)} cells tagged 'parameters'"
    assert nb["cells"].index(cells[0]) == 0, f"{path.name}: the parameters cell must come first"


def _declared_defaults(path) -> dict:
    _, cells = _parameters(path)
    tree = ast.parse("".join(cells[0]["source"]))
    out = {}
    for node in tree.body:
        assert isinstance(node, ast.Assign), f"{path.name}: parameters cell holds a non-assignment"
        out[node.targets[0].id] = ast.literal_eval(node.value)
    return out


def test_parameter_defaults_are_the_quick_profile():
    quick = config.load_params(config.profile_path("quick"))
    for path in NOTEBOOKS:
        for name, value in _declared_defaults(path).items():
            if name in ("run_dir", "figures_dir"):
                expected = {"run_dir": "runs/quick", "figures_dir": "figures/quick"}[name]
                assert value == expected, f"{path.name}: default {name} should be {expected!r}"
                continue
            assert name in quick, f"{path.name} declares {name!r}, which params/quick.yaml lacks"
            assert value == quick[name], f"{path.name}: default of {name!r} differs from params/quick.yaml"


@pytest.mark.parametrize("profile", sorted(p.stem for p in config.PARAMS_DIR.glob("*.yaml")))
def test_every_parameter_key_is_declared(profile):
    declared: dict[str, object] = {}
    for path in NOTEBOOKS:
        declared.update(_declared_defaults(path))
    params = config.load_params(config.profile_path(profile))
    undeclared = []
    for key in config.flatten(params):
        top, *rest = key.split(".")
        if top == "profile" and not rest:
            continue
        if top not in declared or (rest and not (isinstance(declared[top], dict) and rest[0] in declared[top])):
            undeclared.append(key)
    assert not undeclared, f"params/{profile}.yaml keys no notebook declares: {undeclared}"
