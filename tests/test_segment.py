"""python -m umcam_lib.segment: masks in each input's own grid, the inverse of the preparation,
reference scores, the run folder's models, and bad input."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn as nn

from pathlib import Path

from umcam_lib import metrics, provenance
from umcam_lib import segment as sg
from umcam_lib.segment import output as so
from umcam_lib.data.nifti import DataError, StackRef, read_stack
from umcam_lib.data.prepare import center_fit, prepare_stack
from umcam_lib.models.unet import build_unet
from umcam_lib.train.common import TrainState, save_best


# --------------------------------------------------------------------------- synthetic stacks
def oblique_affine(spacing, angles=(0.35, -0.5, 0.8), origin=(-40.0, 25.0, 12.0)) -> np.ndarray:
    """Voxel-to-world affine: a rotation about all three axes times an anisotropic scaling."""
    a, b, c = angles
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    aff = np.eye(4)
    aff[:3, :3] = rz @ ry @ rx @ np.diag(spacing)
    aff[:3, 3] = origin
    return aff


def make_stack(folder, name="sub-01_run-1_T2w", shape=(70, 9, 54), spacing=(0.9, 4.5, 1.1), ext=".nii.gz",
               centre=(0.55, 0.5, 0.45), radii_mm=(22.0, 16.0, 19.0), seed=0):
    """An oblique, anisotropic stack whose slice axis is the middle one: a bright ellipsoid
    'brain' inside a darker 'body', uint16, and its brain mask beside it (BIDS names)."""
    rng = np.random.default_rng(seed)
    idx = np.indices(shape).astype(float)
    mm = [(idx[i] - centre[i] * (shape[i] - 1)) * spacing[i] for i in range(3)]
    brain = sum((mm[i] / radii_mm[i]) ** 2 for i in range(3)) <= 1
    body = sum((mm[i] / (2.2 * radii_mm[i])) ** 2 for i in range(3)) <= 1
    image = np.where(brain, 800.0, np.where(body, 200.0, 0.0)) + rng.normal(0, 15, shape)
    image = np.clip(image, 0, None).astype(np.uint16)
    aff = oblique_affine(spacing)
    folder.mkdir(parents=True, exist_ok=True)
    img_path, mask_path = folder / f"{name}{ext}", folder / f"{name}_desc-brain_mask{ext}"
    nib.save(nib.Nifti1Image(image, aff), str(img_path))
    nib.save(nib.Nifti1Image(brain.astype(np.uint8), aff), str(mask_path))
    return img_path, mask_path, brain.astype(np.uint8)


class Bright(nn.Module):
    """A stand-in segmenter: brain where the normalised intensity exceeds 0.6 (logits, 2 classes)."""

    def forward(self, x):
        return torch.cat([torch.zeros_like(x), 40.0 * (x - 0.6)], dim=1)


PREP = sg.Preprocessing(spacing_mm=2.0, image_size=48)  # crops one in-plane axis, pads the other


def segment_with(model, *args, prep=PREP, **kwargs):
    """``sg.segment`` with a stand-in UNet and preprocessing (``run_dir`` then only names the source)."""
    run_dir = args[0] if args else kwargs.get("run_dir")
    unet = sg.LoadedUNet(model, {"method": kwargs.get("method", sg.DEFAULT_METHOD)}, prep,
                         run_dir if run_dir is not None else Path("."))
    return sg.segment(*args, unet=unet, **kwargs)


def fake_run(tmp_path, methods=("UM-CAM+SPL", "FullySup"), prep=PREP):
    """A run folder as the pipeline leaves it: data/fingerprint.json and seg/<method>/best.pt."""
    run = tmp_path / "run"
    (run / "data").mkdir(parents=True)
    (run / "data" / "fingerprint.json").write_text(json.dumps(
        {"data": {"spacing_mm": prep.spacing_mm, "image_size": prep.image_size}, "seed": 0, "version": 1}))
    for i, m in enumerate(methods):
        torch.manual_seed(i)
        save_best(run / "seg" / m, build_unet(4), TrainState(best_score=50.0 + i, best_epoch=3),
                  {"variant": m, "width": 4, "epochs": 3})
    return run


# --------------------------------------------------------------------------- geometry
def test_uncenter_fit_inverts_center_fit():
    rng = np.random.default_rng(0)
    for shape in [(30, 50, 3), (64, 64, 2), (71, 20, 1), (100, 101, 2)]:
        v = rng.random(shape)
        fitted = center_fit(v, 64)
        back = sg.uncenter_fit(fitted, shape)
        assert back.shape == shape
        keep = tuple(slice((n - 64) // 2, (n - 64) // 2 + 64) if n > 64 else slice(None) for n in shape[:2])
        np.testing.assert_array_equal(back[keep], v[keep])  # what the crop kept comes back unchanged
        np.testing.assert_array_equal(sg.uncenter_fit(center_fit(back, 64), shape), back)


def test_prediction_roundtrip_of_a_known_mask_is_close_to_identity(tmp_path):
    """A 'prediction' equal to the prepared true mask, inverted, gives back the native mask."""
    img, mask, truth = make_stack(tmp_path)
    stack = read_stack(StackRef(img, mask, "sub-01", "x"))
    assert stack.slice_axis == 1 and stack.image.shape == (70, 54, 9)
    for prep, min_dsc in [(PREP, 95.0), (sg.Preprocessing(1.5, 40), 95.0)]:
        _, prepared_mask, lost = prepare_stack(stack, prep.spacing_mm, prep.image_size)
        assert lost == 0  # the brain is inside the kept field of view
        back = sg.invert(prepared_mask.astype(np.float32), stack.image.shape, stack.spacing, prep.spacing_mm) >= 0.5
        assert back.shape == stack.mask.shape
        assert metrics.dice(back, stack.mask) >= min_dsc
        assert metrics.hd95(back, stack.mask, spacing=(*stack.spacing, stack.thickness)) <= prep.spacing_mm
    # on the native grid (no resampling; padding only) the round trip is exact
    native = sg.Preprocessing(spacing_mm=0.9, image_size=96)
    st = read_stack(StackRef(*make_stack(tmp_path / "iso", spacing=(0.9, 4.5, 0.9))[:2], "sub-01", "y"))
    _, m, _ = prepare_stack(st, native.spacing_mm, native.image_size)
    np.testing.assert_array_equal(sg.invert(m.astype(np.float32), st.image.shape, st.spacing, 0.9) >= 0.5,
                                  st.mask.astype(bool))


@pytest.mark.parametrize("ext", [".nii.gz", ".nii"])
def test_masks_overlay_their_input_exactly(tmp_path, ext):
    """Oblique, anisotropic stack, slice axis in the middle: the written mask has the input's shape,
    affine, qform and sform, is uint8 0/1, and (stand-in segmenter) lands on the brain."""
    img, mask, truth = make_stack(tmp_path / "in", ext=ext)
    scores = segment_with(Bright(), tmp_path / "run", [img], tmp_path / "out", method="bright", device="cpu", progress=False)
    out = tmp_path / "out" / "sub-01" / "anat" / "sub-01_run-1_desc-brain_mask.nii.gz"  # a BIDS name: BIDS output
    assert out.is_file() and scores["mask"].tolist() == [str(out)]
    a, b = nib.load(str(img)), nib.load(str(out))
    assert b.shape == a.shape
    np.testing.assert_array_equal(b.affine, a.affine)
    np.testing.assert_array_equal(b.get_qform(), a.get_qform())
    np.testing.assert_array_equal(b.get_sform(), a.get_sform())
    assert int(b.header["qform_code"]) == int(a.header["qform_code"])
    assert int(b.header["sform_code"]) == int(a.header["sform_code"])
    assert b.get_data_dtype() == np.uint8
    data = np.asanyarray(b.dataobj)
    assert data.dtype == np.uint8 and set(np.unique(data)) <= {0, 1}
    assert metrics.dice(data, truth) > 90  # in the file's own axis order: nothing transposed or flipped
    row = scores.iloc[0]
    assert row.dsc == pytest.approx(metrics.dice(data, truth))
    assert row.reference == str(mask) and row["slice_axis"] == 1 and row["shape"] == "70x9x54"
    assert 0 < row.hd95_mm < 10
    csv = pd.read_csv(tmp_path / "out" / "scores_desc-brain.csv")
    assert list(csv.columns) == sg.SCORE_COLUMNS and len(csv) == 1


# --------------------------------------------------------------------------- run folder and command line
def test_command_line_with_run_folder(tmp_path, capsys):
    run = fake_run(tmp_path)
    make_stack(tmp_path / "data" / "sub-01" / "anat")
    make_stack(tmp_path / "data" / "sub-02" / "anat", name="sub-02_run-1_T2w", shape=(60, 50, 8),
               spacing=(1.0, 1.2, 3.5), seed=1)
    (tmp_path / "data" / "sub-02" / "anat" / "sub-02_run-1_T2w_desc-brain_mask.nii.gz").unlink()  # no reference

    assert sg.main([str(run), "--list"]) == 0
    listed = capsys.readouterr().out
    assert "UM-CAM+SPL" in listed and "FullySup" in listed and "2 mm, 48 px" in listed

    rc = sg.main([str(run), str(tmp_path / "data"), "--out", str(tmp_path / "out"), "--device", "cpu", "--quiet"])
    assert rc == 0
    m1 = tmp_path / "out" / "sub-01" / "anat" / "sub-01_run-1_desc-brain_mask.nii.gz"  # BIDS names: BIDS output
    m2 = tmp_path / "out" / "sub-02" / "anat" / "sub-02_run-1_desc-brain_mask.nii.gz"
    assert m1.is_file() and m2.is_file()
    assert nib.load(str(m2)).shape == (60, 50, 8)
    scores = pd.read_csv(tmp_path / "out" / "scores_desc-brain.csv")
    assert len(scores) == 2 and scores.dsc.notna().sum() == 1  # only sub-01 has a reference
    rec = json.loads((tmp_path / "out" / "segment_desc-brain.json").read_text())
    assert rec["method"] == "UM-CAM+SPL" and rec["epoch"] == 3 and rec["image_size"] == 48 and rec["bids"]
    assert "report_desc-brain.html" in capsys.readouterr().out

    # another method by its desc label, case-insensitive; --no-bids: the input's layout and names
    sub01 = tmp_path / "data" / "sub-01" / "anat"
    assert sg.main([str(run), str(sub01), "--method", "fullysup", "--out", str(tmp_path / "o2"), "--quiet",
                    "--no-bids"]) == 0
    assert (tmp_path / "o2" / "sub-01_run-1_T2w_desc-fullysup_mask.nii.gz").is_file()
    assert not (tmp_path / "o2" / "dataset_description.json").exists()

    # an unknown method names what the run has
    capsys.readouterr()
    assert sg.main([str(run), str(sub01), "--method", "SPL", "--out", str(tmp_path / "o3")]) == 1
    err = capsys.readouterr().err
    assert "no trained UNet for method 'SPL'" in err and "UM-CAM+SPL" in err
    assert not (tmp_path / "o3").exists()


def test_model_and_preprocessing_come_from_the_run(tmp_path):
    run = fake_run(tmp_path, prep=sg.Preprocessing(3.0, 64))
    assert sg.run_preprocessing(run) == sg.Preprocessing(3.0, 64)
    assert set(sg.available_methods(run)) == {"UM-CAM+SPL", "FullySup"}
    model, info = sg.load_model(run, "UM-CAM+SPL", "cpu")
    torch.manual_seed(0)  # fake_run's first method was built right after this seed
    ref = build_unet(4)
    for (k, v), (_, w) in zip(model.state_dict().items(), ref.state_dict().items()):
        assert torch.equal(v, w), k
    assert info["epoch"] == 3 and info["score"] == 50.0
    with pytest.raises(FileNotFoundError, match="notebook 01"):
        sg.run_preprocessing(tmp_path / "nothing")


# --------------------------------------------------------------------------- bad input
def test_bad_input_is_named_and_nothing_is_written(tmp_path):
    folder = tmp_path / "data"
    make_stack(folder / "sub-01" / "anat")  # a good stack, segmented first if nothing were checked
    bad = folder / "sub-02" / "anat" / "sub-02_T2w.nii.gz"
    bad.parent.mkdir(parents=True)
    nib.save(nib.Nifti1Image(np.full((20, 20, 5), np.nan, np.float32), np.diag([1, 1, 4, 1])), str(bad))
    with pytest.raises(DataError, match=r"sub-02_T2w.nii.gz: image has 2000 NaN"):
        segment_with(Bright(), tmp_path, [folder], tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*"))

    bad.write_bytes(b"not a nifti file")
    with pytest.raises(DataError, match="sub-02_T2w.nii.gz: cannot read image"):
        segment_with(Bright(), tmp_path, [folder], tmp_path / "out", progress=False)
    bad.unlink()

    # a reference on another grid is an error naming the mask
    img, mask, _ = make_stack(tmp_path / "m")
    nib.save(nib.Nifti1Image(np.zeros((70, 9, 54), np.uint8), np.eye(4)), str(mask))
    with pytest.raises(DataError, match="desc-brain_mask.nii.gz: mask affine differs"):
        segment_with(Bright(), tmp_path, [img], tmp_path / "out", progress=False)

    for args, msg in [([tmp_path / "missing.nii.gz"], "no such file"), ([tmp_path / "empty"], "no NIfTI stack")]:
        (tmp_path / "empty").mkdir(exist_ok=True)
        with pytest.raises(DataError, match=msg):
            segment_with(Bright(), tmp_path, args, tmp_path / "out", progress=False)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="notes.txt: not a NIfTI file"):
        segment_with(Bright(), tmp_path, [tmp_path / "notes.txt"], tmp_path / "out", progress=False)
    # a mask must never overwrite a reference
    img2, mask2, _ = make_stack(tmp_path / "same")
    with pytest.raises(DataError, match="would overwrite an input or reference"):
        segment_with(Bright(), tmp_path, [img2], tmp_path / "same", desc="brain", progress=False,
                   bids=False)
    assert not any((tmp_path / "out").rglob("*.nii*")) if (tmp_path / "out").exists() else True


def test_interrupted_write_leaves_no_file(tmp_path, monkeypatch):
    img, _, _ = make_stack(tmp_path / "in")

    def boom(img_, path):
        with open(path, "wb") as f:
            f.write(b"half")
        raise KeyboardInterrupt

    monkeypatch.setattr(nib, "save", boom)
    with pytest.raises(KeyboardInterrupt):
        segment_with(Bright(), tmp_path, [img], tmp_path / "out", progress=False)
    assert [f for f in (tmp_path / "out").rglob("*") if f.is_file()] == []  # folders may remain, no file


# --------------------------------------------------------------------------- a real run (tiny profile)
@pytest.mark.slow
def test_segment_tiny_run_test_stacks(tiny_run, tmp_path):
    """The tiny run's UM-CAM+SPL UNet on its test stacks: masks on each stack's grid, and native-grid
    DSC near the notebook's slice-grid DSC of the same model (the same predictions, other grid)."""
    run = tiny_run.run_dir
    vols = pd.read_csv(run / "data" / "volumes.csv")
    test = vols[vols.split == "test"]
    scores = sg.segment(run, test.image_path.tolist(), tmp_path / "out", method="UM-CAM+SPL", device="cpu",
                        progress=False)
    assert len(scores) == len(test) and scores.dsc.notna().all()
    for image, mask in zip(scores.image, scores["mask"]):
        a, b = nib.load(image), nib.load(mask)
        assert a.shape == b.shape
        np.testing.assert_array_equal(a.affine, b.affine)
    recorded = sorted((run / "scores").glob("*segmentation__um-camplusspl__test.csv"))
    if recorded:  # the notebook's per-volume scores (slice grid), paired by volume
        rec = pd.read_csv(recorded[0]).set_index("id").loc[test.volume.to_numpy()]
        assert np.all(np.abs(rec.dsc.to_numpy() - scores.dsc.to_numpy()) < 10)


