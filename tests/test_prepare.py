"""Data preparation: resampling keeps physical size, splits are by subject and deterministic,
prepare_dataset writes a consistent slice set, reuses it, and writes nothing on bad input."""
from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from conftest import data_section, disc, write_cohort

from umcam_lib.data import load_slices
from umcam_lib.data import prepare as prep
from umcam_lib.data.artifacts import slices_path
from umcam_lib.data.nifti import DataError, mask_path_for


# --------------------------------------------------------------------------- resampling
@pytest.mark.parametrize("native,target", [(0.6, 2.0), (1.125, 1.0), (0.55, 1.0), (2.0, 2.0), (0.8, 1.3)])
def test_resampling_keeps_a_disc_radius(native, target):
    radius = 25.0
    n = int(round(120 / native))
    mask = disc((n, n), native, radius)[..., None]
    out = prep.resample_inplane(mask, (native, native), target, is_mask=True)
    assert out.shape[:2] == (round(n * native / target),) * 2  # field of view kept
    assert out.dtype == np.uint8 and set(np.unique(out)) <= {0, 1}
    r_out = np.sqrt(out.sum() / np.pi) * target
    assert abs(r_out - radius) < 0.5 * target, (r_out, radius)
    # the image path too: a bright disc keeps its half-maximum radius
    img = prep.resample_inplane(mask.astype(np.float32) * 100, (native, native), target)
    r_img = np.sqrt((img > 50).sum() / np.pi) * target
    assert abs(r_img - radius) < 0.5 * target, (r_img, radius)


@pytest.mark.parametrize("native,target", [(0.6, 2.0), (1.125, 1.0), (1.0, 0.5)])
def test_resampling_equals_scipy_zoom(native, target):
    """The matrix resampler equals a Gaussian blur + ``ndimage.zoom(order=1, grid_mode=True)``."""
    from scipy import ndimage

    v = np.random.default_rng(0).random((50, 37, 3)).astype(np.float32)
    out = prep.resample_inplane(v, (native, native), target)
    zoom = [out.shape[0] / 50, out.shape[1] / 37, 1.0]
    sigma = [max(0.0, (1 / z - 1) / 2) for z in zoom[:2]] + [0.0]
    ref = ndimage.zoom(ndimage.gaussian_filter(v, sigma, mode="nearest"), zoom, order=1, mode="nearest",
                       grid_mode=True)
    np.testing.assert_allclose(out, ref, atol=1e-5)
    mask = (v > 0.5).astype(np.uint8)
    ref_mask = ndimage.zoom(mask.astype(np.float32), zoom, order=1, mode="nearest", grid_mode=True) >= 0.5
    agree = prep.resample_inplane(mask, (native, native), target, is_mask=True) == ref_mask
    assert agree.mean() > 0.999  # only exact-0.5 ties may round differently


def test_resampling_is_per_slice_and_anisotropic():
    """Slices stay separate, and row/column spacing are handled independently."""
    vol = np.zeros((60, 30, 3), np.float32)
    vol[..., 1] = 1.0
    out = prep.resample_inplane(vol, (0.5, 1.0), 1.0)
    assert out.shape == (30, 30, 3)
    np.testing.assert_allclose(out[..., 0], 0.0)
    np.testing.assert_allclose(out[..., 1], 1.0, atol=1e-6)


def test_center_fit_pads_and_crops():
    a = np.arange(5 * 9, dtype=np.float32).reshape(5, 9)[..., None] + 1
    out = prep.center_fit(a, 7)
    assert out.shape == (7, 7, 1)
    np.testing.assert_array_equal(out[0], 0)  # padded with 0
    np.testing.assert_array_equal(out[1:6, :, 0], a[:, 1:8, 0])  # centre crop


def test_normalise_is_robust():
    v = np.random.default_rng(0).normal(100, 10, (30, 30, 4)).astype(np.float32)
    v[0, 0, 0] = 1e6  # one hot voxel must not squash the rest
    out = prep.normalise_intensity(v)
    assert out.min() == 0.0 and out.max() == 1.0 and out.dtype == np.float32
    assert 0.3 < np.median(out) < 0.7


# --------------------------------------------------------------------------- splits
def test_splits_by_subject_and_deterministic():
    subjects = [f"sub-{i:03d}" for i in range(40) for _ in range(2)]  # two stacks each
    a = prep.split_subjects(subjects, (80, 10, 25), seed=3)
    b = prep.split_subjects(subjects, (80, 10, 25), seed=3)
    np.testing.assert_array_equal(a, b)
    for s in set(subjects):
        assert len(set(a[np.asarray(subjects) == s])) == 1, s  # never split one subject
    counts = {sp: len({s for s, x in zip(subjects, a) if x == sp}) for sp in ("train", "val", "test")}
    assert counts == {"train": 28, "val": 3, "test": 9}
    c = prep.split_subjects(subjects, (80, 10, 25), seed=4)
    assert not np.array_equal(a, c)  # the seed matters


