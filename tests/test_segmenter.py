"""python -m umcam_lib.segment.segmenter: one UNet for segment alone (select, then refit on train +
validation), its held-out scores, its refusals, and python -m umcam_lib.segment.ship --segmenter."""
from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from umcam_lib import provenance
from umcam_lib.segment import ship, shipped
from umcam_lib.config import ParameterError
from umcam_lib.io import write_json
from umcam_lib.segment import segmenter as so

from conftest import SEG_CFG, fake_slices, write_upstream

CLEAN = {"commit": "0" * 40, "dirty": False, "changed": []}


@pytest.fixture()
def run(tmp_path):
    """A run folder with notebook 01's slices, 03-05's maps and provenance 01-06 (06 records the
    seg section, a width-2 UNet for two epochs)."""
    s = fake_slices()
    s.volumes["name"] = [f"sub-{v:02d}_run-1_T2w" for v in s.volumes["volume"]]
    s.volumes["positive_slices"] = 4
    run = tmp_path / "run"
    run.mkdir()
    write_upstream(run, s)
    write_json(run / "data" / "fingerprint.json", {"data": {"spacing_mm": 2.0, "image_size": 32}, "version": 2})
    params = {"profile": "tiny", "seed": 0, "amp": False, "threads": 1, "device": "cpu",
              "data": {"root": None, "source": "synthetic", "spacing_mm": 2.0, "image_size": 32}}
    for nb in ("01", "02", "03", "04", "05", "06"):
        provenance.record(run, nb, {**params, **({"seg": SEG_CFG} if nb == "06" else {})})
        path = run / "provenance" / f"{nb}.json"
        rec = json.loads(path.read_text())
        rec["git"] = {"commit": "a" * 40, "dirty": False}
        path.write_text(json.dumps(rec))
    return run


def trained(run, name, *args, **kw) -> dict:
    """:func:`so.train_segmenter`, its summary then recording a known clean commit (as CI's checkout)."""
    summary = so.train_segmenter(run, name, *args, progress=False, **kw)
    path = so.segmenter_dir(run, name) / "summary.json"
    summary["git"] = {"commit": "c" * 40, "dirty": False}
    path.write_text(json.dumps(summary))
    return summary


def test_select_then_refit_hold_out_what_they_say(run):
    sel = so.train_segmenter(run, "fs", "FullySup", ["epochs=3"], seed=0, progress=False)
    folder = so.segmenter_dir(run, "fs")
    assert (folder / "best.pt").is_file() and (folder / "summary.json").is_file()
    assert sel["stage"] == "select" and sel["epochs_trained"] == 3 and 1 <= sel["best_epoch"] <= 3
    assert set(sel["scores"]) == {"val", "test"} and sel["scores_in_training"] == {}
    assert sel["seg"]["epochs"] == 3 and sel["seg"]["width"] == SEG_CFG["width"]  # the run's section, changed
    assert sel["trained_on"] == ["sub-00_run-1_T2w", "sub-01_run-1_T2w"]
    scores = pd.read_csv(folder / "scores.csv")
    assert list(scores["split"]) == ["val", "test"] and not scores["in_training"].any()
    assert sel["scores"]["test"]["dsc_mean"] == pytest.approx(scores.loc[scores.split == "test", "dsc"].mean())

    ref = so.train_segmenter(run, "fs-refit", refit="fs", seed=0, progress=False)
    assert ref["stage"] == "refit" and ref["method"] == "FullySup"
    assert ref["epochs_trained"] == sel["best_epoch"] == ref["best_epoch"]  # the last of the chosen count
    assert ref["trained_on"] == ["sub-00_run-1_T2w", "sub-01_run-1_T2w", "sub-02_run-1_T2w"]  # + validation
    assert set(ref["scores"]) == {"test"} and set(ref["scores_in_training"]) == {"val"}
    assert ref["seg"]["patience"] is None and ref["epochs_from"] == {"model": "fs", "best_epoch": sel["best_epoch"]}


def test_bad_requests_name_what_is_wrong_and_leave_no_summary(run):
    with pytest.raises(ParameterError, match="wdth"):
        so.train_segmenter(run, "x", "FullySup", ["wdth=16"], progress=False)
    with pytest.raises(ParameterError, match="--method"):
        so.train_segmenter(run, "x", "UMCAM", progress=False)
    with pytest.raises(FileNotFoundError, match="segmenter 'nothing' was not trained"):
        so.train_segmenter(run, "x", refit="nothing", progress=False)
    with pytest.raises(ParameterError, match="plain folder name"):
        so.segmenter_dir(run, "../escape")
    assert not (run / "segmenter" / "x" / "summary.json").exists()
    assert so.main([str(run), "x", "--set", "wdth=16"]) == 1


