"""The papermill runner on small stand-in notebooks (the real ones are tested via tiny_run)."""
from __future__ import annotations

import json

import pytest

from umcam_lib import config, pipeline
from umcam_lib.pipeline import run as pipeline_run


from conftest import stand_in_notebook as _notebook  # noqa: E402


@pytest.fixture
def fake_study(tmp_path, monkeypatch):
    nbdir = tmp_path / "nbs"
    nbdir.mkdir()
    _notebook(nbdir / "a.ipynb", 'seed, data = params["seed"], params["data"]',
              "import pathlib, json\n"
              "pathlib.Path(run_dir, 'a.json').write_text(json.dumps({'seed': seed, 'n': data['n_volumes']}))")
    _notebook(nbdir / "b.ipynb", 'fail = params["fail"]',
              "print('hello from the notebook')\nimport pathlib\nassert pathlib.Path(run_dir, 'a.json').is_file()\n"
              "if fail:\n    raise ValueError('deliberate failure')\n"
              "pathlib.Path(figures_dir, 'b.txt').write_text('ok')")
    monkeypatch.setattr(pipeline_run, "NOTEBOOK_DIR", nbdir)
    monkeypatch.setattr(pipeline_run, "NOTEBOOKS", {"01": "a.ipynb", "02": "b.ipynb"})
    monkeypatch.setattr(pipeline_run, "SCHEMA_CHECK", False)  # stand-in parameters, not the study's
    params = tmp_path / "p.yaml"
    params.write_text("profile: fake\nseed: 3\ndata:\n  n_volumes: 2\nfail: false\n")
    return tmp_path, params


def test_runs_in_order_injects_params_and_reuses(fake_study):
    tmp, params = fake_study
    out, fig = tmp / "run", tmp / "fig"
    res = pipeline.run_pipeline(params_file=params, overrides=["data.n_volumes=5"], out=out, figures=fig)
    assert [r.status for r in res] == ["ran", "ran"]
    assert json.loads((out / "a.json").read_text()) == {"seed": 3, "n": 5}
    assert (fig / "b.txt").read_text() == "ok"
    assert (out / "notebooks" / "a.ipynb").is_file()
    res = pipeline.run_pipeline(params_file=params, overrides=["data.n_volumes=5"], out=out, figures=fig)
    assert [r.status for r in res] == ["reused", "reused"]
    res = pipeline.run_pipeline(params_file=params, overrides=["data.n_volumes=5"], only="02", out=out, figures=fig)
    assert [r.status for r in res] == ["reused"]
    # a changed parameter reruns that notebook and every later one (the plan; no kernel)
    entries = pipeline.plan_run(params_file=params, overrides=["data.n_volumes=6"], out=out, figures=fig).entries
    assert [(e.action, e.reasons) for e in entries] == [("run", ("parameters changed: data.n_volumes",)),
                                                        ("run", ("upstream 01 reruns",))]
    marker = json.loads((out / ".done" / "01.json").read_text())
    assert marker["components"]["params"]["data.n_volumes"] == 5 and "umcam_lib/config/notebook.py" in \
        marker["components"]["modules"]


def test_failure_names_notebook_cell_and_error(fake_study):
    tmp, params = fake_study
    out = tmp / "run"
    with pytest.raises(pipeline.PipelineError) as err:
        pipeline.run_pipeline(params_file=params, overrides=["fail=true"], out=out, figures=tmp / "fig")
    msg = str(err.value)
    assert "notebook 02" in msg and "b.ipynb" in msg and "cell 4" in msg and "print('hello" in msg and "deliberate failure" in msg
    assert (out / "notebooks" / "b.ipynb").is_file()       # partly executed copy left for reading
    assert not (out / ".done" / "02.json").exists()        # and not marked finished


def test_bad_selection_and_overrides(fake_study):
    tmp, params = fake_study
    with pytest.raises(config.ParameterError, match="unknown notebook"):
        pipeline.run_pipeline(params_file=params, only="07", out=tmp / "r")
    with pytest.raises(config.ParameterError, match="data.n_volume"):
        pipeline.run_pipeline(params_file=params, overrides=["data.n_volume=3"], out=tmp / "r")
    assert pipeline.main(["--params", str(params), "--only", "9"]) == 1


