"""Notebooks 03 (CAM variants) and 04 (UM-CAM): what the tiny pipeline run recorded and wrote."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from umcam_lib.data import maps
from umcam_lib import metrics, report
from umcam_lib.data import load_slices

pytestmark = pytest.mark.slow

TABLE_METHODS = {
    "table2": ["Grad-CAM", "Grad-CAM++", "Score-CAM", "Ablation-CAM"],
    "table1": ["Grad-CAM", "Average-CAM", "UM-CAM"],
}
MAP_NAMES = ["gradcam", "gradcam_pp", "scorecam", "ablationcam", "average_cam", "umcam"]


@pytest.fixture(scope="module")
def run(tiny_run):
    return tiny_run.run_dir, tiny_run.figures_dir, load_slices(tiny_run.run_dir)


@pytest.mark.parametrize("table", sorted(TABLE_METHODS))
def test_pseudo_mask_rows_for_val_and_test(run, table):
    run_dir, fig_dir, s = run
    df = pd.read_csv(fig_dir / f"{table}.csv")
    pm = df[df["section"] == "pseudo_mask"]
    n_pos = {split: len(s.indices(split, positive_only=True)) for split in ("val", "test")}
    for method in TABLE_METHODS[table]:
        for split in ("val", "test"):
            row = pm[(pm["method"] == method) & (pm["split"] == split)]
            assert len(row) == 1, f"{table}: no single pseudo_mask row for {method} / {split}"
            row = row.iloc[0]
            assert row["n"] == n_pos[split], f"{table} {method} {split}: n={row['n']}, positive slices {n_pos[split]}"
            for col in ("dsc_mean", "dsc_std", "hd95_mean", "hd95_std"):
                assert np.isfinite(row[col]), f"{table} {method} {split}: {col} is not finite"
            assert 0 <= row["dsc_mean"] <= 100


def test_thresholds_json(run):
    run_dir, _, _ = run
    th = json.loads((run_dir / "cams" / "thresholds.json").read_text())
    assert set(MAP_NAMES) <= set(th)
    grid = metrics.threshold_grid([0.05, 0.95, 0.05])
    for name in MAP_NAMES:
        assert np.isclose(grid, th[name]).any(), f"{name}: threshold {th[name]} not on the grid"


@pytest.mark.parametrize("name", ["gradcam", "average_cam", "umcam"])
def test_training_maps_cover_every_slice(run, name):
    run_dir, _, s = run
    index, m = maps.load_maps(run_dir, "cams", name)
    assert np.array_equal(np.sort(index), np.arange(len(s))), f"cams/{name}.npz must cover every slice"
    assert m.shape == (len(s), *s.images.shape[1:])
    assert np.isfinite(m).all() and m.min() >= 0 and m.max() <= 1


def test_recorded_scores_follow_from_saved_maps_and_threshold(run):
    """The UM-CAM test scores equal the saved maps thresholded at the stored (validation) threshold."""
    run_dir, _, s = run
    index, m = maps.load_maps(run_dir, "cams", "umcam")
    t = json.loads((run_dir / "cams" / "thresholds.json").read_text())["umcam"]
    scores = report.load_scores(run_dir, "table1")
    rec = scores[(scores["section"] == "pseudo_mask") & (scores["method"] == "UM-CAM") & (scores["split"] == "test")
                 & (scores["seed"] == 0)].sort_values("id")   # the primary seed's maps are the saved ones
    rows = rec["id"].to_numpy()
    assert np.array_equal(rows, s.indices("test", positive_only=True))
    pos = {int(r): i for i, r in enumerate(index)}
    dsc = [metrics.dice(m[pos[int(r)]] >= t, s.masks[r]) for r in rows]
    np.testing.assert_allclose(rec["dsc"].to_numpy(), dsc, atol=1e-6)


def test_figures_and_layer_ablation(run):
    _, fig_dir, _ = run
    for name in ("cam_variants.png", "per_block_cams.png", "entropy_weights.png"):
        assert (fig_dir / name).stat().st_size > 0, name
    ab = pd.read_csv(fig_dir / "layer_ablation.csv")
    assert {"block1-5", "block5"} <= set(ab["layers"])
    assert np.isfinite(ab[["val_dsc", "test_dsc", "val_hd95", "test_hd95"]].to_numpy()).all()


@pytest.mark.parametrize("table", sorted(TABLE_METHODS))
def test_rows_have_a_seed_spread_and_the_floor_beside_them(run, table):
    """tiny runs two classifier seeds: every CAM row averages both; the all-foreground floor is a row."""
    from umcam_lib.cam.diagnostics import all_foreground_dice

    run_dir, fig_dir, s = run
    df = pd.read_csv(fig_dir / f"{table}.csv")
    pm = df[df["section"] == "pseudo_mask"].set_index(["method", "split"])
    for method in TABLE_METHODS[table]:
        row = pm.loc[(method, "val")]
        assert row["n_seeds"] == 2 and np.isfinite(row["dsc_seed_sd"]), f"{table} {method}: no seed spread"
    for split in ("val", "test"):
        floor = pm.loc[("All-foreground", split)]
        rows = s.indices(split, positive_only=True)
        assert floor["dsc_mean"] == pytest.approx(all_foreground_dice(s.masks[rows]).mean())
    assert (run_dir / "seeds" / "seed-1" / "classifier" / "best.pt").is_file()


def test_localisation_and_occlusion_tables(run):
    _, fig_dir, _ = run
    loc = pd.read_csv(fig_dir / "layer_localisation.csv")
    assert loc["layer"].tolist()[:6] == ["block1", "block2", "block3", "block4", "block5", "head"]
    assert (loc["n_seeds"] == 2).all() and loc["pointing_mean"].iloc[:8].between(0, 1).all()
    assert (fig_dir / "layer_localisation.png").stat().st_size > 0
    occ = pd.read_csv(fig_dir / "occlusion_test.csv")
    assert occ["input"].tolist() == ["intact", "brain erased", "head only"]
    assert occ["p_brain"].between(0, 1).all()
    seeds = pd.read_csv(fig_dir / "classification_seeds.csv")
    assert sorted(seeds["seed"].unique()) == [0, 1]


def test_fusion_diagnosis_is_computed_recorded_and_printed(run):
    """Notebook 04's fairness section: every reading for every seed, LayerCAM beside them, the
    readings' per-seed scores for notebook 08, and the generated verdict printed in the notebook."""
    run_dir, fig_dir, s = run
    from umcam_lib.cam import fairness, load_reading_scores

    scores = load_reading_scores(run_dir)
    assert scores is not None
    assert set(scores.loc[scores["method"] == "UM-CAM", "reading"]) == set(fairness.READINGS)
    assert {"Grad-CAM", "LayerCAM (block5)", "LayerCAM fusion (max)"} <= set(scores["method"])
    assert scores["seed"].nunique() >= 2 and scores["dsc"].between(0, 100).all()
    summary = pd.read_csv(fig_dir / "fusion_readings.csv")
    assert np.allclose(summary.set_index(["reading", "method"])["val_dsc"].sort_index(),
                       fairness.summarise_readings(scores).set_index(["reading", "method"])["val_dsc"].sort_index())
    loo = pd.read_csv(fig_dir / "fusion_leave_one_out.csv")
    assert {"all", "without block1", "without block5"} <= set(loo["layers"])
    for name in ("fusion_weights_by_region.png", "fusion_readings.png"):
        assert (fig_dir / name).stat().st_size > 0, name
    t2 = pd.read_csv(fig_dir / "table2.csv")
    assert {"val", "test"} <= set(t2.loc[t2["method"] == "LayerCAM", "split"])
    nb = json.loads((run_dir / "notebooks" / "04_umcam_ablation.ipynb").read_text())
    printed = "".join("".join(o.get("data", {}).get("text/markdown", "")) for c in nb["cells"]
                      for o in c.get("outputs", []))
    best = fairness.choose_reading(fairness.summarise_readings(scores))
    assert f"Chosen on validation: **{best['label']}**" in printed
    assert "layers weigh less on the brain than outside it" in printed or "Every layer weighs" in printed


