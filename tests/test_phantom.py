"""The synthetic fetal MRI cohort (STUDY.md section 5): geometry, labels, determinism, files."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from umcam_lib.data import phantom
from umcam_lib.data.phantom import (
    generate_cohort,
    generate_volume,
    mask_path,
    volume_seed,
)
from umcam_lib.data.phantom_anatomy import sample_anatomy

SMALL = 64  # in-plane matrix for fast tests (spacing ~4.4-5.4 mm; the anatomy does not depend on it)


@pytest.fixture(scope="module")
def volumes():
    """Ten small volumes of one cohort seed (~0.3 s each)."""
    return [generate_volume(volume_seed(11, i), matrix=96) for i in range(10)]


def _positive(mask: np.ndarray) -> np.ndarray:
    return mask.any(axis=(0, 1))


def test_positive_slice_fraction_matches_the_paper_range(volumes):
    pos = sum(int(_positive(v.mask).sum()) for v in volumes)
    total = sum(v.mask.shape[2] for v in volumes)
    assert 0.15 <= pos / total <= 0.40, f"positive fraction {pos / total:.3f} ({pos}/{total})"
    for v in volumes:  # every volume has brain and background slices
        assert 0 < _positive(v.mask).sum() < v.mask.shape[2]


def test_masks_form_one_contiguous_run_of_slices(volumes):
    for v in volumes:
        idx = np.flatnonzero(_positive(v.mask))
        assert idx[-1] - idx[0] + 1 == idx.size, f"seed {v.meta['seed']}: gaps in positive slices {idx}"
        assert idx[0] > 0 and idx[-1] < v.mask.shape[2] - 1, "brain touches the first or last slice"


def test_masks_lie_inside_the_fetal_head_and_the_central_field(volumes):
    for v in volumes:
        assert v.mask.dtype == np.uint8 and set(np.unique(v.mask)) <= {0, 1}
        assert not np.any(v.mask & (1 - v.head_mask)), "brain mask outside the skull"
        # head (incl. skull) within the central 250 mm in-plane on every slice
        i, j, _ = np.nonzero(v.head_mask)
        xy = np.stack([i, j], 1) * np.array(v.spacing[:2]) + v.affine[:2, 3]
        assert np.abs(xy).max() <= 125.0, f"head reaches {np.abs(xy).max():.1f} mm from the centre"


def test_mask_agrees_with_the_recorded_head_pose_and_motion(volumes):
    """World positions of mask voxels, moved back by the recorded motion, fit the recorded brain."""
    for v in volumes[:4]:
        m = v.meta
        i, j, k = np.nonzero(v.mask)
        world = (v.affine @ np.stack([i, j, k, np.ones_like(i)]).astype(float))[:3].T
        centre = np.array(m["head_centre_mm"])
        theta = np.deg2rad(np.array(m["motion_rotation_deg"]))[k]
        shift = np.array(m["motion_shift_mm"])[k]
        d = world[:, :2] - centre[:2] - shift
        c, s = np.cos(theta), np.sin(theta)
        rest = world.copy()
        rest[:, 0] = c * d[:, 0] + s * d[:, 1] + centre[0]
        rest[:, 1] = -s * d[:, 0] + c * d[:, 1] + centre[1]
        local = (rest - centre) @ np.array(m["head_rotation"])
        semi = np.array(m["brain_semi_axes_mm"]) * np.array([1.15, 1.15, 1.35])
        margin = v.spacing[2] / 2 + v.spacing[0]
        rho = np.linalg.norm(local / (semi + margin), axis=1)
        assert rho.max() <= 1.0, f"seed {m['seed']}: mask voxel at normalised radius {rho.max():.2f}"
        # and the brain is big enough: the mask's extent matches the recorded size
        assert np.ptp(local, axis=0).max() >= 1.5 * np.array(m["brain_semi_axes_mm"]).min()


def test_brain_area_tapers_at_the_ends_of_the_run(volumes):
    """Slab integration: the first and last brain slices hold less brain than the widest one."""
    for v in volumes:
        area = v.mask.sum(axis=(0, 1))
        idx = np.flatnonzero(area)
        assert area[idx[0]] < area.max() and area[idx[-1]] < area.max()


def test_anatomy_has_confounders_of_the_brain():
    """Eyes in front of and below the brain, bowel loops, cord and limbs compete with the head."""
    for seed in range(5):
        anat = sample_anatomy(np.random.default_rng(seed), matrix=64)
        head = anat.fetus.head
        eyes = [p for p in head.outer if p.kind == "ell" and p.value == anat.contrast["eye"]]
        assert len(eyes) == 2
        for e in eyes:
            assert e.centre[1] > 0 and e.centre[2] < 0, "eyes must be anterior and inferior"
            pt = e.centre.astype(np.float32)
            _, d = head.brain_sdf(pt[0:1], pt[1:2], pt[2:3])
            assert d[0] > e.size[0], "an eye overlaps the brain"
        assert len(anat.mother.bowel) >= 50
        names = [g.name for g in anat.fetus.body_groups]
        assert "trunk" in names and sum(n.startswith("leg") for n in names) >= 2
        assert any(n.startswith("cord") for n in names)


def test_geometry_follows_the_paper_and_scales_with_the_matrix():
    for seed in range(25):
        acq = sample_anatomy(np.random.default_rng(seed), matrix=512).acq
        assert 0.55 <= acq.spacing_mm <= 0.67
        assert 6.5 <= acq.thickness_mm <= 7.15
        assert 36 <= acq.n_slices <= 54
    a, b = generate_volume(5, matrix=128), generate_volume(5, matrix=64)
    assert a.image.shape[:2] == (128, 128) and b.image.shape[:2] == (64, 64)
    assert a.image.shape[2] == b.image.shape[2] == len(a.meta["motion_rotation_deg"])
    assert 0.55 <= a.spacing[0] * 128 / 512 <= 0.67
    assert b.spacing[0] == pytest.approx(2 * a.spacing[0])
    assert a.spacing[2] == b.spacing[2] and 6.5 <= a.spacing[2] <= 7.15
    assert a.meta["gestational_age_weeks"] == b.meta["gestational_age_weeks"]  # same anatomy
    assert np.allclose(np.diag(a.affine)[:3], a.spacing)
    centre = a.affine @ np.array([(128 - 1) / 2, (128 - 1) / 2, (a.image.shape[2] - 1) / 2, 1.0])
    assert np.allclose(centre[:3], 0.0), "stack centre should be the world origin"
    ga = a.meta["gestational_age_weeks"]
    assert 20 <= ga <= 30 and 55 <= a.meta["ofd_mm"] <= 106


def test_image_is_scanner_like():
    v = generate_volume(2, matrix=SMALL)
    assert v.image.dtype == np.uint16 and v.image.shape == v.mask.shape
    assert v.image.max() > 300 and np.median(v.image) > 0
    corner = v.image[:3, :3, :]  # outside the body: Rician noise floor only
    assert corner.mean() < 0.1 * np.percentile(v.image, 99)


def test_same_seed_identical_different_seed_differs():
    a, b, c = generate_volume(3, matrix=SMALL), generate_volume(3, matrix=SMALL), generate_volume(4, matrix=SMALL)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
    assert np.array_equal(a.affine, b.affine)
    assert a.image.shape != c.image.shape or not np.array_equal(a.image, c.image)
    assert a.meta["gestational_age_weeks"] != c.meta["gestational_age_weeks"]


def test_bad_arguments_name_the_parameter(tmp_path):
    with pytest.raises(ValueError, match="matrix"):
        generate_volume(0, matrix=8)
    with pytest.raises(ValueError, match="seed"):
        generate_volume(-1)
    with pytest.raises(ValueError, match="n_volumes"):
        generate_cohort(tmp_path, 0, seed=0)


def test_cohort_writes_readable_nifti(tmp_path):
    paths = generate_cohort(tmp_path, n_volumes=2, seed=5, matrix=SMALL, progress=False)
    assert [p.name for p in paths] == ["sub-001_T2w.nii.gz", "sub-002_T2w.nii.gz"]
    for i, p in enumerate(paths):
        vol = generate_volume(volume_seed(5, i), matrix=SMALL)
        img, msk = nib.load(p), nib.load(mask_path(p))
        assert img.get_data_dtype() == np.uint16 and msk.get_data_dtype() == np.uint8
        assert np.array_equal(np.asanyarray(img.dataobj), vol.image)
        assert np.array_equal(np.asanyarray(msk.dataobj), vol.mask)
        assert np.allclose(img.affine, vol.affine) and np.allclose(msk.affine, vol.affine)
        assert np.allclose(img.header.get_zooms(), vol.spacing)
    rows = (tmp_path / "participants.tsv").read_text().strip().split("\n")
    header = rows[0].split("\t")
    assert header[:6] == ["participant_id", "gestational_age_weeks", "seed", "spacing_mm", "thickness_mm", "n_slices"]
    assert [r.split("\t")[0] for r in rows[1:]] == ["sub-001", "sub-002"]
    manifest = json.loads((tmp_path / "cohort.json").read_text())
    assert manifest["seed"] == 5 and manifest["matrix"] == SMALL and len(manifest["subjects"]) == 2
    leftovers = [p for p in tmp_path.rglob("*") if ".tmp" in p.name]
    assert not leftovers, f"temporary files left behind: {leftovers}"


def test_cohort_is_cached_and_repaired(tmp_path, monkeypatch):
    paths = generate_cohort(tmp_path, n_volumes=3, seed=1, matrix=SMALL, progress=False)
    stamps = {p: p.stat().st_mtime_ns for p in paths}
    calls = []
    real = phantom.generate_volume

    def counting(seed, matrix=512, n_slices=None):
        calls.append(seed)
        return real(seed, matrix, n_slices)

    monkeypatch.setattr(phantom, "generate_volume", counting)
    again = generate_cohort(tmp_path, n_volumes=3, seed=1, matrix=SMALL, progress=False)
    assert again == paths and not calls, "a second identical call regenerated volumes"
    assert all(p.stat().st_mtime_ns == stamps[p] for p in paths)
    mask_path(paths[1]).unlink()                # missing file
    paths[2].write_bytes(b"not a nifti")        # damaged file
    generate_cohort(tmp_path, n_volumes=3, seed=1, matrix=SMALL, progress=False)
    assert sorted(calls) == sorted([volume_seed(1, 1), volume_seed(1, 2)])
    assert paths[0].stat().st_mtime_ns == stamps[paths[0]]
    nib.load(paths[2]).get_fdata()
    calls.clear()
    generate_cohort(tmp_path, n_volumes=3, seed=2, matrix=SMALL, progress=False)  # new seed: all regenerate
    assert len(calls) == 3


def test_cohort_prefix_equals_smaller_cohort_and_shrinking_removes_extras(tmp_path):
    big = generate_cohort(tmp_path / "big", n_volumes=3, seed=9, matrix=SMALL, progress=False)
    small = generate_cohort(tmp_path / "small", n_volumes=2, seed=9, matrix=SMALL, progress=False)
    for a, b in zip(big, small):
        assert np.array_equal(np.asanyarray(nib.load(a).dataobj), np.asanyarray(nib.load(b).dataobj))
    generate_cohort(tmp_path / "big", n_volumes=2, seed=9, matrix=SMALL, progress=False)
    left = sorted(p.name for p in (tmp_path / "big").rglob("*_T2w.nii.gz"))
    assert left == ["sub-001_T2w.nii.gz", "sub-002_T2w.nii.gz"]
    assert not (tmp_path / "big" / "sub-003").exists()


def test_cohort_with_workers_matches_serial(tmp_path):
    serial = generate_cohort(tmp_path / "a", n_volumes=2, seed=4, matrix=SMALL, progress=False)
    parallel = generate_cohort(tmp_path / "b", n_volumes=2, seed=4, matrix=SMALL, workers=2, progress=False)
    for a, b in zip(serial, parallel):
        assert np.array_equal(np.asanyarray(nib.load(a).dataobj), np.asanyarray(nib.load(b).dataobj))
