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
        assert sorted(rows["method"]) == sorted(["Grad-CAM", "UM-CAM", "SPL", "UM-CAM+SPL",
                                                 "UM-CAM+SPL (paper's Eq. 8)"]), split
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


def test_tta_table_scores_every_unet_both_ways_and_the_reported_column_is_table1(tiny_run):
    """The column of the profile's protocol (seg.tta: 'tta' when on) equals the stored predictions
    that Tables 1-2 scored (the first UNet seed's)."""
    tta = pd.read_csv(tiny_run.figures_dir / "segmentation_tta.csv").set_index("method")
    assert list(tta.index) == list(segmentation.VARIANTS)
    for split in ("val", "test"):
        assert tta[f"{split}_plain"].between(0, 100).all() and tta[f"{split}_tta"].between(0, 100).all()
        np.testing.assert_allclose(tta[f"{split}_gain"], tta[f"{split}_tta"] - tta[f"{split}_plain"], atol=1e-6)
    seg = config.load_params(config.profile_path("tiny"))["seg"]
    column = "test_tta" if seg["tta"] else "test_plain"
    slices = load_slices(tiny_run.run_dir)
    for name in segmentation.VARIANTS:
        index, probs = segmentation.load_predictions(tiny_run.run_dir, name, "test")  # what Table 1 / 2 scored
        stored = evaluate_volumes(slices, "test", index, probs > 0.5, postprocess=seg["postprocess"])
        assert stored["dsc"].mean() == pytest.approx(tta.loc[name, column], abs=0.5)  # stored in float16


def _printed(run_dir, name: str) -> str:
    import json
    nb = json.loads((run_dir / "notebooks" / name).read_text())
    return "\n".join("".join(o.get("text", "")) for c in nb["cells"] for o in c.get("outputs", []))


def test_method_overview_is_drawn_from_the_runs_own_artifacts(tiny_run):
    """The figure exists, and what it recomputes for its slice (UM-CAM from the per-block CAMs,
    the SPL from the stored UM-CAM) equals what notebooks 04 and 05 stored."""
    import re
    assert (tiny_run.figures_dir / "method_overview.png").stat().st_size > 20_000
    assert (tiny_run.figures_dir / "segmentation_volumes.png").stat().st_size > 5_000
    line = next(x for x in _printed(tiny_run.run_dir, "06_segmentation.ipynb").splitlines()
                if "Recomputed vs stored" in x)
    um, spl = map(float, re.search(r"UM-CAM max difference ([\d.]+), SPL ([\d.na]+)", line).groups())
    assert um < 0.01, line
    assert spl < 0.01 or np.isnan(spl), line


def test_method_panels_name_the_missing_artifact(tmp_path):
    from umcam_lib.report import method_figure
    with pytest.raises(FileNotFoundError, match="classifier/best.pt"):
        method_figure.method_panels(tmp_path, {}, {}, {}, {})


def test_training_curves_draw_a_running_mean_over_faint_raw_validations():
    import matplotlib
    matplotlib.use("Agg")
    from umcam_lib.report import figures as evaluate
    rng = np.random.default_rng(0)
    e = np.arange(1, 41)
    h = pd.DataFrame({"epoch": e, "loss": np.exp(-e / 20), "val_dsc": rng.uniform(0, 80, 40)})
    fig = evaluate.plot_training_curves({"A": h})
    ax_v = fig.axes[1]
    raw, smooth = ax_v.lines[0], ax_v.lines[1]
    assert raw.get_alpha() < 0.5 and raw.get_linestyle() == "None"
    np.testing.assert_allclose(smooth.get_ydata(), evaluate.running_mean(h["val_dsc"], 4))
    assert np.std(np.diff(smooth.get_ydata())) < np.std(np.diff(h["val_dsc"]))   # the line is smoother
    assert "running mean over 4 validations" in ax_v.get_title()


