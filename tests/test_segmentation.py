"""Stage 2: the Eq. 8 loss, training targets, 3D evaluation, and resumable deterministic training."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import SEG_CFG, fake_slices, write_upstream

from umcam_lib import report, scoring
from umcam_lib.data import SliceSet
from umcam_lib.models.unet import build_unet, unet_features
from umcam_lib.train import seg_train
from umcam_lib.train import segmentation as seg
from umcam_lib.train import seg_predict as seg_predict_module

# ----------------------------------------------------------------------------- model
def test_unet_width_scales_features_and_keeps_shape():
    assert unet_features(8) == (8, 8, 16, 32, 64, 8)
    out = build_unet(2)(torch.zeros(3, 1, 32, 32))
    assert out.shape == (3, 2, 32, 32)
    with pytest.raises(ValueError, match="seg.width"):
        unet_features(0)


# ----------------------------------------------------------------------------- loss
def test_eq8_loss_matches_hand_computation_on_a_2x2_image():
    # logits of background / foreground at the four pixels
    bg, fg = [[0.0, 1.0], [2.0, -1.0]], [[1.0, 0.0], [0.5, 1.0]]
    logits = torch.tensor([[bg, fg]])
    y_um = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
    y_spl = torch.tensor([[[0.8, 0.3], [0.6, 0.1]]])

    def ce(target):
        total = 0.0
        for i in range(2):
            for j in range(2):
                p_fg = math.exp(fg[i][j]) / (math.exp(fg[i][j]) + math.exp(bg[i][j]))
                y = target[i][j]
                total += -(y * math.log(p_fg) + (1 - y) * math.log(1 - p_fg))
        return total / 4

    expected = ce([[1, 0], [1, 0]]) + 0.1 * ce([[0.8, 0.3], [0.6, 0.1]])
    assert seg.eq8_loss(logits, y_um, y_spl, lamb=0.1).item() == pytest.approx(expected, rel=1e-6)
    assert seg.eq8_loss(logits, y_um, None, lamb=0.1).item() == pytest.approx(ce([[1, 0], [1, 0]]), rel=1e-6)


def test_hard_label_option_thresholds_at_one_half():
    logits = torch.randn(2, 2, 3, 3, generator=torch.Generator().manual_seed(0))
    soft = torch.tensor([0.2, 0.5, 0.7]).repeat(2, 3, 1)
    hard = (soft >= 0.5).float()
    assert seg.eq8_loss(logits, soft, soft, 0.5, soft=False).item() == pytest.approx(
        seg.eq8_loss(logits, hard, hard, 0.5, soft=True).item(), rel=1e-6)
    assert seg.eq8_loss(logits, soft, soft, 0.5, soft=False).item() != pytest.approx(
        seg.eq8_loss(logits, soft, soft, 0.5, soft=True).item(), rel=1e-3)


# ----------------------------------------------------------------------------- targets
def test_training_set_uses_background_for_negatives_and_rejects_missing_positives():
    s = fake_slices()
    rows = s.indices("train")
    pos = s.indices("train", positive_only=True)
    # targets on ALL training rows, with ones everywhere: negatives must still become background
    targets = {"index": rows, "maps": np.ones((len(rows), 32, 32), np.float32),
               "spl": np.full((len(rows), 32, 32), 0.4, np.float32)}
    out_rows, y, y_spl = seg.training_set(s, targets, soft=True)
    assert np.array_equal(out_rows, rows)
    neg = s.labels[rows] == 0
    assert neg.any() and y[neg].max() == 0 and y[~neg].min() == 1
    assert np.allclose(y_spl[~neg], 0.4) and y_spl[neg].max() == 0
    _, _, hard_spl = seg.training_set(s, targets, soft=False)
    assert hard_spl.max() == 0  # 0.4 < 0.5
    with pytest.raises(ValueError, match="positive training slices"):
        seg.training_set(s, {"index": pos[1:], "maps": np.ones((len(pos) - 1, 32, 32))})


def test_variant_targets_threshold_cams_and_fall_back_to_umcam_without_spl(tmp_path):
    s = fake_slices()
    write_upstream(tmp_path, s)
    pos = s.indices("train", positive_only=True)
    um = seg.variant_targets("UM-CAM", s, tmp_path, SEG_CFG)
    assert np.array_equal(um["maps"], s.masks[pos].astype(np.float32))
    both = seg.variant_targets("UM-CAM+SPL", s, tmp_path, SEG_CFG)
    assert both["lambda"] == 0.1 and both["n_fallback"] == 1
    assert np.array_equal(both["spl"][0], s.masks[pos[0]].astype(np.float32))  # the stand-in
    assert np.allclose(both["spl"][1:], 0.25)
    full = seg.variant_targets("FullySup", s, tmp_path, SEG_CFG)
    assert np.array_equal(full["maps"], s.masks[pos])
    with pytest.raises(ValueError, match="unknown segmentation variant"):
        seg.variant_targets("UMCAM", s, tmp_path, SEG_CFG)


# ----------------------------------------------------------------------------- 3D evaluation
def test_score_volume_on_offset_cubes_uses_slice_thickness_through_plane():
    gt = np.zeros((8, 10, 10), bool)
    gt[2:6, 2:6, 2:6] = True
    in_plane = np.roll(gt, 1, axis=2)
    through = np.roll(gt, 1, axis=0)
    a = scoring.score_volume(in_plane, gt, spacing_mm=2.0, thickness_mm=5.0)
    b = scoring.score_volume(through, gt, spacing_mm=2.0, thickness_mm=5.0)
    assert a["dsc"] == pytest.approx(75.0) and b["dsc"] == pytest.approx(75.0)
    assert a["hd95"] == pytest.approx(1.0) and b["hd95"] == pytest.approx(1.0)
    assert a["hd95_mm"] == pytest.approx(2.0) and b["hd95_mm"] == pytest.approx(5.0)


def test_evaluate_volumes_scores_empty_predictions_and_requires_every_slice():
    s = fake_slices()
    rows = scoring.split_rows(s, "test")
    empty = np.zeros((len(rows), 32, 32), bool)
    df = scoring.evaluate_volumes(s, "test", rows, empty)
    assert len(df) == 1 and df["dsc"].iloc[0] == 0.0
    n = len(rows)
    assert df["hd95"].iloc[0] == pytest.approx(math.sqrt(n * n + 32 * 32 + 32 * 32))
    assert df["hd95_mm"].iloc[0] == pytest.approx(math.sqrt((5 * n) ** 2 + 2 * 64 ** 2))
    # a volume with no brain at all, predicted empty: perfect, not dropped
    s.masks[rows] = 0
    df = scoring.evaluate_volumes(s, "test", rows, empty)
    assert df["dsc"].iloc[0] == 100.0 and df["hd95"].iloc[0] == 0.0
    with pytest.raises(ValueError, match="every slice must be predicted"):
        scoring.evaluate_volumes(s, "test", rows[1:], empty[1:])


def test_evaluate_volumes_stacks_slices_in_stack_order():
    s = fake_slices()
    rows = scoring.split_rows(s, "val")
    assert list(s.slice_index[rows]) == sorted(s.slice_index[rows])
    shuffled = rows[::-1]
    df = scoring.evaluate_volumes(s, "val", shuffled, s.masks[shuffled])
    assert df["dsc"].iloc[0] == 100.0


# ----------------------------------------------------------------------------- training
def _targets(s: SliceSet) -> dict:
    pos = s.indices("train", positive_only=True)
    return {"index": pos, "maps": s.masks[pos].astype(np.float32)}


def _weights(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().cpu().clone() for p in model.state_dict().values()]


def test_training_is_deterministic_and_resumes_after_interruption(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    s = fake_slices()
    a = seg.train_variant("A", s, _targets(s), SEG_CFG, tmp_path, device="cpu", seed=3, progress=False)
    b = seg.train_variant("B", s, _targets(s), SEG_CFG, tmp_path, device="cpu", seed=3, progress=False)
    assert all(torch.equal(x, y) for x, y in zip(_weights(a), _weights(b)))
    hist = pd.read_csv(tmp_path / "seg" / "A" / "history.csv")
    assert list(hist["epoch"]) == [1, 2] and hist["val_dsc"].notna().all()

    real_save = seg_train.save_last

    def save_then_stop(*args, **kwargs):
        real_save(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(seg_train, "save_last", save_then_stop)  # the loop's module
    with pytest.raises(KeyboardInterrupt):
        seg.train_variant("C", s, _targets(s), SEG_CFG, tmp_path, device="cpu", seed=3, progress=False)
    monkeypatch.setattr(seg_train, "save_last", real_save)
    assert len(pd.read_csv(tmp_path / "seg" / "C" / "history.csv")) == 1
    c = seg.train_variant("C", s, _targets(s), SEG_CFG, tmp_path, device="cpu", seed=3, progress=False)
    assert len(pd.read_csv(tmp_path / "seg" / "C" / "history.csv")) == 2
    # best.pt of C was chosen over both epochs, exactly as for the uninterrupted run A
    assert all(torch.equal(x, y) for x, y in zip(_weights(a), _weights(c)))


def test_a_companion_runs_training_is_taken_over_not_repeated(tmp_path, monkeypatch, capsys):
    """Issue 19: the same UNet (settings, targets, code) trained in a companion run is continued, not retrained."""
    from umcam_lib import pipeline
    from umcam_lib.train import common
    assert pipeline.DONORS_ENV == common.DONORS_ENV
    torch.set_num_threads(1)
    s = fake_slices()
    donor_run, run = tmp_path / "companion", tmp_path / "main"
    a = seg.train_variant("FullySup", s, _targets(s), SEG_CFG, donor_run, device="cpu", seed=3, progress=False)
    monkeypatch.setenv(common.DONORS_ENV, str(donor_run))
    real_save = seg_train.save_last
    saves = []
    monkeypatch.setattr(seg_train, "save_last", lambda *args, **kw: saves.append(1) or real_save(*args, **kw))
    b = seg.train_variant("FullySup", s, _targets(s), SEG_CFG, run, device="cpu", seed=3, progress=False)
    assert not saves, "a finished companion training ran epochs again"
    assert "continuing from its checkpoints" in capsys.readouterr().out
    assert all(torch.equal(x, y) for x, y in zip(_weights(a), _weights(b)))
    assert (run / "seg" / "FullySup" / "history.csv").read_text() == \
        (donor_run / "seg" / "FullySup" / "history.csv").read_text()
    # another seed (or recipe, or targets) is not the same training: it trains
    seg.train_variant("FullySup", s, _targets(s), SEG_CFG, tmp_path / "other", device="cpu", seed=4, progress=False)
    assert saves
    saves.clear()
    c = seg.train_variant("FullySup", s, _targets(s), {**SEG_CFG, "lr": 0.02}, tmp_path / "third", device="cpu",
                          seed=3, progress=False)
    assert len(saves) == SEG_CFG["epochs"] and not all(torch.equal(x, y) for x, y in zip(_weights(a), _weights(c)))
    # --force retrains
    saves.clear()
    monkeypatch.setenv(common.FORCE_ENV, "1")
    seg.train_variant("FullySup", s, _targets(s), SEG_CFG, tmp_path / "forced", device="cpu", seed=3, progress=False)
    assert len(saves) == SEG_CFG["epochs"]


def test_train_evaluate_record_writes_table_rows(tmp_path):
    torch.set_num_threads(1)
    s = fake_slices()
    cfg = {**SEG_CFG, "epochs": 1}
    scores = seg.train_evaluate_record("UM-CAM+SPL", s, {**_targets(s), "spl": _targets(s)["maps"]}, cfg,
                                       tmp_path, device="cpu", seed=0, progress=False)
    assert set(scores["split"]) == {"val", "test"} and len(scores) == 2
    assert (tmp_path / "seg" / "UM-CAM+SPL" / "pred_test.npz").is_file()
    rows, probs = seg.load_predictions(tmp_path, "UM-CAM+SPL", "test")
    assert np.array_equal(rows, scoring.split_rows(s, "test")) and probs.shape == (len(rows), 32, 32)
    recorded = report.load_scores(tmp_path)
    got = set(map(tuple, recorded[["table", "section", "method", "split"]].to_numpy()))
    assert got == {(t, "segmentation", "UM-CAM+SPL", sp) for t in ("table1", "table2") for sp in ("val", "test")}
    assert np.allclose(sorted(recorded["dsc"]), sorted(np.repeat(scores["dsc"].to_numpy(), 2)))


def test_check_seg_config_fills_defaults_from_the_schema_and_names_bad_keys():
    from umcam_lib.config import ParameterError, default

    assert seg.check_seg_config({k: v for k, v in SEG_CFG.items() if k != "lambda_spl"})["lambda_spl"] == \
        default("seg.lambda_spl")
    assert seg.check_seg_config({})["optimizer"] == default("seg.optimizer") == "adamw"  # as params/quick.yaml
    with pytest.raises(ParameterError, match="seg.epochs: must be >= 1"):
        seg.check_seg_config({**SEG_CFG, "epochs": 0})
    with pytest.raises(ParameterError, match=r"seg.optimizer: must be one of 'adamw', 'sgd', got 'adam'"):
        seg.check_seg_config({**SEG_CFG, "optimizer": "adam"})


def test_epoch_order_is_seeded_and_balances_positives_when_asked():
    labels = np.array([1, 0, 0, 0, 0, 0, 0, 0, 1, 0])
    full = seg.epoch_order(labels, seed=0, epoch=0)
    assert sorted(full) == list(range(10))
    assert np.array_equal(full, seg.epoch_order(labels, seed=0, epoch=0))
    assert not np.array_equal(full, seg.epoch_order(labels, seed=0, epoch=1))
    draw = seg.epoch_order(labels, seed=0, epoch=0, take=8, positive_fraction=0.5)
    assert len(draw) == 8 and labels[draw].sum() == 4
    assert set(draw[labels[draw] == 1]) == {0, 8}  # each positive twice: round-robin, not one repeated


def test_oracle_selection_blanks_slices_without_ground_truth():
    s = fake_slices()
    rows = scoring.split_rows(s, "test")
    pred = np.ones((len(rows), 32, 32), bool)
    out = scoring.oracle_selection(s, rows, pred)
    empty = s.masks[rows].reshape(len(rows), -1).max(1) == 0
    assert empty.any() and not out[empty].any() and out[~empty].all()
    full = scoring.evaluate_volumes(s, "test", rows, pred)
    oracle = scoring.evaluate_volumes(s, "test", rows, out)
    assert oracle["dsc"].iloc[0] > full["dsc"].iloc[0]


# ----------------------------------------------------------------------------- issue 9
def test_eq8_readings_swap_the_weighted_label():
    torch.manual_seed(0)
    logits = torch.randn(2, 2, 8, 8)
    y_um, y_spl = (torch.rand(2, 8, 8) > 0.5).float(), torch.rand(2, 8, 8)
    ce = seg.soft_cross_entropy
    assert seg.eq8_loss(logits, y_um, y_spl, 0.3, main="umcam").item() == pytest.approx(
        (ce(logits, y_um) + 0.3 * ce(logits, y_spl)).item(), rel=1e-6)
    assert seg.eq8_loss(logits, y_um, y_spl, 0.3, main="spl").item() == pytest.approx(
        (ce(logits, y_spl) + 0.3 * ce(logits, y_um)).item(), rel=1e-6)
    # one loss up to a scale: reading umcam at lambda == reading spl at 1 / lambda, times lambda
    assert seg.eq8_loss(logits, y_um, y_spl, 4.0, main="umcam").item() == pytest.approx(
        4.0 * seg.eq8_loss(logits, y_um, y_spl, 0.25, main="spl").item(), rel=1e-5)
    assert seg.spl_share(0.1, "umcam") == pytest.approx(1 / 11) and seg.spl_share(0.1, "spl") == pytest.approx(10 / 11)
    with pytest.raises(ValueError, match="loss_main"):
        seg.check_seg_config({**SEG_CFG, "loss_main": "both"})
    with pytest.raises(ValueError, match="postprocess"):
        seg.check_seg_config({**SEG_CFG, "postprocess": "cc"})
    with pytest.raises(ValueError, match="patience"):
        seg.check_seg_config({**SEG_CFG, "patience": 0})


def test_early_stopping_stops_after_patience_and_does_not_resume_past_it(tmp_path):
    torch.set_num_threads(1)
    s = fake_slices()
    cfg = {**SEG_CFG, "epochs": 12, "patience": 1, "lr": 1e-12}  # (almost) no step: the score never improves after epoch 1
    seg.train_variant("ES", s, _targets(s), cfg, tmp_path, device="cpu", seed=1, progress=False)
    hist = pd.read_csv(tmp_path / "seg" / "ES" / "history.csv")
    assert list(hist["epoch"]) == [1, 2]
    assert seg.stale_validations(hist.to_dict("records"), 1) == 1
    seg.train_variant("ES", s, _targets(s), cfg, tmp_path, device="cpu", seed=1, progress=False)  # resumes: stays stopped
    assert len(pd.read_csv(tmp_path / "seg" / "ES" / "history.csv")) == 2
    # a warm-up: no stop before min_epochs
    seg.train_variant("WU", s, _targets(s), {**cfg, "min_epochs": 4}, tmp_path, device="cpu", seed=1, progress=False)
    assert len(pd.read_csv(tmp_path / "seg" / "WU" / "history.csv")) == 4


def test_channels_last_trains_to_the_same_weights_up_to_rounding(tmp_path):
    torch.set_num_threads(1)
    s = fake_slices()
    a = seg.train_variant("A", s, _targets(s), SEG_CFG, tmp_path, device="cpu", seed=3, progress=False)
    b = seg.train_variant("B", s, _targets(s), {**SEG_CFG, "channels_last": True}, tmp_path, device="cpu", seed=3,
                          progress=False)
    assert all(torch.allclose(x.float(), y.float(), atol=1e-4) for x, y in zip(_weights(a), _weights(b)))
    pa = seg.predict_probs(a, s.images[:4])
    pb = seg.predict_probs(b, s.images[:4])
    assert np.allclose(pa, pb, atol=1e-4)


def test_cpu_bf16_autocasts_convolutions_only_where_asked_and_trains_close_to_float32(tmp_path):
    from umcam_lib import runtime
    if not runtime.cpu_bf16_supported():
        pytest.skip("this CPU has no native bfloat16")
    torch.set_num_threads(1)
    conv = torch.nn.Conv2d(1, 2, 3)
    x = torch.rand(1, 1, 8, 8)
    with runtime.autocast(torch.device("cpu"), False, cpu_bf16=True):
        assert conv(x).dtype == torch.bfloat16
    with runtime.autocast(torch.device("cpu"), True):  # amp is CUDA only: float32 on the CPU
        assert conv(x).dtype == torch.float32
    s = fake_slices()
    a = seg.train_variant("A", s, _targets(s), SEG_CFG, tmp_path, device="cpu", seed=3, progress=False)
    b = seg.train_variant("B", s, _targets(s), {**SEG_CFG, "cpu_bf16": True}, tmp_path, device="cpu", seed=3,
                          progress=False)
    wa, wb = _weights(a), _weights(b)
    assert not all(torch.equal(x, y) for x, y in zip(wa, wb))  # it did change the arithmetic
    assert np.abs(seg.predict_probs(a, s.images[:4]) - seg.predict_probs(b, s.images[:4])).max() < 0.1


def test_largest_component_3d_keeps_the_biggest_blob_across_slices():
    vol = np.zeros((4, 10, 10), bool)
    vol[0:3, 2:5, 2:5] = True  # 27 voxels, connected through slices
    vol[3, 8:10, 8:10] = True  # 4 voxels, apart
    out = scoring.largest_component_3d(vol)
    assert out.sum() == 27 and not out[3].any()
    assert not scoring.largest_component_3d(np.zeros((2, 4, 4), bool)).any()
    s = fake_slices()
    rows = scoring.split_rows(s, "test")
    pred = s.masks[rows].astype(bool).copy()
    pred[0, 0, 0] = True  # a false-positive speck on a slice without brain
    raw = scoring.evaluate_volumes(s, "test", rows, pred)
    lcc = scoring.evaluate_volumes(s, "test", rows, pred, postprocess="lcc")
    assert lcc["dsc"].iloc[0] == pytest.approx(100.0) and raw["dsc"].iloc[0] < 100.0


def test_random_patches_cut_images_and_labels_at_the_same_place_and_focus_on_the_label():
    from umcam_lib.train.augment import random_patches
    x = torch.arange(2 * 48 * 48, dtype=torch.float32).reshape(2, 1, 48, 48)
    y = torch.zeros(2, 48, 48)
    y[:, 40:44, 2:6] = 1.0  # a small object in a corner
    gen = torch.Generator().manual_seed(0)
    px, (py, none) = random_patches(x, [y.clone(), None], 16, gen, focus=y, focus_p=1.0)
    assert px.shape == (2, 1, 16, 16) and py.shape == (2, 16, 16) and none is None
    assert (py.sum(dim=(1, 2)) > 0).all()  # every patch centred on the object holds it
    for i in range(2):  # the patch is a window of the slice, the label cut from the same window
        top, left = divmod(int(px[i, 0, 0, 0]) - i * 48 * 48, 48)
        assert torch.equal(px[i, 0], x[i, 0, top:top + 16, left:left + 16])
        assert torch.equal(py[i], y[i, top:top + 16, left:left + 16])
    with pytest.raises(ValueError, match="seg.patch"):
        random_patches(x, [y], 64, gen)


def test_patch_training_runs_and_the_unet_then_predicts_whole_slices(tmp_path):
    torch.set_num_threads(1)
    s = fake_slices(size=64)
    cfg = {**SEG_CFG, "patch": 32}
    model = seg.train_variant("P", s, _targets(s), cfg, tmp_path, device="cpu", seed=0, progress=False)
    assert seg.predict_probs(model, s.images[:3]).shape == (3, 64, 64)
    for bad in (16, 40):
        with pytest.raises(Exception, match="seg.patch"):
            seg.check_seg_config({**SEG_CFG, "patch": bad})


def test_cosine_schedule_anneals_the_learning_rate_and_the_epoch_hook_sees_every_epoch(tmp_path):
    torch.set_num_threads(1)
    s = fake_slices()
    cfg = {**SEG_CFG, "epochs": 4, "lr_schedule": "cosine", "optimizer": "adamw"}
    seen = []
    seg.train_variant("C", s, _targets(s), cfg, tmp_path, device="cpu", seed=0, progress=False,
                      on_epoch=lambda e, m: seen.append((e, m.training)))
    assert seen == [(1, False), (2, False), (3, False), (4, False)]
    lr = torch.load(tmp_path / "seg" / "C" / "last.pt", weights_only=False)["optimizer"]["param_groups"][0]["lr"]
    assert lr == pytest.approx(cfg["lr"] * 0.5 * (1 + math.cos(math.pi * 3 / 4)))  # the last epoch's rate
    with pytest.raises(Exception, match="plateau_decay"):
        seg.train_variant("D", s, _targets(s), {**cfg, "plateau_decay": 0.5}, tmp_path, device="cpu",
                          progress=False)


def test_weight_average_follows_the_ema_formula():
    net = torch.nn.Linear(1, 1, bias=False)
    avg = seg_train.weight_average(net, 0.9)
    seen = []
    for value in (1.0, 3.0, -2.0):
        with torch.no_grad():
            net.weight.fill_(value)
        avg.update_parameters(net)
        seen.append(avg.module.weight.item())
    first = 1.0  # the first update copies the weights
    second = 0.9 * first + 0.1 * 3.0
    assert seen == pytest.approx([first, second, 0.9 * second + 0.1 * -2.0])


def test_ema_keeps_the_average_and_a_resumed_run_continues_it(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    s = fake_slices()
    cfg = {**SEG_CFG, "epochs": 3, "val_every": 99, "ema": 0.9}  # only the last epoch is validated: best = last
    a = seg.train_variant("A", s, _targets(s), cfg, tmp_path, device="cpu", seed=1, progress=False)
    last = torch.load(tmp_path / "seg" / "A" / "last.pt", weights_only=False)
    averaged = {k[len("module."):]: v for k, v in last["average"].items() if k.startswith("module.")}
    kept = a.state_dict()
    assert set(averaged) == set(kept)
    assert all(torch.equal(kept[k], averaged[k]) for k in kept)  # the UNet kept is the average ...
    assert not all(torch.equal(kept[k], last["model"][k]) for k in kept)  # ... not the raw weights

    real_save = seg_train.save_last

    def save_then_stop(*args, **kwargs):
        real_save(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(seg_train, "save_last", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        seg.train_variant("B", s, _targets(s), cfg, tmp_path, device="cpu", seed=1, progress=False)
    monkeypatch.setattr(seg_train, "save_last", real_save)
    b = seg.train_variant("B", s, _targets(s), cfg, tmp_path, device="cpu", seed=1, progress=False)
    assert all(torch.equal(x, y) for x, y in zip(_weights(a), _weights(b)))
    with pytest.raises(Exception, match="seg.ema"):
        seg.check_seg_config({**SEG_CFG, "ema": 1.0})


def test_dihedral_average_maps_every_view_back_and_evaluate_variant_uses_it(tmp_path):
    from umcam_lib.train.seg_predict import dihedral_average
    rng = np.random.default_rng(0)
    images = rng.random((3, 8, 6)).astype(np.float32)  # not square, not symmetric
    views = []

    def identity(x):
        views.append(x.shape)
        return x

    np.testing.assert_allclose(dihedral_average(identity, images), images, rtol=1e-6)  # each view mapped back
    assert len(views) == 8 and {(3, 8, 6), (3, 6, 8)} == set(views)
    column = dihedral_average(lambda x: np.broadcast_to(np.arange(x.shape[2], dtype=np.float32), x.shape), images)
    np.testing.assert_allclose(column, column[:, ::-1, ::-1], rtol=1e-6)  # a position cue averages out symmetrically

    torch.set_num_threads(1)
    s = fake_slices()
    model = seg.train_variant("T", s, _targets(s), SEG_CFG, tmp_path, device="cpu", seed=0, progress=False)
    rows, plain = seg.predict_split(model, s, "test")
    _, averaged = seg.predict_split(model, s, "test", tta=True)
    assert plain.shape == averaged.shape and not np.allclose(plain, averaged)
    scores = seg.evaluate_variant(model, s, "test", "cpu", False, tta=True)
    assert len(scores) == 1 and 0 <= scores["dsc"].iloc[0] <= 100


def test_every_tta_view_set_maps_its_views_back_and_unknown_sets_are_refused():
    from umcam_lib.train.seg_predict import TTA_VIEWS, dihedral_average, from_view, to_view
    rng = np.random.default_rng(1)
    images = rng.random((2, 5, 7)).astype(np.float32)
    for name, views in TTA_VIEWS.items():
        seen = []

        def identity(x):
            seen.append(x.copy())
            return x

        np.testing.assert_allclose(dihedral_average(identity, images, name), images, rtol=1e-6)
        assert len(seen) == len(views) == len(set(views))  # each view once
        assert all(any(np.array_equal(v, to_view(images, k, f)) for v in seen) for k, f in views)
    for k, f in TTA_VIEWS["d8"]:
        assert np.array_equal(from_view(to_view(images, k, f), k, f), images)
    # the subsets are subgroups of d8, and d8 holds 8 distinct views of a non-symmetric slice
    assert all(set(v) <= set(TTA_VIEWS["d8"]) for v in TTA_VIEWS.values())
    assert len({to_view(images, k, f).tobytes() for k, f in TTA_VIEWS["d8"]}) == 8
    # a position cue along the width averages to a left-right symmetric map over flip2, to one
    # invariant under quarter turns over rot4; one view alone keeps it
    cue = lambda x: np.broadcast_to(np.arange(x.shape[2], dtype=np.float32), x.shape)  # noqa: E731
    flip2 = dihedral_average(cue, images, "flip2")
    np.testing.assert_allclose(flip2, flip2[:, :, ::-1], rtol=1e-6)
    rot4 = dihedral_average(cue, images[:, :5, :5], "rot4")
    np.testing.assert_allclose(rot4, np.rot90(rot4, 1, axes=(1, 2)), rtol=1e-6)
    assert not np.allclose(cue(images), cue(images)[:, :, ::-1])
    with pytest.raises(ValueError, match="tta views must be one of d8, rot4, flip4, flip2, got 'd4'"):
        dihedral_average(cue, images, "d4")


def test_turning_tta_on_retrains_nothing_and_is_recorded_in_best_pt(tmp_path):
    torch.set_num_threads(1)
    s = fake_slices()
    a = seg.train_variant("A", s, _targets(s), SEG_CFG, tmp_path, device="cpu", seed=0, progress=False)
    best = tmp_path / "seg" / "A" / "best.pt"
    assert torch.load(best, weights_only=True)["config"]["tta"] is False
    before = (tmp_path / "seg" / "A" / "last.pt").stat().st_mtime_ns
    b = seg.train_variant("A", s, _targets(s), {**SEG_CFG, "tta": True}, tmp_path, device="cpu", seed=0,
                          progress=False)
    assert (tmp_path / "seg" / "A" / "last.pt").stat().st_mtime_ns == before  # no epoch was trained again
    assert all(torch.equal(x, y) for x, y in zip(_weights(a), _weights(b)))
    assert torch.load(best, weights_only=True)["config"]["tta"] is True


def test_predictions_agree_across_batch_sizes_up_to_rounding():
    # the quick profile predicts 8 slices at a time (2x faster than 64 on 2 cores); oneDNN may pick
    # another kernel for another batch size, so equal up to float rounding, not always bit for bit
    torch.manual_seed(0)
    model = build_unet(4).eval()
    images = np.random.default_rng(0).random((19, 32, 32), dtype=np.float32)
    one = seg.predict_probs(model, images, "cpu", False, batch_size=19)
    for b in (1, 2, 8):
        assert np.allclose(one, seg.predict_probs(model, images, "cpu", False, batch_size=b), atol=1e-5, rtol=0)


def test_tta_comparison_takes_the_reported_column_from_the_tables_and_predicts_only_the_other(tmp_path, monkeypatch):
    torch.set_num_threads(1)
    s = fake_slices()
    cfg = {**SEG_CFG, "epochs": 1}
    scores = seg.train_evaluate_record("SPL", s, _targets(s), cfg, tmp_path, device="cpu", seed=0, progress=False)
    full = seg.tta_comparison(s, tmp_path, cfg["width"], ["SPL"], batch_size=8)
    calls = []
    real_predict = seg_predict_module.predict_split
    monkeypatch.setattr(seg_predict_module, "predict_split", lambda *a, **k: calls.append(a[-1]) or real_predict(*a, **k))
    reused = seg.tta_comparison(s, tmp_path, cfg["width"], ["SPL"], batch_size=8, reported=scores, reported_tta=False)
    assert calls == [True, True]  # one augmented pass per split, no plain one
    pd.testing.assert_frame_equal(full, reused)
    for split in ("val", "test"):
        assert reused[f"{split}_plain"].iloc[0] == scores.loc[scores["split"] == split, "dsc"].mean()
    # reported with TTA on: the plain column is predicted, the augmented one taken
    calls.clear()
    fake = scores.assign(dsc=12.5)
    flipped = seg.tta_comparison(s, tmp_path, cfg["width"], ["SPL"], batch_size=8, reported=fake, reported_tta=True)
    assert calls == [False, False] and (flipped[["val_tta", "test_tta"]] == 12.5).all(axis=None)


def test_a_row_of_several_unet_seeds_trains_each_in_its_folder_and_records_replicates(tmp_path):
    """seg.seeds = 2: two UNets (seeds 0 and 1) on the same targets, each recorded as a seed of the row."""
    torch.set_num_threads(1)
    s = fake_slices()
    cfg = {**SEG_CFG, "epochs": 1, "seeds": 2}
    scores = seg.train_evaluate_record("SPL", s, _targets(s), cfg, tmp_path, device="cpu", seed=0, progress=False)
    assert sorted(scores["seed"].unique()) == [0, 1] and set(scores["method"]) == {"SPL"}
    assert (tmp_path / "seg" / "SPL" / "best.pt").is_file() and (tmp_path / "seg" / "SPL__seed1" / "best.pt").is_file()
    from umcam_lib.data.scores import load_scores
    recorded = load_scores(tmp_path)
    assert sorted(recorded["seed"].unique()) == [0, 1] and set(recorded["method"]) == {"SPL"}
    a, b = (scores[(scores["seed"] == k) & (scores["split"] == "val")]["dsc"].to_numpy() for k in (0, 1))
    assert not np.array_equal(a, b) or np.all(a == 0)  # another seed is another UNet
    from umcam_lib.report import summarise
    row = summarise(tmp_path, "table1")
    row = row[(row["method"] == "SPL") & (row["split"] == "val")]
    assert int(row["n_seeds"].iloc[0]) == 2
