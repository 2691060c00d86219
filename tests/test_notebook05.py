"""Notebook 05 run by the pipeline on the tiny profile: SPLs for exactly the positive slices that
have seeds, a consistent seeds table and summary, and a finite SPL quality table."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from umcam_lib import gse
from umcam_lib.data import maps
from umcam_lib.data import load_slices

pytestmark = pytest.mark.slow

NOTEBOOK = "05_spl_generation.ipynb"


@pytest.fixture(scope="module")
def tiny(tiny_run):
    if not (tiny_run.run_dir / "spl" / "spl.npz").is_file():
        ran = {r.name for r in tiny_run.results}
        pytest.fail(f"notebook 05 wrote no spl/spl.npz (notebooks run: {sorted(ran)})")
    return tiny_run, load_slices(tiny_run.run_dir)


def test_spl_covers_positive_training_slices_minus_those_without_component(tiny):
    run, s = tiny
    index, spl = maps.load_maps(run.run_dir, "spl", "spl")
    seeds = pd.read_csv(run.run_dir / "spl" / "seeds.csv")
    positive = np.concatenate([s.indices(sp, positive_only=True) for sp in ("train", "val", "test")])
    assert sorted(seeds["row"]) == sorted(positive.tolist())
    without = set(seeds.loc[~seeds["has_spl"], "row"])
    train_pos = set(s.indices("train", positive_only=True).tolist())
    assert train_pos - without <= set(index.tolist())
    assert set(index.tolist()) == set(positive.tolist()) - without
    assert not set(index.tolist()) & set(np.flatnonzero(s.labels == 0).tolist())  # negatives get no SPL
    assert spl.shape == (len(index),) + s.images.shape[1:]
    assert np.isfinite(spl).all() and spl.min() >= 0.0 and spl.max() <= 1.0


def test_seeds_table_and_summary_agree(tiny):
    run, s = tiny
    seeds = pd.read_csv(run.run_dir / "spl" / "seeds.csv")
    summary = json.loads((run.run_dir / "spl" / "summary.json").read_text())
    assert summary["without_component"] == int((~seeds["has_spl"]).sum())
    assert summary["with_spl"] + summary["without_component"] == summary["positive_slices"] == len(seeds)
    have = seeds[seeds["has_spl"]]
    h, w = s.images.shape[1:]
    for col in [c for c in seeds.columns if c.endswith("_row")]:
        assert have[col].between(0, h - 1).all(), col
    for col in [c for c in seeds.columns if c.endswith("_col") and c != "row"]:
        assert have[col].between(0, w - 1).all(), col
    # every foreground seed lies inside the thresholded UM-CAM it came from
    cam_index, cam_maps = maps.load_maps(run.run_dir, "cams", "umcam")
    pos = {int(r): i for i, r in enumerate(cam_index)}
    for rec in have.itertuples():
        cam = cam_maps[pos[int(rec.row)]]
        assert gse.binarise(cam, rec.threshold)[int(rec.fg_row), int(rec.fg_col)]


def test_spl_quality_table_is_finite_and_complete(tiny):
    run, s = tiny
    table = pd.read_csv(run.figures_dir / "spl_quality.csv")
    assert list(table.columns) == ["method", "split", "n", "dsc_mean", "dsc_std", "hd95_mean", "hd95_std"]
    assert {"SPL", "UM-CAM"} <= set(table["method"])
    for split in ("val", "test"):
        n_pos = len(s.indices(split, positive_only=True))
        got = table[table["split"] == split]
        if n_pos:
            assert (got["n"] == n_pos).all(), split  # slices without SPL are counted, not dropped
    values = table[["dsc_mean", "dsc_std", "hd95_mean", "hd95_std"]].to_numpy(dtype=float)
    assert np.isfinite(values).all()
    assert ((table["dsc_mean"] >= 0) & (table["dsc_mean"] <= 100)).all()


def test_figures_exist(tiny):
    run, _ = tiny
    for name in ("spl_examples.png", "geodesic_vs_euclidean.png", "spl_quality.md", "spl_quality.tex"):
        assert (run.figures_dir / name).stat().st_size > 0, name
