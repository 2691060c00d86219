"""The shift benchmark's stack transforms: each changes what it says and the mask follows."""
from __future__ import annotations

import numpy as np
import pytest

from umcam_lib.segment import shift as sh


def _sphere(shape=(48, 48, 14), spacing=(1.0, 1.0, 3.0), radius_mm=12.0):
    grids = np.meshgrid(*[(np.arange(n) - (n - 1) / 2) * s for n, s in zip(shape, spacing)], indexing="ij")
    mask = sum(g ** 2 for g in grids) <= radius_mm ** 2
    image = np.where(mask, 0.8, 0.2).astype(np.float32) + 0.05 * np.random.default_rng(0).random(shape, np.float32)
    return image, mask.astype(np.uint8), spacing


def test_brain_size_takes_the_asked_volume_and_resolution_the_asked_spacing():
    image, mask, sp = _sphere()
    v0 = sh.brain_volume_ml(mask, sp)
    img, msk, sp2 = sh.make_case(image, mask, sp, sh.Shift(volume_ml=2.5 * v0, inplane_mm=0.8, thickness_mm=2.0))
    assert sp2 == (0.8, 0.8, 2.0) and img.shape == msk.shape
    assert sh.brain_volume_ml(msk, sp2) == pytest.approx(2.5 * v0, rel=0.1)


def test_another_plane_moves_the_thick_slices_and_keeps_the_brain():
    image, mask, sp = _sphere()
    img, msk, sp2 = sh.make_case(image, mask, sp, sh.Shift(plane="axis0", thickness_mm=4.0))
    assert sp2 == (1.0, 1.0, 4.0)
    assert msk.shape[2] == round(48 * 1.0 / 4.0) and msk.shape[:2] == (48, round(14 * 3.0))
    assert sh.brain_volume_ml(msk, sp2) == pytest.approx(sh.brain_volume_ml(mask, sp), rel=0.15)


def test_field_of_view_slices_and_intensity():
    image, mask, sp = _sphere()
    tight = sh.make_case(image, mask, sp, sh.Shift(fov="tight", margin_mm=2.0))[1]
    wide = sh.make_case(image, mask, sp, sh.Shift(fov="wide", pad_fraction=0.5))[1]
    assert tight.shape[0] < 48 and wide.shape[0] == 48 + 2 * 24
    assert tight.sum() == wide.sum() == mask.sum()
    few = sh.make_case(image, mask, sp, sh.Shift(n_slices=6))[1]
    assert few.shape[2] == 6 and few.any(axis=(0, 1)).all()
    dark = sh.make_case(image, mask, sp, sh.Shift(gamma=2.0, contrast=0.5))[0]
    plain = sh.make_case(image, mask, sp, sh.Shift())[0]
    assert dark.mean() < plain.mean()
    noisy = sh.make_case(image, mask, sp, sh.Shift(noise=0.05), seed=1)[0]
    assert (noisy >= 0).all() and not np.allclose(noisy, plain)


def test_cases_are_drawn_reproducibly_and_bad_ones_are_named():
    for name in sh.CASES:
        a, b = sh.draw_case(name, 7), sh.draw_case(name, 7)
        assert a == b
    assert sh.draw_case("all at once", 1).plane in ("native", "axis0", "axis1")
    with pytest.raises(ValueError, match="unknown shift case"):
        sh.draw_case("nope", 0)
    image, mask, sp = _sphere()
    with pytest.raises(ValueError, match="mask is empty"):
        sh.make_case(image, np.zeros_like(mask), sp, sh.Shift())
    with pytest.raises(ValueError, match="plane"):
        sh.make_case(image, mask, sp, sh.Shift(plane="oblique"))
