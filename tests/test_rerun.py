"""The rerun check (umcam_lib.report.rerun) on constructed runs with known shifts."""
from __future__ import annotations

import numpy as np
import pytest

from umcam_lib.data.scores import record_scores
from umcam_lib.report.rerun import claim_shifts, row_shifts

METHODS = {"Grad-CAM": 70.0, "UM-CAM": 74.0, "SPL": 80.0, "UM-CAM+SPL": 81.0, "DRS": 72.0, "AMR": 71.0}


def _run(folder, shift: dict[str, float], noise: float, seed: int):
    rng = np.random.default_rng(seed)
    volume_effect = np.linspace(-6.0, 6.0, 8)
    for method, level in METHODS.items():
        for s in range(3):
            dsc = level + shift.get(method, 0.0) + volume_effect + rng.normal(0.0, noise, 8)
            for split in ("val", "test"):
                record_scores(folder, "table1", "segmentation", method, split, ids=range(8), dsc=dsc,
                              hd95=100.0 - dsc, hd95_mm=100.0 - dsc, seed=s)
    return folder


def test_a_rerun_with_float_noise_stays_inside_and_a_moved_row_does_not(tmp_path):
    run = _run(tmp_path / "run", {}, noise=0.5, seed=0)
    same = _run(tmp_path / "same", {}, noise=0.5, seed=1)
    moved = _run(tmp_path / "moved", {"SPL": -15.0}, noise=0.5, seed=1)

    rows = row_shifts(run, same)
    assert len(rows) == len(METHODS) * 2 and rows["inside"].all()
    assert (rows["n_volumes"] == 8).all() and (rows["n_seeds"] == 3).all()
    assert rows["shift"].abs().max() < 1.0

    rows = row_shifts(run, moved).set_index(["method", "split"])
    assert not rows.loc[("SPL", "test"), "inside"]
    assert rows.loc[("SPL", "test"), "shift"] == pytest.approx(-15.0, abs=1.0)
    assert rows.drop(index="SPL", level="method")["inside"].all()

    claims = claim_shifts(run, moved)
    spl = claims[claims["claim"].str.contains("SPL labels beat UM-CAM") & (claims["metric"] == "dsc")]
    assert len(spl) == 2 and not spl["inside"].any()          # the gap moved by -15 points on both splits
    steady = claims[claims["claim"].str.contains("beats DRS") & (claims["metric"] == "dsc")]
    assert steady["inside"].all()


def test_rows_only_one_run_recorded_are_left_out(tmp_path):
    run = _run(tmp_path / "run", {}, noise=0.5, seed=0)
    other = tmp_path / "other"
    record_scores(other, "table1", "segmentation", "SPL", "test", ids=range(8), dsc=np.full(8, 80.0),
                  hd95=np.full(8, 5.0), seed=0)
    rows = row_shifts(run, other)
    assert list(rows["method"]) == ["SPL"] and list(rows["split"]) == ["test"]
