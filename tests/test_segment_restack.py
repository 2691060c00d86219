"""Extra training stacks cut from the real ones (umcam_lib.segment.restack): reslicing into the
other planes, tight crops, their labels (the method's own), and segmenter --restack."""
from __future__ import annotations

import numpy as np
import pytest

from umcam_lib.segment import restack as rs
from umcam_lib.segment import segmenter as so
from umcam_lib.train.seg_targets import training_set

from conftest import fake_slices
from test_segmenter import run  # noqa: F401  (the fixture)


def box_stack(s: int = 10, n: int = 40) -> np.ndarray:
    """A (s, n, n) stack holding a box: slices 3-6, rows 10-19, columns 14-29."""
    vol = np.zeros((s, n, n), np.float32)
    vol[3:7, 10:20, 14:30] = 1.0
    return vol


@pytest.mark.parametrize("plane, across, other", [("axis0", (10, 20), (14, 30)), ("axis1", (14, 30), (10, 20))])
def test_reslice_cuts_across_the_named_axis_and_keeps_the_box(plane, across, other):
    vol = box_stack()
    out = rs.reslice(vol, thickness_mm=4.0, spacing_mm=2.0, plane=plane, step=1.0, binary=True)
    assert out.shape[1] == 20 and out.shape[2] == 40          # old slice axis now 10 x 4 mm / 2 mm = 20 rows
    assert set(np.unique(out)) <= {0.0, 1.0}
    present = np.flatnonzero(out.any(axis=(1, 2)))
    centres = np.arange(1.0, 40, 2.0)[present]                  # slab centres (pixels) that hold the box
    assert centres.min() >= across[0] - 1 and centres.max() <= across[1]
    rows = np.flatnonzero(out.any(axis=(0, 2)))
    assert 5 <= rows.min() <= 7 and 13 <= rows.max() <= 14     # slices 3-6 of 4 mm -> rows 6..13 of 2 mm
    cols = np.flatnonzero(out.any(axis=(0, 1)))
    assert cols.min() == other[0] and cols.max() == other[1] - 1


def test_reslice_step_thins_the_slabs_and_bad_planes_are_refused():
    vol = box_stack()
    assert len(rs.reslice(vol, 4.0, 2.0, "axis0", step=2.0)) == 10
    assert len(rs.reslice(vol, 4.0, 2.0, "axis0", step=1.0)) == 20
    with pytest.raises(ValueError, match="plane"):
        rs.reslice(vol, 4.0, 2.0, "axial")
    with pytest.raises(ValueError, match="shape"):
        rs.reslice(vol[0], 4.0, 2.0, "axis0")
    with pytest.raises(ValueError, match="planes"):
        rs.Restack(planes=("axis2",))
    with pytest.raises(ValueError, match="margin"):
        rs.Restack(margin_mm=(5.0, 1.0))


def test_tight_crop_holds_the_box_renormalises_and_pads_with_zeros():
    vol = box_stack()
    image = 0.2 + 0.3 * vol                                       # the crop's range is 0.2 .. 0.5
    out = rs.tight_crop({"image": image, "mask": vol}, vol > 0, margin_px=2, size=40)
    assert out["image"].shape == (10, 40, 40) and out["mask"].sum() == vol.sum()
    assert out["image"].max() == pytest.approx(1.0)             # renormalised to [0, 1]
    inside = np.zeros((40, 40), bool)
    r, c = np.flatnonzero(out["mask"].any(axis=(0, 2))), np.flatnonzero(out["mask"].any(axis=(0, 1)))
    inside[r[0] - 2:r[-1] + 3, c[0] - 2:c[-1] + 3] = True
    assert not out["image"][:, ~inside].any()                   # zeros outside the box + margin
    with pytest.raises(ValueError, match="empty"):
        rs.tight_crop({"image": image}, np.zeros_like(vol, bool), 2, 40)