def test_postprocess_keeps_the_largest_component_and_defaults_to_the_runs_setting(tmp_path):
    """A stray bright blob far from the brain: ``lcc`` drops it, ``none`` keeps it, and without
    an explicit choice ``segment`` follows the checkpoint's recorded ``seg.postprocess``."""
    img, mask, truth = make_stack(tmp_path / "in")
    data = np.asanyarray(nib.load(str(img)).dataobj).copy()
    data[2:8, 3:6, 2:8] = 800  # a small bright cube in a corner, outside the brain
    a = nib.load(str(img))
    nib.save(nib.Nifti1Image(data, a.affine, a.header), str(img))
    kept = {}
    for post in ("none", "lcc"):
        s = segment_with(Bright(), tmp_path / "run", [img], tmp_path / post, method="bright", device="cpu", progress=False, postprocess=post, bids=False)
        kept[post] = s
        record = json.loads((tmp_path / post / "segment_desc-bright.json").read_text())
        assert record["postprocess"] == post
    assert kept["lcc"].pred_voxels[0] < kept["none"].pred_voxels[0]
    assert kept["lcc"].dsc[0] > kept["none"].dsc[0] and kept["lcc"].hd95_mm[0] < kept["none"].hd95_mm[0]
    out = np.asanyarray(nib.load(str(tmp_path / "lcc" / "sub-01_run-1_T2w_desc-bright_mask.nii.gz")).dataobj)
    assert out[2:8, 3:6, 2:8].sum() == 0
    # the default: the run's setting, read from the checkpoint's config
    run = fake_run(tmp_path)
    ck = torch.load(run / "seg" / "FullySup" / "best.pt", weights_only=False)
    ck["config"]["postprocess"] = "lcc"
    torch.save(ck, run / "seg" / "FullySup" / "best.pt")
    sg.segment(run, [img], tmp_path / "default", method="FullySup", device="cpu", progress=False, bids=False)
    assert json.loads((tmp_path / "default" / "segment_desc-fullysup.json").read_text())["postprocess"] == "lcc"
    with pytest.raises(ValueError, match="postprocess"):
        sg.segment(run, [img], tmp_path / "bad", method="FullySup", device="cpu", progress=False, postprocess="x")


