"""Grad-CAM of several layers from one forward and one backward pass (METHOD Eq. 1-2).

For the target logit y and the activations A^k of a layer (channel k, pixel i, Z pixels)::

    alpha_k = (1/Z) sum_i dy/dA^k_i          (1)   channel weight: mean gradient
    M       = ReLU( sum_k alpha_k A^k )      (2)   weighted sum of the feature maps

pytorch-grad-cam computes this one layer at a time (one forward and one backward pass per
layer). Here forward hooks keep the activations of every requested layer during a single
forward pass, and a single ``torch.autograd.grad`` call returns the gradients of all of them at
once. Asking autograd for the activations' gradients only (instead of ``loss.backward()``) also
skips the weight gradients, which a CAM never needs.

Every map is then upsampled bilinearly to the input size (``align_corners=False``, the pixel
convention of OpenCV's ``cv2.resize`` that pytorch-grad-cam uses) and divided by its own
per-image maximum, so it lies in [0, 1]; a map that is zero everywhere stays zero.
"""
from __future__ import annotations

import copy
from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .. import runtime
from ..config.schema import choices

#: Layer that the single-layer CAM methods (Grad-CAM, Grad-CAM++, Score-CAM, Ablation-CAM) use:
#: the last ReLU of VGG's fifth block, i.e. the last convolutional feature maps before the head.
CAM_LAYER = "block5"


def resolve_layer_names(model: nn.Module, layers: Iterable[str] | str) -> list[str]:
    """Turn layer names into module names of ``model``.

    Parameters
    ----------
    model : nn.Module
        The network whose layers are meant. A network may name some of its layers through a
        ``layer_aliases`` mapping (alias -> module name), as the study's VGG classifier does
        for its blocks (:data:`umcam_lib.models.vgg.BLOCK_LAYERS`).
    layers : str or iterable of str
        Module names as in ``model.named_modules()`` (e.g. ``"features.29"``) or aliases of
        the model (``"block1"`` .. ``"block5"``, ``"head"`` for the VGG classifier).

    Returns
    -------
    list of str
        Module names, in the given order.

    Raises
    ------
    ValueError
        When a name is neither a module of ``model`` nor one of its aliases.
    """
    if isinstance(layers, str):
        layers = [layers]
    layers = list(layers)
    if not layers:
        raise ValueError("layers is empty: name at least one layer (e.g. ['block5'])")
    modules = dict(model.named_modules())
    aliases = dict(getattr(model, "layer_aliases", None) or {})
    out = []
    for name in layers:
        if name in modules and name != "":
            out.append(name)
            continue
        module_name = aliases.get(name)
        if module_name is None or module_name not in modules:
            raise ValueError(f"layer {name!r} is not a module of {type(model).__name__} "
                             f"(module names such as 'features.29', or block1..block5 / head for the VGG classifier)")
        out.append(module_name)
    return out


