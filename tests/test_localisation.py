"""The classifier levers of issue 8 (pooling, padding, input normalisation, equivariance loss,
Grad-CAM target) and the localisation diagnostics (pointing game, floor, occlusion test)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from umcam_lib.cam import diagnostics
from umcam_lib.cam.baselines import RawGradCAM
from umcam_lib.cam.gradcam import LogitMarginTarget, multi_layer_gradcam, target_score, upsample_normalise
from umcam_lib.data.artifacts import SliceSet
from umcam_lib.metrics import dice_batch
from umcam_lib.models.vgg import LogSumExpPool, vgg16_classifier
from umcam_lib.train import classifier as clf
from umcam_lib.train.classifier_tasks import train_seed_tasks

torch.set_num_threads(1)


def _slices(n: int = 12, size: int = 64, seed: int = 0) -> SliceSet:
    """Slices with a bright square "brain" in half of them, split train/val/test."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 0.2, (n, size, size)).astype(np.float32)
    masks = np.zeros((n, size, size), np.uint8)
    labels = np.zeros(n, np.uint8)
    for i in range(0, n, 2):
        y, x = rng.integers(8, size - 24, 2)
        masks[i, y:y + 16, x:x + 16] = 1
        images[i][masks[i] == 1] = 0.9
        labels[i] = 1
    split = np.array((["train"] * 4 + ["val"] * 4 + ["test"] * 4) * (n // 12 + 1))[:n]
    vols = pd.DataFrame({"volume": np.arange(n), "split": split})
    return SliceSet(images=images, masks=masks, labels=labels, volume=np.arange(n, dtype=np.int32),
                    slice_index=np.zeros(n, np.int32), split=split, spacing_mm=2.0, volumes=vols)


def test_lse_pooling_lies_between_average_and_max():
    x = torch.randn(3, 2, 4, 4)
    lse = LogSumExpPool(5.0)(x).flatten(1)
    assert torch.all(lse >= x.mean(dim=(2, 3)) - 1e-6)
    assert torch.all(lse <= x.amax(dim=(2, 3)) + 1e-6)
    assert torch.allclose(LogSumExpPool(1e-2)(x).flatten(1), x.mean(dim=(2, 3)), atol=2e-2)
    with pytest.raises(ValueError, match="r > 0"):
        LogSumExpPool(0.0)


def test_levers_are_part_of_the_architecture_and_validated():
    m = vgg16_classifier(width=0.0625, pooling="lse", padding="reflect", input_norm="zero_background",
                         batch_norm=True)
    cfg = m.config()
    assert (cfg["pooling"], cfg["padding"], cfg["input_norm"]) == ("lse", "reflect", "zero_background")
    assert m.features[0].padding_mode == "reflect"
    assert torch.all(m.normalise(torch.zeros(1, 1, 32, 32)) == 0)   # air stays 0
    assert m(torch.rand(2, 1, 64, 64)).shape == (2, 2)
    for bad in ({"pooling": "median"}, {"padding": "circle"}, {"input_norm": "z"}):
        with pytest.raises(ValueError, match="classifier."):
            vgg16_classifier(width=0.0625, **bad)


def test_margin_target_is_the_logit_difference_and_matches_pytorch_grad_cam():
    torch.manual_seed(0)
    model = vgg16_classifier(width=0.0625).eval()
    x = torch.rand(2, 1, 64, 64)
    logits = model(x)
    logits = logits.detach()
    assert float(target_score(logits, "margin")) == pytest.approx(float((logits[:, 1] - logits[:, 0]).sum()), abs=1e-5)
    assert float(target_score(logits, "logit")) == pytest.approx(float(logits[:, 1].sum()), abs=1e-5)
    with pytest.raises(ValueError, match="cam.target"):
        target_score(logits, "softmax")
    ours = multi_layer_gradcam(model, x, ["block4"], target="margin")[0]
    cam = RawGradCAM(model, [dict(model.named_modules())["features.22"]])
    try:
        raw = cam(input_tensor=x, targets=[LogitMarginTarget()] * 2)
    finally:
        cam.activations_and_grads.release()
    ref = upsample_normalise(torch.from_numpy(raw), x.shape[-2:])
    assert torch.allclose(ours, ref, atol=1e-4)
    # and it differs from the brain-logit map of an untrained (asymmetric) head
    assert not torch.allclose(ours, multi_layer_gradcam(model, x, ["block4"], target=1)[0], atol=1e-4)
    assert ClassifierOutputTarget(1)(logits[0]) == logits[0, 1]


def test_square_symmetries_are_exact_on_the_class_map_grid():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    for k, flip in clf._SYMMETRIES:
        y = clf._transform(x, k, flip)
        back = torch.rot90(torch.flip(y, dims=(-1,)) if flip else y, -k, dims=(-2, -1))
        assert torch.equal(back, x)
    assert len({clf._transform(x, k, f).flatten().tolist().__str__() for k, f in clf._SYMMETRIES}) == 7


def test_equivariance_loss_is_zero_for_an_equivariant_map_and_positive_otherwise():
    torch.manual_seed(0)
    model = vgg16_classifier(width=0.0625, batch_norm=True).eval()
    x = torch.rand(2, 1, 64, 64)
    _, fine = clf.class_maps(model, x)
    assert fine.shape == (2, 2, 4, 4)
    assert float(clf.equivariance_loss(model, x, fine)) > 0
    # a constant image through a network that cannot see the border (replicate padding) gives a
    # constant, hence equivariant, map: the loss vanishes
    flat = vgg16_classifier(width=0.0625, batch_norm=True, padding="replicate").eval()
    const = torch.full((2, 1, 64, 64), 0.3)
    _, fine_c = clf.class_maps(flat, const)
    assert float(clf.equivariance_loss(flat, const, fine_c)) < 1e-5
    with pytest.raises(ValueError, match="square"):
        clf.equivariance_loss(model, torch.rand(1, 1, 64, 32), fine)


def test_training_with_the_levers_runs_and_records_them(tmp_path):
    s = _slices()
    cfg = {"width": 0.0625, "dilated": False, "pretrained": False, "epochs": 1, "batch_size": 4, "lr": 1e-3,
           "momentum": 0.9, "weight_decay": 0.0, "augment": False, "batch_norm": True, "optimizer": "adamw",
           "pooling": "lse", "padding": "reflect", "input_norm": "zero_background", "equivariance": 1.0}
    table = train_seed_tasks(s, cfg, tmp_path, clf.stage_seeds(3, 2), device="cpu", amp=False, progress=False)
    assert sorted(table["seed"].unique()) == [3, 4]
    assert (tmp_path / "classifier" / "best.pt").is_file()
    assert (tmp_path / "seeds" / "seed-4" / "classifier" / "best.pt").is_file()
    model = clf.load_classifier(tmp_path / "classifier", cfg)
    assert model.config()["pooling"] == "lse"
    with pytest.raises(ValueError, match="seeds must be >= 1"):
        clf.stage_seeds(0, 0)


def test_pointing_game_floor_and_best_threshold():
    masks = np.zeros((2, 8, 8), np.uint8)
    masks[:, 2:4, 2:4] = 1
    maps = np.zeros((2, 8, 8), np.float32)
    maps[0, 3, 3] = 1.0      # peak inside
    maps[1, 6, 6] = 1.0      # peak outside
    assert diagnostics.pointing_game(maps, masks).tolist() == [True, False]
    assert not diagnostics.pointing_game(np.zeros_like(maps), masks).any()   # an empty map never hits
    floor = diagnostics.all_foreground_dice(masks)
    assert floor == pytest.approx([200 * 4 / (4 + 64)] * 2)
    # the one per-slice Dice of the library: a full mask on a slice without brain scores 0
    empty = np.zeros((1, 8, 8), np.uint8)
    assert diagnostics.all_foreground_dice(np.concatenate([masks, empty])).tolist() == \
        pytest.approx([200 * 4 / (4 + 64)] * 2 + [0.0])
    assert diagnostics.all_foreground_dice(masks) == pytest.approx(dice_batch(np.ones_like(masks), masks))
    perfect = masks.astype(np.float32)
    dsc, thr = diagnostics.best_threshold_dice(perfect, masks, [0.25, 0.5, 0.75])
    assert dsc == pytest.approx(100.0)


def test_occlusion_helpers_erase_the_brain_and_keep_the_head():
    s = _slices()
    rows = s.indices("val", positive_only=True)
    erased = diagnostics.erase_brain(s.images[rows], s.masks[rows])
    assert np.all(erased[s.masks[rows] == 1] < 0.5)                    # the bright square is gone
    head = diagnostics.keep_head(s.images[rows], s.masks[rows], margin_px=2)
    assert np.allclose(head[s.masks[rows] == 1], 0.9)                   # the brain is kept
    assert np.ptp(head[0, :2, :]) == 0                                  # far background is flat


def test_layer_localisation_and_generated_text():
    torch.manual_seed(0)
    model = vgg16_classifier(width=0.0625).eval()
    s = _slices()
    loc = diagnostics.layer_localisation(model, s, "val", ["block3", "block4", "block5"], grid=[0.1, 0.9, 0.1])
    assert loc["layer"].tolist() == [*diagnostics.DIAGNOSTIC_LAYERS, "average_cam", "umcam", "all_foreground"]
    assert loc["pointing"].iloc[:-1].between(0, 1).all() and np.isnan(loc["pointing"].iloc[-1])
    summary = diagnostics.summarise_localisation([loc.assign(seed=0), loc.assign(seed=1)])
    assert summary["n_seeds"].eq(2).all() and np.allclose(summary["dsc_sd"], 0)
    text = diagnostics.describe_localisation(summary)
    assert "best single layer" in text and "whole slice" in text
    occl = diagnostics.occlusion_test(model, s, ("val", "test"))
    assert occl["input"].tolist() == ["intact", "brain erased", "head only"]
    assert "classifier" in diagnostics.describe_occlusion(occl)
    none = SliceSet(**{**s.__dict__, "labels": np.zeros_like(s.labels)})
    with pytest.raises(ValueError, match="no positive slice"):
        diagnostics.layer_localisation(model, none, "val", ["block5"])
    with pytest.raises(ValueError, match="no positive slice"):
        diagnostics.occlusion_test(model, none)


@pytest.mark.parametrize("calls, word", [((0.96, 0.05, 0.90), "answers from the brain ("),
                                         ((0.96, 0.45, 0.85), "answers partly from the brain"),
                                         ((0.96, 0.70, 0.90), "does not answer from the brain alone")])
def test_occlusion_sentence_is_graded_by_the_share_still_called_brain(calls, word):
    table = pd.DataFrame({"input": ["intact", "brain erased", "head only"], "p_brain": [0.9, 0.5, 0.8],
                          "called_brain": list(calls), "n": [106] * 3})
    text = diagnostics.describe_occlusion(table)
    assert f"the classifier {word}" in text and f"{100 * calls[1]:.0f} % of the brain-erased slices" in text