def test_tta_defaults_to_the_runs_setting_and_can_be_forced(tmp_path):
    """``seg.tta`` recorded in the checkpoint turns test-time augmentation on; ``tta=False`` turns it off.
    The predictions differ (an untrained UNet is not rotation-invariant), the masks still overlay."""
    img, _, _ = make_stack(tmp_path / "in")
    run = fake_run(tmp_path)
    ck = torch.load(run / "seg" / "FullySup" / "best.pt", weights_only=False)
    ck["config"]["tta"] = True
    torch.save(ck, run / "seg" / "FullySup" / "best.pt")
    seen = {}
    for name, tta in (("default", None), ("off", False)):
        sg.segment(run, [img], tmp_path / name, method="FullySup", device="cpu", progress=False, tta=tta, bids=False,
                   qc=False)
        seen[name] = json.loads((tmp_path / name / "segment_desc-fullysup.json").read_text())["tta"]
        out = nib.load(str(tmp_path / name / "sub-01_run-1_T2w_desc-fullysup_mask.nii.gz"))
        assert out.shape == nib.load(str(img)).shape
    assert seen == {"default": True, "off": False}


# --------------------------------------------------------------------------- output people drop into pipelines (issue 18.2)
def test_bids_names_are_parsed_and_derived():
    b = so.parse_bids_name("sub-01_ses-2_acq-haste_run-3_desc-raw_T2w.nii.gz")
    assert b.entities == (("sub", "01"), ("ses", "2"), ("acq", "haste"), ("run", "3"), ("desc", "raw"))
    assert b.suffix == "T2w"
    for name in ("scan.nii.gz", "run-1_sub-01_T2w.nii", "sub-01_run_T2w.nii.gz", "sub-01_run-1_run-2_T2w.nii"):
        assert so.parse_bids_name(name) is None, name
    p = so.bids_mask_path("/d/sub-01/ses-2/anat/sub-01_ses-2_acq-haste_run-3_desc-raw_T2w.nii", "/o", "brain")
    assert p.as_posix() == "/o/sub-01/ses-2/anat/sub-01_ses-2_acq-haste_run-3_desc-brain_mask.nii.gz"
    assert so.bids_mask_path("/x/sub-7_T2w.nii.gz", "/o", "brain").as_posix() == "/o/sub-7/anat/sub-7_desc-brain_mask.nii.gz"


