"""The DRS baseline of notebook 07: classifier -> CAM -> validation threshold -> pseudo labels.

The network is :mod:`umcam_lib.models.drs` (discriminative region suppression, Kim, Han and
Kim, AAAI 2021); this module trains it with the classifier recipe, reads its localisation maps,
chooses their threshold on validation and turns them into the pseudo labels the study's UNet
is trained on. The path from the maps on (:func:`cam_rows`, :func:`evaluate_baseline_cam`,
:func:`pseudo_label_targets`) is shared with AMR (:mod:`umcam_lib.baselines.amr`). Settings come
from the ``baselines`` section (:class:`umcam_lib.config.BaselinesParams`).

Choices against the published method (named in notebook 07):

- the localisation map is the Grad-CAM of ``block5`` (``features.29``, the last ReLU of the
  backbone, stride 16) for the brain class, the same layer as the study's Grad-CAM baseline;
  the DRS authors read the class map of the final 1x1 layer, which in the non-dilated VGG has
  stride 32 (4 x 4 pixels at 128 x 128) - too coarse to compare boundaries;
- the map is read either as trained, every activation capped (the DRS authors' inference), or
  with the caps switched off (:func:`suppression_disabled`); :func:`choose_readout` keeps the
  one with the higher validation Dice (``baselines.drs_readout``, default ``auto``). On this
  study's coarse feature maps the capped readout tends to saturate over most of the slice:
  capping every layer removes the contrast inside broadly active channels;
- notebook 07 warm-starts the network from notebook 02's classifier (the DRS authors start
  from ImageNet weights, which the study does not have); the extra layers then start as
  identities. The fifth block is dilated only when the study's classifier is;
- the authors' second stage (a refinement network trained on the localisation maps and
  saliency maps) is not used: the map goes straight to the study's threshold -> UNet path.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from .. import runtime
from ..cam.gradcam import compute_cams
from ..cam.pseudo_mask import CamEvaluation, evaluate_cam
from ..config.schema import BaselinesParams, ClassifierParams, check_section
from ..data.artifacts import SPLITS, SliceSet
from ..data.maps import take_rows
from ..models.drs import DRSClassifier, drs_classifier, suppression_disabled
from ..models.vgg import VGGClassifier
from ..data.thresholds import save_threshold
from ..train.classifier import architecture, load_classifier, train_classifier

def baseline_options(baselines: BaselinesParams | Mapping[str, Any]) -> BaselinesParams:
    """The ``baselines`` section checked against the schema, missing keys at their defaults
    (:func:`umcam_lib.config.check_section`; a bad value raises ``ParameterError``).

    Keys (:class:`umcam_lib.config.BaselinesParams`): ``drs_delta``, ``drs_learnable``,
    ``drs_extra_layers``, ``drs_readout`` ("auto": DRS map with or without its caps, chosen on
    validation; or "suppressed" / "unsuppressed"), ``amr_consistency``, ``amr_reduction``,
    ``epochs`` (classifier epochs of DRS and AMR).
    """
    return check_section("baselines", baselines)


def build_drs(classifier: ClassifierParams | Mapping[str, Any], baselines: BaselinesParams | Mapping[str, Any],
              in_channels: int = 1,
              seed: int | None = None, init: VGGClassifier | None = None) -> DRSClassifier:
    """The DRS classifier of a profile: architecture from ``classifier``, DRS from ``baselines``.

    Parameters
    ----------
    classifier : mapping
        The ``classifier`` section (its architecture keys: width, depth, normalisation, pooling).
    baselines : mapping
        The ``baselines`` section (see :func:`baseline_options`).
    seed : int, optional
        Seed torch first, so the random initialisation is reproducible.
    init : VGGClassifier, optional
        Warm start from this trained plain classifier (see :func:`umcam_lib.models.drs.drs_classifier`).
    """
    clf = check_section("classifier", classifier)
    opts = baseline_options(baselines)
    if seed is not None:
        runtime.seed_everything(int(seed))
    return drs_classifier(width=clf.width, in_channels=in_channels, dilated=clf.dilated,
                          pretrained=clf.pretrained, delta=opts.drs_delta,
                          learnable=opts.drs_learnable, extra_layers=opts.drs_extra_layers,
                          init=init, **architecture(clf))


def drs_cams(model: DRSClassifier, images: np.ndarray, layer: str = "block5", batch_size: int = 64,
             device: str | torch.device | None = None, amp: bool = False, progress: bool = True,
             suppress: bool = True) -> np.ndarray:
    """DRS localisation maps: Grad-CAM of ``layer`` (default ``block5``) for the brain class.

    Parameters
    ----------
    model : DRSClassifier
    images : ndarray, shape (N, H, W)
        Slices in [0, 1].
    layer : str
        Block or module name (``block5`` = ``features.29``).
    batch_size, device, amp, progress
        As :func:`umcam_lib.cam.gradcam.compute_cams`.
    suppress : bool
        ``True``: the network as trained, every activation capped (the DRS authors' inference).
        ``False``: the same weights read with the caps switched off (:func:`suppression_disabled`).
        Capping at every layer removes the contrast inside broadly active channels, so on
        coarse feature maps the capped readout can saturate over most of the slice;
        :func:`choose_readout` picks between the two on validation.

    Returns
    -------
    ndarray, float16, shape (N, H, W)
        Maps in [0, 1], each divided by its maximum.
    """
    desc = "DRS Grad-CAM" + ("" if suppress else " (caps off)")
    if suppress:
        return compute_cams(model, images, [layer], batch_size, device, amp, progress=progress, desc=desc)[0]
    with suppression_disabled(model):
        return compute_cams(model, images, [layer], batch_size, device, amp, progress=progress, desc=desc)[0]


# ----------------------------------------------------------------------------- the baseline path
# Shared by DRS and AMR (notebook 07): classifier -> CAM -> validation threshold -> pseudo labels.

def training_recipe(classifier: ClassifierParams | Mapping[str, Any],
                    baselines: BaselinesParams | Mapping[str, Any]) -> ClassifierParams:
    """The classifier recipe (``classifier`` section) with ``epochs = baselines.epochs``."""
    return check_section("classifier", classifier).replace(epochs=baseline_options(baselines).epochs)


def train_drs(slices: SliceSet, classifier: ClassifierParams | Mapping[str, Any],
              baselines: BaselinesParams | Mapping[str, Any], out_dir: str | Path,
              init: VGGClassifier | None = None, device: str | torch.device = "auto", amp: bool = True,
              seed: int = 0, progress: bool = True) -> tuple[DRSClassifier, pd.DataFrame]:
    """Train the DRS classifier with the classifier recipe; return its best epoch and the history.

    Parameters
    ----------
    slices : SliceSet
        Image-level labels of the training slices; validation F1 picks the epoch.
    classifier, baselines : mapping
        Parameter sections (:func:`build_drs`, :func:`training_recipe`).
    out_dir : path
        Checkpoints (``best.pt``, ``last.pt``, ``history.csv``); an interrupted run resumes.
    init : VGGClassifier, optional
        Warm start from notebook 02's classifier (see :func:`drs_classifier`).
    device, amp, seed, progress
        As :func:`umcam_lib.train.classifier.train_classifier`.

    Returns
    -------
    model : DRSClassifier
        Weights of the best validation epoch, eval mode, on ``device``.
    history : DataFrame
        One row per epoch (see ``train_classifier``).
    """
    model = build_drs(classifier, baselines, seed=seed, init=init)
    history = train_classifier(model, slices, training_recipe(classifier, baselines), out_dir, device, amp, seed,
                               progress)
    return load_classifier(out_dir, classifier, model=model, device=device), history


def cam_rows(slices: SliceSet) -> np.ndarray:
    """Rows whose baseline CAM is computed: every positive slice of every split, ascending.

    Positive training slices become pseudo labels (negative ones are all background anyway);
    positive validation slices choose the threshold; positive test slices are scored with it.
    """
    return np.sort(slices.positive_rows(SPLITS))


def choose_readout(slices: SliceSet, index: np.ndarray, candidates: Mapping[str, np.ndarray], grid: Sequence[float],
                   method: str = "DRS", readout: str = "auto") -> tuple[str, dict[str, Any]]:
    """Pick one of several maps of the same slices by validation Dice (as a threshold is picked).

    Parameters
    ----------
    slices : SliceSet
    index : ndarray, shape (n,)
        Slice rows of every candidate.
    candidates : mapping
        Readout name -> maps [n, H, W] in [0, 1] (e.g. ``{"suppressed": ..., "unsuppressed": ...}``).
    grid : sequence of float
        Candidate thresholds.
    method : str
        Table name prefix: the evaluations are named ``"<method> (<readout>)"``.
    readout : str
        ``"auto"``: the candidate with the highest mean validation Dice at its best threshold
        (the first among ties); or a candidate name to force it (``baselines.drs_readout``).

    Returns
    -------
    chosen : str
        The chosen readout name.
    evaluations : dict
        Readout name -> :class:`umcam_lib.cam.CamEvaluation` (validation and test scores of each).
    """
    if not candidates:
        raise ValueError("choose_readout needs at least one candidate map set")
    if readout != "auto" and readout not in candidates:
        raise ValueError(f"baselines.drs_readout must be 'auto' or one of {sorted(candidates)}, got {readout!r}")
    evaluations = {name: evaluate_cam(slices, index, maps, grid, name, f"{method} ({name})")
                   for name, maps in candidates.items()}
    if readout == "auto":
        readout = max(evaluations, key=lambda k: (float(np.max(evaluations[k].val_curve)), -list(evaluations).index(k)))
    return readout, evaluations


def pseudo_label_targets(slices: SliceSet, index: np.ndarray, maps: np.ndarray, threshold: float) -> dict[str, Any]:
    """Hard pseudo labels ``CAM >= threshold`` of every positive training slice.

    Parameters
    ----------
    slices : SliceSet
    index : ndarray, shape (n,)
        Slice rows of ``maps``; must contain every positive training slice.
    maps : ndarray, shape (n, H, W)
        CAMs in [0, 1].
    threshold : float
        The validation-chosen threshold.

    Returns
    -------
    dict
        ``index`` [m] (positive training rows), ``maps`` [m, H, W] float32 in {0, 1},
        ``threshold``: the ``targets`` of :func:`umcam_lib.train.segmentation.train_evaluate_record`,
        which gives every negative training slice an all-background label.
    """
    rows = slices.positive_rows(["train"])
    taken = take_rows(np.asarray(index), np.asarray(maps), rows, "baseline CAMs")
    return {"index": rows, "maps": (np.asarray(taken, dtype=np.float32) >= float(threshold)).astype(np.float32),
            "threshold": float(threshold)}


def evaluate_baseline_cam(run_dir: str | Path, slices: SliceSet, index: np.ndarray, maps: np.ndarray,
                          grid: Sequence[float], name: str, method: str) -> tuple[CamEvaluation, dict[str, Any]]:
    """Threshold a baseline's CAMs on validation, score them, store the threshold, build labels.

    Parameters
    ----------
    run_dir : path
        The threshold goes to ``cams/thresholds.json`` under key ``name``.
    slices : SliceSet
    index, maps : ndarray
        Slice rows [n] and CAMs [n, H, W] (at least :func:`cam_rows`).
    grid : sequence of float
        Candidate thresholds (``metrics.threshold_grid(cam["threshold_grid"])``).
    name, method : str
        Map name (``"drs"``) and table name (``"DRS"``).

    Returns
    -------
    evaluation : umcam_lib.cam.CamEvaluation
        Threshold, validation curve and per-slice Dice / HD95 of positive val and test slices
        (not recorded in Table 2, whose pseudo-mask section holds the paper's CAM variants).
    targets : dict
        :func:`pseudo_label_targets` at the chosen threshold.
    """
    evaluation = evaluate_cam(slices, index, maps, grid, name, method)
    save_threshold(run_dir, name, evaluation.threshold)
    return evaluation, pseudo_label_targets(slices, index, maps, evaluation.threshold)
