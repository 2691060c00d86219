import numpy as np
import pandas as pd
import pytest

from umcam_lib import report


def _record(run_dir, method, split, dsc, hd=None, table="table1", section="pseudo_mask"):
    dsc = np.asarray(dsc, float)
    hd = np.full_like(dsc, 10.0) if hd is None else np.asarray(hd, float)
    report.record_scores(run_dir, table, section, method, split, np.arange(len(dsc)), dsc, hd)


def test_table_schema_means_and_pvalues(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.normal(70, 5, 25)
    _record(tmp_path, "Grad-CAM", "val", base)
    _record(tmp_path, "UM-CAM", "val", base + 5 + rng.normal(0, 0.5, 25))
    _record(tmp_path, "Average-CAM", "val", base + 0.01 * rng.normal(0, 1, 25))
    df = report.write_table(tmp_path, tmp_path / "fig", "table1")
    assert list(df.columns) == report.COLUMNS
    row = df.set_index("method").loc["Grad-CAM"]
    assert row["dsc_mean"] == pytest.approx(base.mean())
    assert row["dsc_std"] == pytest.approx(base.std(ddof=1))
    assert row["paper_dsc_mean"] == pytest.approx(74.48)
    best = df.set_index("method").loc["UM-CAM"]
    assert np.isnan(best["p_value"])            # best row has no p-value
    assert row["p_value"] < 1e-4                 # a 5-point paired gap is significant
    for ext in ("csv", "md", "tex"):
        assert (tmp_path / "fig" / f"table1.{ext}").is_file()
    again = pd.read_csv(tmp_path / "fig" / "table1.csv")
    assert len(again) == 3


def test_record_rejects_nan_and_bad_keys(tmp_path):
    with pytest.raises(ValueError, match="NaN"):
        _record(tmp_path, "Grad-CAM", "val", [np.nan, 1.0])
    with pytest.raises(ValueError, match="split"):
        _record(tmp_path, "Grad-CAM", "train", [1.0])


def test_mm_columns_when_spacing_is_not_one(tmp_path):
    from umcam_lib.io import save_npz
    save_npz(tmp_path / "data" / "slices.npz", spacing_mm=np.float64(2.0))
    report.record_scores(tmp_path, "table2", "segmentation", "FullySup", "test", [0, 1], [90, 92], [2, 3], [4, 6])
    _record(tmp_path, "Score-CAM", "test", [70, 71], [5, 7], table="table2")
    df = report.summarise(tmp_path, "table2").set_index("method")
    assert df.loc["FullySup", "hd95_mm_mean"] == pytest.approx(5.0)
    assert df.loc["Score-CAM", "hd95_mm_mean"] == pytest.approx(12.0)   # pixels x 2 mm in-plane


def test_method_names_do_not_collide(tmp_path):
    _record(tmp_path, "Grad-CAM", "val", [70.0, 71.0], table="table2")
    _record(tmp_path, "Grad-CAM++", "val", [60.0, 61.0], table="table2")
    df = report.summarise(tmp_path, "table2")
    assert set(df["method"]) == {"Grad-CAM", "Grad-CAM++"}


def test_seeded_scores_give_a_seed_spread_and_replace_unseeded_rows(tmp_path):
    rng = np.random.default_rng(1)
    base = rng.normal(60, 5, 20)
    _record(tmp_path, "UM-CAM", "val", base)                        # an unseeded row ...
    for seed, shift in ((0, 0.0), (1, 2.0), (2, 4.0)):
        report.record_scores(tmp_path, "table1", "pseudo_mask", "UM-CAM", "val", np.arange(20),
                             base + shift, np.full(20, 10.0), seed=seed)
    files = sorted(p.name for p in report.scores_dir(tmp_path).glob("*.csv"))
    assert files == [f"table1__pseudo_mask__um-cam__val__s{s}.csv" for s in (0, 1, 2)]  # ... is replaced
    row = report.summarise(tmp_path, "table1").set_index("method").loc["UM-CAM"]
    assert row["n_seeds"] == 3 and row["n"] == 20
    assert row["dsc_mean"] == pytest.approx(base.mean() + 2.0)
    assert row["dsc_seed_sd"] == pytest.approx(2.0)
    assert row["dsc_seed_range"] == pytest.approx(4.0)
    assert row["dsc_std"] == pytest.approx(base.std(ddof=1))          # spread between slices, per seed
    _record(tmp_path, "UM-CAM", "val", base)                          # unseeded again replaces the seeds
    assert len(list(report.scores_dir(tmp_path).glob("*.csv"))) == 1
    with pytest.raises(ValueError, match="seed"):
        report.record_scores(tmp_path, "table1", "pseudo_mask", "UM-CAM", "val", [0], [1.0], [1.0], seed=-2)


def test_section_sentence_says_when_a_gap_does_not_exceed_the_seed_spread(tmp_path):
    from umcam_lib.report import findings

    rng = np.random.default_rng(2)
    base = rng.normal(60, 5, 30)
    for seed, gap in ((0, 3.0), (1, 3.0), (2, -1.0)):                 # UM-CAM above Average-CAM in 2 of 3 seeds
        for method, d in (("Grad-CAM", -10.0), ("Average-CAM", 0.0), ("UM-CAM", gap)):
            report.record_scores(tmp_path, "table1", "pseudo_mask", method, "val", np.arange(30),
                                 base + d + rng.normal(0, 0.1, 30), np.full(30, 5.0), seed=seed)
    text = findings.describe_section(report.summarise(tmp_path, "table1"), "pseudo_mask", "val")
    assert "UM-CAM over Average-CAM" in text and "does not exceed" in text


def test_volume_scores_and_their_seaborn_figures(tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    rng = np.random.default_rng(3)
    for method in ("FullySup", "UM-CAM", "Grad-CAM"):
        for split in ("val", "test"):
            _record(tmp_path, method, split, rng.uniform(0, 100, 4), section="segmentation")
    # the same UNet recorded in both tables appears once
    _record(tmp_path, "UM-CAM+SPL", "test", [10, 20, 30, 40], table="table1", section="segmentation")
    _record(tmp_path, "UM-CAM+SPL", "test", [10, 20, 30, 40], table="table2", section="segmentation")
    v = report.volume_scores(tmp_path, "segmentation")
    assert list(v["method"].cat.categories) == ["Grad-CAM", "UM-CAM", "UM-CAM+SPL", "FullySup"]  # display order
    assert len(v[(v["method"] == "UM-CAM+SPL") & (v["split"] == "test")]) == 4
    fig = report.plot_volume_scores(tmp_path, "segmentation")
    assert len(fig.axes) == 2                                     # one panel per split
    test_ax = fig.axes[1]
    assert [t.get_text() for t in test_ax.get_xticklabels()] == ["Grad-CAM", "UM-CAM", "UM-CAM+SPL", "FullySup"]
    n_points = sum(len(c.get_offsets()) for c in test_ax.collections if hasattr(c, "get_offsets"))
    assert n_points >= 16                                         # every volume drawn (plus the mean markers)
    with pytest.raises(ValueError, match="no 'pseudo_mask' scores"):
        report.plot_volume_scores(tmp_path, "pseudo_mask")
    with pytest.raises(ValueError, match="per seed"):
        report.plot_seed_spread(tmp_path)
    for seed in (0, 1, 2):
        report.record_scores(tmp_path, "table1", "pseudo_mask", "UM-CAM", "val", range(5), rng.uniform(40, 60, 5),
                             np.ones(5), seed=seed)
    seeds = pd.DataFrame({"seed": [0, 1, 2], "split": "val", "f1": [0.8, 0.7, 0.9]})
    fig = report.plot_seed_spread(tmp_path, seeds)
    assert len(fig.axes) == 2 and "3 seeds" in fig.axes[0].get_title()
