"""The pipeline's plan, the import closure behind fingerprints, the dirty-tree refusal and the
published executed notebooks (issue 19 item 3; issue 21 items 1 and 6).

Every test here but the last starts no kernel: the plan is a pure function
(:func:`umcam_lib.pipeline.plan.make_plan`), and :func:`umcam_lib.pipeline.plan_run` only reads files.
"""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import nbformat
import pytest

from umcam_lib import paths, pipeline, provenance
from umcam_lib.pipeline import run as pipeline_run
from umcam_lib.pipeline import plan, publish

PKG = Path(provenance.__file__).resolve().parent
NBS = [("01", "01_a.ipynb"), ("02", "02_b.ipynb"), ("03", "03_c.ipynb")]


def _inputs(**kw):
    base = {"code": "c", "params": {"seed": 0, "seg.lr": 0.01}, "modules": {"umcam_lib/cam/fusion.py": "f1"},
            "inputs": None}
    return plan.Inputs(**{**base, **kw})


def _markers(inputs, ids=("r1", "r2", "r3")):
    """Markers as a finished run leaves them for these inputs (each read its predecessors' ids)."""
    out = {}
    for i, (number, _) in enumerate(NBS):
        out[number] = {"fingerprint": inputs[number].digest(), "components": inputs[number].as_dict(),
                       "run_id": ids[i], "upstream": {NBS[j][0]: ids[j] for j in range(i)}}
    return out


def _actions(entries):
    return [(e.number, e.action) for e in entries]


def test_fresh_folder_runs_everything_with_a_reason():
    inputs = {n: _inputs() for n, _ in NBS}
    entries = plan.make_plan(NBS, inputs, {n: None for n, _ in NBS}, ["01", "02", "03"])
    assert _actions(entries) == [("01", "run"), ("02", "run"), ("03", "run")]
    assert entries[0].reasons == ("no result yet",)
    assert entries[1].reasons == ("no result yet",)


def test_unchanged_inputs_reuse_and_force_reruns():
    inputs = {n: _inputs() for n, _ in NBS}
    markers = _markers(inputs)
    assert _actions(plan.make_plan(NBS, inputs, markers, ["01", "02", "03"])) == [
        ("01", "reuse"), ("02", "reuse"), ("03", "reuse")]
    forced = plan.make_plan(NBS, inputs, markers, ["02"], force=True)
    assert _actions(forced) == [("01", "keep"), ("02", "run")]          # 03 is after the selection
    assert forced[1].reasons == ("--force",)


def test_the_reason_names_the_changed_parameter_module_and_upstream():
    inputs = {n: _inputs() for n, _ in NBS}
    markers = _markers(inputs)
    now = dict(inputs, **{"02": _inputs(params={"seed": 0, "seg.lr": 0.02})})
    entries = plan.make_plan(NBS, now, markers, ["01", "02", "03"])
    assert _actions(entries) == [("01", "reuse"), ("02", "run"), ("03", "run")]
    assert entries[1].reasons == ("parameters changed: seg.lr",)
    assert entries[2].reasons == ("upstream 02 reruns",)
    now = dict(inputs, **{"01": _inputs(modules={"umcam_lib/cam/fusion.py": "f2", "umcam_lib/io.py": "i"})})
    reasons = plan.make_plan(NBS, now, markers, ["01"])[0].reasons
    assert reasons == ("code of umcam_lib/cam/fusion.py changed", "now imports umcam_lib/io.py")
    now = dict(inputs, **{"01": _inputs(code="edited", inputs="new-data")})
    assert plan.make_plan(NBS, now, markers, ["01"])[0].reasons == ("its code cells changed", "input files changed")


