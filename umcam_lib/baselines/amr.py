"""The AMR baseline of notebook 07: the AMR network trained, its localisation maps.

The network is :mod:`umcam_lib.models.amr` (activation modulation and recalibration, Qin et
al., AAAI 2022): a frozen spotlight branch (notebook 02's classifier) and a compensation branch
with activation modulation modules. This module builds it from the ``baselines`` section,
trains the compensation branch with the classifier recipe and reads the localisation map, the
mean of both branches' Grad-CAMs of ``block5``. From the maps on (validation threshold, pseudo
labels) AMR takes DRS's path (:func:`umcam_lib.baselines.drs.evaluate_baseline_cam`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
import torch

from .. import runtime
from ..cam.gradcam import compute_cams
from ..data.artifacts import SliceSet
from ..models.amr import AMRClassifier, amr_classifier
from ..models.vgg import VGGClassifier
from ..train.classifier import load_classifier, train_classifier
from ..config.schema import BaselinesParams, ClassifierParams
from .drs import baseline_options, training_recipe

def build_amr(spotlight: VGGClassifier, baselines: BaselinesParams | Mapping[str, Any],
              seed: int | None = None) -> AMRClassifier:
    """The AMR classifier of a profile around ``spotlight`` (settings from the ``baselines`` section).

    Parameters
    ----------
    spotlight : VGGClassifier
        Notebook 02's classifier (``train.classifier.load_classifier(run_dir / "classifier", classifier)``).
    baselines : mapping
        ``amr_consistency`` and ``amr_reduction`` (see :func:`.drs.baseline_options`).
    seed : int, optional
        Seed torch first (the AMM weights are random).
    """
    opts = baseline_options(baselines)
    if seed is not None:
        runtime.seed_everything(int(seed))
    return amr_classifier(spotlight, consistency=opts.amr_consistency,
                          reduction=opts.amr_reduction)


def amr_cams(model: AMRClassifier, images: np.ndarray, layer: str = "block5", batch_size: int = 64,
             device: str | torch.device | None = None, amp: bool = False, progress: bool = True) -> np.ndarray:
    """AMR localisation maps: the mean of both branches' Grad-CAMs of ``layer``, renormalised.

    Parameters
    ----------
    model : AMRClassifier
    images : ndarray, shape (N, H, W)
        Slices in [0, 1].
    layer : str
        Block or module name of the VGG branches.

    Returns
    -------
    ndarray, float16, shape (N, H, W)
        Maps in [0, 1] (each divided by its maximum; all-zero stays zero).
    """
    s = compute_cams(model.spotlight, images, [layer], batch_size, device, amp, progress=progress,
                     desc="AMR spotlight")[0].astype(np.float32)
    c = compute_cams(model.compensation, images, [layer], batch_size, device, amp, progress=progress,
                     desc="AMR compensation")[0].astype(np.float32)
    return renormalise((s + c) / 2.0)


def renormalise(maps: np.ndarray) -> np.ndarray:
    """Divide each map [N, H, W] by its maximum (all-zero maps stay zero) -> float16."""
    maps = np.asarray(maps, dtype=np.float32)
    peak = maps.reshape(maps.shape[0], -1).max(axis=1) if maps.size else np.zeros(0, np.float32)
    scale = np.where(peak > 0, peak, 1.0)[:, None, None]
    return (maps / scale).astype(np.float16)


def train_amr(slices: SliceSet, classifier: ClassifierParams | Mapping[str, Any],
              baselines: BaselinesParams | Mapping[str, Any],
              out_dir: str | Path, spotlight: VGGClassifier, device: str | torch.device = "auto",
              amp: bool = True, seed: int = 0, progress: bool = True) -> tuple[AMRClassifier, pd.DataFrame]:
    """Train AMR's compensation branch with the classifier recipe; return the best epoch and history.

    Parameters
    ----------
    slices : SliceSet
        Image-level labels of the training slices; validation F1 of the compensation branch
        picks the epoch.
    classifier, baselines : mapping
        Parameter sections (the recipe, with ``epochs = baselines.epochs``).
    out_dir : path
        Checkpoints (``best.pt``, ``last.pt``, ``history.csv``); an interrupted run resumes.
    spotlight : VGGClassifier
        Notebook 02's trained classifier (frozen spotlight branch and warm start).
    device, amp, seed, progress
        As :func:`umcam_lib.train.classifier.train_classifier`.

    Returns
    -------
    model : AMRClassifier
        Weights of the best validation epoch, eval mode, on ``device``.
    history : DataFrame
    """
    model = build_amr(spotlight, baselines, seed=seed)
    history = train_classifier(model, slices, training_recipe(classifier, baselines), out_dir, device, amp, seed,
                               progress)
    return load_classifier(out_dir, classifier, model=model, device=device), history
