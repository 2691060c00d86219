"""A notebook's parameters: a profile plus overrides, loaded the same way by hand and by the runner."""
from __future__ import annotations

import json

import nbformat
import pytest

from umcam_lib import config, paths, pipeline
from umcam_lib.config import notebook as notebook_params


def test_load_equals_what_the_runner_resolves():
    by_hand = notebook_params.load("tiny", {"data.n_volumes": 12, "seg.sweep_lambda": [0.1]})
    runner = pipeline.resolve_params("tiny", overrides=["data.n_volumes=12", "seg.sweep_lambda=[0.1]"])
    assert by_hand == runner
    assert by_hand["profile"] == "tiny" and by_hand["data"]["n_volumes"] == 12


def test_load_a_file_by_path(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text("base: tiny\nseed: 4\n")
    p = notebook_params.load(str(f), {"classifier.epochs": 2})
    assert p["seed"] == 4 and p["classifier"]["epochs"] == 2 and p["profile"] == "tiny"


def test_overrides_are_checked_by_key_and_value():
    with pytest.raises(config.ParameterError, match="classifier.epoch"):
        notebook_params.load("tiny", {"classifier.epoch": 3})
    with pytest.raises(config.ParameterError, match="unknown parameter section 'clasifier'"):
        notebook_params.load("tiny", {"clasifier.epochs": 3})
    with pytest.raises(config.ParameterError, match="classifier.epochs.*an integer"):
        notebook_params.load("tiny", {"classifier.epochs": "many"})


def test_set_values_replaces_a_mapping_valued_key_whole():
    params = {"classifier": {"augment": True, "epochs": 1}}
    out = notebook_params.set_values(params, {"classifier.augment": {"gamma": 0.2}})
    assert out["classifier"]["augment"] == {"gamma": 0.2} and params["classifier"]["augment"] is True


def test_parse_set():
    assert notebook_params.parse_set(["seed=3", "data.split_ratio=[1, 1, 1]", "seed=4"]) == {
        "seed": 4, "data.split_ratio": [1, 1, 1]}


def _nb(tmp_path, *sources):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    path = tmp_path / "x.ipynb"
    nbformat.write(nb, path)
    return path


def test_keys_read_finds_literal_subscripts(tmp_path):
    path = _nb(tmp_path, 'params = load()\nseed, data = params["seed"], params["data"]',
               '%matplotlib inline\nprint(f"{params[\'seg\']}")')
    assert notebook_params.keys_read(path) == ["data", "seed", "seg"]


@pytest.mark.parametrize("use", ["f(params)", "params.get('seed')", "k = 'seed'\nparams[k]"])
def test_keys_read_refuses_params_that_escape(tmp_path, use):
    path = _nb(tmp_path, 'params = load()\nseed = params["seed"]', use)
    with pytest.raises(ValueError, match="cannot tell"):
        notebook_params.keys_read(path)


def test_study_notebooks_read_what_their_old_parameter_cells_declared():
    """The fingerprint of each notebook depends on the same keys as before issue 12 (its old parameters cell),
    plus companions for 08."""
    expected = {
        "01": ["amp", "data", "device", "profile", "seed", "threads"],
        "02": ["amp", "classifier", "device", "executor", "profile", "seed", "seeds", "threads"],  # executor: issue 33
        "03": ["amp", "cam", "classifier", "device", "profile", "seed", "seeds", "threads"],
        # cross_seeds: issue 35 (04 and 05 write the labels of the classifier seeds UNet seeds pair with)
        # last_notebook: a run that stops at 05 needs no other seed's labels (label_seeds.crossing)
        "04": ["amp", "cam", "classifier", "cross_seeds", "device", "last_notebook", "profile", "seed", "seeds",
               "threads"],
        "05": ["amp", "cam", "cross_seeds", "device", "gse", "last_notebook", "profile", "seed", "seeds", "threads"],
        # cam, classifier: issue 21 (the method figure recomputes one slice's CAMs with the saved classifier)
        # executor: issue 33 (where the UNet tasks run; their threads per task can move the last bits)
        "06": ["amp", "cam", "classifier", "cross_seeds", "device", "executor", "gse", "profile", "seed", "seeds", "seg",
               "threads"],
        "07": ["amp", "baselines", "cam", "classifier", "cross_seeds", "device", "executor", "profile", "seed", "seeds",
               "seg", "threads"],
        "08": ["companions", "profile", "seed"],  # companions: issue 10 (the side-by-side runs)
    }
    for number, name in pipeline.NOTEBOOKS.items():
        assert pipeline.notebook_keys(paths.NOTEBOOK_DIR / name) == expected[number], number


def test_runner_injects_profile_and_overrides(tmp_path, monkeypatch):
    """What papermill receives: the profile (a path for --params), the --set options as a dict, the folders."""
    seen = {}

    def fake_execute(src, out, parameters, **kw):
        seen[src.rsplit("/", 1)[-1]] = parameters
        nb = nbformat.v4.new_notebook()
        nbformat.write(nb, out)

    import papermill

    monkeypatch.setattr(papermill, "execute_notebook", fake_execute)
    pipeline.run_pipeline("tiny", overrides=["seg.epochs=2"], only="01", out=tmp_path / "r", figures=tmp_path / "f")
    (params,) = seen.values()
    assert params == {"profile": "tiny", "overrides": {"seg.epochs": 2}, "run_dir": str(tmp_path / "r"),
                      "figures_dir": str(tmp_path / "f")}
    marker = json.loads((tmp_path / "r" / ".done" / "01.json").read_text())
    assert set(marker["depends"]) == {"profile", "seed", "device", "amp", "threads", "data", "run_dir", "figures_dir"}
