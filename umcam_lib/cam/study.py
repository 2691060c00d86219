"""The steps of notebooks 03 and 04 as functions of a ``cam`` parameter section.

The ``cam`` section (``params/quick.yaml``)::

    layers                 layers fused by Average-CAM and UM-CAM (block1 .. block5, head, or
                           module names)
    threshold_grid         [start, stop, step] of the validation threshold search
    batch_size             slices per Grad-CAM / Grad-CAM++ pass
    scorecam_batch_size    perturbed images per forward pass (Score-CAM, Ablation-CAM)
    scorecam_max_channels  (optional, default null = all) Score-CAM channels scored per slice
"""
from __future__ import annotations

import time
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from .baselines import BASELINE_NAMES, compute_baseline_cams
from .fusion import average_cam, umcam
from .gradcam import CAM_LAYER, compute_cams

#: Every layer notebook 04 computes: the five VGG blocks and the class-map convolution.
STUDY_LAYERS = ["block1", "block2", "block3", "block4", "block5", "head"]

REQUIRED_KEYS = ("layers", "threshold_grid", "batch_size", "scorecam_batch_size")


def check_cam_config(cam: Mapping[str, Any]) -> dict[str, Any]:
    """Return the ``cam`` section with optional keys filled in; fail clearly on bad values."""
    missing = [k for k in REQUIRED_KEYS if k not in cam]
    if missing:
        raise KeyError(f"cam parameters lack {missing} (see params/quick.yaml, section 'cam')")
    out = {"scorecam_max_channels": None, **dict(cam)}
    if not out["layers"]:
        raise ValueError("cam.layers is empty: name the layers UM-CAM fuses (e.g. [block1, ..., block5])")
    for key in ("batch_size", "scorecam_batch_size"):
        if int(out[key]) < 1:
            raise ValueError(f"cam.{key} must be >= 1, got {out[key]!r}")
    if out["scorecam_max_channels"] is not None and int(out["scorecam_max_channels"]) < 1:
        raise ValueError(f"cam.scorecam_max_channels must be null or >= 1, got {out['scorecam_max_channels']!r}")
    return out


def study_layers(fused: Sequence[str]) -> list[str]:
    """The fused layers followed by the other :data:`STUDY_LAYERS` (no duplicates)."""
    return list(dict.fromkeys([*fused, *STUDY_LAYERS]))


def compute_cam_variants(model: nn.Module, images: np.ndarray, cam: Mapping[str, Any],
                         device: str | torch.device | None = None, amp: bool = False,
                         progress: bool = True) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Grad-CAM, Grad-CAM++, Score-CAM and Ablation-CAM on ``block5`` for a stack of slices.

    Parameters
    ----------
    model : nn.Module
        The trained classifier (not modified).
    images : ndarray, shape (N, H, W)
        Slices in [0, 1].
    cam : mapping
        The ``cam`` parameter section.

    Returns
    -------
    maps : dict
        Map name (``gradcam``, ``gradcam_pp``, ``scorecam``, ``ablationcam``) -> float16 [N, H, W].
    seconds : dict
        Map name -> wall-clock seconds it took.
    """
    cam = check_cam_config(cam)
    maps: dict[str, np.ndarray] = {}
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    maps["gradcam"] = compute_cams(model, images, [CAM_LAYER], batch_size=int(cam["batch_size"]),
                                   device=device, amp=amp, progress=progress)[0]
    seconds["gradcam"] = time.perf_counter() - t0
    for method in BASELINE_NAMES:
        t0 = time.perf_counter()
        maps[method] = compute_baseline_cams(
            model, images, method, layer=CAM_LAYER, batch_size=int(cam["batch_size"]),
            method_batch_size=int(cam["scorecam_batch_size"]), max_channels=cam["scorecam_max_channels"],
            device=device, progress=progress)
        seconds[method] = time.perf_counter() - t0
    return maps, seconds


def fuse_layers(layer_maps: np.ndarray, layer_names: Sequence[str], fused: Sequence[str]) -> dict[str, np.ndarray]:
    """Grad-CAM (``block5``), Average-CAM and UM-CAM of ``fused`` layers from per-layer maps.

    Parameters
    ----------
    layer_maps : ndarray, shape (L, N, H, W)
        Per-layer CAMs in [0, 1], layer ``i`` named ``layer_names[i]``.
    fused : sequence of str
        The layers Average-CAM and UM-CAM combine (``cam.layers``).

    Returns
    -------
    dict
        ``gradcam``, ``average_cam``, ``umcam`` -> float16 [N, H, W].
    """
    names = list(layer_names)
    missing = [l for l in [*fused, CAM_LAYER] if l not in names]
    if missing:
        raise ValueError(f"layers {missing} were not computed (have {names})")
    sel = layer_maps[[names.index(l) for l in fused]]
    return {"gradcam": np.asarray(layer_maps[names.index(CAM_LAYER)], dtype=np.float16),
            "average_cam": np.asarray(average_cam(sel), dtype=np.float16),
            "umcam": np.asarray(umcam(sel), dtype=np.float16)}