def test_sweep_keeps_both_readings_visible_and_labels_each_share_once():
    import matplotlib
    matplotlib.use("Agg")
    from umcam_lib.report import figures as evaluate
    sweep = pd.DataFrame({"loss_main": ["umcam"] * 3 + ["spl"] * 3, "lambda": [0.1, 1.0, 10.0] * 2,
                          "spl_share": [1 / 11, 0.5, 10 / 11, 10 / 11, 0.5, 1 / 11],
                          "same_as": ["", "", "", "umcam_lambda10", "umcam_lambda1", ""],
                          "val_dsc_mean": [60.0, 70.0, 80.0, 80.0, 70.0, 60.0]})
    fig = evaluate.plot_sweep(sweep, ("umcam", 10.0), ("umcam", 0.1))
    ax = fig.axes[0]
    umcam_line, spl_line = ax.lines[0], ax.lines[1]
    assert umcam_line.get_marker() != spl_line.get_marker()
    assert spl_line.get_markersize() > umcam_line.get_markersize() and spl_line.get_markerfacecolor() == "none"
    labels = [t.get_text() for t in ax.texts]
    assert len(labels) == 3                                              # one per SPL share, not one per point
    assert any("umcam λ=10 = spl λ=0.1" in t and "one training" in t for t in labels)


def test_every_weak_row_is_a_mean_over_the_unet_seeds_and_the_paper_point_is_a_sensitivity_row(tiny_run):
    """seg.seeds (2 in tiny): each variant's row averages its UNet seeds, with a seed SD; the
    UM-CAM+SPL row trains at the Eq. 8 point validation chose, the paper's point is a one-seed row."""
    from umcam_lib.train import seg_sweep

    n_seeds = config.load_params(config.profile_path("tiny"))["seg"]["seeds"]
    assert n_seeds >= 2
    t1 = _segmentation_rows(tiny_run.figures_dir, "table1").set_index(["method", "split"])
    for method in ("Grad-CAM", "UM-CAM", "SPL", "UM-CAM+SPL"):
        assert t1.loc[(method, "test"), "n_seeds"] == n_seeds, method
        assert np.isfinite(t1.loc[(method, "test"), "dsc_seed_sd"]), method
    assert t1.loc[(seg_sweep.PAPER_ROW, "test"), "n_seeds"] == 1
    for seed in range(1, n_seeds):
        assert (tiny_run.run_dir / "seg" / f"UM-CAM+SPL__seed{seed}" / "best.pt").is_file()
    sweep = pd.read_csv(tiny_run.figures_dir / "sweep.csv")
    _, chosen = seg_sweep.row_section({}, sweep)
    best = (tiny_run.run_dir / "seg" / "UM-CAM+SPL" / "best.pt")
    import torch
    cfg = torch.load(best, map_location="cpu", weights_only=True).get("config", {})
    assert (cfg["main"], float(cfg["lambda"])) == (chosen[0], float(chosen[1]))  # the recipe it trained with


def test_unet_seeds_are_crossed_with_the_classifier_seeds(tiny_run):
    """cross_seeds (default): UNet seed 1 trains on the labels classifier seed 1 made (its own
    UM-CAM masks and SPL, written beside its classifier), not on seed 0's."""
    from umcam_lib.train import label_seeds
    from umcam_lib.train.tasks import read_targets

    params = config.load_params(config.profile_path("tiny"))
    assert params["cross_seeds"] and params["seeds"] >= 2 and params["seg"]["seeds"] >= 2
    folder = label_seeds.labels_dir(tiny_run.run_dir, 1, 0)
    for artifact in ("cams/umcam.npz", "cams/gradcam.npz", "cams/thresholds.json", "spl/spl.npz", "classifier/best.pt"):
        assert (folder / artifact).is_file(), artifact
    for row in ("Grad-CAM", "UM-CAM", "SPL", "UM-CAM+SPL"):
        own, _ = read_targets(tiny_run.run_dir, row)
        crossed, _ = read_targets(tiny_run.run_dir, label_seeds.labels_name(row, 1, 0))
        assert np.array_equal(own["index"], crossed["index"]), row      # the same positive training slices
        if row != "Grad-CAM":  # tiny's 4-epoch classifiers leave block 5 dead: both Grad-CAM label sets are empty
            assert not np.array_equal(own["maps"], crossed["maps"]), row  # from another classifier
        marker = (tiny_run.run_dir / "seg" / f"{row}__seed1" / "task.json").read_text()
        assert f"{row}__labels1" in marker, row                          # the task names the labels it trained on
    assert not (tiny_run.run_dir / "seg" / "_targets" / "FullySup__labels1.npz").exists()  # true masks: one set