def test_only_refuses_on_a_stale_or_absent_earlier_result():
    inputs = {n: _inputs() for n, _ in NBS}
    markers = _markers(inputs)
    now = dict(inputs, **{"01": _inputs(params={"seed": 1, "seg.lr": 0.01})})
    entries = plan.make_plan(NBS, now, markers, ["03"])
    assert _actions(entries) == [("01", "missing"), ("02", "missing"), ("03", "run")]
    assert entries[0].reasons == ("parameters changed: seed",)
    assert [e.number for e in plan.blocked(entries)] == ["01", "02"]
    gone = dict(markers, **{"02": None})
    assert plan.blocked(plan.make_plan(NBS, inputs, gone, ["03"]))[0].reasons == ("no result yet",)
    lost = plan.make_plan(NBS, inputs, markers, ["03"], missing_outputs=["01"])
    assert lost[0].action == "missing" and lost[0].reasons == ("its executed notebook is missing",)


def test_a_newer_upstream_result_and_an_old_marker_are_stale():
    inputs = {n: _inputs() for n, _ in NBS}
    markers = _markers(inputs)
    markers["01"] = {**markers["01"], "run_id": "r1-again"}       # 01 was rerun alone (--only 01)
    entries = plan.make_plan(NBS, inputs, markers, ["01", "02", "03"])
    assert _actions(entries) == [("01", "reuse"), ("02", "run"), ("03", "run")]
    assert entries[1].reasons == ("upstream 01 has a newer result",)
    old = {**markers, "01": {"fingerprint": "chain", "run_id": "r1", "upstream": {}}}
    assert "earlier version of the runner" in plan.make_plan(NBS, inputs, old, ["01"])[0].reasons[0]
    assert "01 01_a.ipynb  run: " in plan.format_plan(plan.make_plan(NBS, inputs, old, ["01"]))[0]


# ---------------------------------------------------------------- the import closure

def test_closure_follows_relative_imports_and_package_inits(tmp_path):
    pkg = tmp_path / "umcam_lib"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from .b import g\n")
    (pkg / "sub" / "b.py").write_text("def g():\n    from ..c import h\n    return h\n")
    (pkg / "c.py").write_text("import math\n")
    (pkg / "unrelated.py").write_text("x = 1\n")
    got = provenance.module_closure(sources=["%matplotlib inline\nfrom umcam_lib.sub import g"], package_dir=pkg)
    assert got == ["umcam_lib", "umcam_lib.c", "umcam_lib.sub", "umcam_lib.sub.b"]
    assert provenance.module_closure(["umcam_lib.c"], package_dir=pkg) == ["umcam_lib", "umcam_lib.c"]
    assert provenance.module_closure(sources=["import umcam_lib.c"], package_dir=pkg) == ["umcam_lib", "umcam_lib.c"]


def test_the_study_notebooks_import_only_what_they_use():
    """08 (the report) does not reach the training code; 06 does; both reach notebook_params."""
    mods = {n: set(provenance.module_closure(sources=pipeline.code_cells(pipeline_run.NOTEBOOK_DIR / name)))
            for n, name in pipeline_run.NOTEBOOKS.items()}
    assert "umcam_lib.train.seg_train" in mods["06"] and "umcam_lib.train.seg_train" not in mods["08"]
    assert all("umcam_lib.config.notebook" in m for m in mods.values())
    assert all("umcam_lib.pipeline" not in m for m in mods.values())


