"""Notebook 08 on the tiny profile: the claims table and figure, from the run's recorded scores."""
from __future__ import annotations

import pandas as pd
import pytest

from umcam_lib.report import verdicts

pytestmark = pytest.mark.slow


def test_claims_are_tested_per_volume_for_both_metrics_and_drawn(tiny_run):
    claims = pd.read_csv(tiny_run.figures_dir / "claims.csv")
    assert set(claims["claim"]) == {c.name for c in verdicts.CLAIMS}
    assert set(claims["metric"]) == {"dsc", "hd95"} and set(claims["split"]) == {"val", "test"}
    assert set(claims["verdict"]) <= set(verdicts.VERDICTS) | {"not measured"}
    assert (claims["verdict"] != "not measured").all(), "every claim's rows exist in the tiny run"
    vols = pd.read_csv(tiny_run.run_dir / "data" / "volumes.csv").groupby("split").size()
    for split in ("val", "test"):
        assert (claims.loc[claims["split"] == split, "n_volumes"] <= vols[split]).all()
    # tiny has fewer than MIN_VOLUMES volumes per split: no verdict may be claimed from it
    assert (claims["verdict"] == "descriptive").all()
    assert (tiny_run.figures_dir / "claims.png").stat().st_size > 0
    assert pd.read_csv(tiny_run.figures_dir / "claims.csv").equals(claims)
    recomputed = verdicts.assess_claims(tiny_run.run_dir)
    pd.testing.assert_series_equal(recomputed["gap"], claims["gap"], check_exact=False, rtol=1e-9)