def test_refit_of_a_refit_is_refused(run):
    so.train_segmenter(run, "a", "FullySup", ["epochs=1"], progress=False)
    so.train_segmenter(run, "b", refit="a", progress=False)
    with pytest.raises(ParameterError, match="refit a select one"):
        so.train_segmenter(run, "c", refit="b", progress=False)


def test_ship_takes_segment_only_unets_and_their_held_out_scores(run, tmp_path):
    trained(run, "fs", "FullySup", ["epochs=2"])
    ref = trained(run, "fs-refit", refit="fs")
    weak = trained(run, "um", "UM-CAM+SPL", ["epochs=2"])
    out = tmp_path / "models"
    with pytest.raises(ship.ShipError, match="cannot be shipped as 'fullysup'"):
        ship.ship(run, out, git=CLEAN, any_profile=True, segmenters={"fullysup": "um", "weak": "fs"})
    reg = ship.ship(run, out, git=CLEAN, any_profile=True, segmenters={"fullysup": "fs-refit", "weak": "um"})
    assert reg["aliases"] == {"weak": "UM-CAM+SPL", "fullysup": "FullySup"}
    assert "--segmenter fullysup=fs-refit --segmenter weak=um" in reg["shipped_by"]["command"]
    shipped.verify(out)
    card = json.loads((out / "FullySup" / "card.json").read_text())
    assert card["scores"] == json.loads(json.dumps(ref["scores"])) and "val" not in card["scores"]
    assert "only the test stacks are held out" in card["chosen_by"]
    splits = {v["name"]: v["split"] for v in card["training_data"]["stacks"]}
    assert splits["sub-02_run-1_T2w"] == "train (refit)" and splits["sub-03_run-1_T2w"] == "test"
    assert card["recipe"]["seg"]["epochs"] == ref["best_epoch"]
    text = (out / "FullySup" / "MODEL_CARD.md").read_text()
    assert "no validation stack held out" in text and "| val |" not in text
    wcard = json.loads((out / "UM-CAM+SPL" / "card.json").read_text())
    assert set(wcard["scores"]) == {"val", "test"}
    assert wcard["scores"]["val"]["dsc_mean"] == pytest.approx(weak["scores"]["val"]["dsc_mean"])
    model, info, prep = shipped.load(out, "fullysup")
    assert isinstance(model, torch.nn.Module) and prep == {"spacing_mm": 2.0, "image_size": 32}


def test_ship_refuses_a_segmenter_trained_from_a_dirty_tree(run, tmp_path):
    trained(run, "fs", "FullySup", ["epochs=1"])
    trained(run, "um", "UM-CAM+SPL", ["epochs=1"])
    path = so.segmenter_dir(run, "um") / "summary.json"
    summary = json.loads(path.read_text())
    summary["git"] = {"commit": "b" * 40, "dirty": True}
    path.write_text(json.dumps(summary))
    with pytest.raises(ship.ShipError, match="segmenter"):
        ship.ship(run, tmp_path / "models", git=CLEAN, any_profile=True, segmenters={"fullysup": "fs", "weak": "um"})


def test_set_accepts_a_schema_key_the_run_did_not_record(run):
    assert "augment_gamma" not in SEG_CFG  # the run's recorded seg section lacks it: it had its default
    summary = so.train_segmenter(run, "g", "FullySup", ["augment_gamma=[0.8, 1.2]", "epochs=1"], progress=False)
    assert summary["seg"]["augment_gamma"] == [0.8, 1.2]


def test_segmenter_seeds_as_tasks_serial_equals_processes_and_resume(run, tmp_path):
    import shutil

    other = tmp_path / "other"
    shutil.copytree(run, other)
    serial = so.train_segmenter_seeds(run, "fs", "FullySup", ["epochs=2"], seeds=[0, 1])
    assert [s["name"] for s in serial] == ["fs-s0", "fs-s1"] and [s["seed"] for s in serial] == [0, 1]
    parallel = so.train_segmenter_seeds(other, "fs", "FullySup", ["epochs=2"], seeds=[0, 1], jobs=2)
    for a, b in zip(serial, parallel):                 # one torch thread per task either way: bit for bit
        assert a["scores"] == b["scores"] and a["best_epoch"] == b["best_epoch"]
        wa = torch.load(so.segmenter_dir(run, a["name"]) / "best.pt", weights_only=True)["model"]
        wb = torch.load(so.segmenter_dir(other, b["name"]) / "best.pt", weights_only=True)["model"]
        assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert serial[0]["scores"] != serial[1]["scores"]  # the seeds differ

    stamp = (so.segmenter_dir(run, "fs-s1") / "best.pt").stat().st_mtime_ns
    again = so.train_segmenter_seeds(run, "fs", "FullySup", ["epochs=2"], seeds=[0, 1])
    assert again == serial and (so.segmenter_dir(run, "fs-s1") / "best.pt").stat().st_mtime_ns == stamp
    changed = so.train_segmenter_seeds(run, "fs", "FullySup", ["epochs=1"], seeds=[1])
    assert changed[0]["epochs_trained"] == 1           # another request retrains

    refits = so.train_segmenter_seeds(run, "fs-refit", refit="fs", seeds=[0, 1])
    assert [r["epochs_from"]["model"] for r in refits] == ["fs-s0", "fs-s1"]
    assert so.main([str(run), "x", "--seeds", "0,0"]) == 1 and so.main([str(run), "x", "--seeds", "a"]) == 1


