"""python -m umcam_lib.segment.ship and the shipped models: chosen on validation, float16, hashed, refused
when altered or dirty, and used by python -m umcam_lib.segment without a run folder."""
from __future__ import annotations

import json
import subprocess

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

from umcam_lib import provenance, report
from umcam_lib.segment import ship, shipped
from umcam_lib import segment as sg
from umcam_lib.data.fetch import sha256
from umcam_lib.models.unet import build_unet
from umcam_lib.train.common import TrainState, save_best

CLEAN = {"commit": "0" * 40, "dirty": False, "changed": []}
# (method, table, validation DSC, test DSC): validation picks SPL, test would pick UM-CAM+SPL
ROWS = [("UM-CAM+SPL", "table1", [70.0], [90.0, 92.0]), ("UM-CAM+SPL", "table2", [70.0], [90.0, 92.0]),
        ("SPL", "table1", [80.0], [60.0, 62.0]), ("UM-CAM", "table1", [65.0], [85.0, 86.0]),
        ("FullySup", "table2", [85.0], [88.0, 89.0])]
METHODS = ("UM-CAM+SPL", "SPL", "UM-CAM", "FullySup")


def fake_run(tmp_path, profile="real", dirty_notebook=None):
    """A finished run folder written by the pipeline's own writers: data/fingerprint.json and
    volumes.csv, seg/<method>/best.pt (width-4 UNets), scores/ (report.record_scores) and
    provenance/NN.json (provenance.record, git state then set to a known one)."""
    run = tmp_path / "run"
    (run / "data").mkdir(parents=True)
    (run / "data" / "fingerprint.json").write_text(json.dumps(
        {"data": {"spacing_mm": 2.0, "image_size": 48}, "seed": 0, "version": 2}))
    pd.DataFrame({"volume": [0, 1, 2, 3], "subject": ["sub-01", "sub-01", "sub-02", "sub-02"],
                  "name": ["sub-01_run-1_T2w", "sub-01_run-6_T2w", "sub-02_run-1_T2w", "sub-02_run-2_T2w"],
                  "split": ["train", "val", "test", "test"],
                  "image_path": [str(tmp_path / f"x{i}.nii.gz") for i in range(4)],
                  "n_slices": [22, 22, 24, 28], "positive_slices": [18, 17, 24, 27], "thickness_mm": 3.3,
                  "native_spacing_mm": "1.125x1.125", "shape": "320x320x22"}).to_csv(run / "data" / "volumes.csv",
                                                                                     index=False)
    for i, m in enumerate(METHODS):
        torch.manual_seed(i)
        save_best(run / "seg" / m, build_unet(4), TrainState(best_score=60.0 + i, best_epoch=3 + i),
                  {"variant": m, "width": 4, "epochs": 5, "tta": False, "postprocess": "none"})
    for method, table, val, test in ROWS:
        for split, dsc in (("val", val), ("test", test)):
            ids = list(range(1, 1 + len(dsc))) if split == "val" else list(range(2, 2 + len(dsc)))
            report.record_scores(run, table, "segmentation", method, split, ids, dsc, [5.0] * len(dsc),
                                 hd95_mm=[10.0] * len(dsc))
    params = {"profile": profile, "seed": 0, "data": {"root": "fetal-mri-cc0", "source": "nifti",
                                                      "spacing_mm": 2.0, "image_size": 48},
              "seg": {"width": 4, "epochs": 5, "lr": 0.001}, "device": "cpu", "threads": 1}
    for nb in ("01", "02", "03", "04", "05", "06", "07"):
        provenance.record(run, nb, params)
        path = run / "provenance" / f"{nb}.json"
        rec = json.loads(path.read_text())
        rec["git"] = {"commit": "a" * 40, "dirty": nb == dirty_notebook}
        path.write_text(json.dumps(rec))
    return run


def shipped_models(tmp_path, **kw):
    run = fake_run(tmp_path)
    out = tmp_path / "models"
    reg = ship.ship(run, out, git=CLEAN, **kw)
    return run, out, reg