def test_bids_derivative_output_with_qc_and_summary(tmp_path, capsys):
    """A BIDS dataset in: a BIDS derivative out (dataset_description.json, sidecars, names), a QC
    picture per stack, one summary page with volumes and DSC, and no temporary file left."""
    data = tmp_path / "bids"
    img1, _, truth1 = make_stack(data / "sub-01" / "ses-2" / "anat", name="sub-01_ses-2_run-1_T2w")
    img2, ref2, _ = make_stack(data / "sub-02" / "anat", name="sub-02_run-1_T2w", shape=(60, 50, 8),
                               spacing=(1.0, 1.2, 3.5), seed=1)
    ref2.unlink()
    segment_with(Bright(), tmp_path / "run", [data], tmp_path / "der", method="bright", device="cpu", progress=False)
    der = tmp_path / "der"
    m1 = der / "sub-01" / "ses-2" / "anat" / "sub-01_ses-2_run-1_desc-brain_mask.nii.gz"
    m2 = der / "sub-02" / "anat" / "sub-02_run-1_desc-brain_mask.nii.gz"
    assert m1.is_file() and m2.is_file()
    desc = json.loads((der / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative" and desc["BIDSVersion"].startswith("1.")
    gen = desc["GeneratedBy"][0]
    assert gen["Name"] == "umcam-study" and gen["Version"].split("+")[0][0].isdigit()
    commit = provenance.git_state().get("commit")
    if commit:
        assert f"+g{commit[:12]}" in gen["Version"] and commit in gen["Description"]
    assert desc["SourceDatasets"] == [{"URL": data.resolve().as_uri()}]
    assert so.source_root(img1) == so.source_root(data / "sub-02") == data.resolve()
    side = json.loads(m1.with_name("sub-01_ses-2_run-1_desc-brain_mask.json").read_text())
    assert side["Type"] == "Brain" and side["Sources"] == [img1.resolve().as_uri()]
    assert "qc/" in (der / ".bidsignore").read_text()
    # QC pictures: PNGs of the right layout; the page links each one and shows volume and DSC
    scores = pd.read_csv(der / "scores_desc-brain.csv")
    for q in scores.qc:
        q = Path(q)
        assert q.is_file() and q.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and q.parent.parts[-1] == "anat"
        assert der / "qc" in q.parents
    page = (der / "report_desc-brain.html").read_text()
    assert page.count("<img ") == 2 and 'src="qc/sub-01/ses-2/anat/sub-01_ses-2_run-1_desc-brain_mask.png"' in page
    row = scores.set_index(scores.image.map(lambda s: Path(s).name)).loc["sub-01_ses-2_run-1_T2w.nii.gz"]
    vox_ml = 0.9 * 4.5 * 1.1 / 1000
    assert row.volume_ml == pytest.approx(row.pred_voxels * vox_ml, rel=1e-3)
    assert f"{row.volume_ml:.1f}" in page and f"{row.dsc:.2f}" in page
    assert np.isnan(scores.dsc).sum() == 1 and (scores.seconds > 0).all()
    assert not [f for f in der.rglob("*") if ".tmp" in f.name]
    # --bids with a non-BIDS name is an error naming the file; auto falls back to the plain layout
    plain, _, _ = make_stack(tmp_path / "plain", name="scan01")
    with pytest.raises(DataError, match=r"scan01.nii.gz: not a BIDS file name"):
        segment_with(Bright(), tmp_path, [plain], tmp_path / "p", progress=False, bids=True)
    s = segment_with(Bright(), tmp_path, [plain], tmp_path / "p", method="bright", progress=False)
    assert Path(s["mask"][0]) == tmp_path / "p" / "scan01_desc-bright_mask.nii.gz"
    assert not (tmp_path / "p" / "dataset_description.json").exists()


def test_dilation_is_in_millimetres_along_each_axis():
    m = np.zeros((21, 21, 9), np.uint8)
    m[10, 10, 4] = 1
    d = so.dilate_mm(m, (1.0, 0.5, 4.0), 2.0)
    xs, ys, zs = (np.flatnonzero(d.any(axis=tuple(j for j in range(3) if j != i))) for i in range(3))
    assert (xs.min(), xs.max()) == (8, 12) and (ys.min(), ys.max()) == (6, 14) and (zs.min(), zs.max()) == (4, 4)
    d4 = so.dilate_mm(m, (1.0, 0.5, 4.0), 4.0)
    assert set(np.flatnonzero(d4.any(axis=(0, 1)))) == {3, 4, 5} and d4[10, 10, 3] and not d4[11, 10, 3]
    brute = sum((dx * 1.0) ** 2 + (dy * 0.5) ** 2 <= 4.0 for dx in range(-3, 4) for dy in range(-5, 6))
    assert d.sum() == brute and not d[12, 14, 4]  # a filled ellipse in mm (corner outside), not a box
    np.testing.assert_array_equal(so.dilate_mm(m, (1, 1, 1), 0.0), m)
    with pytest.raises(ValueError, match=">= 0 mm"):
        so.dilate_mm(m, (1, 1, 1), -1.0)


def test_dilate_mm_grows_the_written_mask_and_keeps_the_header(tmp_path, capsys):
    img, _, truth = make_stack(tmp_path / "in")
    run = fake_run(tmp_path)
    base = segment_with(Bright(), run, [img], tmp_path / "a", method="bright", progress=False, qc=False)
    grown = segment_with(Bright(), run, [img], tmp_path / "b", method="bright", progress=False,
                       dilate=3.0, qc=False)
    a, b = (nib.load(s["mask"][0]) for s in (base, grown))
    da, db = np.asanyarray(a.dataobj), np.asanyarray(b.dataobj)
    assert db.dtype == np.uint8 and np.all(db >= da) and db.sum() > 1.3 * da.sum()
    np.testing.assert_array_equal(b.affine, nib.load(str(img)).affine)
    assert grown.volume_ml[0] > base.volume_ml[0] and grown.dsc[0] < base.dsc[0]  # scores are of the written mask
    assert json.loads((tmp_path / "b" / "segment_desc-brain.json").read_text())["dilate_mm"] == 3.0
    assert sg.main([str(run), str(img), "--out", str(tmp_path / "c"), "--dilate-mm", "-1", "--quiet"]) == 1
    assert "--dilate-mm" in capsys.readouterr().err and not (tmp_path / "c").exists()


# --------------------------------------------------------------------------- what clinical stacks bring (issue 18.3)
def _rewrite(img, data, path):
    a = nib.load(str(img))
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, a.affine), str(path))
    return path