def test_with_restacks_adds_training_stacks_with_the_methods_own_labels():
    s = fake_slices(n_volumes=4, n_slices=6, size=32)
    rows = s.indices("train", positive_only=True)
    # a "weak" label that is not the mask: each positive slice's mask shifted by 3 pixels
    pseudo = np.roll(s.masks[rows], 3, axis=2).astype(np.float32)
    targets = {"index": rows, "maps": pseudo, "spl": 0.5 * pseudo, "lambda": 0.1}
    both, t2, made = rs.with_restacks(s, targets, rs.Restack(plane_step=1.0, negatives=1))
    for split in ("val", "test"):                               # held-out rows untouched
        np.testing.assert_array_equal(both.indices(split), s.indices(split))
        np.testing.assert_array_equal(both.images[both.indices(split)], s.images[s.indices(split)])
    assert set(made["kind"]) == {"axis0", "axis1", "tight"} and set(made["source"]) == set(s.volume_ids("train"))
    assert both.volumes["volume"].is_unique and len(both.volume_ids("train")) == 2 + len(made)
    new = np.arange(len(s), len(both))
    np.testing.assert_array_equal(both.labels[new], both.masks[new].reshape(len(new), -1).any(1))
    assert t2["lambda"] == 0.1 and t2["maps"].shape == t2["spl"].shape == (len(t2["index"]), 32, 32)
    np.testing.assert_array_equal(t2["index"], both.indices("train", positive_only=True))
    # the new stacks' maps are the resliced pseudo labels, not the mask
    first = s.volume_ids("train")[0]
    src = np.flatnonzero(s.volume == first)
    vol_pseudo = np.zeros((len(src), 32, 32), np.float32)
    for j, r in enumerate(src):
        if r in rows:
            vol_pseudo[j] = pseudo[list(rows).index(r)]
    expect = rs.reslice(vol_pseudo, 5.0, 2.0, "axis0", 1.0, binary=True)
    new_vol = int(s.volumes["volume"].max()) + 1                # the first new stack: volume 0, axis0
    got_rows = np.flatnonzero(both.volume == new_vol)
    pos = got_rows[both.labels[got_rows] == 1]
    got = t2["maps"][np.searchsorted(t2["index"], pos)]
    assert got.sum() > 0 and not np.array_equal(got, both.masks[pos].astype(np.float32))
    keep = rs.brain_range(rs.reslice(s.masks[src].astype(np.float32), 5.0, 2.0, "axis0", 1.0, True).any(axis=(1, 2)), 1)
    np.testing.assert_array_equal(got, rs._fit(expect[keep], 32)[both.labels[got_rows] == 1])
    rows_all, y, y_spl = training_set(both, t2)                 # every positive slice has a label
    assert len(rows_all) == len(both.indices("train")) and y_spl is not None


def test_segmenter_restack_is_recorded_resumed_and_refit(run):  # noqa: F811
    summary = so.train_segmenter(run, "views", "FullySup", ["epochs=1"], restack=True, progress=False)
    rec = summary["restack"]
    assert rec["n_stacks"] == 3 * 2 and rec["n_slices"] > 0 and "--restack" in summary["command"]
    assert sum(n.endswith("-tight") for n in summary["trained_on"]) == 2
    assert so.finished_summary(so.SegmenterTask(str(run), "views", "FullySup", ("epochs=1",), 0, restack=True))
    assert so.finished_summary(so.SegmenterTask(str(run), "views", "FullySup", ("epochs=1",), 0)) is None
    light = rs.Restack(plane_step=4.0, tight=False)             # another recipe is another request
    assert so.finished_summary(so.SegmenterTask(str(run), "views", "FullySup", ("epochs=1",), 0, restack=light)) is None
    assert so.main([str(run), "bad", "--restack-step", "4"]) == 1             # needs --restack
    assert so.main([str(run), "bad", "--restack", "--restack-step", "0"]) == 1  # a step must be > 0
    assert not (run / "segmenter" / "bad" / "summary.json").exists()
    assert so.main([str(run), "light", "--restack", "--restack-step", "4", "--restack-no-tight",
                    "--set", "epochs=1"]) == 0
    rec = so.read_summary(run, "light")
    assert rs.as_recipe(rec["restack"]) == light and rec["restack"]["n_stacks"] == 4
    assert "--restack --restack-step 4 --restack-no-tight" in rec["command"]
    assert so.main([str(run), "tight", "--restack", "--restack-planes", "none", "--set", "epochs=1"]) == 0
    rec = so.read_summary(run, "tight")
    assert rec["restack"]["planes"] == [] and rec["restack"]["n_stacks"] == 2 and "--restack-planes none" in rec["command"]
    refit = so.train_segmenter(run, "views-refit", refit="views", progress=False)
    assert refit["restack"]["n_stacks"] == 3 * 3                # train + validation stacks, each cut three ways
    weak = so.train_segmenter(run, "weak-views", "UM-CAM+SPL", ["epochs=1"], restack=True, progress=False)
    assert weak["restack"]["n_stacks"] == 6 and weak["method"] == "UM-CAM+SPL"


