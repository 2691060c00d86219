"""From a CAM to a pseudo mask, and how good that mask is (METHOD section 3).

A CAM is a soft map; a mask needs a threshold. Following the paper ("the optimal threshold found
by grid search"), each CAM method gets ONE threshold: the value of the grid
``cam.threshold_grid`` (0.05 .. 0.95, step 0.05) with the highest mean Dice over the positive
validation slices. That threshold is then applied unchanged to the test slices, so test scores
never influence the choice.

A pixel is foreground when ``CAM >= threshold`` (:func:`umcam_lib.metrics.binarise`). Scores are
computed over positive slices only (slices whose ground truth is non-empty): Dice in percent and
HD95 in pixels with :mod:`umcam_lib.metrics`; a slice whose thresholded mask is empty scores
Dice 0 and the metrics module's finite HD95 penalty (it is counted, never dropped).

This module computes; it writes nothing. :mod:`umcam_lib.cam.study` records the scores in the
tables and stores the chosen thresholds in ``runs/<profile>/cams/thresholds.json``
(:mod:`umcam_lib.data.thresholds`), where notebooks 05 and 06 read them to turn the Grad-CAM and
UM-CAM maps of the training slices into pseudo labels.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from .. import metrics
from ..data.artifacts import SliceSet
from ..data.maps import take_rows
from ..metrics import binarise, dice_batch

#: Splits a pseudo mask is evaluated on.
EVAL_SPLITS = ("val", "test")


def dice_over_grid(maps: np.ndarray, gts: np.ndarray, grid: Sequence[float]) -> np.ndarray:
    """Dice (%) of every slice at every threshold: array [len(grid), n]."""
    maps = np.asarray(maps, dtype=np.float32)
    return np.stack([dice_batch(binarise(maps, t), gts) for t in grid])


def select_threshold(val_maps: np.ndarray, val_gts: np.ndarray,
                     grid: Sequence[float]) -> tuple[float, np.ndarray]:
    """The grid threshold with the highest mean validation Dice.

    Parameters
    ----------
    val_maps : ndarray, shape (n, H, W)
        CAMs of the positive validation slices, in [0, 1].
    val_gts : ndarray, shape (n, H, W)
        Their ground-truth masks.
    grid : sequence of float
        Candidate thresholds (e.g. ``metrics.threshold_grid(cam["threshold_grid"])``).

    Returns
    -------
    threshold : float
        The best threshold (the lowest one among ties).
    curve : ndarray, shape (len(grid),)
        Mean validation Dice (%) at each threshold.
    """
    grid = np.asarray(grid, dtype=float)
    if grid.size == 0:
        raise ValueError("threshold grid is empty")
    if len(val_maps) == 0:
        raise ValueError("no validation slices to choose a threshold on (the validation split has no positive slice)")
    curve = dice_over_grid(val_maps, val_gts, grid).mean(axis=1)
    return float(grid[int(np.argmax(curve))]), curve


def score_pseudo_masks(maps: np.ndarray, gts: np.ndarray, threshold: float,
                       spacing: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Dice (%) and HD95 of each thresholded slice.

    Parameters
    ----------
    maps, gts : ndarray, shape (n, H, W)
        CAMs in [0, 1] and ground-truth masks.
    threshold : float
        Foreground where ``map >= threshold``.
    spacing : float, optional
        Pixel size in mm for HD95; pixels when omitted (the paper's unit for pseudo masks).

    Returns
    -------
    dsc, hd95 : ndarray, shape (n,)
        An empty mask against a non-empty truth scores 0 and the metrics module's penalty.
    """
    masks = binarise(maps, threshold)
    sp = None if spacing is None else [float(spacing)] * 2
    return metrics.score_masks(masks, np.asarray(gts), spacing=sp)


def eval_rows(slices: SliceSet, splits: Sequence[str] = EVAL_SPLITS) -> np.ndarray:
    """Rows of the positive slices of ``splits`` (those a pseudo mask is evaluated on)."""
    return slices.positive_rows(splits)


# ----------------------------------------------------------------------------- evaluation
@dataclass
class CamEvaluation:
    """Result of evaluating one CAM method as pseudo masks.

    Attributes
    ----------
    name : str
        Map name (``runs/<profile>/cams/<name>.npz``, key in ``thresholds.json``).
    method : str
        Name in the tables (e.g. ``"UM-CAM"``).
    threshold : float
        Chosen on validation.
    grid, val_curve : ndarray
        Candidate thresholds and the mean validation Dice (%) at each.
    scores : dict
        split -> DataFrame with columns ``id`` (slice row), ``dsc``, ``hd95``.
    """

    name: str
    method: str
    threshold: float
    grid: np.ndarray
    val_curve: np.ndarray
    scores: dict[str, pd.DataFrame] = field(default_factory=dict)

    def summary(self) -> dict[str, float | str]:
        """One row: method, threshold, mean/std Dice and HD95 per split."""
        row: dict[str, float | str] = {"method": self.method, "threshold": self.threshold}
        for split, df in self.scores.items():
            row[f"{split}_n"] = len(df)
            row[f"{split}_dsc"] = float(df["dsc"].mean())
            row[f"{split}_dsc_std"] = float(df["dsc"].std(ddof=1)) if len(df) > 1 else 0.0
            row[f"{split}_hd95"] = float(df["hd95"].mean())
        return row


def evaluate_cam(slices: SliceSet, index: np.ndarray, maps: np.ndarray, grid: Sequence[float],
                 name: str, method: str | None = None) -> CamEvaluation:
    """Choose a threshold on validation and score positive validation and test slices.

    Parameters
    ----------
    slices : SliceSet
        Ground truth and splits.
    index : ndarray, shape (n,)
        Slice rows of ``maps``; must include every positive validation and test slice.
    maps : ndarray, shape (n, H, W)
        The CAM of those rows, in [0, 1].
    grid : sequence of float
        Candidate thresholds.
    name, method : str
        Map name and table name (defaults to ``name``).

    Returns
    -------
    CamEvaluation
        Only the validation slices decide ``threshold``; test slices are scored with it.
    """
    method = method or name
    rows = {s: slices.positive_rows([s]) for s in EVAL_SPLITS}
    val_maps = take_rows(index, maps, rows["val"], name)
    threshold, curve = select_threshold(val_maps, slices.masks[rows["val"]], grid)
    result = CamEvaluation(name=name, method=method, threshold=threshold,
                           grid=np.asarray(grid, dtype=float), val_curve=curve)
    for split in EVAL_SPLITS:
        if len(rows[split]) == 0:
            continue
        m = val_maps if split == "val" else take_rows(index, maps, rows[split], name)
        dsc, hd = score_pseudo_masks(m, slices.masks[rows[split]], threshold)
        result.scores[split] = pd.DataFrame({"id": rows[split], "dsc": dsc, "hd95": hd})
    return result


def summary_table(results: Mapping[str, CamEvaluation]) -> pd.DataFrame:
    """One row per evaluated method (threshold, Dice and HD95 per split)."""
    return pd.DataFrame([r.summary() for r in results.values()])


def threshold_curves(results: Mapping[str, CamEvaluation]) -> pd.DataFrame:
    """Mean validation Dice per threshold, one column per method (index: threshold)."""
    return pd.DataFrame({r.method: r.val_curve for r in results.values()},
                        index=pd.Index(next(iter(results.values())).grid, name="threshold"))
