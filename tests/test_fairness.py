"""The fusion diagnosis of notebook 04: readings of Eq. 3-4, LayerCAM, weights, leave-one-out."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from umcam_lib.cam import fairness
from umcam_lib.cam.baselines import RawLayerCAM, baseline_cam
from umcam_lib.cam.fusion import (average_cam, entropy_weights, fuse_reading, layercam_fusion, normalise_maps,
                                  umcam)
from umcam_lib.cam.gradcam import multi_layer_gradcam, upsample_normalise
from umcam_lib.cam.study import check_cam_config, fuse_layers
from umcam_lib.config import ParameterError
from umcam_lib.models.vgg import BLOCK_LAYERS, vgg16_classifier

from conftest import make_slices, ramp_cam

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def vgg():
    torch.manual_seed(0)
    return vgg16_classifier(width=0.125).eval()


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(3, 1, 64, 64, generator=g)
    x[:, :, 20:44, 16:40] += 0.5
    return x.clamp(0, 1)


def test_layercam_per_layer_equals_pytorch_grad_cam(vgg, images):
    ours = multi_layer_gradcam(vgg, images, ["block2", "block5"], weighting="layercam")
    for i, block in enumerate(["block2", "block5"]):
        cam = RawLayerCAM(vgg, [dict(vgg.named_modules())[BLOCK_LAYERS[block]]])
        try:
            raw = cam(input_tensor=images, targets=[ClassifierOutputTarget(1)] * 3)
        finally:
            cam.activations_and_grads.release()
        ref = upsample_normalise(torch.from_numpy(raw), (64, 64))
        assert ref.abs().max() > 0
        torch.testing.assert_close(ours[i], ref, atol=1e-4, rtol=0)
    # the Table 2 row goes through pytorch-grad-cam itself
    torch.testing.assert_close(baseline_cam(vgg, images, "layercam"), ours[1], atol=1e-4, rtol=0)


def test_layercam_differs_from_gradcam_and_peaks_restore_raw_scale(vgg, images):
    g, peaks = multi_layer_gradcam(vgg, images, ["block1", "block5"], return_peaks=True)
    lc = multi_layer_gradcam(vgg, images, ["block1", "block5"], weighting="layercam")
    assert peaks.shape == (2, 3) and (peaks > 0).all()
    assert not torch.allclose(g, lc)
    with pytest.raises(ValueError, match="weighting"):
        multi_layer_gradcam(vgg, images, ["block5"], weighting="nope")


def test_default_reading_is_bit_identical_to_the_paper_fusion():
    rng = np.random.default_rng(0)
    m = rng.random((5, 6, 16, 16)).astype(np.float16)
    fused = fuse_layers(np.concatenate([m, m[:1]]), ["block1", "block2", "block3", "block4", "block5", "head"],
                        ["block1", "block2", "block3", "block4", "block5"], check_cam_config({}))
    assert np.array_equal(fused["umcam"], np.asarray(umcam(m), np.float16))
    assert np.array_equal(fused["average_cam"], np.asarray(average_cam(m), np.float16))
    cfg = check_cam_config({"umcam_norm": "minmax", "entropy_temperature": 0.5})
    other = fuse_layers(np.concatenate([m, m[:1]]), ["block1", "block2", "block3", "block4", "block5", "head"],
                        ["block1", "block2", "block3", "block4", "block5"], cfg)
    assert not np.array_equal(other["umcam"], fused["umcam"])
    with pytest.raises(ValueError, match="peaks"):
        fuse_layers(m, ["block1", "block2", "block3", "block4", "block5"], ["block4", "block5"],
                    check_cam_config({"umcam_norm": "volume_max"}))


def test_readings_are_parameters_with_clear_errors():
    with pytest.raises(ParameterError, match="umcam_norm"):
        check_cam_config({"umcam_norm": "median"})
    with pytest.raises(ParameterError, match="entropy_temperature"):
        check_cam_config({"entropy_temperature": 0})
    m = np.full((1, 1, 1, 2), 0.5, np.float32)
    with pytest.raises(ValueError, match="entropy base"):
        entropy_weights(m, base="ten")
    with pytest.raises(ValueError, match="umcam_final_norm"):
        fuse_reading(m, final_norm="clip")


def test_temperature_and_base_change_weights_as_documented():
    m = np.array([0.0, 0.5, 0.9], np.float32).reshape(1, 1, 1, 3)
    w1, w_half, w_bits = (np.asarray(entropy_weights(m, **kw)).ravel()
                          for kw in ({}, {"temperature": 0.5}, {"base": "2"}))
    assert w1[1] == pytest.approx(0.5, abs=1e-4) and w_half[1] == pytest.approx(0.25, abs=1e-4)
    assert w_bits[1] == pytest.approx(np.exp(-1), abs=1e-4)
    assert w1[0] == pytest.approx(1.0) and w_half[2] < w1[2]


def test_volume_max_keeps_a_weak_slice_weak():
    m = np.ones((1, 2, 2, 2), np.float32)
    out = normalise_maps(m, "volume_max", peaks=np.array([[1.0, 4.0]]), groups=np.array([0, 0]))
    assert out[0, 0].max() == pytest.approx(0.25) and out[0, 1].max() == pytest.approx(1.0)
    sep = normalise_maps(m, "volume_max", peaks=np.array([[1.0, 4.0]]), groups=np.array([0, 1]))
    assert np.allclose(sep, 1.0)


def test_layercam_fusion_max_and_sum():
    m = np.array([[[[0.2, 1.0]]], [[[0.6, 0.1]]]], np.float32)
    raw_max = np.asarray(layercam_fusion(m, normalise=False))
    assert np.allclose(raw_max, np.tanh(2 * np.array([0.6, 1.0])), atol=1e-6)
    raw_sum = np.asarray(layercam_fusion(m, rule="sum", gamma=0, normalise=False))
    assert np.allclose(raw_sum, [[[0.8, 1.1]]], atol=1e-6)
    with pytest.raises(ValueError, match="layercam_fusion"):
        layercam_fusion(m, rule="mean")


def test_pixel_distributions_separate_brain_from_background():
    s = make_slices()
    rows = s.positive_rows(["val"])
    sure = np.stack([ramp_cam(1.0, 0.0) for _ in rows])      # 1 on the brain, 0 elsewhere: weight 1
    unsure = np.stack([ramp_cam(0.5, 0.0) for _ in rows])    # 0.5 on the brain: weight 0.5 there
    dist = fairness.pixel_distributions(np.stack([sure, unsure]), s.masks[rows], ["block5", "block1"],
                                        n_pixels=50)
    assert set(dist["region"]) == {"brain", "outside"} and len(dist) == 2 * 2 * 50
    c = fairness.weight_contrast(dist)
    assert c.loc["block5", "weight_brain"] == pytest.approx(1.0, abs=1e-3)
    assert c.loc["block1", "weight_brain"] == pytest.approx(0.5, abs=1e-3)
    assert c.loc["block1", "weight_gap"] < 0 < c.loc["block5", "value_brain"] - c.loc["block5", "value_outside"]
    fig = fairness.plot_pixel_distributions(dist)
    assert len(fig.axes) == 2


def test_leave_one_out_reports_changes_against_all_layers():
    s = make_slices()
    n = len(s)
    good = np.stack([ramp_cam(0.95, 0.05) for _ in range(n)])
    noisy = np.stack([ramp_cam(0.6, 0.55) for _ in range(n)])
    df = fairness.leave_one_out(s, np.arange(n), np.stack([noisy, good]), ["block1", "block5"],
                                ["block1", "block5"], [0.25, 0.5, 0.58, 0.75])
    assert list(df["layers"].unique()) == ["all", "without block1", "without block5"]
    allrow = df[df["layers"] == "all"]
    assert (allrow["val_change"] == 0).all()
    drop_noisy = df[(df["layers"] == "without block1") & (df["fusion"] == "average_cam")]
    assert float(drop_noisy["val_change"].iloc[0]) >= 0


def _fake_scores() -> pd.DataFrame:
    rows = []
    for seed, shift in ((0, 0.0), (1, 1.0)):
        for reading, method, val, test in (("-", "Grad-CAM", 70, 69), ("paper", "UM-CAM", 66, 64),
                                           ("paper", "Average-CAM", 68, 66), ("minmax", "UM-CAM", 71, 65),
                                           ("minmax", "Average-CAM", 69, 67), ("t2", "UM-CAM", 67, 70)):
            for split, v in (("val", val), ("test", test)):
                rows.append({"seed": seed, "reading": reading, "method": method, "split": split,
                             "threshold": 0.5, "n": 10, "dsc": v + shift})
    return pd.DataFrame(rows)


def test_choose_reading_uses_validation_only_and_gaps_follow_the_reading():
    summary = fairness.summarise_readings(_fake_scores())
    best = fairness.choose_reading(summary)
    assert best["reading"] == "minmax"  # 71 on validation; t2 would win on test (70)
    assert best["val_seed_sd"] == pytest.approx(np.std([71, 72], ddof=1))
    gaps = fairness.reading_gaps(_fake_scores()).set_index(["reading", "split"])
    assert gaps.loc[("paper", "val"), "gap"] == pytest.approx(-2)       # UM-CAM 66 vs Average-CAM 68
    assert gaps.loc[("minmax", "val"), "gap"] == pytest.approx(2)       # same normalisation
    assert gaps.loc[("t2", "test"), "gap"] == pytest.approx(4)          # entropy-only: paper's Average-CAM
    assert gaps.loc[("minmax", "val"), "seeds_agreeing"] == 2
    vs_grad = fairness.reading_gaps(_fake_scores(), left="Grad-CAM").set_index(["reading", "split"])
    assert vs_grad.loc[("paper", "test"), "gap"] == pytest.approx(-5)


def test_score_readings_on_a_small_classifier(vgg):
    s = make_slices(size=64)
    rng = np.random.default_rng(0)
    s.images[:] = rng.random(s.images.shape).astype(np.float32) * 0.3
    s.images[:, 16:48, 16:48] += s.masks[:, 4:12, 4:12].repeat(4, 1).repeat(4, 2) * 0.6
    cam = check_cam_config({"batch_size": 4})
    readings = {k: fairness.READINGS[k] for k in ("paper", "minmax", "volume_max", "t2")}
    df = fairness.score_readings(vgg, s, cam, seed=7, readings=readings)
    methods = set(df["method"])
    assert {"Grad-CAM", "LayerCAM (block5)", "LayerCAM fusion (max)", "UM-CAM", "Average-CAM"} <= methods
    assert set(df.loc[df["method"] == "UM-CAM", "reading"]) == set(readings)
    # Average-CAM only once per normalisation: t2 changes the entropy only
    assert "t2" not in set(df.loc[df["method"] == "Average-CAM", "reading"])
    assert set(df["split"]) == {"val", "test"} and (df["seed"] == 7).all()
    assert df["dsc"].between(0, 100).all()


def test_sentences_and_orderings_rows_follow_the_scores():
    scores = _fake_scores()
    summary = fairness.summarise_readings(scores)
    text = fairness.describe_readings(summary, scores)
    assert "per-map min-max (authors' code)" in text and "71.5" in text
    assert "above Average-CAM in every seed under 1 of 3 readings (minmax)" in text  # val
    links = fairness.reading_links(scores)
    row = links[(links["split"] == "val") & (links["right"] == "UM-CAM [paper]")
                & links["left"].str.startswith("Average-CAM")].iloc[0]
    assert row["verdict"] == "does not hold (reversed in every seed)"
    assert row["left_dsc"] == pytest.approx(68.5) and row["right_dsc"] == pytest.approx(66.5)
    t2 = links[(links["split"] == "test") & (links["right"] == "UM-CAM [t2]")
               & links["left"].str.startswith("Average-CAM")].iloc[0]
    assert t2["left"] == "Average-CAM [paper]" and t2["verdict"] == "holds in every seed"
    fig = fairness.plot_readings(scores)
    assert len(fig.axes) == 2
    c = pd.DataFrame({"value_brain": [0.1, 0.6], "value_outside": [0.0, 0.1], "weight_brain": [0.95, 0.55],
                      "weight_outside": [0.99, 0.9]}, index=pd.Index(["block1", "block5"], name="layer"))
    c["weight_gap"] = c["weight_brain"] - c["weight_outside"]
    assert "highest for block1 (0.95)" in fairness.describe_contrast(c)
    assert "2 of 2 layers weigh less" in fairness.describe_contrast(c)
