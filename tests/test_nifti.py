"""The NIfTI reader: every bad input of STUDY section 6 fails with the file's name, and the
nine real CC0 stacks load with the right slice axis and labels."""
from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from umcam_lib.data.nifti import DataError, find_stacks, mask_path_for, read_stack, stack_ref
from umcam_lib.paths import SHARED_DATA

SPACING = (0.8, 0.8, 4.0)


def _affine(spacing=SPACING) -> np.ndarray:
    return np.diag([*spacing, 1.0])


def write_pair(folder: Path, name: str = "sub-01_run-1", image=None, mask=None,
               affine=None, mask_affine=None) -> tuple[Path, Path]:
    """Write ``<name>_T2w.nii.gz`` and its ``_desc-brain_mask`` beside it (a small valid stack
    unless ``image`` / ``mask`` / affines are given)."""
    rng = np.random.default_rng(0)
    if image is None:
        image = rng.integers(0, 1000, size=(24, 20, 6)).astype(np.uint16)
    if mask is None:
        mask = np.zeros((24, 20, 6), np.uint8)
        mask[8:16, 6:14, 2:5] = 1
    affine = _affine() if affine is None else affine
    folder.mkdir(parents=True, exist_ok=True)
    img_path = folder / f"{name}_T2w.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(image), affine), str(img_path))
    mask_path = mask_path_for(img_path)
    if mask is not False:
        nib.save(nib.Nifti1Image(np.asarray(mask), affine if mask_affine is None else mask_affine), str(mask_path))
    return img_path, mask_path


def _read(img_path: Path):
    return read_stack(stack_ref(img_path))


# --------------------------------------------------------------------------- good input
def test_valid_stack_reads_with_slice_axis_last(tmp_path):
    img, _ = write_pair(tmp_path / "sub-01" / "anat")
    s = _read(img)
    assert s.image.shape == (24, 20, 6) and s.image.dtype == np.float32
    assert s.mask.dtype == np.uint8 and set(np.unique(s.mask)) == {0, 1}
    assert s.slice_axis == 2 and s.thickness == pytest.approx(4.0)
    assert s.spacing == pytest.approx((0.8, 0.8))
    np.testing.assert_array_equal(s.labels, [0, 0, 1, 1, 1, 0])


def test_slice_axis_is_the_largest_spacing(tmp_path):
    """A stack stored with its thick axis first comes back with that axis last."""
    mask = np.zeros((5, 30, 28), np.uint8)
    mask[1:3, 10:20, 8:18] = 1
    img, _ = write_pair(tmp_path, image=np.random.default_rng(1).random((5, 30, 28)).astype(np.float32),
                        mask=mask, affine=_affine((6.5, 0.6, 0.7)))
    s = _read(img)
    assert s.slice_axis == 0 and s.image.shape == (30, 28, 5)
    assert s.thickness == pytest.approx(6.5) and s.spacing == pytest.approx((0.6, 0.7))
    np.testing.assert_array_equal(s.labels, [0, 1, 1, 0, 0])


def test_oblique_affine_spacing(tmp_path):
    """Spacing comes from the affine's column norms, so a rotated stack keeps its spacing."""
    c, s_ = np.cos(0.4), np.sin(0.4)
    rot = np.array([[c, -s_, 0], [s_, c, 0], [0, 0, 1.0]])
    aff = np.eye(4)
    aff[:3, :3] = rot @ np.diag([0.9, 0.9, 3.3])
    img, _ = write_pair(tmp_path, affine=aff)
    st = _read(img)
    assert st.slice_axis == 2 and st.thickness == pytest.approx(3.3) and st.spacing == pytest.approx((0.9, 0.9))


def test_find_stacks_pairs_subjects_and_names(tmp_path):
    write_pair(tmp_path / "sub-01" / "anat", "sub-01_run-1")
    write_pair(tmp_path / "sub-01" / "anat", "sub-01_run-2")
    write_pair(tmp_path / "sub-07" / "anat", "sub-07_run-1")
    write_pair(tmp_path / "caseA", "scan")  # no BIDS entity: subject = parent folder
    refs = find_stacks(tmp_path)
    assert [r.name for r in refs] == ["scan_T2w", "sub-01_run-1_T2w", "sub-01_run-2_T2w",
                                      "sub-07_run-1_T2w"]
    assert [r.subject for r in refs] == ["caseA", "sub-01", "sub-01", "sub-07"]
    assert all(r.mask.name.endswith("_T2w_desc-brain_mask.nii.gz") for r in refs)