def test_intensity_scale_does_not_change_the_mask(tmp_path):
    """x1000 and x0.001 (float32 files): the percentile normalisation makes the masks identical."""
    img, mask, truth = make_stack(tmp_path / "in")
    data = np.asanyarray(nib.load(str(img)).dataobj).astype(np.float32)
    masks = {}
    for scale in (1.0, 1000.0, 0.001):
        p = _rewrite(img, data * np.float32(scale), tmp_path / f"x{scale}" / "sub-01_run-1_T2w.nii.gz")
        s = segment_with(Bright(), tmp_path, [p], tmp_path / f"o{scale}", progress=False, qc=False)
        masks[scale] = np.asanyarray(nib.load(s["mask"][0]).dataobj)
    assert metrics.dice(masks[1.0], truth) > 90
    np.testing.assert_array_equal(masks[1000.0], masks[1.0])
    np.testing.assert_array_equal(masks[0.001], masks[1.0])


def bias_field(shape, strength):
    """A smooth multiplicative field exp(strength * (x + z / 2)) over the stack, coordinates in [-1, 1]."""
    x = np.linspace(-1, 1, shape[0])[:, None, None]
    z = np.linspace(-1, 1, shape[2])[None, None, :]
    return np.exp(strength * (x + 0.5 * z)).astype(np.float32) * np.ones(shape, np.float32)