def test_cards_state_their_scope_and_carry_the_shift_table(run, tmp_path, monkeypatch):
    import functools

    from umcam_lib.segment import synthetic as synth

    monkeypatch.setattr(synth, "synthetic_slices", functools.partial(synth.synthetic_slices, matrix=48))
    trained(run, "fs", "FullySup", ["epochs=1"], synthetic=2)
    trained(run, "um", "UM-CAM+SPL", ["epochs=1"])
    case = {"case": "small brain", "brain_ml": 80.0, "spacing_mm": "0.90x0.90x2.64", "shape": "320x320x22"}
    table = pd.DataFrame([{**case, "model": m, "half": h, "dsc": d}
                          for m, h, d in [("segmenter/fs", "val", 70.0), ("segmenter/fs", "test", 60.0),
                                          ("weak", "val", 50.0), ("weak", "test", 40.0)]])
    csv = tmp_path / "shift.csv"
    table.to_csv(csv, index=False)
    out = tmp_path / "models"
    reg = ship.ship(run, out, git=CLEAN, any_profile=True, segmenters={"fullysup": "fs", "weak": "um"}, shift=csv)
    assert f"--shift {csv}" in reg["shipped_by"]["command"]
    shipped.verify(out)
    card = json.loads((out / "FullySup" / "card.json").read_text())
    syn = card["training_distribution"]["synthetic"]
    assert syn["n_volumes"] == 2 and syn["ranges"]["random_contrast"]
    assert card["training_distribution"]["real"]["n_stacks"] >= 1
    assert any("synthetic stacks" in s for s in card["never_seen"])
    assert card["shift_benchmark"]["model"] == "segmenter/fs"
    assert card["shift_benchmark"]["halves"]["test"] == {"mean": 60.0, "min": 60.0, "n": 1}
    wcard = json.loads((out / "UM-CAM+SPL" / "card.json").read_text())
    assert wcard["training_distribution"]["synthetic"] is None
    assert any("no synthetic stacks were added" in s for s in wcard["never_seen"])
    assert wcard["shift_benchmark"]["model"] == "weak"
    text = (out / "FullySup" / "MODEL_CARD.md").read_text()
    assert "## Never seen" in text and "## Shift benchmark" in text and "| test | small brain |" in text
    # a table without a shipped model's rows, or no table at all, is refused before anything is written
    table[table["model"] == "weak"].to_csv(csv, index=False)
    with pytest.raises(ship.ShipError, match="no rows of segmenter/fs"):
        ship.ship(run, tmp_path / "m2", git=CLEAN, any_profile=True, segmenters={"fullysup": "fs", "weak": "um"},
                  shift=csv)
    with pytest.raises(ship.ShipError, match="no such shift-benchmark table"):
        ship.ship(run, tmp_path / "m3", git=CLEAN, any_profile=True, segmenters={"fullysup": "fs", "weak": "um"},
                  shift=tmp_path / "none.csv")
    assert not (tmp_path / "m3").exists()


def test_a_finished_seed_of_another_library_version_is_retrained_unless_kept(run, monkeypatch, capsys):
    from umcam_lib import provenance
    first = so.train_segmenter_seeds(run, "k", "FullySup", ["epochs=2"], seeds=[0])[0]
    calls = []
    real = so.train_segmenter
    monkeypatch.setattr(so, "train_segmenter", lambda *a, **k: calls.append(a[1]) or real(*a, **k))
    assert so.train_segmenter_seeds(run, "k", "FullySup", ["epochs=2"], seeds=[0])[0] == first  # same code: kept
    monkeypatch.setattr(provenance, "library_fingerprint", lambda: "another version")
    kept = so.train_segmenter_seeds(run, "k", "FullySup", ["epochs=2"], seeds=[0], keep_finished=True)[0]
    assert kept == first and calls == [] and "kept (keep_finished)" in capsys.readouterr().out
    retrained = so.train_segmenter_seeds(run, "k", "FullySup", ["epochs=2"], seeds=[0])[0]
    assert retrained["library"] == "another version" and calls == ["k"]