@pytest.mark.parametrize("n", [3, 4, 5, 7])
def test_every_split_nonempty_from_three_subjects(n):
    out = prep.split_subjects([f"s{i}" for i in range(n)], (80, 10, 25), seed=0)
    assert set(out) == {"train", "val", "test"}


def test_too_few_subjects_is_a_clear_error():
    with pytest.raises(ValueError, match="would be empty"):
        prep.split_subjects(["sub-01", "sub-02"], (80, 10, 25), seed=0)


def test_explicit_subjects_and_stack_names():
    """The real profile: sub-01 trains (one of its stacks validates), sub-02 tests."""
    subjects = ["sub-01"] * 6 + ["sub-02"] * 3
    names = [f"sub-01_run-{k}_T2w" for k in range(1, 7)] + [f"sub-02_run-{k}_T2w" for k in range(1, 4)]
    for entry in ("sub-01_run-6_T2w", "sub-01_run-6"):  # full stack name or its leading entities
        out = prep.split_subjects(subjects, seed=0, val_subjects=[entry], test_subjects=["sub-02"], names=names)
        assert out.tolist() == ["train"] * 5 + ["val"] + ["test"] * 3
    # a stack entry wins over its subject's entry, whichever list holds which
    out = prep.split_subjects(subjects, seed=0, val_subjects=["sub-02_run-1"], test_subjects=["sub-02"],
                              names=names)
    assert out.tolist() == ["train"] * 6 + ["val", "test", "test"]


def test_stack_entry_needs_a_whole_entity():
    subjects = ["a", "a", "b", "c"]
    names = ["a_run-1_T2w", "a_run-10_T2w", "b_run-1_T2w", "c_run-1_T2w"]
    out = prep.split_subjects(subjects, seed=0, val_subjects=["a_run-1"], test_subjects=["c"], names=names)
    assert out.tolist() == ["val", "train", "train", "test"]


def test_explicit_test_subjects_rest_by_ratio():
    subjects = [f"s{i}" for i in range(10)]
    out = prep.split_subjects(subjects, seed=1, test_subjects=["s0", "s1"])
    assert out[0] == out[1] == "test" and (out == "test").sum() == 2
    assert (out == "val").sum() >= 1 and (out == "train").sum() >= 1


def test_unknown_explicit_entry_is_an_error():
    with pytest.raises(ValueError, match="sub-99"):
        prep.split_subjects(["sub-01", "sub-02", "sub-03"], seed=0, test_subjects=["sub-99"])


# --------------------------------------------------------------------------- whole dataset
def test_prepare_dataset_nifti(tmp_path):
    root = tmp_path / "data"
    write_cohort(root, {"sub-01": 2, "sub-02": 1, "sub-03": 1, "sub-04": 1})
    run = tmp_path / "run"
    s = prep.prepare_dataset(data_section(root), run, seed=0, progress=False)
    assert s.images.shape == (5 * 8, 32, 32) and s.images.dtype == np.float32
    assert 0.0 <= s.images.min() and s.images.max() <= 1.0
    assert s.spacing_mm == 2.0
    np.testing.assert_array_equal(s.labels, s.masks.reshape(len(s), -1).any(axis=1))
    np.testing.assert_array_equal(s.labels.reshape(5, 8), np.tile([0, 0, 1, 1, 1, 1, 0, 0], (5, 1)))
    # one subject never in two splits
    by_subject = s.volumes.groupby("subject")["split"].nunique()
    assert (by_subject == 1).all()
    assert set(s.split) == {"train", "val", "test"}
    # saved and loadable, identical
    t = load_slices(run)
    np.testing.assert_array_equal(t.images, s.images)
    np.testing.assert_array_equal(t.split, s.split)
    # dataset table agrees with the arrays
    table = prep.dataset_table(s)
    assert table.split.tolist() == ["train", "val", "test", "total"]
    assert table.iloc[-1].positive_slices == s.labels.sum() and table.iloc[-1].volumes == 5
    assert table.iloc[-1].negative_slices == (s.labels == 0).sum()
    # the crop lost nothing: a 24 mm disc fits a 64 mm field of view
    assert (s.volumes.mask_lost_by_crop == 0).all()