def test_bias_correct_removes_a_smooth_field():
    """A x90 field over a uniform body (x13 between the 5th and 95th percentiles of a shell of it):
    after correction that shell varies < 1.8-fold, and most of the brain/body contrast (4:1) is kept."""
    shape, spacing = (96, 96, 12), (1.5, 1.5, 4.0)
    idx = np.indices(shape).astype(float)
    mm = [(idx[i] - (shape[i] - 1) / 2) * spacing[i] for i in range(3)]
    r = np.sqrt(sum(m ** 2 for m in mm))
    brain, body = r <= 22, r <= 65
    image = np.where(brain, 800.0, np.where(body, 200.0, 0.0)).astype(np.float32)
    f = bias_field(shape, 1.5)
    out = so.bias_correct(image * f, spacing, 40.0)
    shell = body & (r > 30) & (r < 55)
    spread = lambda v: np.percentile(v[shell], 95) / np.percentile(v[shell], 5)  # noqa: E731
    assert spread(image * f) > 12 and spread(out) < 1.8
    assert np.median(out[brain]) / np.median(out[shell]) > 3.3
    np.testing.assert_allclose(np.median(out[body]), np.median((image * f)[body]), rtol=1e-4)
    # without a field it changes little; a single slice does not break it
    flat = so.bias_correct(image, spacing, 40.0)
    assert spread(flat) < 1.2 and np.median(flat[brain]) / np.median(flat[shell]) > 3.3
    one = so.bias_correct((image * f)[:, :, 6:7], spacing, 40.0)
    assert np.isfinite(one).all() and one.max() > 0


