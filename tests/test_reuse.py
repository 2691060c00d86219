"""Reuse that never carries stale work (issue 11, items 1, 2, 3, 5, 8 (warnings) and 11).

The runner is exercised on small stand-in notebooks (seconds each); the study's own notebooks
are only inspected, never executed here.
"""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from umcam_lib import paths, pipeline
from umcam_lib.pipeline import run as pipeline_run


from conftest import stand_in_notebook as _notebook  # noqa: E402


@pytest.fixture
def study(tmp_path, monkeypatch):
    """Two stand-in notebooks: 01 'prepares' (records seed, data and the force flag), 02 reads it."""
    nbdir = tmp_path / "nbs"
    nbdir.mkdir()
    _notebook(nbdir / "a.ipynb", 'seed, data, warn = params["seed"], params["data"], params["warn"]',
              "import json, os, pathlib, warnings\n"
              "if warn:\n    warnings.warn(warn)\n"
              "p = pathlib.Path(run_dir, 'a.json')\n"
              "runs = json.loads(p.read_text())['runs'] + 1 if p.is_file() else 1\n"
              "p.write_text(json.dumps({'seed': seed, 'runs': runs, 'force': os.environ.get('UMCAM_FORCE')}))")
    _notebook(nbdir / "b.ipynb", 'seed = params["seed"]',
              "import json, pathlib\n"
              "a = json.loads(pathlib.Path(run_dir, 'a.json').read_text())\n"
              "pathlib.Path(run_dir, 'b.json').write_text(json.dumps({'seed': seed, 'trained_on_seed': a['seed']}))")
    monkeypatch.setattr(pipeline_run, "NOTEBOOK_DIR", nbdir)
    monkeypatch.setattr(pipeline_run, "NOTEBOOKS", {"01": "a.ipynb", "02": "b.ipynb"})
    monkeypatch.setattr(pipeline_run, "SCHEMA_CHECK", False, raising=False)  # stand-in parameters
    params = tmp_path / "p.yaml"
    params.write_text("profile: fake\nseed: 0\ndata:\n  root: null\nwarn: ''\n")
    return tmp_path, params


def _run(params, out, **kw):
    return [r.status for r in pipeline.run_pipeline(params_file=params, out=out, figures=out / "fig", **kw)]


def _write_stack(folder, mask_rows):
    folder.mkdir(parents=True, exist_ok=True)
    img = np.arange(8 * 8 * 4, dtype=np.uint16).reshape(8, 8, 4)
    mask = np.zeros((8, 8, 4), np.uint8)
    mask[mask_rows, 2:6, :] = 1
    nib.save(nib.Nifti1Image(img, np.diag([1.0, 1.0, 4.0, 1.0])), str(folder / "sub-01_T2w.nii.gz"))
    nib.save(nib.Nifti1Image(mask, np.diag([1.0, 1.0, 4.0, 1.0])), str(folder / "sub-01_T2w_desc-brain_mask.nii.gz"))


def test_an_edited_input_mask_reruns_notebook_01(study):
    """Item 1: an edited mask in the input folder is a new input; reuse would keep stale slices."""
    tmp, params = study
    root = tmp / "bids"
    _write_stack(root / "sub-01" / "anat", slice(2, 6))
    over = ["data.root=" + str(root)]
    params.write_text("profile: fake\nseed: 0\ndata:\n  source: nifti\n  root: null\nwarn: ''\n")
    out = tmp / "run"
    assert _run(params, out, overrides=over) == ["ran", "ran"]
    assert _run(params, out, overrides=over) == ["reused", "reused"]
    _write_stack(root / "sub-01" / "anat", slice(2, 4))  # same names and sizes, other content
    entries = pipeline.plan_run(params_file=params, overrides=over, out=out, figures=out / "fig").entries
    assert [(e.action, e.reasons) for e in entries] == [("run", ("input files changed",)),
                                                        ("run", ("upstream 01 reruns",))]


def test_only_refuses_upstream_results_of_other_parameters(study):
    """Item 2: `--only 02 --set seed=1` on a seed-0 run must not train on the seed-0 slices."""
    tmp, params = study
    out = tmp / "run"
    assert _run(params, out) == ["ran", "ran"]
    with pytest.raises(pipeline.PipelineError) as err:
        _run(params, out, overrides=["seed=1"], only="02")
    msg = str(err.value)
    assert "notebook 01: its result is stale (parameters changed: seed)" in msg
    assert "--only 01,02" in msg and "--set seed=1" in msg and f"--out {out}" in msg and "--params" in msg
    assert json.loads((out / "b.json").read_text())["seed"] == 0          # 02 did not run
    # the full run with the new seed reruns both, and 02 reads the new slices
    assert _run(params, out, overrides=["seed=1"]) == ["ran", "ran"]
    assert json.loads((out / "b.json").read_text()) == {"seed": 1, "trained_on_seed": 1}


