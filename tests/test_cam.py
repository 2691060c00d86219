"""Multi-layer Grad-CAM against pytorch-grad-cam, and the CAM baselines."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from pytorch_grad_cam import AblationCAM, ScoreCAM
from pytorch_grad_cam.ablation_layer import AblationLayer
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn

from umcam_lib.cam import (baseline_cam, compute_baseline_cams, compute_cams, multi_layer_gradcam,
                           resolve_layer_names, upsample_normalise)
from umcam_lib.cam.baselines import RawGradCAM
from umcam_lib.models.vgg import BLOCK_LAYERS, vgg16_classifier

torch.set_num_threads(1)
ALL_LAYERS = ["block1", "block2", "block3", "block4", "block5", "head"]


@pytest.fixture(scope="module")
def vgg() -> nn.Module:
    torch.manual_seed(0)
    return vgg16_classifier(width=0.125).eval()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    x = torch.rand(3, 1, 64, 64, generator=g)
    x[:, :, 20:44, 16:40] += 0.5  # a bright blob so that the maps are not flat
    return x.clamp(0, 1)


class StandIn(nn.Module):
    """A small VGG-like network that is not the study's classifier (module names differ)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.body = nn.Sequential(nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.head = nn.Conv2d(8, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(self.stem(x))).mean(dim=(2, 3))


def reference_gradcam(model: nn.Module, x: torch.Tensor, module_name: str, target: int = 1) -> torch.Tensor:
    """pytorch-grad-cam's GradCAM on one layer (raw ReLU'd map), then our upsampling + max division."""
    module = dict(model.named_modules())[module_name]
    cam = RawGradCAM(model, [module])
    try:
        raw = cam(input_tensor=x, targets=[ClassifierOutputTarget(target)] * x.shape[0])
    finally:
        cam.activations_and_grads.release()
    return upsample_normalise(torch.from_numpy(raw), x.shape[-2:])


def test_multi_layer_gradcam_equals_pytorch_grad_cam_per_layer(vgg, images):
    ours = multi_layer_gradcam(vgg, images, ALL_LAYERS)
    assert ours.shape == (len(ALL_LAYERS), 3, 64, 64)
    for i, block in enumerate(ALL_LAYERS):
        ref = reference_gradcam(vgg, images, BLOCK_LAYERS[block])
        assert ref.abs().max() > 0, f"{block}: reference map is empty, the test would prove nothing"
        torch.testing.assert_close(ours[i], ref, atol=1e-4, rtol=0, msg=f"layer {block}")


def test_multi_layer_gradcam_on_a_stand_in_model_and_other_target():
    torch.manual_seed(3)
    model = StandIn().eval()
    x = torch.rand(2, 1, 32, 32)
    names = ["stem.1", "body.1", "body.4", "head"]
    for target in (0, 1):
        ours = multi_layer_gradcam(model, x, names, target=target)
        for i, name in enumerate(names):
            torch.testing.assert_close(ours[i], reference_gradcam(model, x, name, target), atol=1e-4, rtol=0)


def test_upsampling_matches_pytorch_grad_cams_opencv_resize():
    rng = np.random.default_rng(0)
    for h, w in [(2, 2), (4, 4), (8, 8), (5, 7)]:
        low = rng.random((h, w)).astype(np.float32)
        ref = cv2.resize(low, (64, 48))  # pytorch-grad-cam's scale_cam_image resizer (width, height)
        ours = upsample_normalise(torch.from_numpy(low)[None], (48, 64))[0].numpy()
        np.testing.assert_allclose(ours, ref / ref.max(), atol=1e-5)


def test_gradcam_shapes_range_and_side_effects(vgg, images):
    vgg.zero_grad(set_to_none=True)
    vgg.train()
    with torch.no_grad():  # must still work: Grad-CAM needs gradients
        maps = multi_layer_gradcam(vgg, images[:, 0], ["block5", "features.22", "block5"])
    assert vgg.training, "the model's mode must be restored"
    vgg.eval()
    assert maps.shape == (3, 3, 64, 64) and maps.dtype == torch.float32
    assert torch.all(maps >= 0) and torch.all(maps <= 1)
    peaks = maps.amax(dim=(2, 3))
    assert torch.all((peaks == 0) | torch.isclose(peaks, torch.ones_like(peaks)))
    torch.testing.assert_close(maps[0], maps[2])
    assert all(p.grad is None for p in vgg.parameters()), "Grad-CAM must not accumulate weight gradients"


def test_resolve_layer_names_and_errors(vgg):
    assert resolve_layer_names(vgg, ["block1", "features.8", "head"]) == ["features.3", "features.8", "classifier"]
    with pytest.raises(ValueError, match="block9"):
        resolve_layer_names(vgg, ["block9"])
    with pytest.raises(ValueError, match="empty"):
        resolve_layer_names(vgg, [])


def test_in_place_modification_is_refused():
    model = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(4, 2, 1),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten())
    with pytest.raises(ValueError, match="in place"):
        multi_layer_gradcam(model, torch.rand(1, 1, 16, 16), ["0"])


def test_zero_map_stays_zero():
    cam = torch.zeros(2, 4, 4)
    cam[1, 1, 1] = 3.0
    out = upsample_normalise(cam, (16, 16))
    assert torch.all(out[0] == 0) and torch.isfinite(out).all()
    assert out[1].max() == pytest.approx(1.0)


def test_compute_cams_batches_equal_one_pass(vgg, images):
    stack = images[:, 0].numpy()
    out = compute_cams(vgg, stack, ["block3", "block5"], batch_size=2, progress=False)
    assert out.shape == (2, 3, 64, 64) and out.dtype == np.float16
    ref = multi_layer_gradcam(vgg, images, ["block3", "block5"]).numpy()
    np.testing.assert_allclose(out.astype(np.float32), ref, atol=2e-3)  # float16 storage