def test_model_card_states_the_restacked_stacks():
    from umcam_lib.segment import card_scope

    data = {"stacks": [{"split": "train", "subject": "sub-01", "thickness_mm": 3.3, "native_spacing_mm": "1.1"}]}
    record = {**vars(rs.Restack()), "n_stacks": 15, "n_slices": 272, "stacks": [{"name": "x-axis0"}]}
    dist = card_scope.training_distribution(data, {"augment": False}, None, record)
    assert dist["restack"]["n_stacks"] == 15 and "stacks" not in dist["restack"]
    lines = card_scope.render_scope({"training_distribution": dist, "never_seen": card_scope.never_seen(dist)})
    assert any("cut from the real stacks: 15 stacks (272 slices), resliced into axis0, axis1" in x for x in lines)
    assert any("reslices of its axial training stacks" in x for x in lines)
    plain = card_scope.training_distribution(data, {"augment": False}, None)
    assert any("no stacks were resliced" in x for x in card_scope.never_seen(plain))
    assert "- cut from the real stacks: none" in card_scope.render_scope(
        {"training_distribution": plain, "never_seen": []})


def test_tight_share_keeps_that_share_of_each_crop_and_is_a_request_of_its_own(run):  # noqa: F811
    assert rs.share_of(12, 0.25).tolist() == [0, 6, 11] and rs.share_of(3, 1.0).tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="tight_share"):
        rs.Restack(tight_share=0.0)
    s = fake_slices(n_volumes=4, n_slices=8, size=32)
    rows = s.indices("train", positive_only=True)
    targets = {"index": rows, "maps": s.masks[rows].astype(np.float32)}
    _, _, full = rs.with_restacks(s, targets, rs.Restack(planes=()))
    both, t2, quarter = rs.with_restacks(s, targets, rs.Restack(planes=(), tight_share=0.25))
    assert full["n_slices"].tolist() == [8, 8] and quarter["n_slices"].tolist() == [2, 2]
    assert quarter["margin_mm"].tolist() == full["margin_mm"].tolist()   # the same crops, fewer of their slices
    np.testing.assert_array_equal(t2["index"], both.indices("train", positive_only=True))
    summary = so.train_segmenter(run, "tq", "FullySup", ["epochs=1"], progress=False,
                                 restack=rs.Restack(planes=(), tight_share=0.25))
    assert summary["restack"]["tight_share"] == 0.25 and "--restack-tight-share 0.25" in summary["command"]
    assert so.finished_summary(so.SegmenterTask(str(run), "tq", "FullySup", ("epochs=1",), 0,
                                                restack=rs.Restack(planes=()))) is None
    assert so.main([str(run), "bad", "--restack-tight-share", "0.5"]) == 1            # needs --restack
    assert so.main([str(run), "bad", "--restack", "--restack-tight-share", "1.5"]) == 1
    assert not (run / "segmenter" / "bad" / "summary.json").exists()
    from umcam_lib.segment import card_scope
    data = {"stacks": [{"split": "train", "subject": "sub-01", "thickness_mm": 3.3, "native_spacing_mm": "1.1"}]}
    dist = card_scope.training_distribution(data, {"augment": False}, None, summary["restack"])
    assert any("25% of each copy's slices" in x for x in card_scope.render_scope({"training_distribution": dist}))
