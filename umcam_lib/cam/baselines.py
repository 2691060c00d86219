"""The CAM baselines of Table 2 through pytorch-grad-cam: Grad-CAM++, Score-CAM, Ablation-CAM, LayerCAM.

All four explain the brain logit on one layer (``block5`` by default) and differ only in how
they weight that layer's K feature maps A^k before summing them:

- Grad-CAM++ weights each channel by its positive gradients, re-weighted pixel by pixel with
  second- and third-order gradient terms (one forward and one backward pass).
- Score-CAM uses no gradients: each feature map, min-max scaled and upsampled, masks the input
  image; the brain logit of each masked image, softmaxed over channels, is the channel weight
  (K forward passes per image).
- Ablation-CAM zeroes one channel at a time and weights it by the relative drop of the logit,
  ``(y - y_k) / y`` (K forward passes of the network after the layer, per image).
- LayerCAM keeps a weight per channel *and position*: the positive part of the gradient,
  ``ReLU(sum_k ReLU(dy/dA^k_i) A^k_i)`` (one forward and one backward pass). It was made for
  shallow layers; its multi-layer fusion is :func:`umcam_lib.cam.fusion.layercam_fusion`.

pytorch-grad-cam min-max scales each map before and after upsampling with OpenCV. To compare
CAM methods by their channel weights alone, this module takes pytorch-grad-cam's raw weighted
sums (``get_cam_image``, then the ReLU) and applies to every method the post-processing of
:func:`umcam_lib.cam.gradcam.upsample_normalise` (bilinear upsampling, division by the
maximum), exactly as for our Grad-CAM.

Speed (CPU). Score-CAM costs K full forward passes per image. ``max_channels`` optionally keeps,
per image, only the K' channels whose feature maps have the largest spatial variance (the
"Faster Score-CAM" shortcut); channels that are zero everywhere never change the normalised
map, so the result is exact whenever K' covers every non-zero channel. For Ablation-CAM on the
VGG classifier the ablated forward passes start at the ablated layer (the network after it is
small), which gives pytorch-grad-cam's result at a fraction of the cost.
"""
from __future__ import annotations

import contextlib
import io
import sys
from typing import Any, Callable

import numpy as np
import torch
from pytorch_grad_cam import AblationCAM, GradCAM, GradCAMPlusPlus, LayerCAM, ScoreCAM
from pytorch_grad_cam.ablation_layer import AblationLayer
from torch import nn
from tqdm.auto import tqdm

from .gradcam import (CAM_LAYER, _as_batch, _is_channels_last, make_target, resolve_layer_names,
                      upsample_normalise, working_copy)
from .. import runtime

#: Method keys (file names under ``runs/<profile>/cams``) -> names in the tables.
BASELINE_NAMES = {"gradcam_pp": "Grad-CAM++", "scorecam": "Score-CAM", "ablationcam": "Ablation-CAM",
                  "layercam": "LayerCAM"}


class _RawCAM:
    """Mixin: return pytorch-grad-cam's raw ReLU'd map [B, h, w] of the first target layer.

    pytorch-grad-cam's ``BaseCAM.forward`` calls ``compute_cam_per_layer`` (which would min-max
    scale and resize) and ``aggregate_multi_layers``; both are replaced so that the caller gets
    ``ReLU(get_cam_image(...))`` at feature resolution.
    """

    def compute_cam_per_layer(self, input_tensor: torch.Tensor, targets: list, eigen_smooth: bool) -> list:
        acts = [a.cpu().data.numpy() for a in self.activations_and_grads.activations]
        grads = [g.cpu().data.numpy() for g in self.activations_and_grads.gradients]
        cam = self.get_cam_image(input_tensor, self.target_layers[0], targets, acts[0],
                                 grads[0] if grads else None, eigen_smooth)
        return [np.maximum(cam, 0)]

    def aggregate_multi_layers(self, cam_per_target_layer: list) -> np.ndarray:
        return np.float32(cam_per_target_layer[0])


class RawGradCAM(_RawCAM, GradCAM):
    """pytorch-grad-cam's Grad-CAM, raw (the reference of the equality test)."""


class RawGradCAMPlusPlus(_RawCAM, GradCAMPlusPlus):
    """pytorch-grad-cam's Grad-CAM++, raw."""


class RawScoreCAM(_RawCAM, ScoreCAM):
    """pytorch-grad-cam's Score-CAM, raw."""


class RawAblationCAM(_RawCAM, AblationCAM):
    """pytorch-grad-cam's Ablation-CAM, raw."""