def test_the_umcam_row_uses_the_reading_validation_chose_and_the_default_is_a_sensitivity_row(run):
    """Notebook 04 scores every reading of Eq. 3-4 first; the one with the best mean validation Dice
    makes the saved UM-CAM maps and Table 1's UM-CAM row; the default reading stands beside it."""
    from umcam_lib import config
    from umcam_lib.cam import fairness, fuse_layers, study_layers
    from umcam_lib.cam.gradcam import compute_cams
    from umcam_lib.train.classifier import load_classifier

    run_dir, fig_dir, s = run
    readings = pd.read_csv(fig_dir / "fusion_readings.csv")
    chosen = fairness.choose_reading(readings)["reading"]
    t1 = pd.read_csv(fig_dir / "table1.csv")
    pseudo = set(t1.loc[t1["section"] == "pseudo_mask", "method"])
    assert (fairness.PAPER_READING_ROW in pseudo) == (chosen != "paper" and not fairness.same_reading(
        fairness.reading_section({}, chosen), fairness.reading_section({}, "paper")))
    # the saved maps are the chosen reading's fusion of the first seed's layer CAMs
    params = config.load_params(config.profile_path("tiny"))
    cam = fairness.reading_section(params["cam"], chosen)
    model = load_classifier(run_dir / "classifier", params["classifier"], device="cpu")
    rows = np.arange(len(s))  # every slice: some readings normalise over a volume or a batch
    names = study_layers(cam["layers"])
    layer_maps, peaks = compute_cams(model, s.images[rows], names, batch_size=8, device="cpu", amp=False,
                                     target=cam["target"], return_peaks=True, progress=False)
    expected = fuse_layers(layer_maps, names, cam["layers"], cam, peaks=peaks, rows=rows,
                           volumes=s.volume[rows])["umcam"]
    index, saved = maps.load_maps(run_dir, "cams", "umcam")
    np.testing.assert_allclose(saved[maps.row_positions(index, rows)].astype(np.float32), expected, atol=2e-3)
