"""The GSE validation sweep and the setting it reports: :func:`sweep_gse` scores every grid point on
the slices it is given, :func:`chosen_gse` takes the highest validation DSC (ties: the first point
in sweep order) and never looks at anything but the validation columns."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from umcam_lib.config import ParameterError
from umcam_lib.gse import chosen_gse, margin_pixels, spl_batch, spl_settings, sweep_gse, sweep_points
from umcam_lib.gse.settings import SWEEP_COLUMNS

SIZE = 32
SPACING = 2.0
#: A sweep whose points give different validation DSCs on :func:`val_slices` (margins in mm on a 2 mm grid).
CFG = dict(iterations=2, beta=4.0, lamb=1.0, margin_mm=5.0, spl_rule="ratio",
           sweep_margin_mm=[2.0, 8.0, 40.0], sweep_lamb=[1.0, 0.0], sweep_rules=["ratio", "authors"],
           sweep_beta=[1.0, 4.0])


def val_slices() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two validation slices holding the same bright disc (the brain): the first with a CAM peaked
    on it, the second with an all-zero CAM (no seeds, hence no SPL)."""
    yy, xx = np.mgrid[:SIZE, :SIZE]
    brain = (yy - 16) ** 2 + (xx - 16) ** 2 < 8 ** 2
    noise = np.random.default_rng(0).normal(0, 0.02, (SIZE, SIZE))
    image = (np.where(brain, 0.8, 0.2) + noise).astype(np.float32)
    cam = np.clip(1 - np.hypot(yy - 16, xx - 16) / 12, 0, 1).astype(np.float32)
    return (np.stack([image, image]), np.stack([cam, np.zeros_like(cam)]),
            np.stack([brain, brain]).astype(np.uint8))


def dice_percent(pred: np.ndarray, gt: np.ndarray) -> float:
    pred, gt = pred.astype(bool), gt.astype(bool)
    return 200.0 * (pred & gt).sum() / (pred.sum() + gt.sum())


