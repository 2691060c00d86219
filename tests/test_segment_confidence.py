"""segment's trust signals without a reference (umcam_lib.segment.confidence), the QC page's review
order and its pictures, and --fast."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from umcam_lib import segment as sg
from umcam_lib.segment import confidence as sc
from umcam_lib.segment import qc as sq

from test_segment import Bright, fake_run, make_stack, segment_with


def ball(shape=(40, 40, 10), r=8.0) -> np.ndarray:
    idx = np.indices(shape).astype(float)
    c = [(s - 1) / 2 for s in shape]
    return (((idx[0] - c[0]) ** 2 + (idx[1] - c[1]) ** 2) / r ** 2 + ((idx[2] - c[2]) / 4) ** 2 <= 1).astype(np.uint8)


def test_boundary_confidence_separates_a_sure_model_from_a_guessing_one():
    m = ball()
    dist_in = np.where(m > 0, 1.0, 0.0)
    sure = np.clip(0.5 + 0.49 * (2 * dist_in - 1), 0, 1)            # 0.99 inside, 0.01 outside
    unsure = np.where(m > 0, 0.55, 0.45)                            # barely past the threshold
    assert sc.boundary_confidence(sure, m) == pytest.approx(0.99)
    assert sc.boundary_confidence(unsure, m) == pytest.approx(0.55)
    # only the boundary counts: a confident edge around an unsure core is confident
    edge_sure = np.where(m > 0, 0.6, 0.0)
    inner = ndimage.binary_erosion(m, structure=np.ones((3, 3, 1), bool))
    edge_sure[m.astype(bool) & ~inner] = 0.95
    assert sc.boundary_confidence(edge_sure, m) > 0.9
    assert sc.boundary_confidence(sure, np.zeros_like(m)) == 0.0
    with pytest.raises(ValueError, match="shape"):
        sc.boundary_confidence(sure[:-1], m)


def test_largest_share_and_flags():
    m = ball()
    assert sc.largest_share(m) == 1.0 and sc.largest_share(np.zeros_like(m)) == 0.0
    islands = m.copy()
    islands[:6, :6, :] = 1                                            # a second piece of 360 voxels
    assert sc.largest_share(islands) == pytest.approx(m.sum() / islands.sum())
    assert sc.stack_flags(150.0, 1.0, False) == []
    assert sc.stack_flags(12.0, 1.0, False) == ["volume 12 mL below 40"]
    assert sc.stack_flags(900.0, 0.5, False) == ["volume 900 mL above 500", "fragmented (50 % in the largest piece)"]
    assert sc.stack_flags(0.0, 0.0, True) == ["empty mask"]


def test_low_outliers_are_robust_and_need_a_batch():
    assert not sc.low_outliers([0.9, 0.1, 0.9]).any()               # three stacks: no batch to compare with
    v = [0.93, 0.95, 0.94, 0.96, 0.92, 0.60, 0.97]
    assert sc.low_outliers(v).tolist() == [False] * 5 + [True, False]
    assert sc.low_outliers([0.9, 0.9, 0.9, 0.9, 0.8]).tolist() == [False] * 4 + [True]   # MAD 0
    assert not sc.low_outliers([0.9, np.nan, 0.9, 0.9, 0.9]).any()
    flags = sc.flag_batch(v, [150] * 7, [1.0] * 7, [False] * 7)
    assert flags[5].startswith("low confidence (0.60") and sum(bool(f) for f in flags) == 1


def test_review_order_puts_flagged_then_least_confident_first():
    s = pd.DataFrame({"image": list("abcde"), "confidence": [0.95, 0.80, np.nan, 0.90, 0.97],
                      "qc_flags": ["", "", "empty mask", "", "volume 900 mL above 500"]})
    assert sq.review_order(s).image.tolist() == ["e", "c", "b", "d", "a"]


def test_segment_records_confidence_and_the_page_lists_the_flagged_stack_first(tmp_path):
    imgs = [make_stack(tmp_path / "in", name=f"sub-0{i}_run-1_T2w", seed=i)[0] for i in (1, 2)]
    s = segment_with(Bright(), tmp_path, imgs, tmp_path / "out", progress=False)
    assert list(s.columns) == sg.SCORE_COLUMNS
    assert (s.confidence > 0.5).all() and (s.confidence <= 1).all() and (s.largest_share > 0).all()
    # the synthetic brains are ~25 mL: below the range of fetal brains, so both are flagged
    assert all("below 40" in f for f in s.qc_flags)
    csv = pd.read_csv(tmp_path / "out" / "scores_desc-brain.csv")
    np.testing.assert_allclose(csv.confidence, s.confidence, atol=1e-4)
    page = (tmp_path / "out" / "report_desc-brain.html").read_text()
    assert "2 flagged for a look" in page and "confidence" in page
    first = s.sort_values("confidence").image.iloc[0]
    rows = page.split("<tr>")[2:]
    assert Path(first).name in rows[0]


def test_qc_pictures_show_up_to_twelve_large_panels():
    m = np.zeros((60, 60, 20), np.uint8)
    m[15:45, 18:42, 2:18] = 1                                       # brain in 16 slices
    img = m * 800.0 + 100.0
    fig = sq.qc_figure(img, m, (1.0, 1.0), title="t")
    axes = [a for a in fig.axes if a.images]
    assert len(axes) == 12 and len(sq.qc_slices(m)) == 12
    w, h = fig.get_size_inches() * 90
    assert w >= 1500 and h >= 500                                   # at write_qc's 90 dpi: two rows of six
    few = np.zeros_like(m)
    few[20:40, 20:40, 8:11] = 1
    assert len([a for a in sq.qc_figure(img, few, (1.0, 1.0)).axes if a.images]) == 3


def test_fast_turns_tta_off_and_refuses_tta_on(tmp_path, capsys):
    run = fake_run(tmp_path)
    img, _, _ = make_stack(tmp_path / "in")
    with pytest.raises(SystemExit):
        sg.main([str(run), str(img), "--out", str(tmp_path / "f"), "--fast", "--tta", "on", "--quiet"])
    assert "--fast" in capsys.readouterr().err
    assert sg.main([str(run), str(img), "--out", str(tmp_path / "f"), "--fast", "--quiet", "--device", "cpu"]) == 0
    assert json.loads(next((tmp_path / "f").glob("segment_desc-*.json")).read_text())["tta"] is False
    assert sg.main([str(run), str(img), "--out", str(tmp_path / "t"), "--tta", "on", "--quiet", "--device", "cpu"]) == 0
    assert json.loads(next((tmp_path / "t").glob("segment_desc-*.json")).read_text())["tta"] is True


def test_tta_views_choose_the_averaged_views_and_are_recorded(tmp_path, capsys, monkeypatch):
    from umcam_lib.train import seg_predict
    run = fake_run(tmp_path)
    img, _, _ = make_stack(tmp_path / "in")
    seen = []
    real = seg_predict.dihedral_average
    monkeypatch.setattr(seg_predict, "dihedral_average", lambda p, x, views="d8": seen.append(views) or real(p, x, views))
    record = {}
    for views in ("flip2", "rot4"):
        assert sg.main([str(run), str(img), "--out", str(tmp_path / views), "--tta", "on", "--tta-views", views,
                        "--quiet", "--device", "cpu", "--no-qc"]) == 0
        record[views] = json.loads(next((tmp_path / views).glob("segment_desc-*.json")).read_text())
    assert seen == ["flip2", "rot4"] and [r["tta_views"] for r in record.values()] == ["flip2", "rot4"]
    assert sg.main([str(run), str(img), "--out", str(tmp_path / "off"), "--fast", "--quiet", "--device", "cpu",
                    "--no-qc"]) == 0
    assert json.loads(next((tmp_path / "off").glob("segment_desc-*.json")).read_text())["tta_views"] is None
    with pytest.raises(SystemExit):
        sg.main([str(run), str(img), "--out", str(tmp_path / "bad"), "--tta-views", "d4", "--quiet"])
    assert "--tta-views" in capsys.readouterr().err and not (tmp_path / "bad").exists()
    with pytest.raises(ValueError, match="--tta-views must be one of"):
        sg.segment(run, [img], tmp_path / "bad", method="FullySup", device="cpu", tta_views="all", progress=False)
