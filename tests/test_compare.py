"""Companion profiles: run beside the main profile, compared side by side (umcam_lib.report.compare)."""
from __future__ import annotations

import pandas as pd
import pytest
import yaml

from umcam_lib.report import compare
from umcam_lib import pipeline
from umcam_lib.config import ParameterError


def test_side_by_side_lines_up_two_runs(tiny_run, tmp_path):
    table = compare.write_side_by_side({"a": tiny_run.run_dir, "b": tiny_run.run_dir}, tmp_path, "pair")
    assert {"dsc_a", "dsc_b", "seed_sd_a", "n_b"} <= set(table.columns)
    assert set(table["section"]) == {"pseudo_mask", "segmentation"}
    assert {"UM-CAM", "UM-CAM+SPL", "FullySup"} <= set(table["method"])
    pd.testing.assert_series_equal(table["dsc_a"], table["dsc_b"], check_names=False)
    for suffix in (".csv", ".md", ".tex", ".png"):
        assert (tmp_path / f"pair{suffix}").is_file()
    with pytest.raises(FileNotFoundError, match="no-such-run"):
        compare.side_by_side({"x": tmp_path / "no-such-run"})


def test_companion_profiles_run_first_into_their_own_folder(tmp_path):
    main = tmp_path / "main.yaml"
    main.write_text(yaml.safe_dump({"base": "tiny", "profile": "with-companion", "companions": ["tiny"]}))
    results = pipeline.run_pipeline(params_file=main, only="01", out=tmp_path / "run", figures=tmp_path / "fig")
    c_run, c_fig = compare.companion_dirs(tmp_path / "run", tmp_path / "fig", "tiny")
    assert (c_run / ".done" / "01.json").is_file() and (c_fig / "dataset.csv").is_file()
    assert (tmp_path / "run" / ".done" / "01.json").is_file()
    assert [r.number for r in results] == ["01", "01"]


def test_a_companion_stops_at_its_last_notebook(tmp_path):
    inner = tmp_path / "inner.yaml"
    inner.write_text(yaml.safe_dump({"base": "tiny", "profile": "inner", "last_notebook": "01"}))
    main = tmp_path / "main.yaml"
    main.write_text(yaml.safe_dump({"base": "tiny", "profile": "outer", "companions": [str(inner)]}))
    plans = pipeline.run_pipeline(params_file=main, only="01,02", out=tmp_path / "run", figures=tmp_path / "fig",
                                  dry_run=True)
    assert plans == []
    assert pipeline.plan_run(params_file=inner).selected == ["01"]
    with pytest.raises(ParameterError, match="stops after notebook 01"):
        pipeline.plan_run(params_file=inner, only="01,02")
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"base": "tiny", "profile": "bad", "last_notebook": "09"}))
    with pytest.raises(ParameterError, match="last_notebook"):
        pipeline.plan_run(params_file=bad)


def test_a_companion_may_not_name_companions(tmp_path):
    inner = tmp_path / "inner.yaml"
    inner.write_text(yaml.safe_dump({"base": "tiny", "profile": "inner", "companions": ["tiny"]}))
    main = tmp_path / "main.yaml"
    main.write_text(yaml.safe_dump({"base": "tiny", "profile": "outer", "companions": [str(inner)]}))
    with pytest.raises(ParameterError, match="names companions itself"):
        pipeline.run_pipeline(params_file=main, only="01", out=tmp_path / "run", figures=tmp_path / "fig")
    assert not (tmp_path / "run").exists()       # nothing ran, nothing half-written


def test_legend_names_each_run_by_its_label_unit_and_covers_no_bar(tmp_path):
    import json

    import matplotlib
    matplotlib.use("Agg")
    for name, unit in (("real-slice", "slice"), ("real", "crop")):
        (tmp_path / name / "provenance").mkdir(parents=True)
        (tmp_path / name / "provenance" / "02.json").write_text(json.dumps({"params": {"classifier": {"label_unit": unit}}}))
    assert compare.run_label(tmp_path / "real-slice", "real-slice") == "slice labels (real-slice)"
    assert compare.run_label(tmp_path / "real", "real") == "crop labels (real)"
    assert compare.run_label(tmp_path / "none", "none") == "none"          # no provenance: the name alone
    (tmp_path / "rev" / "provenance").mkdir(parents=True)
    (tmp_path / "rev" / "provenance" / "02.json").write_text(json.dumps(
        {"params": {"classifier": {"label_unit": "crop"}, "data": {"test_subjects": ["sub-01"]}}}))
    assert compare.run_label(tmp_path / "rev", "real-reverse") == "crop labels, test sub-01 (real-reverse)"
    table = pd.DataFrame({"section": ["pseudo_mask", "segmentation"], "method": ["UM-CAM", "FullySup"],
                          "dsc_a": [70.0, 90.0], "seed_sd_a": [2.0, float("nan")],
                          "dsc_b": [60.0, 95.0], "seed_sd_b": [1.0, float("nan")]})
    fig = compare.side_by_side_figure(table, ["a", "b"], display={"a": "slice labels (a)", "b": "crop labels (b)"})
    ax = fig.axes[0]
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["slice labels (a)", "crop labels (b)"]
    fig.canvas.draw()
    box, axes_box = legend.get_window_extent(), ax.get_window_extent()
    assert box.y0 >= axes_box.y1 - 1                                       # above the axes, over no bar


def test_companion_claims_are_measured_on_what_the_companion_ran(tmp_path):
    import numpy as np

    from umcam_lib.data.scores import record_scores

    c_run, c_fig = compare.companion_dirs(tmp_path / "run", tmp_path / "fig", "rev")
    rng = np.random.default_rng(0)
    for method, level in (("SPL", 80.0), ("UM-CAM", 70.0)):
        for seed in range(3):
            dsc = level + rng.normal(0, 1, 6)
            record_scores(c_run, "table1", "segmentation", method, "test", ids=range(6), dsc=dsc, hd95=100 - dsc,
                          hd95_mm=100 - dsc, seed=seed)
    out = compare.write_companion_claims(tmp_path / "run", tmp_path / "fig", ["rev"])
    claims = out["rev"]
    assert set(claims["claim"]) == {"UNets: SPL labels beat UM-CAM labels"}     # the only pair it scored
    assert set(claims["split"]) == {"test"} and (claims.loc[claims["metric"] == "dsc", "verdict"] == "holds").all()
    assert (c_fig / "claims.csv").is_file() and (c_fig / "claims.md").is_file()