def test_prepare_dataset_reuses_and_rebuilds(tmp_path, monkeypatch):
    root = tmp_path / "data"
    write_cohort(root, {"sub-01": 1, "sub-02": 1, "sub-03": 1})
    run = tmp_path / "run"
    data = data_section(root)
    prep.prepare_dataset(data, run, seed=0, progress=False)
    stamp = slices_path(run).stat().st_mtime_ns

    def boom(*a, **k):
        raise AssertionError("rebuilt although nothing changed")

    monkeypatch.setattr(prep, "build_slice_set", boom)
    prep.prepare_dataset(data, run, seed=0, progress=False)
    assert slices_path(run).stat().st_mtime_ns == stamp
    monkeypatch.undo()
    s = prep.prepare_dataset(data_section(root, image_size=48), run, seed=0, progress=False)
    assert s.images.shape[1:] == (48, 48)
    assert load_slices(run).images.shape[1:] == (48, 48)


def test_changed_input_file_rebuilds(tmp_path):
    root = tmp_path / "data"
    write_cohort(root, {"sub-01": 1, "sub-02": 1, "sub-03": 1})
    run = tmp_path / "run"
    before = prep.prepare_dataset(data_section(root), run, seed=0, progress=False)
    img = root / "sub-02" / "anat" / "sub-02_run-1_T2w.nii.gz"
    mask = np.zeros((40, 40, 8), np.uint8)
    mask[10:20, 10:20, 1:7] = 1  # the brain now spans six slices
    nib.save(nib.Nifti1Image(np.random.default_rng(1).integers(0, 500, (40, 40, 8)).astype(np.uint16),
                             np.diag([1.5, 1.5, 5.0, 1])), str(img))
    nib.save(nib.Nifti1Image(mask, np.diag([1.5, 1.5, 5.0, 1])), str(mask_path_for(img)))
    after = prep.prepare_dataset(data_section(root), run, seed=0, progress=False)
    assert after.labels.sum() == before.labels.sum() + 2
    assert load_slices(run).labels.sum() == after.labels.sum()


def test_bad_file_writes_nothing(tmp_path):
    root = tmp_path / "data"
    write_cohort(root, {"sub-01": 1, "sub-02": 1, "sub-03": 1})
    bad = root / "sub-03" / "anat" / "sub-03_run-1_T2w_desc-brain_mask.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((40, 40, 8), np.uint8), np.diag([1.5, 1.5, 5.0, 1])), str(bad))
    run = tmp_path / "run"
    with pytest.raises(DataError, match="sub-03_run-1_T2w_desc-brain_mask"):
        prep.prepare_dataset(data_section(root), run, seed=0, progress=False)
    assert not slices_path(run).exists()
    assert not prep.fingerprint_path(run).exists()


def test_nifti_source_needs_root(tmp_path):
    from umcam_lib.config import ParameterError

    with pytest.raises(ParameterError, match="data.root: must name a folder"):
        prep.prepare_dataset(data_section(None), tmp_path, seed=0, progress=False)


def test_synthetic_source_reads_generated_cohort(tmp_path, monkeypatch):
    """The synthetic path generates into run_dir/cohort and reads it with the NIfTI reader."""
    calls = []

    def fake_generate(out_dir, n_volumes, seed, matrix, workers, progress):
        calls.append((Path(out_dir), n_volumes, seed, matrix, workers))
        write_cohort(Path(out_dir), {f"sub-{i:03d}": 1 for i in range(n_volumes)})
        write_cohort(Path(out_dir), {"sub-999": 1})  # a stale extra subject must not be read
        return sorted(Path(out_dir).glob(f"sub-00*/anat/*_T2w.nii.gz"))

    monkeypatch.setattr(prep, "_generate_cohort", fake_generate)
    run = tmp_path / "run"
    s = prep.prepare_dataset(data_section(None, source="synthetic", n_volumes=4), run, seed=5, progress=False,
                             workers=2)
    assert calls == [(run / "cohort", 4, 5, 64, 2)]
    assert len(s.volumes) == 4 and "sub-999" not in set(s.volumes.subject)


def test_compare_with_paper_has_the_paper_numbers(tmp_path):
    root = tmp_path / "data"
    write_cohort(root, {"sub-01": 1, "sub-02": 1, "sub-03": 1})
    s = prep.prepare_dataset(data_section(root), tmp_path / "run", seed=0, progress=False)
    cmp = prep.compare_with_paper(prep.dataset_table(s))
    assert cmp.paper_volumes.tolist() == [80, 10, 25]
    assert cmp.paper_positive_slices.tolist() == [976, 116, 318]
    assert cmp.paper_negative_slices.tolist() == [3140, 408, 950]
    assert cmp.volumes.tolist() == [1, 1, 1]
