"""Notebook 06 on the tiny profile: Table 1 / Table 2 segmentation rows, sweep tables, figures."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from umcam_lib import config
from umcam_lib.data import load_slices
from umcam_lib.scoring import evaluate_volumes
from umcam_lib.train import segmentation

pytestmark = pytest.mark.slow


def _volumes_per_split(run_dir) -> dict[str, int]:
    vols = pd.read_csv(run_dir / "data" / "volumes.csv")
    return vols.groupby("split").size().to_dict()


def _segmentation_rows(fig_dir, table: str) -> pd.DataFrame:
    df = pd.read_csv(fig_dir / f"{table}.csv")
    return df[df["section"] == "segmentation"]


def test_table1_has_the_four_weak_variants_on_every_volume(tiny_run):
    n = _volumes_per_split(tiny_run.run_dir)
    seg = _segmentation_rows(tiny_run.figures_dir, "table1")
    for split in ("val", "test"):
        rows = seg[seg["split"] == split]
        assert sorted(rows["method"]) == sorted(["Grad-CAM", "UM-CAM", "SPL", "UM-CAM+SPL"]), split
        assert (rows["n"] == n[split]).all(), f"{split}: every volume must be scored, got {rows['n'].tolist()}"
        assert rows["dsc_mean"].between(0, 100).all() and np.isfinite(rows["hd95_mean"]).all()
        assert np.isfinite(rows["hd95_mm_mean"]).all()


def test_table2_has_umcam_spl_and_fully_supervised(tiny_run):
    n = _volumes_per_split(tiny_run.run_dir)
    seg = _segmentation_rows(tiny_run.figures_dir, "table2")
    for split in ("val", "test"):
        rows = seg[seg["split"] == split].set_index("method")
        assert {"UM-CAM+SPL", "FullySup"} <= set(rows.index)
        assert rows.loc["FullySup", "n"] == n[split]
    # the UM-CAM+SPL model is the same in both tables
    t1 = _segmentation_rows(tiny_run.figures_dir, "table1").set_index(["method", "split"])
    t2 = seg.set_index(["method", "split"])
    assert t1.loc[("UM-CAM+SPL", "test"), "dsc_mean"] == pytest.approx(t2.loc[("UM-CAM+SPL", "test"), "dsc_mean"])


def test_predictions_cover_every_slice_of_the_test_volumes(tiny_run):
    slices = pd.read_csv(tiny_run.run_dir / "data" / "volumes.csv")
    n_test_slices = int(slices.loc[slices["split"] == "test", "n_slices"].sum())
    for name in segmentation.VARIANTS:
        index, probs = segmentation.load_predictions(tiny_run.run_dir, name, "test")
        assert len(index) == n_test_slices and probs.min() >= 0 and probs.max() <= 1


def test_sweep_tables_and_figures_exist(tiny_run):
    fig = tiny_run.figures_dir
    for name in ("segmentation_examples.png", "segmentation_labels.png", "sweep.png", "training_curves.png"):
        assert (fig / name).stat().st_size > 1000, name
    for name in ("sweep", "sweep_choice", "segmentation_oracle"):
        for ext in ("csv", "md", "tex"):
            assert (fig / f"{name}.{ext}").is_file(), f"{name}.{ext}"
    sweep = pd.read_csv(fig / "sweep.csv")
    params = config.load_params(config.profile_path("tiny"))["seg"]
    assert len(sweep) == len(params["sweep_main"]) * len(params["sweep_lambda"])
    assert set(sweep["loss_main"]) == set(params["sweep_main"])
    assert sweep["val_dsc_mean"].between(0, 100).all()
    # AdamW: reading spl at lambda 1 is reading umcam at lambda 1, trained once
    dup = sweep[(sweep["loss_main"] == "spl") & (sweep["lambda"] == 1.0)]
    assert dup["same_as"].iloc[0] == "umcam_lambda1"
    choice = pd.read_csv(fig / "sweep_choice.csv")
    assert list(choice["point"]) == ["validation-chosen", "best umcam reading", "best spl reading", "paper"]
    paper = choice.set_index("point").loc["paper"]
    assert (paper["loss_main"], paper["lambda"]) == (segmentation.PAPER_MAIN, segmentation.PAPER_LAMBDA)
    best = sweep.loc[sweep["val_dsc_mean"].idxmax()]
    chosen = choice.set_index("point").loc["validation-chosen"]
    assert (chosen["loss_main"], chosen["lambda"]) == (best["loss_main"], best["lambda"])
    oracle = pd.read_csv(fig / "segmentation_oracle.csv")
    assert {"dsc_all", "dsc_lcc", "dsc_oracle"} <= set(oracle.columns)


def test_tta_table_scores_every_unet_both_ways_and_the_plain_column_is_table1(tiny_run):
    """The tiny profile does not use seg.tta, so the 'plain' test column equals Table 1's / 2's rows."""
    tta = pd.read_csv(tiny_run.figures_dir / "segmentation_tta.csv").set_index("method")
    assert list(tta.index) == list(segmentation.VARIANTS)
    for split in ("val", "test"):
        assert tta[f"{split}_plain"].between(0, 100).all() and tta[f"{split}_tta"].between(0, 100).all()
        np.testing.assert_allclose(tta[f"{split}_gain"], tta[f"{split}_tta"] - tta[f"{split}_plain"], atol=1e-6)
    seg = config.load_params(config.profile_path("tiny"))["seg"]
    assert seg["tta"] is False
    slices = load_slices(tiny_run.run_dir)
    for name in segmentation.VARIANTS:
        index, probs = segmentation.load_predictions(tiny_run.run_dir, name, "test")  # what Table 1 / 2 scored
        stored = evaluate_volumes(slices, "test", index, probs > 0.5, postprocess=seg["postprocess"])
        assert stored["dsc"].mean() == pytest.approx(tta.loc[name, "test_plain"], abs=0.5)  # stored in float16
