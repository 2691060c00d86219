"""Notebook 01 run by the pipeline on the tiny profile: the dataset table it writes equals what
slices.npz holds, the splits are by subject, and its figures exist."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from umcam_lib.config import load_params
from umcam_lib.data import load_slices
from umcam_lib.paths import SHARED_DATA

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny(tiny_run):
    return tiny_run, load_slices(tiny_run.run_dir), load_params("params/tiny.yaml")


def test_slices_follow_the_tiny_profile(tiny):
    run, s, params = tiny
    data = params["data"]
    assert len(s.volumes) == data["n_volumes"]
    assert s.images.shape[1:] == (data["image_size"], data["image_size"])
    assert s.spacing_mm == pytest.approx(data["spacing_mm"])
    assert 0.0 <= float(s.images.min()) and float(s.images.max()) <= 1.0
    np.testing.assert_array_equal(s.labels, s.masks.reshape(len(s), -1).any(axis=1))
    assert 0 < s.labels.sum() < len(s)  # both classes present
    assert (run.run_dir / "data" / "fingerprint.json").is_file()
    assert (run.run_dir / "cohort").is_dir()


def test_dataset_csv_matches_slices(tiny):
    run, s, _ = tiny
    table = pd.read_csv(run.figures_dir / "dataset.csv")
    assert list(table.columns) == ["split", "volumes", "positive_slices", "negative_slices", "notes"]
    assert table.split.tolist() == ["train", "val", "test", "total"]
    rows = table.set_index("split")
    for sp in ("train", "val", "test"):
        keep = s.split == sp
        assert rows.loc[sp, "volumes"] == len(np.unique(s.volume[keep])), sp
        assert rows.loc[sp, "positive_slices"] == int((s.labels[keep] == 1).sum()), sp
        assert rows.loc[sp, "negative_slices"] == int((s.labels[keep] == 0).sum()), sp
        assert rows.loc[sp, "volumes"] > 0, f"split {sp} is empty"
    assert rows.loc["total", "volumes"] == len(s.volumes)
    assert rows.loc["total", "positive_slices"] + rows.loc["total", "negative_slices"] == len(s)
    for ext in ("md", "tex"):
        assert (run.figures_dir / f"dataset.{ext}").stat().st_size > 0


def test_splits_are_by_subject(tiny):
    _, s, _ = tiny
    assert (s.volumes.groupby("subject")["split"].nunique() == 1).all()
    per_volume = {v: set(s.split[s.volume == v]) for v in s.volumes.volume}
    assert all(len(x) == 1 for x in per_volume.values())
    assert all(s.volumes.set_index("volume").loc[v, "split"] in x for v, x in per_volume.items())


def test_figures_exist(tiny):
    run, _, _ = tiny
    assert (run.figures_dir / "example_slices.png").stat().st_size > 10_000
    montage = run.figures_dir / "phantom_vs_real.png"
    if SHARED_DATA.is_dir():
        assert montage.stat().st_size > 10_000
    else:
        assert not montage.exists()
