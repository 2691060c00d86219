"""Seeds, geodesic distances, SPL and the variance threshold rule (umcam_lib.gse)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from umcam_lib import gse
from umcam_lib.config import ParameterError
from umcam_lib.data import SliceSet


# ----------------------------------------------------------------------------- seeds
def test_seeds_centroid_and_corners_with_margin():
    mask = np.zeros((40, 50), bool)
    mask[10:21, 15:26] = True  # rows 10..20, cols 15..25, centre (15, 20)
    fg, bg = gse.seeds(mask, margin=5)
    assert fg == [(15, 20)]
    assert bg == [(5, 10), (5, 30), (25, 10), (25, 30)]


def test_seeds_clip_at_borders_without_wrapping():
    mask = np.zeros((30, 30), bool)
    mask[0:6, 26:30] = True  # touches the top and right borders
    fg, bg = gse.seeds(mask, margin=5)
    assert bg == [(0, 21), (0, 29), (10, 21), (10, 29)]
    assert all(0 <= r < 30 and 0 <= c < 30 for r, c in bg)


def test_seeds_of_empty_mask_are_empty():
    assert gse.seeds(np.zeros((16, 16), bool)) == ([], [])


def test_seeds_nonconvex_component_uses_nearest_component_pixel():
    mask = np.zeros((41, 41), bool)
    yy, xx = np.mgrid[:41, :41]
    ring = ((yy - 20) ** 2 + (xx - 20) ** 2 <= 15 ** 2) & ((yy - 20) ** 2 + (xx - 20) ** 2 >= 10 ** 2)
    mask[ring] = True
    mask[15:26, 17:20] = False  # break the symmetry a little; the centroid stays in the hole
    rows, cols = np.nonzero(mask)
    cr, cc = rows.mean(), cols.mean()
    assert not mask[int(round(cr)), int(round(cc))]
    (fg,), _ = gse.seeds(mask)
    assert mask[fg]
    nearest = np.min((rows - cr) ** 2 + (cols - cc) ** 2)
    assert (fg[0] - cr) ** 2 + (fg[1] - cc) ** 2 == pytest.approx(nearest)


def test_seeds_use_the_largest_component():
    mask = np.zeros((40, 40), bool)
    mask[2:6, 2:6] = True        # 16 px
    mask[20:30, 20:30] = True    # 100 px
    fg, bg = gse.seeds(mask, margin=2)
    assert fg == [(24, 24)]  # centroid (24.5, 24.5), rounded half to even
    assert bg == [(18, 18), (18, 31), (31, 18), (31, 31)]


def test_seeds_reject_negative_margin():
    with pytest.raises(ValueError, match="margin"):
        gse.seeds(np.ones((4, 4), bool), margin=-1)


def test_seeds_batch_equals_per_slice_seeds():
    rng = np.random.default_rng(3)
    masks = ndimage.gaussian_filter(rng.random((30, 24, 28)), (0, 1.5, 1.5)) > 0.52
    masks[3] = False
    masks[4] = True
    points, sizes = gse.seeds_batch(masks, margin=3, block=7)
    for i in range(len(masks)):
        assert points[i] == gse.seeds(masks[i], margin=3), i
        assert sizes[i] == gse.largest_component(masks[i]).sum()


# ----------------------------------------------------------------------------- geodesic distance
def _step_image(h: int = 32, w: int = 32) -> np.ndarray:
    img = np.zeros((h, w), np.float32)
    img[:, w // 2:] = 1.0  # a vertical edge in the middle
    return img


def test_geodesic_zero_at_seeds_and_larger_across_an_edge():
    img = _step_image()
    seeds = np.zeros_like(img, bool)
    seeds[16, 8] = True
    for backend in ("batched", "geodistk"):
        d = gse.geodesic_distance(img, seeds, lamb=1.0, iterations=2, backend=backend)
        assert d[16, 8] == 0.0
        # 12 px from the seed: along the flat region vs across the edge
        flat, across = d[4, 8], d[16, 20]
        assert across > flat + 0.5, backend
        # with lamb = 0 the two are equally far (chamfer distance)
        e = gse.geodesic_distance(img, seeds, lamb=0.0, iterations=2, backend=backend)
        assert e[4, 8] == pytest.approx(e[16, 20], abs=1e-4)


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (2, 3), (17, 23), (48, 40)])
@pytest.mark.parametrize("lamb,iterations", [(1.0, 1), (1.0, 2), (0.0, 2), (0.4, 3)])
def test_batched_engine_matches_geodistk(shape, lamb, iterations):
    rng = np.random.default_rng(sum(shape) + iterations)
    n = 3
    images = gse.zscore(ndimage.gaussian_filter(rng.random((n,) + shape), (0, 1, 1)) + 0.3 * rng.random((n,) + shape))
    seeds = rng.random((2, n) + shape) < 0.03
    seeds[:, :, shape[0] // 2, shape[1] // 3] = True
    got = gse.geodesic_batch(images, seeds, lamb, iterations)
    ref = np.stack([[gse.geodesic_geodistk(images[i], seeds[k, i], lamb, iterations) for i in range(n)]
                    for k in range(2)])
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-3)


def test_batched_engine_matches_geodistk_on_a_textured_slice():
    rng = np.random.default_rng(0)
    img = gse.zscore(ndimage.gaussian_filter(rng.standard_normal((96, 128)), 2) + 0.2 * rng.standard_normal((96, 128)))
    seeds = np.zeros((96, 128), bool)
    seeds[[5, 90, 47], [3, 120, 64]] = True
    got = gse.geodesic_distance(img, seeds, 1.0, 2)
    ref = gse.geodesic_geodistk(img, seeds, 1.0, 2)
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-3)


def test_batched_engine_without_seeds_reports_unreached_like_geodistk():
    img = np.random.default_rng(1).random((8, 9)).astype(np.float32)
    none = np.zeros((8, 9), bool)
    assert np.all(gse.geodesic_distance(img, none) == gse.UNREACHED)
    assert np.all(gse.geodesic_geodistk(img, none) == gse.UNREACHED)


def test_geodesic_rejects_bad_parameters():
    img, s = np.zeros((4, 4), np.float32), np.ones((4, 4), bool)
    with pytest.raises(ValueError, match="lamb"):
        gse.geodesic_distance(img, s, lamb=1.5)
    with pytest.raises(ValueError, match="iterations"):
        gse.geodesic_distance(img, s, iterations=0)
    with pytest.raises(ValueError, match="same slices"):
        gse.geodesic_batch(np.zeros((2, 4, 4)), np.ones((2, 3, 4, 4), bool))


# ----------------------------------------------------------------------------- SPL
def _disc_slice(size: int = 48, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    disc = (yy - size / 2) ** 2 + (xx - size / 2 + 3) ** 2 < (size / 5) ** 2
    img = (0.3 + 0.5 * disc + 0.05 * rng.standard_normal((size, size))).astype(np.float32)
    cam = ndimage.gaussian_filter(disc.astype(float), 3)
    return img, (cam / cam.max()).astype(np.float32), disc


@pytest.mark.parametrize("rule", ["ratio", "authors"])
def test_spl_in_unit_interval_and_foreground_at_the_seed(rule):
    img, cam, disc = _disc_slice()
    out = gse.explain(img, cam, 4.0, threshold=0.5, spl_rule=rule)
    spl = out["spl"]
    assert spl.shape == img.shape and spl.dtype == np.float32
    assert spl.min() >= 0.0 and spl.max() <= 1.0
    assert spl[out["fg"][0]] > 0.5
    for r, c in out["bg"]:
        assert spl[r, c] < 0.5
    # a mask from the SPL overlaps the disc well
    inter = np.logical_and(spl > 0.5, disc).sum()
    assert 2 * inter / ((spl > 0.5).sum() + disc.sum()) > 0.9


def test_spl_ratio_equals_cue_ratio():
    img, cam, _ = _disc_slice()
    out = gse.explain(img, cam, 4.0, threshold=0.5)
    e_f, e_b = gse.egd_cues(out["d_f"], out["d_b"], 4.0)
    ok = (e_f + e_b) > 1e-30
    np.testing.assert_allclose(out["spl"][ok], (e_f / (e_f + e_b))[ok], atol=1e-6)
    # far from every seed both cues underflow; the logistic form still gives a number
    far = gse.spl_from_distances(np.array([[400.0]]), np.array([[401.0]]), beta=4.0)
    assert far[0, 0] == pytest.approx(1 / (1 + np.exp(-4.0)))


def test_spl_engines_agree():
    img, cam, _ = _disc_slice(seed=2)
    a = gse.spl(img, cam, threshold=0.5, backend="batched")
    b = gse.spl(img, cam, threshold=0.5, backend="geodistk")
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_spl_without_component_raises_clearly():
    img, cam, _ = _disc_slice()
    with pytest.raises(gse.NoSeedsError, match="no foreground component"):
        gse.spl(img, np.zeros_like(cam), threshold=0.5)


# ----------------------------------------------------------------------------- threshold rules
def test_variance_rule_on_a_two_intensity_image():
    img = np.full((32, 32), 0.2, np.float32)
    img[8:24, 8:24] = 0.9
    cam = np.full((32, 32), 0.2, np.float32)
    cam[8:24, 8:24] = 0.7
    # every t in (0.2, 0.7] separates the two intensities perfectly: the lowest such grid value
    assert gse.variance_thresholds(img, cam) == pytest.approx(0.25)
    # a CAM ramp whose 0.6-level is the intensity boundary: the rule finds 0.6
    ramp = np.tile(np.linspace(0, 1, 32, dtype=np.float32), (32, 1))
    two = np.where(ramp >= 0.6, 0.9, 0.2).astype(np.float32)
    assert gse.variance_thresholds(two, ramp) == pytest.approx(0.6)


def test_variance_rule_batch_matches_brute_force():
    rng = np.random.default_rng(5)
    img = rng.random((4, 20, 20)).astype(np.float32)
    cam = ndimage.gaussian_filter(rng.random((4, 20, 20)), (0, 2, 2)).astype(np.float32)
    cam = (cam - cam.min()) / (cam.max() - cam.min())
    grid = gse.grid_values([0.05, 0.95, 0.05])
    got = gse.variance_thresholds(img, cam)
    for i in range(4):
        best, arg = np.inf, np.nan
        for t in grid:
            fg, bg = img[i][cam[i] >= np.float32(t)], img[i][cam[i] < np.float32(t)]
            if fg.size and bg.size and (fg.var() + bg.var()) / 2 < best - 1e-12:
                best, arg = (fg.var() + bg.var()) / 2, t
        assert got[i] == pytest.approx(arg)


def test_variance_rule_without_any_split_gives_nan():
    assert np.isnan(gse.variance_thresholds(np.ones((8, 8)), np.zeros((8, 8))))


def test_resolve_threshold():
    assert gse.resolve_threshold("variance") == "variance"
    assert gse.resolve_threshold("grid", {"umcam": 0.35, "gradcam": 0.2}) == pytest.approx(0.35)
    assert gse.resolve_threshold("grid", {"UM-CAM": 0.4}) == pytest.approx(0.4)
    with pytest.raises(KeyError, match="thresholds.json"):
        gse.resolve_threshold("grid", {"gradcam": 0.2})
    with pytest.raises(ValueError, match="threshold_rule"):
        gse.resolve_threshold("otsu", {})


# ----------------------------------------------------------------------------- batch
def _batch(n: int = 6, size: int = 40):
    imgs, cams = [], []
    for i in range(n):
        img, cam, _ = _disc_slice(size, seed=i)
        imgs.append(img)
        cams.append(cam)
    cams[2] = np.zeros_like(cams[2])  # no component at any threshold
    return np.stack(imgs), np.stack(cams)


def test_spl_batch_counts_slices_without_component_and_matches_single_slices():
    images, cams = _batch()
    rows = np.arange(100, 106)
    res = gse.spl_batch(images, cams, 0.5, rows=rows, chunk_size=2)
    index, maps_, table, missing = res  # unpacks as a 4-tuple
    assert missing == 1 and list(index) == [100, 101, 103, 104, 105]
    assert maps_.shape == (5, 40, 40) and maps_.min() >= 0 and maps_.max() <= 1
    assert list(table["row"]) == list(rows) and list(table["has_spl"]) == [True, True, False, True, True, True]
    assert pd.isna(table.loc[2, "fg_row"]) and table.loc[2, "component_px"] == 0
    for j, i in enumerate([0, 1, 3, 4, 5]):
        np.testing.assert_allclose(maps_[j], gse.spl(images[i], cams[i], threshold=0.5), atol=1e-5)
        fg, bg = gse.seeds(cams[i] >= np.float32(0.5))
        assert (table.loc[i, "fg_row"], table.loc[i, "fg_col"]) == fg[0]
        assert (table.loc[i, "bg4_row"], table.loc[i, "bg4_col"]) == bg[3]


def test_spl_batch_workers_and_rules():
    images, cams = _batch()
    one = gse.spl_batch(images, cams, "variance", chunk_size=2)
    two = gse.spl_batch(images, cams, "variance", chunk_size=2, workers=2)
    np.testing.assert_array_equal(one.maps, two.maps)
    assert np.isnan(one.seeds.loc[2, "threshold"]) and one.n_without_component == 1
    per_slice = gse.spl_batch(images, cams, [0.5, 0.5, 0.5, np.nan, 0.5, 0.5])
    assert per_slice.n_without_component == 2
    authors = gse.spl_batch(images, cams, 0.5, spl_rule="authors")
    assert authors.maps.min() >= 0 and authors.maps.max() <= 1
    with pytest.raises(ValueError, match="spl_rule"):
        gse.spl_batch(images, cams, 0.5, spl_rule="mean")
    with pytest.raises(ValueError, match="threshold"):
        gse.spl_batch(images, cams, "otsu")


def test_spl_batch_geodistk_backend_agrees():
    images, cams = _batch(n=3, size=24)
    a = gse.spl_batch(images, cams, 0.5)
    b = gse.spl_batch(images, cams, 0.5, backend="geodistk")
    np.testing.assert_allclose(a.maps, b.maps, atol=1e-4)


# ----------------------------------------------------------------------------- quality
def test_spl_quality_counts_missing_spl_as_empty_prediction():
    images, cams = _batch(n=4, size=32)
    masks = (cams > 0.5).astype(np.uint8)
    masks[2, 10:20, 10:20] = 1   # positive slice whose CAM is empty -> no SPL
    n = 4
    slices = SliceSet(images=images, masks=masks, labels=np.ones(n, np.uint8), volume=np.zeros(n, np.int32),
                      slice_index=np.arange(n, dtype=np.int32), split=np.array(["val", "val", "val", "test"]),
                      spacing_mm=1.0, volumes=pd.DataFrame({"volume": [0], "split": ["val"]}))
    res = gse.spl_batch(images, cams, 0.5)
    summary, scores = gse.spl_quality(slices, res.index, res.maps, np.arange(n), cams, 0.5, seeds=res.seeds)
    assert list(summary.columns) == ["method", "split", "n", "dsc_mean", "dsc_std", "hd95_mean", "hd95_std"]
    spl_val = summary[(summary.method == "SPL") & (summary.split == "val")].iloc[0]
    assert spl_val["n"] == 3
    missing = scores[(scores.method == "SPL") & (scores.row == 2)].iloc[0]
    assert missing["dsc"] == 0.0 and missing["hd95"] > 40  # diagonal penalty of a 32 x 32 slice
    assert np.isfinite(summary[["dsc_mean", "dsc_std", "hd95_mean", "hd95_std"]].to_numpy()).all()
    assert set(summary["method"]) == {"UM-CAM", "UM-CAM seed mask", "SPL"}


def test_margin_in_millimetres_is_converted_with_the_spacing():
    assert gse.margin_pixels(5.0, 1.0) == 5 and gse.margin_pixels(5.0, 2.0) == 3 and gse.margin_pixels(10.0, 2.0) == 5
    assert gse.margin_pixels(0.0, 2.0) == 0
    with pytest.raises(ValueError, match="margin_mm"):
        gse.margin_pixels(-1.0, 2.0)
    base = dict(beta=4.0, lamb=1.0, iterations=2, spl_rule="ratio")
    assert gse.spl_settings({**base, "margin_mm": 10.0}, 2.0)["margin"] == 5
    # the margin is set in millimetres only (the schema's key); a pixel margin is refused by name
    with pytest.raises(ParameterError, match=r"gse.margin: unknown parameter; did you mean 'margin_mm'"):
        gse.spl_settings({**base, "margin": 4}, 2.0)
    with pytest.raises(ParameterError, match=r"gse.spl_rule: must be one of 'ratio', 'authors', got 'both'"):
        gse.spl_settings({**base, "spl_rule": "both"}, 2.0)


def test_gse_sweep_grid_takes_beta_only_for_the_authors_rule():
    cfg = dict(beta=4.0, lamb=1.0, iterations=2, margin_mm=5.0, spl_rule="ratio", sweep_margin_mm=[2.0, 5.0],
               sweep_lamb=[1.0], sweep_rules=["ratio", "authors"], sweep_beta=[1.0, 4.0])
    points = gse.sweep_points(cfg)
    assert len(points) == 2 * 1 + 2 * 2
    assert {p["beta"] for p in points if p["spl_rule"] == "ratio"} == {4.0}
    assert gse.sweep_points({**cfg, "sweep_margin_mm": [], "sweep_lamb": [], "sweep_rules": [], "sweep_beta": []}) == []
