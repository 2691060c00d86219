"""Input never dropped or misread in silence (issue 11, items 6 and 8; issue 10, own data)."""
from __future__ import annotations

import shutil

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from conftest import disc, write_cohort

from umcam_lib import pipeline
from umcam_lib.data import prepare
from umcam_lib.data.nifti import DataError, find_stacks, scan_stacks, subject_of


def _to_nii(gz_path):
    """Rewrite ``x.nii.gz`` as uncompressed ``x.nii``; return the new path."""
    new = gz_path.with_name(gz_path.name[: -len(".gz")])
    nib.save(nib.load(str(gz_path)), str(new))
    gz_path.unlink()
    return new


def test_find_stacks_reads_nii_beside_nii_gz(tmp_path):
    write_cohort(tmp_path, {"sub-01": 1, "sub-02": 1})
    anat = tmp_path / "sub-02" / "anat"
    for f in sorted(anat.iterdir()):
        _to_nii(f)
    refs = find_stacks(tmp_path)
    assert [r.subject for r in refs] == ["sub-01", "sub-02"]
    assert refs[1].image.name == "sub-02_run-1_T2w.nii" and refs[1].mask.name == "sub-02_run-1_T2w_desc-brain_mask.nii"


def test_find_stacks_warns_naming_orphan_masks_and_other_files(tmp_path):
    write_cohort(tmp_path, {"sub-01": 1, "sub-02": 1})
    anat = tmp_path / "sub-02" / "anat"
    (anat / "sub-02_run-1_T2w.nii.gz").rename(anat / "sub-02_run-1_T1w.nii.gz")   # its mask is now an orphan
    (tmp_path / "sub-01" / "anat" / "sub-01_run-1_T2w.nii.gz.bak").write_text("old copy")
    with pytest.warns(UserWarning) as rec:
        refs = find_stacks(tmp_path, "**/*_T2w.nii*")
    assert [r.name for r in refs] == ["sub-01_run-1_T2w"]
    text = "\n".join(str(w.message) for w in rec)
    assert "sub-02_run-1_T2w_desc-brain_mask.nii.gz" in text and "mask" in text
    assert "sub-02_run-1_T1w.nii.gz" in text and "does not match" in text
    assert "sub-01_run-1_T2w.nii.gz.bak" in text and "not a .nii or .nii.gz" in text


def test_subjects_from_non_ascii_and_non_bids_folders(tmp_path):
    assert subject_of(tmp_path / "sub-Ä" / "anat" / "sub-Ä_T2w.nii.gz", tmp_path) == "sub-Ä"
    assert subject_of(tmp_path / "patientA" / "anat" / "scan1_T2w.nii.gz", tmp_path) == "patientA"
    assert subject_of(tmp_path / "loose_T2w.nii.gz", tmp_path) == "loose_T2w"
    write_cohort(tmp_path / "a", {"sub-01": 1})
    for pat in ("patientA", "patientB"):
        shutil.copytree(tmp_path / "a" / "sub-01" / "anat", tmp_path / "root" / pat / "anat")
        for f in (tmp_path / "root" / pat / "anat").iterdir():
            f.rename(f.with_name(f.name.replace("sub-01", pat)))
    refs, skipped, notes = scan_stacks(tmp_path / "root")
    assert [r.subject for r in refs] == ["patientA", "patientB"] and not skipped
    assert any("patientA" in n and "folder" in n for n in notes)


