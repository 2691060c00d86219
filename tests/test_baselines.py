"""DRS and AMR baselines: the networks (umcam_lib.models.drs / .amr: suppression, modulation, losses) and
the baseline path (umcam_lib.baselines.drs / .amr: training, maps, threshold, pseudo labels)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from umcam_lib.config import default
from umcam_lib.data.artifacts import SliceSet
from umcam_lib.baselines import amr, drs
from umcam_lib.models import amr as amr_net
from umcam_lib.models import drs as drs_net
from umcam_lib.models.vgg import BLOCK_LAYERS, vgg16_classifier

torch.set_num_threads(1)

CLASSIFIER = {"width": 0.0625, "dilated": False, "pretrained": False, "epochs": 1, "batch_size": 8,
              "lr": 0.001, "momentum": 0.9, "weight_decay": 0.0005, "augment": False,
              # the paper's plain VGG and SGD, not the quick profile's (the schema's defaults)
              "optimizer": "sgd", "batch_norm": False, "pooling": "avg", "input_norm": "imagenet",
              "padding": "zeros", "equivariance": 0.0}
BASELINES = {"drs_delta": 0.55, "drs_learnable": False, "amr_consistency": 1.0, "epochs": 1}


def reference_suppression(x: torch.Tensor, delta: torch.Tensor | float) -> torch.Tensor:
    """Plain-autograd DRS: min(relu(x), delta * channel max of relu(x))."""
    r = torch.relu(x)
    if isinstance(delta, torch.Tensor) and delta.dim() == 2:
        delta = delta[..., None, None]
    return torch.minimum(r, delta * r.amax(dim=(2, 3), keepdim=True))


# ----------------------------------------------------------------------------- DRS
def test_suppression_hand_example():
    x = torch.tensor([[[[1.0, -2.0], [4.0, 3.0]],      # channel max 4 -> cap 2
                       [[-1.0, -3.0], [-2.0, -5.0]]]])  # all negative -> all zero
    y = drs_net.SuppressedReLU(2, delta=0.5)(x)
    expected = torch.tensor([[[[1.0, 0.0], [2.0, 2.0]],
                              [[0.0, 0.0], [0.0, 0.0]]]])
    assert torch.equal(y, expected)


def test_suppression_caps_each_channel_at_delta_times_its_max():
    torch.manual_seed(0)
    x = torch.randn(3, 5, 7, 6) * 3
    delta = 0.55
    y = drs_net.SuppressedReLU(5, delta=delta)(x)
    r = torch.relu(x)
    peak = r.amax(dim=(2, 3))
    assert torch.allclose(y.amax(dim=(2, 3)), delta * peak)
    below = r <= delta * peak[..., None, None]
    assert torch.equal(y[below], r[below])
    assert torch.all(y >= 0)


@pytest.mark.parametrize("learnable", [False, True])
def test_suppression_gradient_equals_plain_autograd(learnable):
    torch.manual_seed(1)
    module = drs_net.SuppressedReLU(4, delta=0.4, learnable=learnable).double()
    x = torch.randn(2, 4, 5, 5, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 4, 5, 5, dtype=torch.float64)
    y = module(x)
    params = [x] + list(module.parameters())
    grads = torch.autograd.grad((y * w).sum(), params)
    sup = module.suppress
    delta = sup.delta_map(torch.relu(x)) if learnable else sup.delta
    y_ref = reference_suppression(x, delta)
    grads_ref = torch.autograd.grad((y_ref * w).sum(), params)
    assert torch.allclose(y, y_ref)
    for g, g_ref in zip(grads, grads_ref):
        assert torch.allclose(g, g_ref, atol=1e-12)
    if learnable:
        assert module.suppress.fc.weight.grad is None and grads[1].abs().sum() > 0


def test_learnable_delta_lies_in_open_unit_interval():
    torch.manual_seed(2)
    sup = drs_net.Suppression(8, learnable=True)
    x = torch.relu(torch.randn(4, 8, 6, 6) * 2)
    d = sup.delta_map(x)
    assert d.shape == (4, 8)
    assert torch.all(d > 0) and torch.all(d < 1)
    assert d.std() > 0      # per image and channel, not one constant
    y = sup(x)
    assert torch.all(y <= d[..., None, None] * x.amax(dim=(2, 3), keepdim=True) + 1e-7)


def test_delta_outside_unit_interval_is_rejected():
    with pytest.raises(ValueError, match="drs_delta"):
        drs_net.Suppression(3, delta=0.0)
    with pytest.raises(ValueError, match="drs_delta"):
        drs.baseline_options({**BASELINES, "drs_delta": 1.5})
    with pytest.raises(ValueError, match=r"baselines.drs_readout: must be one of 'auto', 'suppressed', 'unsuppressed'"):
        drs.baseline_options({**BASELINES, "drs_readout": "capped"})
    assert drs.baseline_options({"drs_delta": 0.5})["epochs"] == default("baselines.epochs")  # from the schema


@pytest.mark.parametrize("learnable,extra,dilated", [(False, 3, False), (True, 0, True)])
def test_drs_forward_shapes_and_layer_names(learnable, extra, dilated):
    model = drs.build_drs({**CLASSIFIER, "dilated": dilated},
                          {**BASELINES, "drs_learnable": learnable, "drs_extra_layers": extra}, seed=0)
    x = torch.rand(2, 1, 64, 64)
    assert model(x).shape == (2, 2)
    assert model.class_map(x).shape == (2, 2, 64 // model.output_stride, 64 // model.output_stride)
    modules = dict(model.named_modules())
    for block in ("block1", "block2", "block3", "block4", "block5"):
        assert isinstance(modules[BLOCK_LAYERS[block]], drs_net.SuppressedReLU)
    assert len(model.suppressors()) == 13 + extra
    assert not any(isinstance(m, torch.nn.ReLU) for m in model.features)
    assert all(s.learnable == learnable for s in model.suppressors())


def test_drs_warm_start_without_suppression_is_the_plain_classifier():
    """delta = 1 suppresses nothing and the extra layers start as identities: same logits."""
    torch.manual_seed(3)
    plain = vgg16_classifier(width=0.0625).eval()
    model = drs.build_drs(CLASSIFIER, {**BASELINES, "drs_delta": 1.0}, init=plain).eval()
    x = torch.rand(3, 1, 64, 64)
    assert torch.allclose(model(x), plain(x), atol=1e-5)
    suppressed = drs.build_drs(CLASSIFIER, BASELINES, init=plain).eval()
    assert not torch.allclose(suppressed(x), plain(x), atol=1e-5)


def test_drs_warm_start_rejects_another_architecture():
    with pytest.raises(ValueError, match="classifier section"):
        drs.build_drs(CLASSIFIER, BASELINES, init=vgg16_classifier(width=0.125))


def test_drs_cams_are_normalised_maps_of_the_input_size():
    model = drs.build_drs(CLASSIFIER, BASELINES, seed=0)
    images = np.random.default_rng(0).random((5, 64, 64), dtype=np.float32)
    maps = drs.drs_cams(model, images, batch_size=2, progress=False)
    assert maps.shape == (5, 64, 64) and maps.dtype == np.float16
    assert maps.min() >= 0 and maps.max() <= 1
    peaks = maps.reshape(5, -1).max(axis=1)
    assert np.all((peaks == 0) | np.isclose(peaks, 1.0, atol=1e-3))


# ----------------------------------------------------------------------------- AMR
def test_gaussian_projection_peaks_at_the_mean():
    z = torch.tensor([[0.0, 1.0, 2.0, 3.0, 4.0]])
    g = amr_net.gaussian_projection(z, dims=(1,))
    assert g.shape == z.shape
    assert torch.isclose(g[0, 2], torch.tensor(1.0))              # the mean gets weight 1
    assert torch.all(g > 0) and torch.all(g <= 1)
    assert torch.isclose(g[0, 0], g[0, 4]) and g[0, 0] < g[0, 1]  # extremes damped symmetrically
    std = z.std(correction=0)
    assert torch.isclose(g[0, 0], torch.exp(-(2.0 / std) ** 2 / 2))
    assert torch.equal(amr_net.gaussian_projection(torch.full((2, 3), 5.0), dims=(1,)), torch.ones(2, 3))


def _amr(seed: int = 0, consistency: float = 1.0) -> amr_net.AMRClassifier:
    torch.manual_seed(seed)
    spotlight = vgg16_classifier(width=0.0625)
    return amr.build_amr(spotlight, {**BASELINES, "amr_consistency": consistency}, seed=seed)


def test_amr_forward_shapes_and_modules():
    model = _amr()
    x = torch.rand(4, 1, 64, 64)
    assert model(x).shape == (4, 2)
    out = model.branch_outputs(x)
    assert out["logits_s"].shape == out["logits_c"].shape == (4, 2)
    assert out["cam_s"].shape == out["cam_c"].shape == (4, 2, 2)
    modules = dict(model.compensation.named_modules())
    for name in amr_net.AMM_LAYERS:
        assert isinstance(modules[name], amr_net.ModulatedReLU)
    assert not any(isinstance(m, amr_net.AMM) for m in model.spotlight.modules())


def test_amr_backprop_reaches_the_compensation_branch_and_not_the_frozen_one():
    model = _amr()
    model.train()
    assert not model.spotlight.training and model.compensation.training
    before = {k: v.clone() for k, v in model.spotlight.state_dict().items()}
    x = torch.rand(6, 1, 64, 64)
    y = torch.tensor([1, 0, 1, 1, 0, 1])
    loss = model.training_loss(x, y)
    loss.backward()
    assert all(p.grad is None for p in model.spotlight.parameters())
    comp = dict(model.compensation.named_parameters())
    names = ["features.0.weight", "features.28.weight", "classifier.weight"]
    for layer in amr_net.AMM_LAYERS:      # every AMM, its channel and its spatial part
        names += [f"{layer}.amm.channel.mlp.2.bias", f"{layer}.amm.spatial.conv.weight"]
    for name in names:
        assert comp[name].grad is not None and comp[name].grad.abs().sum() > 0, name
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    after = model.spotlight.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_amr_loss_is_both_cross_entropies_plus_weighted_consistency():
    model = _amr(consistency=2.5).eval()
    x = torch.rand(4, 1, 64, 64)
    y = torch.tensor([1, 1, 0, 1])
    out = model.branch_outputs(x)
    ce = torch.nn.functional.cross_entropy
    l1 = (out["cam_s"][y == 1] - out["cam_c"][y == 1]).abs().mean()
    expected = ce(out["logits_s"], y) + ce(out["logits_c"], y) + 2.5 * l1
    assert l1 > 0
    assert torch.isclose(model.training_loss(x, y), expected, atol=1e-6)


def test_consistency_term_is_zero_when_the_branches_agree():
    cam = torch.rand(3, 4, 4)
    model = _amr()
    labels = torch.tensor([1, 0, 1])
    assert model.consistency_loss(cam, cam.clone(), labels) == 0
    other = cam.clone()
    other[1] += 1.0                                   # a negative slice: ignored
    assert model.consistency_loss(cam, other, labels) == 0
    other[0] += 0.5
    assert torch.isclose(model.consistency_loss(cam, other, labels), torch.tensor(0.25))
    no_pos = model.consistency_loss(cam, other, torch.zeros(3, dtype=torch.long))
    assert no_pos == 0


def test_identity_modulation_makes_the_branches_agree():
    """AMMs whose scores are constant project to weight 1: the compensation branch then equals
    the (warm-started) spotlight, and the consistency term vanishes on the real model."""
    model = _amr().eval()
    for m in model.compensation.modules():
        if isinstance(m, amr_net.AMM):
            torch.nn.init.zeros_(m.channel.mlp[2].weight)
            torch.nn.init.zeros_(m.channel.mlp[2].bias)
            torch.nn.init.zeros_(m.spatial.conv.weight)
            torch.nn.init.zeros_(m.spatial.conv.bias)
    x = torch.rand(4, 1, 64, 64)
    y = torch.tensor([1, 1, 0, 1])
    out = model.branch_outputs(x)
    assert torch.allclose(out["logits_s"], out["logits_c"], atol=1e-5)
    assert model.consistency_loss(out["cam_s"], out["cam_c"], y) < 1e-5


def test_amr_cams_are_the_renormalised_mean_of_both_branches():
    from umcam_lib.cam.gradcam import compute_cams

    model = _amr()
    images = np.random.default_rng(1).random((3, 64, 64), dtype=np.float32)
    maps = amr.amr_cams(model, images, batch_size=2, progress=False)
    s = compute_cams(model.spotlight, images, ["block5"], progress=False)[0].astype(np.float32)
    c = compute_cams(model.compensation, images, ["block5"], progress=False)[0].astype(np.float32)
    mean = (s + c) / 2
    peak = mean.reshape(3, -1).max(axis=1)[:, None, None]
    assert maps.shape == (3, 64, 64)
    assert np.allclose(maps, np.where(peak > 0, mean / np.where(peak > 0, peak, 1), 0), atol=2e-3)


# ----------------------------------------------------------------------------- training path
def _slice_set(seed: int = 0, size: int = 32, per_volume: int = 8) -> SliceSet:
    """Three tiny volumes (train, val, test): a bright disk on the middle half of the slices."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images, masks, labels, volume, slice_index, split = [], [], [], [], [], []
    splits = ["train", "train", "val", "test"]
    for v, sp in enumerate(splits):
        for s in range(per_volume):
            img = rng.random((size, size), dtype=np.float32) * 0.3
            m = np.zeros((size, size), np.uint8)
            if per_volume // 4 <= s < 3 * per_volume // 4:
                cy, cx, r = rng.integers(10, size - 10, 2).tolist() + [int(rng.integers(4, 8))]
                m = ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r).astype(np.uint8)
                img[m > 0] += 0.6
            images.append(img)
            masks.append(m)
            labels.append(int(m.any()))
            volume.append(v)
            slice_index.append(s)
            split.append(sp)
    vols = pd.DataFrame({"volume": range(len(splits)), "subject": [f"s{i}" for i in range(len(splits))],
                         "split": splits, "n_slices": per_volume, "thickness_mm": 4.0})
    return SliceSet(images=np.clip(np.stack(images), 0, 1).astype(np.float32), masks=np.stack(masks),
                    labels=np.array(labels, np.uint8), volume=np.array(volume, np.int32),
                    slice_index=np.array(slice_index, np.int32), split=np.array(split), spacing_mm=2.0,
                    volumes=vols)