def test_strong_bias_field_and_bias_correct_option(tmp_path, capsys):
    """The stand-in segmenter on a stack under a x90 bias field, with and without --bias-correct:
    the command runs, the mask still overlays, and the correction does not lower DSC here."""
    img, mask, truth = make_stack(tmp_path / "in", shape=(96, 10, 96), spacing=(1.5, 4.0, 1.5))
    data = np.asanyarray(nib.load(str(img)).dataobj).astype(np.float32)
    p = _rewrite(img, data * bias_field(data.shape, 1.5), tmp_path / "bias" / "sub-01_run-1_T2w.nii.gz")
    _rewrite(img, truth, tmp_path / "bias" / "sub-01_run-1_T2w_desc-brain_mask.nii.gz")
    plain = segment_with(Bright(), tmp_path, [p], tmp_path / "o1", progress=False, qc=False)
    corr = segment_with(Bright(), tmp_path, [p], tmp_path / "o2", progress=False, qc=False,
                      bias_sigma_mm=40.0)
    assert plain.dsc[0] > 80 and corr.dsc[0] >= plain.dsc[0]
    assert json.loads((tmp_path / "o2" / "segment_desc-brain.json").read_text())["bias_correct_sigma_mm"] == 40.0
    run = fake_run(tmp_path)
    assert sg.main([str(run), "--bias-correct", str(p), "--out", str(tmp_path / "o3"), "--quiet", "--no-qc"]) == 0
    assert json.loads((tmp_path / "o3" / "segment_desc-brain.json").read_text())["bias_correct_sigma_mm"] == \
        sg.BIAS_SIGMA_MM
    assert sg.main([str(run), str(p), "--out", str(tmp_path / "o4"), "--bias-correct", "--bias-sigma-mm", "60",
                    "--quiet", "--no-qc"]) == 0
    assert json.loads((tmp_path / "o4" / "segment_desc-brain.json").read_text())["bias_correct_sigma_mm"] == 60.0
    assert sg.main([str(run), str(p), "--out", str(tmp_path / "o5"), "--quiet", "--no-qc"]) == 0
    assert json.loads((tmp_path / "o5" / "segment_desc-brain.json").read_text())["bias_correct_sigma_mm"] is None