@pytest.fixture
def standins(tmp_path, monkeypatch):
    """Two stand-in notebooks and a copy of the library their fingerprints hash."""
    nbdir = tmp_path / "nbs"
    nbdir.mkdir()
    for name, body in (("a.ipynb", "from umcam_lib import io\nx = params['seed']"),
                       ("b.ipynb", "from umcam_lib import report\ny = params['seed']")):
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_markdown_cell("# stand-in " + name),
                    nbformat.v4.new_code_cell("from umcam_lib.config import notebook as notebook_params\n"
                                              "params = notebook_params.load('x', {}, validate=False)\n" + body)]
        nbformat.write(nb, nbdir / name)
    lib = tmp_path / "lib" / "umcam_lib"
    shutil.copytree(PKG, lib, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(pipeline_run, "NOTEBOOK_DIR", nbdir)
    monkeypatch.setattr(pipeline_run, "NOTEBOOKS", {"01": "a.ipynb", "02": "b.ipynb"})
    monkeypatch.setattr(pipeline_run, "SCHEMA_CHECK", False)
    monkeypatch.setattr(pipeline_run, "LIBRARY_DIR", lib)
    params = tmp_path / "p.yaml"
    params.write_text("profile: fake\nseed: 0\n")
    run = tmp_path / "run"

    def plan_now(**kw):
        return pipeline.plan_run(params_file=params, out=run, figures=tmp_path / "fig", **kw)

    def finish(rp):
        """Leave markers and executed copies as a finished run would (no kernel)."""
        (run / ".done").mkdir(parents=True, exist_ok=True)
        (run / "notebooks").mkdir(exist_ok=True)
        ids = {}
        for number in rp.sources:
            inputs = rp.inputs[number]
            ids[number] = f"id{number}"
            (run / ".done" / f"{number}.json").write_text(json.dumps(
                {"fingerprint": inputs.digest(), "components": inputs.as_dict(), "run_id": ids[number],
                 "upstream": {u: ids[u] for u in ids if u < number}}))
            shutil.copy(rp.sources[number], run / "notebooks" / pipeline_run.NOTEBOOKS[number])

    return nbdir, lib, plan_now, finish


def test_markdown_and_unrelated_modules_rerun_nothing(standins):
    nbdir, lib, plan_now, finish = standins
    finish(plan_now())
    assert _actions(plan_now().entries) == [("01", "reuse"), ("02", "reuse")]
    nb = nbformat.read(nbdir / "a.ipynb", as_version=4)
    nb.cells[0].source = "# stand-in, reworded"                         # markdown only
    nbformat.write(nb, nbdir / "a.ipynb")
    (lib / "train" / "seg_train.py").write_text((lib / "train" / "seg_train.py").read_text() + "\n# edited\n")
    assert _actions(plan_now().entries) == [("01", "reuse"), ("02", "reuse")]
    (lib / "report" / "tables.py").write_text((lib / "report" / "tables.py").read_text() + "\n# edited\n")   # only b imports it
    entries = plan_now().entries
    assert _actions(entries) == [("01", "reuse"), ("02", "run")]
    assert entries[1].reasons == ("code of umcam_lib/report/tables.py changed",)
    (lib / "io.py").write_text((lib / "io.py").read_text() + "\n# edited\n")           # both reach io
    entries = plan_now().entries
    assert entries[0].reasons == ("code of umcam_lib/io.py changed",)
    assert "upstream 01 reruns" in entries[1].reasons
    nb.cells[1].source += "\nz = 1"                                      # a code cell
    nbformat.write(nb, nbdir / "a.ipynb")
    assert "its code cells changed" in plan_now().entries[0].reasons


def test_dry_run_prints_the_plan_and_runs_nothing(standins, capsys):
    nbdir, lib, plan_now, finish = standins
    run = plan_now().run_dir
    assert pipeline.main(["--params", str(nbdir.parent / "p.yaml"), "--out", str(run), "--figures",
                          str(nbdir.parent / "fig"), "--set", "seed=2", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "01 a.ipynb  run: no result yet" in out and "02 b.ipynb  run: no result yet" in out
    assert not run.exists()
    finish(plan_now())
    pipeline.main(["--params", str(nbdir.parent / "p.yaml"), "--out", str(run), "--figures",
                   str(nbdir.parent / "fig"), "--set", "seed=2", "--dry-run"])
    assert "run: parameters changed: seed" in capsys.readouterr().out


# ---------------------------------------------------------------- training resume keys

def test_training_code_covers_its_imports_only(tmp_path):
    lib = tmp_path / "umcam_lib"
    shutil.copytree(PKG, lib, ignore=shutil.ignore_patterns("__pycache__"))
    roots = ("umcam_lib.models.vgg", "umcam_lib.train.classifier", "umcam_lib.train.common")
    closure = provenance.module_closure(roots, package_dir=lib)
    assert "umcam_lib.train.augment" in closure and "umcam_lib.report" not in closure

    def code():
        provenance.code_fingerprint.cache_clear()
        return provenance.code_fingerprint(roots, lib)

    before = code()
    (lib / "report" / "tables.py").write_text('"""Edited docstring."""\n' + (lib / "report" / "tables.py").read_text())
    assert code() == before                                              # resume survives
    (lib / "train" / "augment.py").write_text((lib / "train" / "augment.py").read_text() + "\nX = 1\n")
    assert code() != before                                              # training code changed


# ---------------------------------------------------------------- provenance: dirty trees

def _git(repo, *args):
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                   capture_output=True)


@pytest.fixture
def repo(tmp_path):
    r = tmp_path / "repo"
    (r / "figures" / "quick").mkdir(parents=True)
    (r / "figures" / "quick" / "t.csv").write_text("a\n")
    (r / "code.py").write_text("x = 1\n")
    (r / ".gitignore").write_text("runs/\n")
    _git(r, "init", "-q")
    _git(r, "add", ".")
    _git(r, "commit", "-q", "-m", "init")
    return r


def test_figures_from_a_dirty_tree_are_refused_unless_allowed(repo, tmp_path):
    fig = repo / "figures" / "quick"
    assert provenance.check_figures_write(fig, repo=repo)["dirty"] is False
    (fig / "t.csv").write_text("b\n")                           # the run's own output: not a change
    assert provenance.check_figures_write(fig, repo=repo)["dirty"] is False
    (repo / "code.py").write_text("x = 2\n")
    with pytest.raises(provenance.DirtyTreeError, match="code.py.*--allow-dirty"):
        provenance.check_figures_write(fig, repo=repo)
    state = provenance.check_figures_write(fig, allow_dirty=True, repo=repo)
    assert state["dirty"] is True and state["guarded"] is True
    for elsewhere in (repo / "runs" / "x" / "fig", tmp_path / "outside"):     # ignored, outside
        assert provenance.check_figures_write(elsewhere, repo=repo)["guarded"] is False
    assert provenance.git_state(repo, exclude=[repo / "code.py", fig])["dirty"] is False


def test_the_pipeline_refuses_before_running(monkeypatch, tmp_path, capsys):
    """Writing the repository's figures/<profile> from a dirty tree exits 1 and runs nothing."""
    def dirty(figures_dir, allow_dirty=False, **kw):
        if not allow_dirty:
            raise provenance.DirtyTreeError("refusing to write the figures into x: dirty")
        return {"dirty": True, "guarded": True, "changed": ["code.py"]}

    monkeypatch.setattr(pipeline_run, "check_figures_write", dirty)
    out = tmp_path / "run"
    assert pipeline.main(["--profile", "tiny", "--out", str(out), "--figures", str(tmp_path / "f")]) == 1
    assert "refusing to write the figures" in capsys.readouterr().err and not out.exists()


# ---------------------------------------------------------------- publishing

def test_slim_notebook_keeps_images_and_drops_widgets():
    nb = {"metadata": {"widgets": {"state": "x" * 1000}, "kernelspec": {"name": "python3"}, "papermill": {}},
          "nbformat": 4, "nbformat_minor": 5,
          "cells": [{"cell_type": "markdown", "metadata": {}, "source": "# Title\nsee [m](../docs/method.md)"},
                    {"cell_type": "code", "metadata": {"papermill": {"duration": 1}, "tags": ["parameters"]},
                     "execution_count": 1, "source": f"run_dir = '{paths.REPO_ROOT}/runs/q'",
                     "outputs": [{"output_type": "stream", "name": "stderr",
                                  "text": "/x/tqdm/auto.py:21: TqdmWarning: IProgress not found. Please update\n"
                                          "  from .autonotebook import tqdm as notebook_tqdm\n"},
                                 {"output_type": "stream", "name": "stderr", "text": "10%"},
                                 {"output_type": "stream", "name": "stderr", "text": "\r50%"},
                                 {"output_type": "stream", "name": "stderr", "text": "\r100%\n"},
                                 {"output_type": "stream", "name": "stderr", "text": "/x/tqdm/auto.py:21: TqdmWarning: "
                                                                                    "IProgress not found.\n"},
                                 {"output_type": "display_data", "metadata": {},
                                  "data": {"application/vnd.jupyter.widget-view+json": {"model_id": "m"}}},
                                 {"output_type": "display_data", "metadata": {},
                                  "data": {"image/png": "iVBOR", "text/plain": "<Figure>"}}]}]}
    slim = publish.slim_notebook(nb, depth=3)
    assert slim["metadata"] == {"kernelspec": {"name": "python3"}}
    code = slim["cells"][1]
    assert code["metadata"] == {"tags": ["parameters"]} and code["source"] == "run_dir = 'runs/q'"
    assert [o.get("text") for o in code["outputs"]] == ["100%\n", None]
    assert code["outputs"][1]["data"]["image/png"] == "iVBOR"
    assert "](../../../docs/method.md)" in slim["cells"][0]["source"]
    assert publish.notebook_heading(slim) == "Title"


def test_a_large_inline_image_is_reencoded_under_the_limit_at_its_pixel_size():
    import base64
    import io

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    noisy = (rng.random((400, 600, 3)) * 255).astype(np.uint8)        # incompressible as PNG
    buf = io.BytesIO()
    Image.fromarray(noisy).save(buf, format="PNG")
    big = base64.b64encode(buf.getvalue()).decode("ascii")
    assert len(big) > publish.LARGE_IMAGE
    mime, small = publish.shrink_image(big)
    assert len(small) < len(big) and mime in ("image/png", "image/jpeg")
    with Image.open(io.BytesIO(base64.b64decode(small))) as img:
        assert img.size == (600, 400)
    assert publish.shrink_image("iVBOR") == ("image/png", "iVBOR")     # a small image is kept as it is
    nb = {"metadata": {}, "nbformat": 4, "nbformat_minor": 5,
          "cells": [{"cell_type": "code", "metadata": {}, "execution_count": 1, "source": "fig",
                     "outputs": [{"output_type": "display_data", "metadata": {"image/png": {"width": 600}},
                                  "data": {"image/png": big, "text/plain": "<Figure>"}}]}]}
    out = publish.slim_notebook(nb, depth=3)["cells"][0]["outputs"][0]
    assert list(out["data"]) == [mime, "text/plain"] and out["metadata"] == {mime: {"width": 600}}


def test_publish_only_on_the_tiny_run(tiny_run, tmp_path):
    """The tiny run's executed notebooks, published into a temporary docs folder."""
    docs = tmp_path / "docs" / "study" / "tiny"
    readme = pipeline.publish_only(tiny_run.run_dir, docs)
    names = sorted(p.name for p in docs.glob("*.ipynb"))
    assert names == sorted(pipeline_run.NOTEBOOKS.values())
    text = readme.read_text()
    for name in names:
        nb = json.loads((docs / name).read_text())
        assert publish.notebook_heading(nb) in text and f"]({name})" in text
        assert "widgets" not in nb["metadata"]
        assert not any("papermill" in c["metadata"] for c in nb["cells"])
    assert any(o.get("data", {}).get("image/png") for name in names
               for c in json.loads((docs / name).read_text())["cells"] for o in c.get("outputs", []))
    recorded = json.loads((tiny_run.run_dir / "provenance" / "01.json").read_text())["git"]["commit"]
    assert f"`{str(recorded)[:10]}`" in text
