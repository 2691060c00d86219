import numpy as np
import pytest

from umcam_lib import metrics


def square(shape, r0, r1, c0, c1):
    a = np.zeros(shape, dtype=np.uint8)
    a[r0:r1, c0:c1] = 1
    return a


def test_dice_known_overlap():
    a = square((64, 64), 10, 30, 10, 30)
    b = square((64, 64), 12, 32, 10, 30)
    # overlap 18x20 = 360, sizes 400 + 400
    assert metrics.dice(a, b) == pytest.approx(90.0)
    assert metrics.dice(a, a) == pytest.approx(100.0)


def test_hd95_shift_and_spacing():
    a = square((64, 64), 10, 30, 10, 30)
    b = square((64, 64), 12, 32, 10, 30)
    assert metrics.hd95(a, b) == pytest.approx(2.0)
    assert metrics.hd95(a, b, spacing=(2.0, 2.0)) == pytest.approx(4.0)
    assert metrics.hd95(a, b, spacing=(1.0, 3.0)) == pytest.approx(2.0)


def test_3d_offset_cubes():
    a = np.zeros((10, 40, 40), np.uint8)
    a[2:8, 5:25, 5:25] = 1
    b = np.roll(a, 4, axis=2)
    assert metrics.dice(a, b) == pytest.approx(80.0)
    assert metrics.hd95(a, b) == pytest.approx(4.0)
    assert metrics.hd95(a, b, spacing=(7.0, 2.0, 0.5)) == pytest.approx(2.0)


def test_empty_cases_are_finite_and_documented():
    gt = square((32, 48), 5, 10, 5, 10)
    empty = np.zeros_like(gt)
    assert metrics.dice(empty, gt) == 0.0
    assert metrics.hd95(empty, gt) == pytest.approx(np.hypot(32, 48))
    assert metrics.hd95(gt, empty, spacing=2.0) == pytest.approx(2 * np.hypot(32, 48))
    assert metrics.dice(empty, empty) == 100.0
    assert metrics.hd95(empty, empty) == 0.0


def test_score_masks_and_errors():
    gt = np.stack([square((16, 16), 2, 8, 2, 8), square((16, 16), 4, 9, 4, 9)])
    dsc, hd = metrics.score_masks(gt, gt)
    assert np.all(dsc == 100) and np.all(hd == 0)
    with pytest.raises(ValueError, match="shape"):
        metrics.dice(np.zeros((4, 4)), np.zeros((5, 4)))
    with pytest.raises(ValueError, match="2D or 3D"):
        metrics.dice(np.zeros(4), np.zeros(4))


def test_threshold_grid_inclusive():
    g = metrics.threshold_grid([0.05, 0.95, 0.05])
    assert len(g) == 19 and g[0] == pytest.approx(0.05) and g[-1] == pytest.approx(0.95)
    with pytest.raises(ValueError):
        metrics.threshold_grid([0.5, 0.1, 0.1])


def test_paired_test():
    rng = np.random.default_rng(1)
    a = rng.normal(0, 1, 30)
    assert metrics.paired_test(a + 1.0, a) < 1e-4
    assert np.isnan(metrics.paired_test(a, a))
