import numpy as np

from umcam_lib import findings, report


def test_orderings_verdicts_follow_the_data(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.normal(70, 4, 40)
    # Grad-CAM < Average-CAM clearly; UM-CAM clearly *below* Average-CAM (reversed)
    for method, shift in (("Grad-CAM", 0.0), ("Average-CAM", 8.0), ("UM-CAM", 2.0)):
        report.record_scores(tmp_path, "table1", "pseudo_mask", method, "test", range(40),
                             base + shift + rng.normal(0, 0.5, 40), np.full(40, 5.0))
    df = findings.check_orderings(tmp_path, splits=("test",))
    pm = df[df["claim"] == "pseudo masks"].set_index("right")
    assert pm.loc["Average-CAM", "verdict"] == "holds"
    assert pm.loc["UM-CAM", "verdict"].startswith("does not hold")
    assert pm.loc["Average-CAM", "p_value"] < 0.05
    # claims with nothing recorded are reported as such, not silently passed
    assert (df[df["claim"] == "segmentation"]["verdict"] == "not measured").all()


def test_paper_layout_stars_only_significant_best(tmp_path):
    rng = np.random.default_rng(1)
    base = rng.normal(80, 3, 10)
    report.record_scores(tmp_path, "table2", "segmentation", "DRS", "val", range(10), base, np.ones(10))
    report.record_scores(tmp_path, "table2", "segmentation", "UM-CAM+SPL", "val", range(10), base + 5, np.ones(10))
    t = findings.paper_layout(tmp_path, "table2").set_index("method")
    assert t.loc["UM-CAM+SPL", "val DSC (%)"].endswith("*")
    assert not t.loc["DRS", "val DSC (%)"].endswith("*")
    assert t.loc["DRS", "val paper DSC"] == "84.98 ± 5.62"