def _as_batch(images: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Images [B, H, W] or [B, C, H, W] -> float32 tensor [B, C, H, W]."""
    x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise ValueError(f"images must be [B, H, W] or [B, C, H, W], got shape {tuple(x.shape)}")
    return x.float()


def _is_channels_last(model: nn.Module) -> bool:
    """Whether the model's first 4D weight is stored channels-last."""
    for p in model.parameters():
        if p.ndim == 4:
            return p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous()
    return False


def upsample_normalise(cam: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Upsample CAMs bilinearly to ``size`` and divide each by its maximum.

    Parameters
    ----------
    cam : Tensor, shape (B, h, w)
        Non-negative maps at feature resolution.
    size : (H, W)
        Input image size in pixels.

    Returns
    -------
    Tensor, float32, shape (B, H, W)
        Maps in [0, 1]; an all-zero map stays all-zero.
    """
    return upsample_with_peak(cam, size)[0]


def upsample_with_peak(cam: torch.Tensor, size: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`upsample_normalise` that also returns each map's maximum before the division.

    Returns
    -------
    maps : Tensor, float32, shape (B, H, W)
        As :func:`upsample_normalise`.
    peak : Tensor, float32, shape (B,)
        Maximum of each upsampled map (the raw scale the division removed; 0 for an all-zero
        map). ``maps * peak`` is the raw map, which per-batch or per-volume normalisations of
        UM-CAM (``cam.umcam_norm``) need.
    """
    cam = cam.float()
    if tuple(cam.shape[-2:]) != tuple(size):
        cam = F.interpolate(cam[:, None], size=tuple(int(s) for s in size), mode="bilinear",
                            align_corners=False)[:, 0]
    peak = cam.amax(dim=(1, 2), keepdim=True)
    out = torch.where(peak > 0, cam / torch.where(peak > 0, peak, torch.ones_like(peak)), torch.zeros_like(cam))
    return out, peak[:, 0, 0]


def gradcam_from(activations: torch.Tensor, gradients: torch.Tensor | None) -> torch.Tensor:
    """Eq. 1-2 for one layer: ``ReLU(sum_k mean_i(dy/dA^k) A^k)``.

    Parameters
    ----------
    activations, gradients : Tensor, shape (B, K, h, w)
        Feature maps of the layer and the gradient of the target logit with respect to them
        (``None``: the logit does not depend on the layer, giving an all-zero map).

    Returns
    -------
    Tensor, float32, shape (B, h, w)
    """
    a = activations.float()
    if gradients is None:
        return torch.zeros(a.shape[0], *a.shape[2:], dtype=a.dtype, device=a.device)
    alpha = gradients.float().mean(dim=(2, 3), keepdim=True)
    return torch.relu((alpha * a).sum(dim=1))


def layercam_from(activations: torch.Tensor, gradients: torch.Tensor | None) -> torch.Tensor:
    """LayerCAM for one layer: ``ReLU(sum_k ReLU(dy/dA^k_i) A^k_i)`` (Jiang et al., 2021).

    Instead of one weight per channel (Grad-CAM's mean gradient), every position keeps its own
    positive gradient as the weight, so a shallow layer whose gradients change sign from place to
    place does not average to nothing. Equal to pytorch-grad-cam's ``LayerCAM`` before its
    scaling (``tests/test_cam.py``).

    Parameters
    ----------
    activations, gradients : Tensor, shape (B, K, h, w)
        As :func:`gradcam_from`.

    Returns
    -------
    Tensor, float32, shape (B, h, w)
    """
    a = activations.float()
    if gradients is None:
        return torch.zeros(a.shape[0], *a.shape[2:], dtype=a.dtype, device=a.device)
    return torch.relu((torch.relu(gradients.float()) * a).sum(dim=1))


#: Per-layer CAM rules of :func:`multi_layer_gradcam` (``weighting``).
WEIGHTINGS = {"gradcam": gradcam_from, "layercam": layercam_from}


def multi_layer_gradcam(model: nn.Module, images: torch.Tensor | np.ndarray, layers: Iterable[str] | str,
                        target: int = 1, amp: bool = False, weighting: str = "gradcam",
                        return_peaks: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Grad-CAM of every layer in ``layers`` from one forward and one backward pass.

    Parameters
    ----------
    model : nn.Module
        A classifier returning logits [B, n_classes]. It is run in eval mode (its previous mode
        is restored afterwards); gradients are enabled even inside ``torch.no_grad()``.
    images : Tensor or ndarray, shape (B, H, W) or (B, C, H, W)
        Input images as the model expects them (slices in [0, 1] for the VGG classifier).
        Moved to the model's device.
    layers : str or iterable of str
        Module names (``model.named_modules()``) or VGG block names (``block1`` .. ``head``).
        The module's output must not be modified in place by a later module.
    target : int
        Class whose logit is explained (1 = brain).
    amp : bool
        Run the forward pass under CUDA float16 autocast (ignored on the CPU).
    weighting : {"gradcam", "layercam"}
        Per-layer rule: Grad-CAM (Eq. 1-2, the default) or LayerCAM (:func:`layercam_from`),
        both from the same single forward and backward pass.
    return_peaks : bool
        Also return each map's maximum before normalisation (:func:`upsample_with_peak`).

    Returns
    -------
    Tensor, float32, shape (len(layers), B, H, W), on the model's device
        Each layer's map upsampled to the input size and divided by its per-image maximum.
    peaks : Tensor, float32, shape (len(layers), B)
        Only with ``return_peaks``.

    Raises
    ------
    ValueError
        For an unknown layer, or a layer whose output is overwritten in place (e.g. by a
        following ``ReLU(inplace=True)``), which would corrupt the stored activations.
    """
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {sorted(WEIGHTINGS)}, got {weighting!r}")
    names = resolve_layer_names(model, layers)
    unique = list(dict.fromkeys(names))
    modules = dict(model.named_modules())
    device = next(model.parameters()).device
    x = _as_batch(images).to(device)
    if _is_channels_last(model):
        x = x.contiguous(memory_format=torch.channels_last)
    acts: dict[str, torch.Tensor] = {}
    versions: dict[str, int] = {}

    def make_hook(name: str):
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            if not isinstance(output, torch.Tensor):
                raise TypeError(f"layer {name!r} returns {type(output).__name__}, not a tensor")
            if name in acts:
                raise ValueError(f"layer {name!r} runs twice in one forward pass; Grad-CAM needs a single call")
            acts[name] = output
            versions[name] = output._version
        return hook

    handles = [modules[n].register_forward_hook(make_hook(n)) for n in unique]
    try:
        with runtime.eval_mode(model), torch.enable_grad():
            x = x.detach().requires_grad_(True)  # a graph even for frozen weights; caller's tensor untouched
            with runtime.autocast(device, runtime.use_amp(device, amp)):
                logits = model(x)
            missing = [n for n in unique if n not in acts]
            if missing:
                raise ValueError(f"layers {missing} were not called in the forward pass of {type(model).__name__}")
            changed = [n for n in unique if acts[n]._version != versions[n]]
            if changed:
                raise ValueError(f"the outputs of {changed} were modified in place after the layer; "
                                 f"use non-in-place activations (ReLU(inplace=False)) for Grad-CAM")
            score = target_score(logits, target)
            grads = torch.autograd.grad(score, [acts[n] for n in unique], allow_unused=True)
    finally:
        for h in handles:
            h.remove()
    size = x.shape[-2:]
    rule = WEIGHTINGS[weighting]
    per_layer = {n: upsample_with_peak(rule(acts[n].detach(), None if g is None else g.detach()), size)
                 for n, g in zip(unique, grads)}
    out = torch.stack([per_layer[n][0] for n in names])
    if return_peaks:
        return out, torch.stack([per_layer[n][1] for n in names])
    return out


#: Grad-CAM targets besides a class index (``cam.target``; from the schema, :class:`umcam_lib.config.CamParams`).
TARGETS: tuple[str, ...] = choices("cam.target")


class ClassLogitTarget:
    """What a CAM explains: the logit of one class (pytorch-grad-cam's target protocol).

    Called on a model output of shape (2,) or (B, 2), it returns a scalar or (B,).
    """

    def __init__(self, index: int = 1) -> None:
        self.index = int(index)

    def __call__(self, model_output: torch.Tensor) -> torch.Tensor:
        return model_output[self.index] if model_output.ndim == 1 else model_output[:, self.index]


class LogitMarginTarget:
    """What a CAM explains: brain logit minus background logit, the log-odds of "brain".

    The only quantity a two-class softmax decides with; with two logits the brain logit alone
    may stay flat while the background logit does the work, and its gradient then points
    anywhere (``cam.target: margin``).
    """

    def __call__(self, model_output: torch.Tensor) -> torch.Tensor:
        if model_output.ndim == 1:
            return model_output[1] - model_output[0]
        return model_output[:, 1] - model_output[:, 0]


def make_target(target: int | str) -> ClassLogitTarget | LogitMarginTarget:
    """The target object of ``cam.target``: a class index, ``"logit"`` (class 1) or ``"margin"``.

    The same objects serve our Grad-CAM (:func:`target_score`) and the pytorch-grad-cam
    baselines (:mod:`umcam_lib.cam.baselines`), so both explain the same quantity.

    Examples
    --------
    >>> logits = torch.tensor([[0.5, 2.0], [1.0, -1.0]])
    >>> make_target("logit")(logits), make_target("margin")(logits)
    (tensor([ 2., -1.]), tensor([ 1.5000, -2.0000]))
    """
    if target == "margin":
        return LogitMarginTarget()
    if target == "logit":
        return ClassLogitTarget(1)
    if isinstance(target, str):
        raise ValueError(f"cam.target must be a class index or one of {TARGETS}, got {target!r}")
    return ClassLogitTarget(int(target))


def target_score(logits: torch.Tensor, target: int | str) -> torch.Tensor:
    """The scalar whose gradient Grad-CAM reads: the target (:func:`make_target`) summed over the batch.

    Parameters
    ----------
    logits : Tensor, shape (B, 2)
        (background, brain) logits.
    target : int or {"logit", "margin"}
        A class index, ``"logit"`` (the brain logit, class 1: the usual Grad-CAM target) or
        ``"margin"`` (brain minus background logit).

    Returns
    -------
    Tensor, float32, scalar
    """
    return make_target(target)(logits).float().sum()


def working_copy(model: nn.Module, device: str | torch.device | None = None,
                 channels_last: bool = True) -> nn.Module:
    """An eval-mode copy of ``model`` on ``device`` for CAM computation (``model`` is untouched).

    With ``channels_last`` the copy's weights are stored channels-last, a layout in which
    PyTorch's CPU (and CUDA mixed-precision) convolutions run about twice as fast; the
    weights' values, module names and results (up to float rounding) are unchanged.
    """
    dev = next(model.parameters()).device if device is None else runtime.as_device(device)
    work = copy.deepcopy(model).to(dev).eval()
    if channels_last:
        work = work.to(memory_format=torch.channels_last)
    return work


def compute_cams(model: nn.Module, images: np.ndarray, layers: Iterable[str] | str, batch_size: int = 64,
                 device: str | torch.device | None = None, amp: bool = False, target: int = 1,
                 progress: bool = True, desc: str = "Grad-CAM", channels_last: bool = True,
                 weighting: str = "gradcam", return_peaks: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Multi-layer Grad-CAM of a stack of slices, batch by batch.

    Parameters
    ----------
    model : nn.Module
        The classifier; it is not modified (see :func:`working_copy`).
    images : ndarray, shape (N, H, W)
        Slices in [0, 1].
    layers : str or iterable of str
        See :func:`multi_layer_gradcam`.
    batch_size : int
        Slices per forward/backward pass.
    device : str or torch.device, optional
        ``"auto"``, ``"cpu"``, ``"cuda"`` or a device; the model's device when omitted.
    amp, target
        See :func:`multi_layer_gradcam`.
    progress : bool
        Show a tqdm progress bar.
    channels_last : bool
        Compute with a channels-last copy of the model (faster; see :func:`working_copy`).
    weighting, return_peaks
        See :func:`multi_layer_gradcam`.

    Returns
    -------
    ndarray, float16, shape (len(layers), N, H, W)
        Maps in [0, 1] (float16, as stored in ``runs/<profile>/cams``).
    peaks : ndarray, float32, shape (len(layers), N)
        Only with ``return_peaks``: each map's maximum before the division.
    """
    images = np.asarray(images)
    if images.ndim != 3:
        raise ValueError(f"images must be [N, H, W], got shape {images.shape}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
    names = resolve_layer_names(model, layers)
    work = working_copy(model, device, channels_last)
    n = images.shape[0]
    out = np.zeros((len(names), n, *images.shape[1:]), dtype=np.float16)
    peaks = np.zeros((len(names), n), dtype=np.float32)
    starts = range(0, n, int(batch_size))
    for s in tqdm(starts, desc=desc, unit="batch", disable=not progress):
        batch = torch.from_numpy(np.ascontiguousarray(images[s:s + int(batch_size)], dtype=np.float32))
        cams, peak = multi_layer_gradcam(work, batch, names, target=target, amp=amp, weighting=weighting,
                                         return_peaks=True)
        out[:, s:s + batch.shape[0]] = cams.cpu().numpy().astype(np.float16)
        peaks[:, s:s + batch.shape[0]] = peak.cpu().numpy()
    return (out, peaks) if return_peaks else out