def test_train_drs_and_amr_then_pseudo_labels(tmp_path):
    from umcam_lib import metrics

    slices = _slice_set()
    classifier = {**CLASSIFIER, "width": 0.0625}
    torch.manual_seed(0)
    spotlight = vgg16_classifier(width=0.0625).eval()
    grid = metrics.threshold_grid([0.05, 0.95, 0.05])
    rows = drs.cam_rows(slices)
    assert np.array_equal(rows, np.flatnonzero(slices.labels == 1))

    model, history = drs.train_drs(slices, classifier, BASELINES, tmp_path / "drs", init=spotlight,
                                   device="cpu", amp=False, seed=0, progress=False)
    assert isinstance(model, drs_net.DRSClassifier) and not model.training
    assert len(history) == 1 and (tmp_path / "drs" / "best.pt").is_file()
    maps = drs.drs_cams(model, slices.images[rows], batch_size=8, progress=False)
    evaluation, targets = drs.evaluate_baseline_cam(tmp_path, slices, rows, maps, grid, "drs", "DRS")
    assert evaluation.method == "DRS" and evaluation.threshold in grid
    assert set(evaluation.scores) == {"val", "test"}
    assert json.loads((tmp_path / "cams" / "thresholds.json").read_text())["drs"] == evaluation.threshold
    train_pos = slices.indices("train", positive_only=True)
    assert np.array_equal(targets["index"], train_pos)
    assert targets["maps"].shape == (len(train_pos), 32, 32)
    assert set(np.unique(targets["maps"])) <= {0.0, 1.0}
    expected = maps[np.searchsorted(rows, train_pos)].astype(np.float32) >= evaluation.threshold
    assert np.array_equal(targets["maps"].astype(bool), expected)

    model_a, history_a = amr.train_amr(slices, classifier, BASELINES, tmp_path / "amr", spotlight,
                                       device="cpu", amp=False, seed=0, progress=False)
    assert isinstance(model_a, amr_net.AMRClassifier) and len(history_a) == 1
    for k, v in spotlight.state_dict().items():      # the frozen branch left training unchanged
        assert torch.equal(model_a.spotlight.state_dict()[k], v)
    maps_a = amr.amr_cams(model_a, slices.images[rows], batch_size=8, progress=False)
    assert maps_a.shape == maps.shape and np.isfinite(maps_a.astype(np.float32)).all()


