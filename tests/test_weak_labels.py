"""Crop-level weak labels (umcam_lib.data.weak_labels) and the UNet's batch augmentation."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from umcam_lib.config import ParameterError, validate_params
from umcam_lib.data.weak_labels import crop_boxes, crop_labels, crop_set, crop_size_px
from umcam_lib.train.augment import augment_segmentation_batch, degrade_images
from umcam_lib.train.classifier import labelled_images

from conftest import CLS_CFG, disc_slices


def test_crop_size_rounds_to_multiple_of_32_and_rejects_bad_sizes():
    assert crop_size_px(128.0, 2.0, 192) == 64
    assert crop_size_px(192.0, 2.0, 192) == 96
    with pytest.raises(ValueError, match="crop_mm"):
        crop_size_px(20.0, 2.0, 192)      # 10 px
    with pytest.raises(ValueError, match="crop_mm"):
        crop_size_px(500.0, 2.0, 192)     # larger than the slice


def test_crop_labels_match_a_brute_force_count():
    rng = np.random.default_rng(3)
    masks = (rng.random((6, 40, 40)) < 0.05).astype(np.uint8)
    masks[5] = 0                          # a slice without brain: every crop says no
    boxes = crop_boxes(6, 40, 16, 7, seed=1)
    for frac in (0.1, 0.5, 1.0):
        got = crop_labels(masks, boxes, 16, frac)
        for i in range(6):
            total = masks[i].sum()
            for j, (r, c) in enumerate(boxes[i]):
                inside = masks[i, r:r + 16, c:c + 16].sum()
                assert got[i, j] == int(total > 0 and inside >= frac * total)
    assert not crop_labels(masks, boxes, 16, 0.5)[5].any()
    with pytest.raises(ValueError, match="crop_brain_fraction"):
        crop_labels(masks, boxes, 16, 0.0)


def test_crop_set_cuts_the_boxes_it_reports_and_is_reproducible():
    s = disc_slices(n=48, size=32)
    rows = s.indices("train")
    a = crop_set(s.images, s.masks, rows, 16, 3, 0.5, seed=4)
    b = crop_set(s.images, s.masks, rows, 16, 3, 0.5, seed=4)
    assert a.images.shape == (3 * len(rows), 16, 16) and a.labels.shape == (3 * len(rows),)
    np.testing.assert_array_equal(a.images, b.images)
    for k in (0, 5, len(a.rows) - 1):
        r, c = a.boxes[k]
        np.testing.assert_array_equal(a.images[k], s.images[a.rows[k], r:r + 16, c:c + 16])
    # a crop of a negative slice is never "brain"
    assert not a.labels[s.labels[a.rows] == 0].any()


def test_labelled_images_slice_unit_is_the_paper_and_crop_unit_gives_crops():
    s = disc_slices(n=48, size=64)
    x, y = labelled_images(s, "train", CLS_CFG)
    np.testing.assert_array_equal(x, s.images[s.indices("train")])
    np.testing.assert_array_equal(y, s.labels[s.indices("train")])
    cfg = dict(CLS_CFG, label_unit="crop", crop_mm=64.0, crops_per_slice=4, crop_brain_fraction=0.5)
    xc, yc = labelled_images(s, "train", cfg)
    assert xc.shape == (4 * len(s.indices("train")), 32, 32)
    assert 0 < yc.mean() < s.labels[s.indices("train")].mean()   # crops miss the brain more often than slices


def test_label_unit_is_validated_by_name():
    with pytest.raises(ParameterError, match="classifier.label_unit"):
        validate_params({"classifier": {"label_unit": "volume"}})


def test_segmentation_augmentation_moves_labels_with_their_slice():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(16, 1, 24, 24)
    y = (x[:, 0] > 0.6).float()
    xa, (ya, none) = augment_segmentation_batch(x, [y, None], gen, gamma=(1.0, 1.0))
    assert none is None and xa.shape == x.shape and ya.shape == y.shape
    torch.testing.assert_close(ya, (xa[:, 0] > 0.6).float())         # exact right-angle views: still aligned
    assert not torch.equal(xa, x)                                    # some slice changed orientation
    # gamma changes contrast, not geometry; the same generator state gives the same batch
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    a, (ta,) = augment_segmentation_batch(x, [y], g1)
    b, (tb,) = augment_segmentation_batch(x, [y], g2)
    assert torch.equal(a, b) and torch.equal(ta, tb)
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    with pytest.raises(ValueError, match="square"):
        augment_segmentation_batch(torch.rand(2, 1, 8, 12), [None], gen)


def test_segmentation_zoom_enlarges_image_and_label_together():
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    disc = (((yy - 15.5) ** 2 + (xx - 15.5) ** 2) < 36).float()
    x, y = disc.expand(8, 1, 32, 32).clone(), disc.expand(8, 32, 32).clone()
    gen = torch.Generator().manual_seed(1)
    xa, (ya,) = augment_segmentation_batch(x, [y], gen, gamma=(1.0, 1.0), scale=(2.0, 2.0))
    area = ya.sum((1, 2))
    assert torch.all(area > 2.5 * disc.sum())           # zoom 2 quadruples the area (minus what leaves the view)
    torch.testing.assert_close(ya, xa[:, 0], atol=1e-5, rtol=0)   # the label is warped with the image


def test_scanner_changes_are_off_by_default_and_touch_the_image_alone():
    x = torch.rand(6, 1, 32, 32)
    y = (x[:, 0] > 0.5).float()
    # off: the same batch and the same generator state afterwards as before the keys existed
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    a, (ta,) = augment_segmentation_batch(x, [y], g1)
    b, (tb,) = augment_segmentation_batch(x, [y], g2, resolution=(1.0, 1.0), bias=0.0, noise=0.0)
    assert torch.equal(a, b) and torch.equal(ta, tb) and torch.equal(g1.get_state(), g2.get_state())
    assert degrade_images(x, torch.Generator()) is x
    # on: the image changes, the label does not, values stay in [0, 1]
    g3, g4 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    plain, (tp,) = augment_segmentation_batch(x, [y], g3, gamma=(1.0, 1.0))
    deg, (td,) = augment_segmentation_batch(x, [y], g4, gamma=(1.0, 1.0), resolution=(2.0, 3.0), bias=0.5,
                                            noise=0.05)
    assert torch.equal(tp, td) and not torch.equal(plain, deg)
    assert float(deg.min()) >= 0.0 and float(deg.max()) <= 1.0


def test_each_scanner_change_does_what_it_says():
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    stripes = ((xx // 2) % 2).expand(4, 1, 64, 64).clone()          # 2-px stripes: gone at 3x coarser pixels
    coarse = degrade_images(stripes, torch.Generator().manual_seed(0), resolution=(3.0, 3.0))
    assert float(coarse.std()) < 0.5 * float(stripes.std())
    flat = torch.full((4, 1, 64, 64), 0.5)
    biased = degrade_images(flat, torch.Generator().manual_seed(0), bias=1.0)
    ratio = biased.amax(dim=(-2, -1)) / biased.amin(dim=(-2, -1))
    assert float(ratio.max()) > 1.2 and float(ratio.max()) < math.e ** 2 + 1e-4   # smooth, at most exp(2 a)
    assert float((biased[..., 1:, :] - biased[..., :-1, :]).abs().max()) < 0.1  # no pixel-scale jumps
    noisy = degrade_images(flat, torch.Generator().manual_seed(0), noise=0.1)
    sd = (noisy - flat).std(dim=(-2, -1)).ravel()
    assert float(sd.max()) <= 0.1 + 0.01 and float(sd.max()) > 0.0


def test_scanner_change_keys_are_seg_keys_with_checked_ranges():
    from umcam_lib.config.schema import check_section
    assert check_section("seg", {}).augment_resolution == [1.0, 1.0]
    seg = check_section("seg", {"augment_resolution": [1.0, 2.5], "augment_bias": 0.4, "augment_noise": 0.03})
    assert seg.augment_bias == 0.4
    with pytest.raises(ParameterError, match="augment_resolution"):
        check_section("seg", {"augment_resolution": [0.5, 2.0]})
    with pytest.raises(ParameterError, match="augment_noise"):
        check_section("seg", {"augment_noise": -0.1})


def test_label_table_counts_both_units_and_the_crop_figure_draws_every_crop():
    from umcam_lib.data.figures import crop_labels_figure
    from umcam_lib.train.classifier import label_table

    s = disc_slices(n=48, size=64)
    cfg = dict(CLS_CFG, crop_mm=64.0, crops_per_slice=4, crop_brain_fraction=0.5)
    t = label_table(s, cfg)
    assert list(t["unit"]) == ["slice"] * 3 + ["crop"] * 3
    train = t[(t["split"] == "train")].set_index("unit")
    assert train.loc["crop", "images"] == 4 * train.loc["slice", "images"]
    assert train.loc["slice", "positives"] == int(s.labels[s.indices("train")].sum())
    fig = crop_labels_figure(s, s.indices("train", positive_only=True)[:2], 32, 4, 0.5, seed=0)
    assert sum(len(ax.patches) for ax in fig.axes) == 8