def test_input_file_notes_reach_the_dataset_table_also_when_cached(tmp_path):
    write_cohort(tmp_path / "bids", {f"sub-{i:02d}": 1 for i in range(1, 7)})
    _to_nii(tmp_path / "bids" / "sub-03" / "anat" / "sub-03_run-1_T2w.nii.gz")
    _to_nii(tmp_path / "bids" / "sub-03" / "anat" / "sub-03_run-1_T2w_desc-brain_mask.nii.gz")
    (tmp_path / "bids" / "sub-07" / "anat").mkdir(parents=True)
    orphan = tmp_path / "bids" / "sub-07" / "anat" / "sub-07_T2w_desc-brain_mask.nii.gz"
    shutil.copy(tmp_path / "bids" / "sub-01" / "anat" / "sub-01_run-1_T2w_desc-brain_mask.nii.gz", orphan)
    params = pipeline.resolve_params("real", overrides=[f"data.root={tmp_path / 'bids'}", "data.image_size=32"])
    with pytest.warns(UserWarning, match="sub-07_T2w_desc-brain_mask"):
        s = prepare.prepare_dataset(params["data"], tmp_path / "run", 0, progress=False)
    assert sorted(s.volumes.subject) == [f"sub-{i:02d}" for i in range(1, 7)]      # the .nii subject too
    table = prepare.dataset_table(s)
    assert str(orphan) in table.loc[0, "notes"]
    with pytest.warns(UserWarning, match="sub-07_T2w_desc-brain_mask"):                  # and when cached
        again = prepare.prepare_dataset(params["data"], tmp_path / "run", 0, progress=False)
    assert str(orphan) in prepare.dataset_table(again).loc[0, "notes"]


def test_a_one_slice_validation_split_is_refused(tmp_path):
    write_cohort(tmp_path / "bids", {"sub-01": 2, "sub-02": 1})
    anat = tmp_path / "bids" / "sub-03" / "anat"          # a one-slice stack holding brain
    anat.mkdir(parents=True)
    mask = disc((40, 40), 1.5, 12.0)[..., None]
    image = (np.random.default_rng(0).random((40, 40, 1)) * 100 + 400.0 * mask).astype(np.uint16)
    for arr, name in ((image, "sub-03_run-1_T2w.nii.gz"), (mask, "sub-03_run-1_T2w_desc-brain_mask.nii.gz")):
        nib.save(nib.Nifti1Image(arr, np.diag([1.5, 1.5, 5.0, 1.0])), str(anat / name))
    data = pipeline.resolve_params("tiny", overrides=[
        "data.source=nifti", f"data.root={tmp_path / 'bids'}", "data.image_size=32",
        "data.val_subjects=[sub-03]", "data.test_subjects=[sub-02]"])["data"]
    with pytest.raises(DataError, match=r"the val split has 1 slice\(s\).*sub-03_run-1_T2w.*at least 5"):
        prepare.prepare_dataset(data, tmp_path / "run", 0, progress=False)
    assert not (tmp_path / "run" / "data" / "slices.npz").exists()


def test_brain_cut_away_by_the_crop_is_warned_and_noted(tmp_path):
    write_cohort(tmp_path / "bids", {"sub-01": 1, "sub-02": 1, "sub-03": 1}, shape=(40, 40, 8))
    data = pipeline.resolve_params("tiny", overrides=[
        "data.source=nifti", f"data.root={tmp_path / 'bids'}", "data.image_size=32", "data.spacing_mm=0.5"])["data"]
    with pytest.warns(UserWarning, match="cut away"):
        s = prepare.prepare_dataset(data, tmp_path / "run", 0, progress=False)
    assert "cut away" in prepare.dataset_table(s).loc[0, "notes"]


def test_own_data_command_reads_any_bids_folder(tmp_path):
    """Issue 10: the README's own-data parameters on six subjects named other than sub-02."""
    write_cohort(tmp_path / "my_data", {f"sub-{c}": 1 for c in "ABCDEF"})
    params = pipeline.resolve_params("real", overrides=[f"data.root={tmp_path / 'my_data'}"])
    s = prepare.prepare_dataset(params["data"], tmp_path / "run", 0, progress=False)
    table = prepare.dataset_table(s)
    assert list(table.volumes[:3]) == [4, 1, 1]
    assert pd.Series(s.volumes.subject).nunique() == 6
    assert np.all(table.loc[:2, "positive_slices"] > 0)
