"""Notebook 07 (DRS and AMR baselines) on the tiny profile: recorded rows, maps and figures."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from umcam_lib.data import maps
from umcam_lib.data import load_slices


def test_table2_has_finite_drs_and_amr_segmentation_rows(tiny_run):
    table = pd.read_csv(tiny_run.figures_dir / "table2.csv")
    seg = table[table["section"] == "segmentation"]
    slices = load_slices(tiny_run.run_dir)
    for method in ("DRS", "AMR"):
        for split in ("val", "test"):
            row = seg[(seg["method"] == method) & (seg["split"] == split)]
            assert len(row) == 1, f"table2.csv lacks the {method} {split} segmentation row"
            row = row.iloc[0]
            assert row["n"] == len(slices.volume_ids(split))
            for col in ("dsc_mean", "hd95_mean"):
                assert np.isfinite(row[col]), f"{method} {split} {col} is {row[col]}"
            assert 0.0 <= row["dsc_mean"] <= 100.0 and row["hd95_mean"] >= 0.0
            assert np.isfinite(row["paper_dsc_mean"])


def test_baseline_maps_cover_every_positive_slice(tiny_run):
    slices = load_slices(tiny_run.run_dir)
    positives = np.flatnonzero(slices.labels == 1)
    thresholds = json.loads((tiny_run.run_dir / "cams" / "thresholds.json").read_text())
    for name in ("drs", "amr"):
        index, m = maps.load_maps(tiny_run.run_dir, "cams", name)
        assert np.array_equal(np.sort(index), positives)
        assert m.shape == (len(positives),) + slices.images.shape[1:]
        assert np.isfinite(m).all() and m.min() >= 0.0 and m.max() <= 1.0
        assert 0.0 < thresholds[name] < 1.0


def test_baseline_figure_tables_and_checkpoints_are_written(tiny_run):
    assert (tiny_run.figures_dir / "baseline_cams.png").stat().st_size > 0
    pm = pd.read_csv(tiny_run.figures_dir / "baseline_pseudo_masks.csv")
    assert {"DRS (suppressed)", "DRS (unsuppressed)", "AMR", "UM-CAM"} <= set(pm["method"])
    assert np.isfinite(pm[["val_dsc", "test_dsc", "val_hd95", "test_hd95"]].to_numpy()).all()
    for name in ("drs", "amr"):
        assert (tiny_run.run_dir / "baselines" / name / "best.pt").is_file()
    for variant in ("DRS", "AMR"):
        for split in ("val", "test"):
            assert (tiny_run.run_dir / "seg" / variant / f"pred_{split}.npz").is_file()


def test_drs_and_amr_unet_seeds_train_on_their_own_classifier_seeds_fine_tunes(tiny_run):
    """cross_seeds: UNet seed 1 of DRS and AMR learns from baselines fine-tuned from classifier seed 1."""
    import torch

    from umcam_lib.train import label_seeds
    from umcam_lib.train.tasks import read_targets

    folder = label_seeds.labels_dir(tiny_run.run_dir, 1, 0)
    slices = load_slices(tiny_run.run_dir)
    positives = np.flatnonzero(slices.labels == 1)
    thresholds = json.loads((folder / "cams" / "thresholds.json").read_text())
    for name, row in (("drs", "DRS"), ("amr", "AMR")):
        assert (folder / "baselines" / name / "best.pt").is_file(), name
        index, _ = maps.load_maps(folder, "cams", name)
        assert np.array_equal(np.sort(index), positives)
        assert 0.0 < thresholds[name] < 1.0
        own, _ = read_targets(tiny_run.run_dir, row)
        crossed, _ = read_targets(tiny_run.run_dir, label_seeds.labels_name(row, 1, 0))
        assert np.array_equal(own["index"], crossed["index"]), row
        # fine-tuned from another classifier (tiny's block-5 maps, and so both label sets, may be empty)
        first = torch.load(tiny_run.run_dir / "baselines" / name / "best.pt", map_location="cpu", weights_only=True)
        other = torch.load(folder / "baselines" / name / "best.pt", map_location="cpu", weights_only=True)
        weights = [k for k, v in first["model"].items() if torch.is_floating_point(v)]
        assert any(not torch.equal(first["model"][k], other["model"][k]) for k in weights), name
        assert f"{row}__labels1" in (tiny_run.run_dir / "seg" / f"{row}__seed1" / "task.json").read_text()