class RawLayerCAM(_RawCAM, LayerCAM):
    """pytorch-grad-cam's LayerCAM, raw."""


class _FastAblationLayer(AblationLayer):
    """pytorch-grad-cam's AblationLayer with its common case vectorised.

    The parent loops over the copies and recomputes ``torch.min`` of the whole batch for each
    one. When that minimum is 0 (ReLU feature maps), the parent zeroes channel ``indices[i]`` of
    copy ``i``; that is done here in one indexing operation. Otherwise the parent runs.
    """

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        output = self.activations
        if torch.min(output) != 0:
            return super().__call__(x)
        n = output.size(0)
        idx = torch.as_tensor(np.asarray(self.indices[:n], dtype=np.int64), device=output.device)
        output[torch.arange(n, device=output.device), idx] = 0
        return output


def _top_variance_channels(k: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """A reshape_transform keeping, per image, the ``k`` channels of largest spatial variance."""

    def transform(a: torch.Tensor) -> torch.Tensor:
        if a.shape[1] <= k:
            return a
        var = a.flatten(2).var(dim=2)
        idx = var.topk(k, dim=1).indices.sort(dim=1).values
        return torch.gather(a, 1, idx[:, :, None, None].expand(-1, -1, *a.shape[2:]))

    return transform


class _FromLayer(nn.Module):
    """The part of the VGG classifier after ``features[start - 1]``: features -> logits."""

    def __init__(self, model: nn.Module, start: int) -> None:
        super().__init__()
        self.entry = nn.Identity()  # the layer pytorch-grad-cam ablates (its input = the activations)
        self.rest = nn.Sequential(*list(model.features)[start:])
        self.classifier = model.classifier
        self.pool = model.pool

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return self.pool(self.classifier(self.rest(self.entry(a)))).flatten(1)


def _split_vgg(model: nn.Module, module_name: str) -> tuple[nn.Module, nn.Module] | None:
    """For the VGG classifier and a ``features.i`` layer: (head up to it, network after it)."""
    from ..models.vgg import VGGClassifier

    if not isinstance(model, VGGClassifier) or not module_name.startswith("features."):
        return None
    i = int(module_name.split(".")[1])

    class _Upto(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(*list(model.features)[: i + 1])

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.body(model.normalise(x))

    return _Upto(), _FromLayer(model, i + 1)


def _quiet() -> contextlib.AbstractContextManager:
    """Silence pytorch-grad-cam's per-image tqdm bars (they write to stderr)."""
    return contextlib.redirect_stderr(io.StringIO())


def baseline_cam(model: nn.Module, images: torch.Tensor | np.ndarray, method: str, layer: str = CAM_LAYER,
                 target: int = 1, batch_size: int = 128, max_channels: int | None = None,
                 fast_ablation: bool = True) -> torch.Tensor:
    """One baseline CAM for a batch of images.

    Parameters
    ----------
    model : nn.Module
        Classifier returning logits [B, n_classes]; put in eval mode (pytorch-grad-cam does).
    images : Tensor or ndarray, shape (B, H, W) or (B, C, H, W)
        Input images (moved to the model's device).
    method : {"gradcam_pp", "scorecam", "ablationcam", "layercam", "gradcam"}
        The CAM method (``gradcam``: pytorch-grad-cam's own Grad-CAM, for comparisons).
    layer : str
        Module or block name of the explained layer.
    target : int or {"logit", "margin"}
        What is explained (see :func:`umcam_lib.cam.gradcam.target_score`).
    batch_size : int
        Perturbed images (Score-CAM) or ablated copies (Ablation-CAM) per forward pass.
    max_channels : int, optional
        Score-CAM only: per image, score only the channels of largest spatial variance.
    fast_ablation : bool
        Ablation-CAM on the VGG classifier: run the ablated passes from the layer on.

    Returns
    -------
    Tensor, float32, shape (B, H, W), on the CPU
        Maps in [0, 1] (upsampled bilinearly, divided by the per-image maximum).
    """
    (module_name,) = resolve_layer_names(model, [layer])
    modules = dict(model.named_modules())
    device = next(model.parameters()).device
    x = _as_batch(images).to(device)
    if _is_channels_last(model):
        x = x.contiguous(memory_format=torch.channels_last)
    targets = [make_target(target) for _ in range(x.shape[0])]
    with runtime.eval_mode(model):
        if method == "ablationcam" and fast_ablation and (split := _split_vgg(model, module_name)) is not None:
            upto, after = split
            with torch.no_grad():
                a = upto(x)
            cam_obj: Any = RawAblationCAM(after, [after.entry], ablation_layer=_FastAblationLayer(),
                                          batch_size=int(batch_size))
            inputs = a
        else:
            layer_module = [modules[module_name]]
            if method == "gradcam":
                cam_obj = RawGradCAM(model, layer_module)
            elif method == "gradcam_pp":
                cam_obj = RawGradCAMPlusPlus(model, layer_module)
            elif method == "layercam":
                cam_obj = RawLayerCAM(model, layer_module)
            elif method == "scorecam":
                transform = _top_variance_channels(int(max_channels)) if max_channels else None
                cam_obj = RawScoreCAM(model, layer_module, reshape_transform=transform)
                cam_obj.batch_size = int(batch_size)
            elif method == "ablationcam":
                cam_obj = RawAblationCAM(model, layer_module, ablation_layer=_FastAblationLayer(),
                                         batch_size=int(batch_size))
            else:
                raise ValueError(f"unknown CAM method {method!r}: use one of "
                                 f"{sorted([*BASELINE_NAMES, 'gradcam'])}")
            inputs = x
        try:
            with _quiet():
                raw = cam_obj(input_tensor=inputs, targets=targets)
        finally:
            cam_obj.activations_and_grads.release()
    return upsample_normalise(torch.from_numpy(np.asarray(raw, dtype=np.float32)), x.shape[-2:])


def compute_baseline_cams(model: nn.Module, images: np.ndarray, method: str, layer: str = CAM_LAYER,
                          batch_size: int = 64, method_batch_size: int = 128, max_channels: int | None = None,
                          device: str | torch.device | None = None, target: int = 1,
                          progress: bool = True, channels_last: bool = True) -> np.ndarray:
    """A baseline CAM for every slice of a stack.

    Parameters
    ----------
    model : nn.Module
        The classifier; it is not modified (see :func:`umcam_lib.cam.gradcam.working_copy`).
    images : ndarray, shape (N, H, W)
        Slices in [0, 1].
    method : {"gradcam_pp", "scorecam", "ablationcam", "layercam"}
        See :data:`BASELINE_NAMES`.
    layer : str
        Explained layer (``block5``: the last convolutional block).
    batch_size : int
        Slices per call (``cam.batch_size``). Score-CAM holds K masked copies of each slice, so it
        takes ``max(1, method_batch_size // K)`` slices per call instead.
    method_batch_size : int
        Perturbed images per forward pass for Score-CAM and Ablation-CAM (``cam.scorecam_batch_size``).
    max_channels : int, optional
        Score-CAM channel limit (see :func:`baseline_cam`).
    device : str or torch.device, optional
        Where to run; the model's device when omitted.
    progress : bool
        Show a tqdm bar over slices.
    channels_last : bool
        Compute with a channels-last copy of the model (faster on the CPU).

    Returns
    -------
    ndarray, float16, shape (N, H, W)
    """
    images = np.asarray(images)
    if images.ndim != 3:
        raise ValueError(f"images must be [N, H, W], got shape {images.shape}")
    if method not in BASELINE_NAMES and method != "gradcam":
        raise ValueError(f"unknown CAM method {method!r}: use one of {sorted(BASELINE_NAMES)}")
    model = working_copy(model, device, channels_last)
    step = int(batch_size)
    if method == "scorecam":
        (module_name,) = resolve_layer_names(model, [layer])
        k = _channels_of(model, module_name, images.shape[1:])
        if max_channels:
            k = min(k, int(max_channels))
        step = max(1, min(step, int(method_batch_size) // max(k, 1)))
    n = images.shape[0]
    out = np.zeros(images.shape, dtype=np.float16)
    bar = tqdm(total=n, desc=BASELINE_NAMES.get(method, method), unit="slice", disable=not progress,
               file=sys.stderr)
    for s in range(0, n, step):
        cams = baseline_cam(model, images[s:s + step], method, layer=layer, target=target,
                            batch_size=method_batch_size, max_channels=max_channels)
        out[s:s + step] = cams.numpy().astype(np.float16)
        bar.update(min(step, n - s))
    bar.close()
    return out


def _channels_of(model: nn.Module, module_name: str, size: tuple[int, ...]) -> int:
    """Number of channels that layer ``module_name`` outputs for an input of ``size``."""
    module = dict(model.named_modules())[module_name]
    seen: list[int] = []
    handle = module.register_forward_hook(lambda m, i, o: seen.append(int(o.shape[1])))
    device = next(model.parameters()).device
    in_ch = getattr(model, "in_channels", 1)
    try:
        with torch.no_grad():
            model(torch.zeros(1, in_ch, *size, device=device))
    finally:
        handle.remove()
    return seen[0]