def test_profiles_load_and_inherit():
    quick = config.load_params(config.profile_path("quick"))
    for name in ("tiny", "paper", "real", "real-slice"):
        p = config.load_params(config.profile_path(name))
        assert p["profile"] == name
        keys = set(config.flatten(p))
        # a key may hold a mapping in one profile (classifier.augment: {rotation: 180}) and a flag in quick
        missing = {k for k in set(config.flatten(quick)) - {"data.root"}
                   if k not in keys and not any(x.startswith(k + ".") for x in keys)}
        assert not missing, (name, missing)
    assert config.load_params(config.profile_path("paper"))["classifier"]["epochs"] == 200


def test_override_parsing():
    keys, value = config.parse_override("data.split_ratio=[70, 10, 20]")
    assert keys == ["data", "split_ratio"] and value == [70, 10, 20]
    with pytest.raises(config.ParameterError):
        config.parse_override("novalue")


def test_quiet_console_one_line_per_notebook_and_a_run_log(fake_study, capsys):
    """Issue 12 item 6: header, one line per notebook, a summary naming the log; the rest in the log."""
    tmp, params = fake_study
    out = tmp / "run"
    pipeline.run_pipeline(params_file=params, out=out, figures=tmp / "fig")
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4, lines
    assert lines[0].startswith("UM-CAM study | profile fake")
    assert lines[1].startswith("01 a  [##########] 5/5 cells  0:")  # 4 cells + the injected parameters and lines[2].startswith("02 b  [##########]")
    assert lines[3].startswith("finished in") and "run log " in lines[3]
    log = lines[3].split("run log ", 1)[1]
    text = open(log).read()
    assert "hello from the notebook" in text          # the notebooks' output went to the log
    assert "02_b" not in text and "[2/2] b.ipynb: done" in text
    pipeline.run_pipeline(params_file=params, out=out, figures=tmp / "fig")
    assert "01 a  reused" in capsys.readouterr().out


def test_failure_on_the_console_names_the_cell_error_lines_and_log(fake_study, capsys):
    tmp, params = fake_study
    rc = pipeline.main(["--params", str(params), "--set", "fail=true", "--out", str(tmp / "run"),
                        "--figures", str(tmp / "fig")])
    captured = capsys.readouterr()
    assert rc == 1
    assert "02 b  [" in captured.out and captured.out.splitlines()[-1].endswith("failed")
    assert "notebook 02 (b.ipynb) failed in cell 4" in captured.err
    assert "| ValueError: deliberate failure" in captured.err and "run log: " in captured.err


def test_verbose_streams_the_notebooks_output(fake_study, capfd):
    tmp, params = fake_study
    pipeline.run_pipeline(params_file=params, out=tmp / "run", figures=tmp / "fig", verbose=True)
    out = capfd.readouterr()
    assert "hello from the notebook" in out.out + out.err
    assert "[2/2] b.ipynb: done in" in out.out


def test_base_starts_a_new_run_that_reruns_only_what_the_overrides_change(fake_study, capsys):
    tmp, params = fake_study
    base, fig = tmp / "base", tmp / "fig"
    assert [r.status for r in pipeline.run_pipeline(params_file=params, out=base, figures=fig)] == ["ran", "ran"]
    new = tmp / "ex01"
    rc = pipeline.main(["--params", str(params), "--base", str(base), "--out", str(new), "--set", "fail=false"])
    assert rc == 0 and "notebooks 01, 02 copied" in capsys.readouterr().out
    assert (new / "figures" / "b.txt").read_text() == "ok"           # the base's figures came along
    assert (new / "notebooks" / "a.ipynb").is_file()
    entries = pipeline.plan_run(params_file=params, out=new, figures=new / "figures").entries
    assert [e.action for e in entries] == ["reuse", "reuse"]           # the folders moved, nothing else
    entries = pipeline.plan_run(params_file=params, overrides=["fail=true"], out=new, figures=new / "figures").entries
    assert [(e.action, e.reasons) for e in entries] == [("reuse", ()), ("run", ("parameters changed: fail",))]
    base_marker = json.loads((base / ".done" / "02.json").read_text())
    assert base_marker["components"]["params"]["run_dir"] == str(base)  # the base is untouched
    # refusals: a base without results, a folder that is not empty
    assert pipeline.main(["--params", str(params), "--base", str(tmp / "nothing"), "--out", str(tmp / "x")]) == 1
    assert "no finished notebook" in capsys.readouterr().err
    assert pipeline.main(["--params", str(params), "--base", str(base), "--out", str(new)]) == 1
    assert "is not empty" in capsys.readouterr().err