def test_a_rerun_upstream_invalidates_downstream_reuse(study):
    """Item 2: a recomputed 01 (same parameters) is a new result: 02 no longer reuses."""
    tmp, params = study
    out = tmp / "run"
    assert _run(params, out) == ["ran", "ran"]
    assert _run(params, out, only="01", force=True) == ["ran"]
    entries = pipeline.plan_run(params_file=params, out=out, figures=out / "fig").entries
    assert [(e.action, e.reasons) for e in entries] == [("reuse", ()), ("run", ("upstream 01 has a newer result",))]


def test_a_failed_upstream_blocks_only_of_its_downstream(study):
    """Item 2: after a failed 01, `--only 02` refuses instead of using the previous slices."""
    tmp, params = study
    out = tmp / "run"
    assert _run(params, out) == ["ran", "ran"]
    params.write_text("profile: fake\nseed: 0\ndata:\n  root: null\nwarn: ''\nfail: true\n")
    nb = pipeline_run.NOTEBOOK_DIR / "a.ipynb"
    _notebook(nb, 'seed, data, warn, fail = params["seed"], params["data"], params["warn"], params["fail"]',
              "if fail:\n    raise ValueError('boom')")
    with pytest.raises(pipeline.PipelineError, match="boom"):
        _run(params, out)
    with pytest.raises(pipeline.PipelineError, match="notebook 01: no finished result"):
        _run(params, out, only="02")


def test_an_edited_library_module_reruns_and_force_reaches_the_notebook(study, monkeypatch, tmp_path):
    """Item 3: the source of the library modules a notebook imports is in its fingerprint
    (here a copy of the library, edited); --force reaches the notebook."""
    import shutil

    tmp, params = study
    lib = tmp_path / "lib" / "umcam_lib"
    shutil.copytree(paths.PACKAGE_DIR, lib, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(pipeline_run, "LIBRARY_DIR", lib)
    out = tmp / "run"
    assert _run(params, out) == ["ran", "ran"]
    assert json.loads((out / "a.json").read_text())["force"] is None
    np_src = lib / "config" / "notebook.py"                  # the stand-ins import it
    np_src.write_text(np_src.read_text() + "\n# edited\n")
    entries = pipeline.plan_run(params_file=params, out=out, figures=out / "fig").entries
    assert entries[0].reasons == ("code of umcam_lib/config/notebook.py changed",)
    assert entries[1].action == "run"
    assert _run(params, out, only="01", force=True) == ["ran"]
    assert json.loads((out / "a.json").read_text())["force"] == "1"    # training sees --force
    marker = json.loads((out / ".done" / "01.json").read_text())
    from umcam_lib import provenance
    edited = provenance.module_hashes(["umcam_lib.config.notebook"], lib)
    assert marker["components"]["modules"]["umcam_lib/config/notebook.py"] == edited["umcam_lib/config/notebook.py"]


def test_only_into_an_empty_run_folder_refuses(study):
    """Item 5: `--only 02` into an empty run folder refuses and writes no done marker."""
    tmp, params = study
    out = tmp / "empty"
    with pytest.raises(pipeline.PipelineError, match="no finished result"):
        _run(params, out, only="02")
    assert not (out / ".done" / "02.json").exists()


def test_only_the_report_into_an_empty_folder_exits_1_before_running(tmp_path, capsys):
    """Item 5 on the real notebooks: `--only 08` into an empty folder exits 1 before running."""
    out = tmp_path / "run"
    rc = pipeline.main(["--profile", "tiny", "--only", "08", "--out", str(out), "--figures", str(tmp_path / "f")])
    err = capsys.readouterr().err
    assert rc == 1
    assert "--profile tiny" in err and f"--out {out}" in err and "--only 01,02,03,04,05,06,07,08" in err
    assert not (tmp_path / "f" / "table1.csv").exists() and not (out / ".done" / "08.json").exists()


def test_notebook_warnings_reach_the_console(study, capsys):
    """Item 8: a warning raised inside a notebook is printed by the runner."""
    tmp, params = study
    _run(params, tmp / "run", overrides=["warn=the centre crop cut away 26.0% of the brain mask"])
    err = capsys.readouterr().err
    assert "warning from notebook 01: UserWarning: the centre crop cut away 26.0% of the brain mask" in err


def test_an_interrupt_prints_one_line_naming_the_notebook(study, monkeypatch, capsys):
    """Item 11: Ctrl-C prints one line naming the notebook, not a traceback."""
    tmp, params = study
    import papermill

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(papermill, "execute_notebook", interrupted)
    rc = pipeline.main(["--params", str(params), "--out", str(tmp / "run"), "--figures", str(tmp / "fig")])
    err = capsys.readouterr().err.strip()
    assert rc == 130
    assert err == "interrupted in notebook 01 (a.ipynb); rerun the same command to resume"