def table(dsc: list[float], **extra) -> pd.DataFrame:
    """A sweep table with one row per DSC; the settings of row i are distinct (beta = i + 1)."""
    n = len(dsc)
    return pd.DataFrame({"spl_rule": ["ratio", "authors"] * (n // 2) + ["ratio"] * (n % 2),
                         "beta": np.arange(1.0, n + 1), "lamb": np.linspace(0.0, 1.0, n),
                         "margin_mm": np.arange(n) * 5.0, "margin_px": np.arange(n) * 2, "n": 4,
                         "with_spl": 4, "val_dsc_mean": dsc, "val_dsc_std": 1.0, "val_hd95_mean": 3.0,
                         "val_fp_pixels_mean": 0.0, **extra})


# ----------------------------------------------------------------------------- sweep_gse
@pytest.fixture(scope="module")
def sweep() -> pd.DataFrame:
    images, cams, masks = val_slices()
    return sweep_gse(images, cams, masks, 0.5, CFG, SPACING)


def test_sweep_scores_every_grid_point_in_order(sweep):
    points = sweep_points(CFG)
    assert list(sweep.columns) == SWEEP_COLUMNS
    assert len(sweep) == len(points) == 3 * 2 * (1 + 2)       # margins x lambs x (ratio + 2 authors' betas)
    assert sweep[["spl_rule", "beta", "lamb", "margin_mm"]].to_dict("records") == points
    assert sweep["margin_px"].tolist() == [margin_pixels(p["margin_mm"], SPACING) for p in points]
    assert (sweep["n"] == 2).all() and (sweep["with_spl"] == 1).all()   # the zero CAM gets no SPL


def test_sweep_scores_each_point_with_its_own_spl(sweep):
    """Every row's DSC is that of the SPL (> 0.5) made with the row's settings; a slice without SPL
    counts as an empty prediction (DSC 0)."""
    images, cams, masks = val_slices()
    for row in sweep.itertuples():
        kw = spl_settings({**CFG, "spl_rule": row.spl_rule, "beta": row.beta, "lamb": row.lamb,
                           "margin_mm": row.margin_mm}, SPACING)
        res = spl_batch(images, cams, 0.5, **kw)
        assert list(res.index) == [0]
        pred = res.maps[0] > 0.5
        want = [dice_percent(pred, masks[0]), 0.0]
        assert row.val_dsc_mean == pytest.approx(np.mean(want))
        assert row.val_dsc_std == pytest.approx(np.std(want, ddof=1))
        assert row.val_fp_pixels_mean == pytest.approx((pred & ~masks[0].astype(bool)).sum() / 2)
    assert sweep["val_dsc_mean"].nunique() > 1, "the constructed slices must tell the points apart"


def test_sweep_reports_no_test_split_columns(sweep):
    """The sweep only scores what it is given (the validation slices): no test column can steer it."""
    assert not [c for c in sweep.columns if c.startswith("test")]
    assert [c for c in sweep.columns if c.startswith("val_")] == ["val_dsc_mean", "val_dsc_std", "val_hd95_mean",
                                                                  "val_fp_pixels_mean"]


def test_no_sweep_lists_give_an_empty_table_and_the_configured_setting():
    images, cams, masks = val_slices()
    cfg = {**CFG, "sweep_margin_mm": [], "sweep_lamb": [], "sweep_rules": [], "sweep_beta": []}
    empty = sweep_gse(images, cams, masks, 0.5, cfg, SPACING)
    assert empty.empty and list(empty.columns) == SWEEP_COLUMNS
    assert chosen_gse(empty, cfg) == cfg


@pytest.mark.parametrize("override,key", [({"sweep_rules": ["ratio", "mean"]}, "gse.sweep_rules"),
                                          ({"sweep_margin_mm": [-1.0]}, "gse.sweep_margin_mm"),
                                          ({"sweep_lamb": [1.5]}, "gse.sweep_lamb"),
                                          ({"sweep_beta": [0.0]}, "gse.sweep_beta"),
                                          ({"sweep_lamdb": [0.5]}, "gse.sweep_lamdb")])
def test_a_bad_sweep_section_is_refused_naming_the_key(override, key):
    images, cams, masks = val_slices()
    with pytest.raises(ParameterError, match=key):
        sweep_gse(images, cams, masks, 0.5, {**CFG, **override}, SPACING)


def test_bad_spacing_or_shapes_are_refused():
    images, cams, masks = val_slices()
    with pytest.raises(ValueError, match="in-plane spacing must be positive"):
        sweep_gse(images, cams, masks, 0.5, CFG, 0.0)
    with pytest.raises(ValueError, match=r"must both be \(N, H, W\)"):
        sweep_gse(images, cams[:, :16], masks, 0.5, CFG, SPACING)


# ----------------------------------------------------------------------------- chosen_gse
def test_the_highest_validation_dsc_is_chosen():
    sweep = table([61.0, 70.5, 64.0, 69.9])
    cfg = {**CFG, "iterations": 3}
    chosen = chosen_gse(sweep, cfg)
    assert chosen == {**cfg, "spl_rule": "authors", "beta": 2.0, "lamb": pytest.approx(1 / 3), "margin_mm": 5.0}
    assert type(chosen["beta"]) is float and type(chosen["margin_mm"]) is float and type(chosen["spl_rule"]) is str
    assert cfg == {**CFG, "iterations": 3}                      # the caller's section is not changed


def test_the_choice_from_a_real_sweep_is_its_best_row(sweep):
    best = sweep.iloc[int(np.argmax(sweep["val_dsc_mean"].to_numpy()))]
    chosen = chosen_gse(sweep, CFG)
    assert (chosen["spl_rule"], chosen["beta"], chosen["lamb"], chosen["margin_mm"]) == (
        best.spl_rule, best.beta, best.lamb, best.margin_mm)
    assert sweep["val_dsc_mean"].max() > sweep["val_dsc_mean"].min()


def test_ties_go_to_the_first_point_in_sweep_order():
    """Equal mean DSCs: the earlier row wins, whatever the other columns say (a lower HD95 or
    fewer false positives of a later row do not break the tie), also with a non-default index."""
    sweep = table([60.0, 72.0, 65.0, 72.0, 72.0])
    sweep.loc[3, ["val_hd95_mean", "val_fp_pixels_mean", "val_dsc_std"]] = [0.5, 0.0, 0.0]
    assert chosen_gse(sweep, CFG)["beta"] == 2.0
    shuffled_labels = sweep.set_axis([40, 7, 13, 2, 99])
    assert chosen_gse(shuffled_labels, CFG)["beta"] == 2.0
    assert chosen_gse(sweep.iloc[::-1], CFG)["beta"] == 5.0     # "first" is the table's order


def test_test_split_columns_never_influence_the_choice():
    """Columns of another split (here test scores that favour another row) are not looked at."""
    plain = table([61.0, 70.5, 64.0])
    with_test = table([61.0, 70.5, 64.0], test_dsc_mean=[99.0, 10.0, 50.0], test_hd95_mean=[0.1, 90.0, 5.0])
    assert chosen_gse(with_test, CFG) == chosen_gse(plain, CFG)
    assert chosen_gse(with_test, CFG)["beta"] == 2.0


def test_a_validation_nan_is_skipped_and_a_table_without_scores_is_refused():
    """A point without a validation score (NaN) is never chosen; a table whose every score is NaN
    is refused with a message that says so, rather than reporting a setting."""
    assert chosen_gse(table([np.nan, 55.0, 54.0]), CFG)["beta"] == 2.0
    with pytest.raises(ValueError, match="no validation score"):
        chosen_gse(table([np.nan, np.nan]), CFG)