def test_pseudo_labels_need_every_positive_training_slice():
    slices = _slice_set()
    rows = slices.indices("train", positive_only=True)[1:]
    with pytest.raises(ValueError, match="lacks slice rows"):
        drs.pseudo_label_targets(slices, rows, np.zeros((len(rows), 32, 32), np.float32), 0.5)


def test_half_precision_stays_finite():
    """What CUDA autocast feeds these modules: float16 maps (checked here on the CPU)."""
    torch.manual_seed(4)
    x = (torch.randn(2, 3, 6, 6) * 4).half().requires_grad_(True)
    for learnable in (False, True):
        module = drs_net.SuppressedReLU(3, delta=0.55, learnable=learnable)
        if learnable:
            module = module.half()
        y = module(x)
        assert y.dtype == torch.float16
        (g,) = torch.autograd.grad(y.float().sum(), [x])
        assert g.dtype == torch.float16 and torch.isfinite(g).all()
    const = torch.full((2, 5), 3.0, dtype=torch.float16)
    assert torch.equal(amr_net.gaussian_projection(const, dims=(1,)), torch.ones(2, 5))
    near = torch.tensor([[1.0, 1.0001, 1.0]], dtype=torch.float16)
    assert torch.isfinite(amr_net.gaussian_projection(near, dims=(1,))).all()


