"""The steps of notebooks 03 and 04 as functions of a ``cam`` parameter section.

The ``cam`` section (``params/quick.yaml``)::

    layers                 layers fused by Average-CAM and UM-CAM (block1 .. block5, head, or
                           module names)
    threshold_grid         [start, stop, step] of the validation threshold search
    batch_size             slices per Grad-CAM / Grad-CAM++ pass
    scorecam_batch_size    perturbed images per forward pass (Score-CAM, Ablation-CAM)
    scorecam_max_channels  (optional, default null = all) Score-CAM channels scored per slice
    target                 (optional, default "logit") what every CAM explains: "logit" (the
                           brain logit, the usual Grad-CAM target) or "margin" (brain minus
                           background logit, the log-odds the softmax decides with)
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn

from .baselines import BASELINE_NAMES, compute_baseline_cams
from .fusion import average_cam, umcam
from .gradcam import CAM_LAYER, compute_cams

if TYPE_CHECKING:
    from ..data.artifacts import SliceSet

#: Every layer notebook 04 computes: the five VGG blocks and the class-map convolution.
STUDY_LAYERS = ["block1", "block2", "block3", "block4", "block5", "head"]

REQUIRED_KEYS = ("layers", "threshold_grid", "batch_size", "scorecam_batch_size")


def check_cam_config(cam: Mapping[str, Any]) -> dict[str, Any]:
    """Return the ``cam`` section with optional keys filled in; fail clearly on bad values."""
    missing = [k for k in REQUIRED_KEYS if k not in cam]
    if missing:
        raise KeyError(f"cam parameters lack {missing} (see params/quick.yaml, section 'cam')")
    out = {"scorecam_max_channels": None, "target": "logit", **dict(cam)}
    if out["target"] not in ("logit", "margin"):
        raise ValueError(f"cam.target must be 'logit' or 'margin', got {out['target']!r}")
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
                                   device=device, amp=amp, progress=progress, target=cam["target"])[0]
    seconds["gradcam"] = time.perf_counter() - t0
    for method in BASELINE_NAMES:
        t0 = time.perf_counter()
        maps[method] = compute_baseline_cams(
            model, images, method, layer=CAM_LAYER, batch_size=int(cam["batch_size"]),
            method_batch_size=int(cam["scorecam_batch_size"]), max_channels=cam["scorecam_max_channels"],
            device=device, progress=progress, target=cam["target"])
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


def evaluate_seed(model: nn.Module, slices: "SliceSet", run_dir: str | Path, cam: Mapping[str, Any],
                  seed: int, stage: str, device: str | torch.device | None = None, amp: bool = False,
                  primary: bool = False) -> dict[str, Any]:
    """Score one seed's classifier as notebook 03 (``stage="variants"``) or 04 (``"fusion"``) does.

    Computes the CAMs on the positive validation and test slices only, chooses each method's
    threshold on validation and records the rows with ``seed`` (Table 2 for the variants,
    Table 1 for Grad-CAM / Average-CAM / UM-CAM). ``primary`` also stores the thresholds that
    notebooks 05-07 read; an extra seed leaves them alone.

    Returns
    -------
    dict
        ``results`` (map name -> CamEvaluation) and, for ``"fusion"``, ``localisation``
        (:func:`umcam_lib.cam.diagnostics.layer_localisation` on validation).
    """
    from ..metrics import threshold_grid
    from .diagnostics import layer_localisation
    from .pseudo_mask import eval_rows, evaluate_and_record

    cam = check_cam_config(cam)
    grid = threshold_grid(cam["threshold_grid"])
    rows = eval_rows(slices)
    names = _method_names()
    if stage == "variants":
        maps, _ = compute_cam_variants(model, slices.images[rows], cam, device=device, amp=amp, progress=False)
        results = evaluate_and_record(run_dir, slices, "table2", {n: (rows, m) for n, m in maps.items()},
                                      grid, names, seed=seed, keep_thresholds=primary)
        return {"results": results}
    if stage == "fusion":
        layer_names = study_layers(cam["layers"])
        layer_maps = compute_cams(model, slices.images[rows], layer_names, batch_size=int(cam["batch_size"]),
                                  device=device, amp=amp, progress=False, target=cam["target"])
        fused = fuse_layers(layer_maps, layer_names, cam["layers"])
        results = evaluate_and_record(run_dir, slices, "table1", {n: (rows, m) for n, m in fused.items()},
                                      grid, names, seed=seed, keep_thresholds=primary)
        loc = layer_localisation(model, slices, "val", cam["layers"], target=cam["target"],
                                 grid=cam["threshold_grid"], batch_size=int(cam["batch_size"]), device=device)
        return {"results": results, "localisation": loc.assign(seed=seed)}
    raise ValueError(f"stage must be 'variants' or 'fusion', got {stage!r}")


def _method_names() -> dict[str, str]:
    from . import METHOD_NAMES
    return METHOD_NAMES


def evaluate_extra_seeds(models: Mapping[int, nn.Module], slices: "SliceSet", run_dir: str | Path,
                         cam: Mapping[str, Any], stage: str, device: str | torch.device | None = None,
                         amp: bool = False) -> pd.DataFrame:
    """:func:`evaluate_seed` for the classifiers of the extra seeds (seed -> trained model; the
    primary seed is scored by the notebook itself).

    Returns
    -------
    DataFrame
        One row per extra seed, method and split: ``seed, method, split, threshold, dsc``; for
        ``"fusion"`` also the per-layer localisation rows (``method`` = layer name, ``pointing``).
    """
    out = []
    for s, model in models.items():
        res = evaluate_seed(model, slices, run_dir, cam, int(s), stage, device=device, amp=amp)
        for r in res["results"].values():
            for split, df in r.scores.items():
                out.append({"seed": s, "method": r.method, "split": split, "threshold": r.threshold,
                            "dsc": float(df["dsc"].mean())})
        if "localisation" in res:
            for r in res["localisation"].itertuples():
                out.append({"seed": s, "method": r.layer, "split": "val", "threshold": r.threshold,
                            "dsc": r.dsc, "pointing": r.pointing})
    return pd.DataFrame(out)