# --------------------------------------------------------------------------- bad input
def _expect(img_path_or_ref, *words: str) -> str:
    with pytest.raises(DataError) as e:
        if isinstance(img_path_or_ref, Path):
            _read(img_path_or_ref)
        else:
            img_path_or_ref()
    msg = str(e.value)
    for w in words:
        assert w in msg, f"{w!r} not in error message: {msg}"
    return msg


def test_no_images_names_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    _expect(lambda: find_stacks(tmp_path / "empty"), str(tmp_path / "empty"), "no image")


def test_missing_mask(tmp_path):
    img, mask = write_pair(tmp_path, mask=False)
    _expect(lambda: find_stacks(tmp_path), img.name, "mask missing", mask.name)
    _expect(img, img.name, "mask missing")


def test_shape_mismatch(tmp_path):
    img, mask = write_pair(tmp_path, mask=np.ones((24, 20, 5), np.uint8))
    _expect(img, mask.name, "shape", "(24, 20, 5)", "(24, 20, 6)")


def test_affine_mismatch(tmp_path):
    shifted = _affine()
    shifted[0, 3] = 2.0
    img, mask = write_pair(tmp_path, mask_affine=shifted)
    _expect(img, mask.name, "affine")


def test_affine_within_tolerance_is_accepted(tmp_path):
    nudged = _affine()
    nudged[0, 3] = 1e-5
    img, _ = write_pair(tmp_path, mask_affine=nudged)
    assert _read(img).n_slices == 6


def test_non_binary_mask(tmp_path):
    labels = np.zeros((24, 20, 6), np.uint8)
    labels[5:10, 5:10, 2] = 1
    labels[12:16, 5:10, 3] = 2
    img, mask = write_pair(tmp_path, mask=labels)
    _expect(img, mask.name, "not binary")


def test_empty_mask(tmp_path):
    img, mask = write_pair(tmp_path, mask=np.zeros((24, 20, 6), np.uint8))
    _expect(img, mask.name, "empty")


def test_2d_image(tmp_path):
    img, _ = write_pair(tmp_path, image=np.random.default_rng(0).random((24, 20)).astype(np.float32),
                        mask=np.ones((24, 20), np.uint8))
    _expect(img, img.name, "2 dimensions")


def test_4d_image(tmp_path):
    img, _ = write_pair(tmp_path, image=np.random.default_rng(0).random((24, 20, 6, 3)).astype(np.float32))
    _expect(img, img.name, "4 dimensions")


def test_nan_image(tmp_path):
    data = np.random.default_rng(0).random((24, 20, 6)).astype(np.float32)
    data[3, 4, 1] = np.nan
    img, _ = write_pair(tmp_path, image=data)
    _expect(img, img.name, "NaN")


def test_constant_image(tmp_path):
    img, _ = write_pair(tmp_path, image=np.full((24, 20, 6), 7, np.uint16))
    _expect(img, img.name, "constant")


def test_corrupt_gzip(tmp_path):
    img, _ = write_pair(tmp_path)
    raw = img.read_bytes()
    img.write_bytes(raw[: len(raw) // 2])  # truncated download
    _expect(img, img.name, "cannot read")


def test_not_nifti(tmp_path):
    img, _ = write_pair(tmp_path)
    with gzip.open(img, "wb") as f:
        f.write(b"this is not a NIfTI header" * 20)
    _expect(img, img.name, "cannot read")


def test_unreadable_mask_names_the_mask(tmp_path):
    img, mask = write_pair(tmp_path)
    mask.write_bytes(b"\x00garbage")
    _expect(img, mask.name, "cannot read")


# --------------------------------------------------------------------------- real CC0 stacks
@pytest.fixture(scope="module")
def real_stacks():
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real CC0 stacks not present at {SHARED_DATA}")
    refs = find_stacks(SHARED_DATA)
    return [(r, read_stack(r)) for r in refs]


def test_real_stacks_load(real_stacks):
    assert len(real_stacks) == 9
    assert {r.subject for r, _ in real_stacks} == {"sub-01", "sub-02"}
    for ref, s in real_stacks:
        assert s.slice_axis == 2, ref.name
        assert s.thickness == pytest.approx(3.3, abs=1e-3), ref.name
        assert s.spacing == pytest.approx((1.125, 1.125), abs=1e-4), ref.name
        assert s.image.shape[:2] == (320, 320) and s.image.shape[2] in (22, 24, 28)


def test_real_labels_match_masks(real_stacks):
    for ref, s in real_stacks:
        raw = np.asanyarray(nib.load(str(ref.mask)).dataobj)
        expected = (raw > 0.5).any(axis=(0, 1)).astype(np.uint8)
        np.testing.assert_array_equal(s.labels, expected, err_msg=ref.name)
        assert 0 < s.labels.sum() < s.n_slices + 1