def gradcam_pp_by_hand(model: nn.Module, x: torch.Tensor, module_name: str, target: int = 1) -> torch.Tensor:
    """Grad-CAM++ (Chattopadhay et al. 2018, Eq. 19 with the exponential score) from activations and
    gradients captured here with hooks, upsampled bilinearly and divided by the per-image maximum.

    For channel k: ``alpha_ij = g^2 / (2 g^2 + sum_ab(A) g^3)`` (0 where ``g == 0``),
    ``w_k = sum_ij alpha_ij ReLU(g_ij)``; the map is ``ReLU(sum_k w_k A^k)``.
    """
    module = dict(model.named_modules())[module_name]
    captured = {}

    def keep(_m, _inp, out):
        captured["a"] = out.detach().clone()
        out.register_hook(lambda g: captured.__setitem__("g", g.detach().clone()))

    handle = module.register_forward_hook(keep)
    try:
        model.zero_grad()
        model(x.clone().requires_grad_(True))[:, target].sum().backward()  # eval mode: images independent
    finally:
        handle.remove()
        model.zero_grad()
    a, g = captured["a"].double(), captured["g"].double()
    g2, g3 = g ** 2, g ** 3
    alpha = g2 / (2 * g2 + a.sum(dim=(2, 3), keepdim=True) * g3 + 1e-6)
    alpha = torch.where(g != 0, alpha, torch.zeros_like(alpha))
    weights = (alpha * g.clamp(min=0)).sum(dim=(2, 3))
    raw = (weights[:, :, None, None] * a).sum(dim=1).clamp(min=0).float()
    up = torch.nn.functional.interpolate(raw[:, None], size=tuple(x.shape[-2:]), mode="bilinear",
                                         align_corners=False)[:, 0]
    peak = up.amax(dim=(1, 2), keepdim=True)
    return torch.where(peak > 0, up / peak.clamp(min=1e-30), torch.zeros_like(up))


def test_gradcam_pp_equals_grad_cam_plus_plus_computed_by_hand(vgg, images):
    """``baseline_cam(..., "gradcam_pp")`` is Grad-CAM++ of the block5 activations: the reference is
    computed here from hooked activations and gradients, not by pytorch-grad-cam."""
    assert resolve_layer_names(vgg, ["block5"]) == ["features.29"]
    ref = gradcam_pp_by_hand(vgg, images, "features.29")
    assert (ref.amax(dim=(1, 2)) == 1).all() and ref.flatten(1).std(dim=1).min() > 0.05  # not flat maps
    ours = baseline_cam(vgg, images, "gradcam_pp")
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=0)
    # the reference tells the weightings apart: Grad-CAM's mean-gradient weights give another map
    plain = baseline_cam(vgg, images, "gradcam")
    assert (plain - ref).abs().max() > 1e-2


def _raw(cam_obj, x):
    try:
        return cam_obj(input_tensor=x, targets=[ClassifierOutputTarget(1)] * x.shape[0])
    finally:
        cam_obj.activations_and_grads.release()


def test_fast_ablation_cam_equals_pytorch_grad_cams_full_model(vgg, images):
    from umcam_lib.cam.baselines import _RawCAM

    class StockRawAblation(_RawCAM, AblationCAM):
        pass

    x = images[:2]
    stock = StockRawAblation(vgg, [dict(vgg.named_modules())["features.29"]], ablation_layer=AblationLayer(),
                             batch_size=16)
    ref = upsample_normalise(torch.from_numpy(_raw(stock, x)), (64, 64))
    assert ref.abs().max() > 0
    ours = baseline_cam(vgg, x, "ablationcam", batch_size=16)
    torch.testing.assert_close(ours, ref, atol=1e-4, rtol=0)
    assert dict(vgg.named_modules())["features.29"].__class__ is nn.ReLU, "the model must be restored"


def test_scorecam_channel_limit_is_exact_when_it_keeps_every_live_channel():
    torch.manual_seed(0)
    model = vgg16_classifier(width=0.0625).eval()  # 32 channels in block5
    conv = model.features[28]
    dead = torch.arange(0, 32, 2)  # half of block5's channels never fire
    with torch.no_grad():
        conv.weight[dead] = 0
        conv.bias[dead] = -1
    x = torch.rand(2, 1, 32, 32)
    full = upsample_normalise(torch.from_numpy(_raw(
        type("S", (__import__("umcam_lib.cam.baselines", fromlist=["_RawCAM"])._RawCAM, ScoreCAM), {})(
            model, [model.features[29]]), x)), (32, 32))
    limited = baseline_cam(model, x, "scorecam", max_channels=16, batch_size=32)
    torch.testing.assert_close(limited, full, atol=1e-4, rtol=0)
    assert full.abs().max() > 0


def test_compute_baseline_cams_shapes_and_model_untouched(vgg, images):
    before = {k: v.clone() for k, v in vgg.state_dict().items()}
    stack = images[:, 0].numpy()
    for method in ("gradcam_pp", "ablationcam", "scorecam"):
        out = compute_baseline_cams(vgg, stack, method, batch_size=2, method_batch_size=64, max_channels=8,
                                    progress=False)
        assert out.shape == (3, 64, 64) and out.dtype == np.float16
        assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    for k, v in vgg.state_dict().items():
        assert torch.equal(v, before[k])
        assert v.is_contiguous(), "the caller's model must keep its memory layout"
    with pytest.raises(ValueError, match="unknown CAM method"):
        compute_baseline_cams(vgg, stack, "eigencam", progress=False)