def synthetic_stack(folder, name="scan01", shape=(60, 50, 9), spacing=(1.0, 1.1, 3.5)):
    """An anisotropic stack (a bright ellipsoid in a darker body), slice axis last, uint16."""
    idx = np.indices(shape).astype(float)
    mm = [(idx[i] - 0.5 * (shape[i] - 1)) * spacing[i] for i in range(3)]
    brain = sum((mm[i] / r) ** 2 for i, r in enumerate((18.0, 16.0, 12.0))) <= 1
    body = sum((mm[i] / (2.0 * r)) ** 2 for i, r in enumerate((18.0, 16.0, 12.0))) <= 1
    image = np.where(brain, 800.0, np.where(body, 200.0, 0.0)) + np.random.default_rng(0).normal(0, 10, shape)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.nii.gz"
    nib.save(nib.Nifti1Image(np.clip(image, 0, None).astype(np.uint16), np.diag([*spacing, 1.0])), str(path))
    return path


# --------------------------------------------------------------------------- ship
def test_the_weak_model_is_chosen_on_validation_not_test(tmp_path):
    run, out, reg = shipped_models(tmp_path)
    assert reg["aliases"] == {"weak": "SPL", "fullysup": "FullySup"}  # test would have picked UM-CAM+SPL
    card = json.loads((out / "SPL" / "card.json").read_text())
    assert [c["method"] for c in card["candidates"]] == ["SPL", "UM-CAM+SPL", "UM-CAM"]
    rows = ship.segmentation_rows(run)
    spl = rows[rows.method == "SPL"].set_index("split")
    assert card["scores"]["val"]["dsc_mean"] == pytest.approx(spl.loc["val", "dsc_mean"]) == 80.0
    assert card["scores"]["test"]["dsc_mean"] == pytest.approx(spl.loc["test", "dsc_mean"]) == 61.0
    assert card["scores"]["test"]["dsc_min"] == 60.0 and card["scores"]["test"]["hd95_mm_mean"] == 10.0
    assert card["checkpoint"]["epoch"] == 4 and card["checkpoint"]["width"] == 4
    assert card["study"]["trained_in"] == "06" and card["study"]["commit"] == "a" * 40
    assert card["recipe"]["seg"] == {"width": 4, "epochs": 5, "lr": 0.001}
    assert card["training_data"]["split_counts"] == {"train": 1, "val": 1, "test": 2}
    assert "not for clinical use" in card["not_for_clinical_use"] and "warning" not in card
    md = (out / "SPL" / "MODEL_CARD.md").read_text()
    assert "Research use only, not for clinical use" in md and "| test | 2 | 61.00 |" in md
    assert json.loads((out / "FullySup" / "preprocessing.json").read_text()) == {"spacing_mm": 2.0, "image_size": 48}


def test_weights_are_float16_on_disk_and_float32_when_loaded(tmp_path):
    run, out, reg = shipped_models(tmp_path)
    disk = torch.load(out / "SPL" / "best.pt", map_location="cpu", weights_only=True)
    assert disk["dtype"] == "float16" and disk["config"]["width"] == 4
    assert all(t.dtype == torch.float16 for t in disk["model"].values() if t.is_floating_point())
    original = torch.load(run / "seg" / "SPL" / "best.pt", map_location="cpu", weights_only=True)
    assert (out / "SPL" / "best.pt").stat().st_size < 0.65 * (run / "seg" / "SPL" / "best.pt").stat().st_size
    model, info, prep = shipped.load(out, "weak")
    assert info["method"] == "SPL" and prep == {"spacing_mm": 2.0, "image_size": 48}
    assert all(p.dtype == torch.float32 for p in model.parameters())
    ref = build_unet(4).eval()
    ref.load_state_dict(original["model"])
    x = torch.randn(2, 1, 48, 48)
    with torch.no_grad():
        diff = (model(x).softmax(1) - ref(x).softmax(1)).abs().max().item()
    assert 0 < diff < 1e-2  # float16 rounding, no more


def test_registry_lists_every_file_with_its_hash(tmp_path):
    _, out, reg = shipped_models(tmp_path)
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and p.name != "registry.json")
    assert sorted(reg["files"]) == files and len(files) == 8
    for rel, entry in reg["files"].items():
        assert entry["sha256"] == sha256(out / rel) and entry["bytes"] == (out / rel).stat().st_size
    assert json.loads((out / "registry.json").read_text()) == json.loads(json.dumps(reg))