@pytest.mark.parametrize("order,flip,n_slices", [((0, 1, 2), False, 9), ((1, 0, 2), True, 9), ((1, 2, 0), False, 9),
                                                  ((0, 2, 1), True, 1), ((2, 1, 0), False, 2), ((0, 1, 2), True, 40)])
def test_other_orientations_and_slice_counts(tmp_path, order, flip, n_slices):
    """The slice axis first, middle or last, flipped axes (negative affine columns), 1, 2 or 40
    slices: the mask has the file's shape and affine and lands on the brain in the file's axes."""
    shape, spacing = [70, n_slices, 54], [0.9, 4.5 if n_slices < 40 else 1.5, 1.1]
    img, _, truth = make_stack(tmp_path / "src", shape=tuple(shape), spacing=tuple(spacing),
                               radii_mm=(22.0, 16.0 if n_slices > 2 else 60.0, 19.0))
    a = nib.load(str(img))
    data = np.transpose(np.asanyarray(a.dataobj), order)
    gt = np.transpose(truth, order)
    aff = a.affine.copy()
    aff[:3, :3] = a.affine[:3, :3][:, list(order)]
    if flip:
        data, gt = data[::-1], gt[::-1]
        aff = aff @ np.array([[-1, 0, 0, data.shape[0] - 1], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    p = tmp_path / "in" / "sub-01_run-1_T2w.nii.gz"
    p.parent.mkdir()
    nib.save(nib.Nifti1Image(np.ascontiguousarray(data), aff), str(p))
    nib.save(nib.Nifti1Image(np.ascontiguousarray(gt), aff), str(tmp_path / "in" / "sub-01_run-1_T2w_desc-brain_mask.nii.gz"))
    s = segment_with(Bright(), tmp_path, [p], tmp_path / "out", progress=False)
    out = nib.load(s["mask"][0])
    assert out.shape == data.shape
    np.testing.assert_array_equal(out.affine, nib.load(str(p)).affine)  # as stored (float32)
    assert s["slice_axis"][0] == list(order).index(1) if n_slices < 40 else True
    assert metrics.dice(np.asanyarray(out.dataobj), gt) > 85 and s.dsc[0] > 85
    assert Path(s.qc[0]).is_file()


@pytest.mark.parametrize("shape,dims", [((20, 20), 2), ((20, 20, 5, 3), 4)])
def test_2d_and_4d_inputs_are_refused_by_name(tmp_path, shape, dims):
    folder = tmp_path / "data"
    make_stack(folder / "sub-01" / "anat")
    bad = folder / "sub-02" / "anat" / "sub-02_T2w.nii.gz"
    bad.parent.mkdir(parents=True)
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random(shape).astype(np.float32), np.eye(4)), str(bad))
    with pytest.raises(DataError, match=rf"sub-02_T2w.nii.gz: image has {dims} dimensions .*expected a 3D slice stack"):
        segment_with(Bright(), tmp_path, [folder], tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists() or not [f for f in (tmp_path / "out").rglob("*") if f.is_file()]


class Nothing(nn.Module):
    """A stand-in segmenter that finds no brain anywhere."""

    def forward(self, x):
        return torch.cat([torch.zeros_like(x), torch.full_like(x, -20.0)], dim=1)


def test_a_stack_without_brain_gives_an_empty_mask_and_a_warning(tmp_path, capsys):
    img, _, _ = make_stack(tmp_path / "in")
    for post in ("none", "lcc"):
        with pytest.warns(sg.EmptyMaskWarning, match=r"sub-01_run-1_T2w.nii.gz: no brain found"):
            s = segment_with(Nothing(), tmp_path, [img], tmp_path / post, progress=False,
                           postprocess=post, dilate=2.0)
        out = nib.load(s["mask"][0])
        assert out.shape == nib.load(str(img)).shape and out.get_data_dtype() == np.uint8
        assert not np.asanyarray(out.dataobj).any()
        assert s.pred_voxels[0] == 0 and s.volume_ml[0] == 0 and s.dsc[0] == 0 and np.isnan(s.hd95_mm[0])
        assert "no brain found" in s.warning[0] and Path(s.qc[0]).is_file()
        assert "no brain found" in (tmp_path / post / "report_desc-brain.html").read_text()
    run = fake_run(tmp_path)
    import umcam_lib.segment.run as mod
    orig = mod.load_model
    mod.load_model = lambda *a, **k: (Nothing(), {"method": "x"})
    try:
        with pytest.warns(sg.EmptyMaskWarning):
            assert sg.main([str(run), str(img), "--out", str(tmp_path / "cli"), "--quiet"]) == 0
    finally:
        mod.load_model = orig
    assert "no brain found in 1 stack(s)" in capsys.readouterr().err
