"""Average-CAM / UM-CAM fusion, threshold selection on validation, pseudo-mask scoring."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import make_slices, ramp_cam

from umcam_lib import metrics, report
from umcam_lib.cam import (average_cam, binary_entropy, entropy_weights, evaluate_cam, layer_ablation,
                           load_threshold, load_thresholds, record_evaluation, select_threshold, umcam)
from umcam_lib.cam import fusion
from umcam_lib.cam.pseudo_mask import score_pseudo_masks, take_rows
from umcam_lib.metrics import dice_batch
from umcam_lib.data.thresholds import thresholds_path


# ----------------------------------------------------------------------------- fusion
def test_entropy_weights_values():
    m = np.array([0.0, 0.5, 1.0, 0.1], dtype=np.float32).reshape(1, 1, 1, 4)
    w = entropy_weights(m)[0, 0, 0]
    assert w[0] == pytest.approx(1.0, abs=1e-5) and w[2] == pytest.approx(1.0, abs=1e-5)
    assert w[1] == pytest.approx(0.5, abs=1e-5)  # exp(-ln 2)
    h = -(0.1 * np.log(0.1) + 0.9 * np.log(0.9))
    assert w[3] == pytest.approx(np.exp(-h), abs=1e-5)
    assert binary_entropy(m)[0, 0, 0, 1] == pytest.approx(np.log(2), abs=1e-5)


def test_umcam_weights_confident_layers_more_than_average():
    confident = np.ones((1, 1, 2, 2), dtype=np.float32)
    unsure = np.full((1, 1, 2, 2), 0.5, dtype=np.float32)
    maps = np.concatenate([confident, unsure])
    # pixel values before the final normalisation: (1*1 + 0.5*0.5) / (1 + 0.5) vs (1 + 0.5) / 2
    assert umcam(maps, normalise=False)[0, 0, 0] == pytest.approx(1.25 / 1.5, abs=1e-5)
    assert average_cam(maps, normalise=False)[0, 0, 0] == pytest.approx(0.75, abs=1e-6)


def test_fusion_edge_cases_are_finite():
    rng = np.random.default_rng(0)
    zeros = np.zeros((5, 2, 8, 8), dtype=np.float32)
    binary = (rng.random((3, 2, 8, 8)) > 0.5).astype(np.float32)
    ones = np.ones((2, 1, 8, 8), dtype=np.float32)
    for maps in (zeros, binary, ones):
        for fn in (umcam, average_cam):
            out = fn(maps)
            assert out.shape == maps.shape[1:]
            assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
        assert np.isfinite(entropy_weights(maps)).all()
    assert np.all(umcam(zeros) == 0) and np.all(average_cam(zeros) == 0)
    np.testing.assert_allclose(umcam(ones), 1.0, atol=1e-5)  # a constant slice is left unchanged
    np.testing.assert_allclose(umcam(binary)[0], average_cam(binary)[0], atol=1e-5)  # all weights ~1


def test_single_layer_gives_its_min_max_normalised_map():
    rng = np.random.default_rng(1)
    m = rng.random((1, 3, 6, 6)).astype(np.float32) * 0.8 + 0.1
    lo = m[0].min(axis=(1, 2), keepdims=True)
    hi = m[0].max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(umcam(m), (m[0] - lo) / (hi - lo), atol=1e-5)
    np.testing.assert_allclose(average_cam(m), (m[0] - lo) / (hi - lo), atol=1e-5)


def test_numpy_torch_and_chunking_agree(monkeypatch):
    rng = np.random.default_rng(2)
    maps = rng.random((4, 7, 5, 5)).astype(np.float16)
    whole = umcam(maps)
    monkeypatch.setattr(fusion, "CHUNK", 3)
    np.testing.assert_allclose(umcam(maps), whole, atol=1e-6)
    np.testing.assert_allclose(umcam(torch.from_numpy(maps.astype(np.float32))).numpy(), whole, atol=1e-6)
    assert entropy_weights(maps).shape == maps.shape
    with pytest.raises(ValueError, match="N_layers, B, H, W"):
        umcam(maps[0])


# ----------------------------------------------------------------------------- slices for evaluation
def test_dice_batch_matches_metrics_dice():
    rng = np.random.default_rng(3)
    p = rng.random((6, 10, 10)) > 0.6
    g = rng.random((6, 10, 10)) > 0.5
    p[0] = False
    g[0] = False
    p[1] = False
    ours = dice_batch(p, g)
    assert ours[0] == 100.0 and ours[1] == 0.0
    np.testing.assert_allclose(ours, [metrics.dice(a, b) for a, b in zip(p, g)])


def test_threshold_is_chosen_on_validation_only():
    s = make_slices()
    val_rows, test_rows = s.indices("val", True), s.indices("test", True)
    cams = np.zeros((len(s), 16, 16), np.float32)
    # validation: the ring is at 0.5 -> thresholds above 0.5 give the exact square
    for r in val_rows:
        cams[r] = ramp_cam(core=0.9, ring=0.5)
    # test: the square itself is only 0.4 -> the test-best threshold would be <= 0.4
    for r in test_rows:
        cams[r] = ramp_cam(core=0.4, ring=0.2)
    grid = metrics.threshold_grid([0.05, 0.95, 0.05])
    t_val, curve = select_threshold(cams[val_rows], s.masks[val_rows], grid)
    t_test, _ = select_threshold(cams[test_rows], s.masks[test_rows], grid)
    assert t_val == pytest.approx(0.55) and t_test <= 0.4, "the constructed case must separate the two"
    assert curve.shape == grid.shape
    res = evaluate_cam(s, np.arange(len(s)), cams, grid, name="cam", method="CAM")
    assert res.threshold == pytest.approx(t_val)
    assert list(res.scores["val"]["id"]) == list(val_rows)
    assert list(res.scores["test"]["id"]) == list(test_rows)
    assert np.all(res.scores["val"]["dsc"] == 100.0)
    # at the validation threshold every test mask is empty: Dice 0 and the HD95 penalty, counted
    assert np.all(res.scores["test"]["dsc"] == 0.0)
    np.testing.assert_allclose(res.scores["test"]["hd95"], metrics.empty_penalty((16, 16)))


def test_empty_pseudo_masks_are_counted_with_the_penalty():
    s = make_slices(n_val=2, n_test=2)
    rows = s.indices("test", True)
    maps = np.zeros((len(rows), 16, 16), np.float32)
    maps[0] = ramp_cam(0.9, 0.0)
    dsc, hd = score_pseudo_masks(maps, s.masks[rows], threshold=0.5)
    assert len(dsc) == len(rows) == 2
    assert dsc[0] == 100.0 and hd[0] == 0.0
    assert dsc[1] == 0.0 and hd[1] == pytest.approx(np.sqrt(2) * 16)
    assert np.isfinite(hd).all()


def test_record_evaluation_writes_scores_and_thresholds(tmp_path):
    s = make_slices()
    cams = np.stack([ramp_cam(0.9, 0.3) for _ in range(len(s))])
    grid = metrics.threshold_grid([0.05, 0.95, 0.05])
    index = np.arange(len(s))[::-1]  # any order of rows
    res = evaluate_cam(s, index, cams[index], grid, name="umcam", method="UM-CAM")
    record_evaluation(tmp_path, "table1", res)
    res2 = evaluate_cam(s, index, cams[index] * 0.5, grid, name="gradcam", method="Grad-CAM")
    record_evaluation(tmp_path, "table1", res2)
    th = json.loads(thresholds_path(tmp_path).read_text())
    assert th == {"umcam": res.threshold, "gradcam": res2.threshold} == load_thresholds(tmp_path)
    assert load_threshold(tmp_path, "umcam") == res.threshold
    with pytest.raises(KeyError, match="scorecam"):
        load_threshold(tmp_path, "scorecam")
    table = report.summarise(tmp_path, "table1")
    assert set(table["method"]) == {"UM-CAM", "Grad-CAM"} and set(table["split"]) == {"val", "test"}
    assert (table["n"] == 4).all() and table["dsc_mean"].notna().all()


def test_missing_rows_are_an_error():
    s = make_slices()
    keep = s.indices("val", True)
    with pytest.raises(ValueError, match="lacks slice rows"):
        evaluate_cam(s, keep, np.zeros((len(keep), 16, 16)), [0.5], name="x")
    with pytest.raises(ValueError, match="lacks slice rows"):
        take_rows(np.array([0, 1]), np.zeros((2, 4, 4)), np.array([5]))


def test_layer_ablation_table():
    s = make_slices()
    n = len(s)
    good = np.stack([ramp_cam(0.95, 0.05) for _ in range(n)])
    noisy = np.stack([ramp_cam(0.6, 0.5) for _ in range(n)])
    layer_maps = np.stack([noisy, good])
    df = layer_ablation(s, np.arange(n), layer_maps, ["block4", "block5"], [0.25, 0.55, 0.75],
                        subsets={"5": ["block5"], "4-5": ["block4", "block5"]})
    assert list(df["layers"]) == ["5", "5", "4-5", "4-5"]
    assert list(df["fusion"]) == ["umcam", "average_cam"] * 2
    assert {"threshold", "val_dsc", "test_dsc", "val_hd95", "test_hd95"} <= set(df.columns)
    assert (df["val_n"] == 4).all()
    with pytest.raises(ValueError, match="not computed"):
        layer_ablation(s, np.arange(n), layer_maps, ["block4", "block5"], [0.5], subsets={"x": ["block1"]})


def test_float16_maps_are_thresholded_as_float32():
    """Maps stored as float16 and read back as float32 give the same masks as in the evaluation."""
    m = np.full((1, 2, 2), 0.05, dtype=np.float16)  # float16(0.05) = 0.049988 < 0.05
    from umcam_lib.cam.pseudo_mask import binarise

    assert not binarise(m, 0.05).any()
    assert np.array_equal(binarise(m, 0.05), m.astype(np.float32) >= 0.05)