def test_a_tampered_or_missing_file_is_refused_by_name(tmp_path, capsys):
    _, out, _ = shipped_models(tmp_path)
    shipped.verify(out)
    ckpt = out / "SPL" / "best.pt"
    data = bytearray(ckpt.read_bytes())
    data[len(data) // 2] ^= 0xFF
    ckpt.write_bytes(bytes(data))
    with pytest.raises(shipped.ShippedModelError, match=r"SPL/best\.pt: SHA-256 .* differs") as err:
        shipped.load(out, "weak")
    assert "python -m umcam_lib.segment.ship runs/real" in str(err.value)
    shipped.load(out, "fullysup")  # the other model's files are intact
    (out / "FullySup" / "preprocessing.json").unlink()
    with pytest.raises(shipped.ShippedModelError, match=r"FullySup/preprocessing\.json: missing"):
        shipped.load(out, "fullysup")
    img = synthetic_stack(tmp_path / "scans")
    assert sg.main([str(img), "--out", str(tmp_path / "masks"), "--models", str(out), "--quiet"]) == 1
    assert "best.pt: SHA-256" in capsys.readouterr().err and not (tmp_path / "masks").exists()
    with pytest.raises(shipped.ShippedModelError, match="no shipped-model registry"):
        shipped.load(tmp_path / "nowhere")


def test_dirty_tree_dirty_run_and_other_profiles_are_refused(tmp_path):
    run = fake_run(tmp_path / "a", dirty_notebook="06")
    with pytest.raises(ship.ShipError, match="uncommitted changes"):
        ship.ship(run, tmp_path / "m0", git={"commit": "b" * 40, "dirty": True, "changed": ["umcam_lib/x.py"]})
    with pytest.raises(ship.ShipError, match=r"dirty: true .* notebook\(s\) 06"):
        ship.ship(run, tmp_path / "m1", git=CLEAN)
    assert not (tmp_path / "m1").exists()
    ship.ship(run, tmp_path / "m2", git=CLEAN, allow_dirty=True)  # loudly
    card = json.loads((tmp_path / "m2" / "SPL" / "card.json").read_text())
    assert "NOT REPRODUCIBLE" in card["warning"] and "06" in card["warning"]
    assert "NOT REPRODUCIBLE" in (tmp_path / "m2" / "SPL" / "MODEL_CARD.md").read_text().splitlines()[2]
    tiny = fake_run(tmp_path / "b", profile="tiny")
    with pytest.raises(ship.ShipError, match="profile 'tiny'"):
        ship.ship(tiny, tmp_path / "m3", git=CLEAN)
    ship.ship(tiny, tmp_path / "m3", git=CLEAN, any_profile=True)


def test_a_real_dirty_git_tree_is_refused(tmp_path):
    """The git state comes from the checkout (umcam_lib.provenance.git_state): a modified tracked
    file refuses; changes inside the output folder do not count."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    (repo / "a.py").write_text("x = 1\n")
    (repo / "models").mkdir()
    (repo / "models" / "registry.json").write_text("{}\n")
    subprocess.run([*git, "add", "a.py", "models/registry.json"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "init"], check=True)
    run = fake_run(tmp_path / "r")
    (repo / "models" / "registry.json").write_text("{ }\n")  # the output folder: does not count
    ship.ship(run, repo / "models", repo=repo)
    (repo / "a.py").write_text("x = 2\n")
    with pytest.raises(ship.ShipError, match=r"uncommitted changes \(a\.py\)"):
        ship.ship(run, repo / "models", repo=repo)


# --------------------------------------------------------------------------- segment without a run folder
def test_segment_uses_the_shipped_models_without_a_run_folder(tmp_path, capsys):
    run, out, _ = shipped_models(tmp_path)
    scans = tmp_path / "my_scans"
    synthetic_stack(scans)
    synthetic_stack(scans / "b", name="scan02", shape=(50, 56, 7))
    masks = tmp_path / "masks"
    assert sg.main([str(scans), "--out", str(masks), "--models", str(out), "--quiet", "--device", "cpu"]) == 0
    m1, m2 = masks / "scan01_desc-spl_mask.nii.gz", masks / "b" / "scan02_desc-spl_mask.nii.gz"
    assert m1.is_file() and m2.is_file()
    assert nib.load(str(m2)).shape == (50, 56, 7) and nib.load(str(m1)).get_data_dtype() == np.uint8
    rec = json.loads((masks / "segment_desc-spl.json").read_text())
    assert rec["method"] == "SPL" and rec["run_dir"] is None and rec["models_dir"] == str(out)
    assert rec["image_size"] == 48 and rec["spacing_mm"] == 2.0

    # --model fullysup; --list shows both, verified
    assert sg.main([str(scans / "b"), "--out", str(tmp_path / "m2"), "--models", str(out), "--model", "fullysup",
                    "--quiet", "--no-qc"]) == 0
    assert (tmp_path / "m2" / "scan02_desc-fullysup_mask.nii.gz").is_file()
    capsys.readouterr()
    assert sg.main(["--list", "--models", str(out)]) == 0
    listed = capsys.readouterr().out
    assert "registry.json verified" in listed and "weak" in listed and "SPL" in listed and "FullySup" in listed

    # the run folder still works, detected as the first argument or named with --run
    assert sg.main([str(run), str(scans / "b"), "--out", str(tmp_path / "m3"), "--quiet", "--no-qc"]) == 0
    assert (tmp_path / "m3" / "scan02_desc-umcamspl_mask.nii.gz").is_file()
    assert sg.main([str(scans / "b"), "--run", str(run), "--method", "SPL", "--out", str(tmp_path / "m4"),
                    "--quiet", "--no-qc"]) == 0
    assert json.loads((tmp_path / "m4" / "segment_desc-spl.json").read_text())["run_dir"] == str(run)

    # an unknown shipped model names what is shipped
    capsys.readouterr()
    assert sg.main([str(scans / "b"), "--out", str(tmp_path / "m5"), "--models", str(out), "--model", "DRS"]) == 1
    assert "no shipped model 'DRS'" in capsys.readouterr().err


def test_a_chosen_model_without_checkpoint_is_refused_before_anything_is_written(tmp_path):
    run = fake_run(tmp_path)
    (run / "seg" / "SPL" / "best.pt").unlink()  # validation chose SPL
    with pytest.raises(ship.ShipError, match="no trained UNet for SPL, chosen as 'weak'"):
        ship.ship(run, tmp_path / "models", git=CLEAN)
    assert not (tmp_path / "models").exists()
    assert ship.main([str(run), "--out", str(tmp_path / "models"), "--allow-dirty"]) == 1


def test_keep_ships_one_alias_and_leaves_the_other_byte_for_byte(tmp_path):
    run, out, first = shipped_models(tmp_path)
    weak_files = {r: e for r, e in first["files"].items() if r.startswith("SPL/")}
    (run / "seg" / "SPL" / "best.pt").unlink()  # the kept model's source is not needed again
    reg = ship.ship(run, out, git=CLEAN, keep=["weak"])
    assert reg["aliases"] == {"weak": "SPL", "fullysup": "FullySup"}
    assert {r: e for r, e in reg["files"].items() if r.startswith("SPL/")} == weak_files
    assert reg["kept"] == {"weak": {"source_run": first["source_run"], "shipped_by": first["shipped_by"]}}
    assert reg["shipped_by"]["command"].endswith("--keep weak")
    shipped.verify(out)
    again = ship.ship(run, out, git=CLEAN, keep=["weak"])  # kept twice: the first origin stays
    assert again["kept"] == reg["kept"]
    (out / "SPL" / "card.json").write_text("{}")
    with pytest.raises(ship.ShipError, match="card.json is missing or differs from the registry"):
        ship.ship(run, out, git=CLEAN, keep=["weak"])
    with pytest.raises(ship.ShipError, match="nothing would be shipped"):
        ship.ship(run, out, git=CLEAN, keep=["weak", "fullysup"])
    with pytest.raises(ship.ShipError, match="no shipped 'weak' model to keep"):
        ship.ship(run, tmp_path / "empty", git=CLEAN, keep=["weak"])
    assert ship.main([str(run), "--out", str(tmp_path / "empty"), "--keep", "weak"]) == 1