def test_suppression_can_be_switched_off_for_reading():
    torch.manual_seed(5)
    model = drs.build_drs(CLASSIFIER, {**BASELINES, "drs_extra_layers": 0}, seed=0).eval()
    plain = vgg16_classifier(width=0.0625).eval()
    plain.load_state_dict({k: v for k, v in model.state_dict().items()})
    x = torch.rand(2, 1, 64, 64)
    capped = model(x)
    with drs_net.suppression_disabled(model):
        assert all(not s.enabled for s in model.suppressors())
        assert torch.allclose(model(x), plain(x), atol=1e-6)
    assert all(s.enabled for s in model.suppressors())
    assert torch.equal(model(x), capped)


def test_choose_readout_takes_the_better_validation_map():
    slices = _slice_set()
    rows = drs.cam_rows(slices)
    good = slices.masks[rows].astype(np.float32)              # the truth itself
    bad = np.ones_like(good)                                   # everything foreground
    grid = np.array([0.25, 0.5, 0.75])
    chosen, evals = drs.choose_readout(slices, rows, {"suppressed": bad, "unsuppressed": good}, grid)
    assert chosen == "unsuppressed"
    assert evals["unsuppressed"].method == "DRS (unsuppressed)"
    assert evals["unsuppressed"].val_curve.max() == pytest.approx(100.0)
    forced, _ = drs.choose_readout(slices, rows, {"suppressed": bad, "unsuppressed": good}, grid,
                                   readout="suppressed")
    assert forced == "suppressed"
    with pytest.raises(ValueError, match="drs_readout"):
        drs.choose_readout(slices, rows, {"suppressed": bad}, grid, readout="other")


def test_config_names_the_warm_start_weights():
    """A checkpoint fine-tuned from other notebook-02 weights must not be resumed or loaded."""
    torch.manual_seed(6)
    a, b = vgg16_classifier(width=0.0625), vgg16_classifier(width=0.0625)
    assert drs.build_drs(CLASSIFIER, BASELINES, init=a).config() == drs.build_drs(CLASSIFIER, BASELINES, init=a).config()
    assert drs.build_drs(CLASSIFIER, BASELINES, init=a).config() != drs.build_drs(CLASSIFIER, BASELINES, init=b).config()
    assert amr.build_amr(a, BASELINES).config() != amr.build_amr(b, BASELINES).config()
    assert amr.build_amr(a, BASELINES).config() == amr.build_amr(a, BASELINES).config()
