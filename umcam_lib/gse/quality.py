"""How good is an SPL as a mask? DSC and HD95 against the ground truth, beside the UM-CAM it
came from.

Evaluated on the positive (brain-present) slices of the validation and test splits, every one
of them: a slice without SPL (its thresholded UM-CAM had no component) counts as an empty
prediction, which scores Dice 0 and the metrics module's finite HD95 penalty. HD95 is in
pixels, as the paper reports pseudo masks.

Rows of the table (``method``):

``UM-CAM``
    UM-CAM >= its validation-chosen threshold (as in Table 1 of notebook 04).
``UM-CAM seed mask``
    The largest component of the thresholded UM-CAM that the seeds were taken from (the
    threshold of the ``gse.threshold_rule`` in use, per slice).
``SPL``
    SPL > 0.5 (foreground more likely than background).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from .. import metrics
from ..data.artifacts import SliceSet
from ..data.maps import require_rows, row_positions
from ..metrics import binarise
from .seed_points import largest_component

COLUMNS = ["method", "split", "n", "dsc_mean", "dsc_std", "hd95_mean", "hd95_std"]
SPL_CUT = 0.5


def prediction_masks(rows: np.ndarray, spl_index: np.ndarray, spl_maps: np.ndarray, cam_index: np.ndarray,
                     cam_maps: np.ndarray, cam_threshold: float,
                     seed_thresholds: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Binary masks [n, H, W] of each evaluated method for slice ``rows``.

    Parameters
    ----------
    rows : ndarray, shape (n,)
        Slice-set rows to predict.
    spl_index, spl_maps : ndarray, shapes (m,), (m, H, W)
        SPLs of the slices that have one.
    cam_index, cam_maps : ndarray, shapes (c,), (c, H, W)
        UM-CAMs; must cover every row.
    cam_threshold : float
        Validation-chosen UM-CAM threshold.
    seed_thresholds : ndarray, shape (n,), optional
        Threshold each slice's seeds came from (NaN = no seeds); adds ``UM-CAM seed mask``.
    """
    rows = np.asarray(rows, dtype=np.int64)
    cpos = require_rows(cam_index, rows, "the UM-CAM maps", "notebook 04 must save a map for every slice")
    cams = cam_maps[cpos]
    out = {"UM-CAM": binarise(cams, cam_threshold)}
    if seed_thresholds is not None:
        t = np.asarray(seed_thresholds, dtype=float)
        seed = np.zeros(cams.shape, bool)
        for i in np.flatnonzero(np.isfinite(t)):
            seed[i] = largest_component(binarise(cams[i], t[i]))
        out["UM-CAM seed mask"] = seed
    spos = row_positions(spl_index, rows)
    spl = np.zeros(cams.shape, bool)
    have = spos >= 0
    spl[have] = spl_maps[spos[have]] > SPL_CUT
    out["SPL"] = spl
    return out


def spl_quality(slices: SliceSet, spl_index: np.ndarray, spl_maps: np.ndarray, cam_index: np.ndarray,
                cam_maps: np.ndarray, cam_threshold: float, seeds: pd.DataFrame | None = None,
                splits: Sequence[str] = ("val", "test")) -> tuple[pd.DataFrame, pd.DataFrame]:
    """DSC (%) and HD95 (pixels) of SPL and UM-CAM masks on the positive slices of ``splits``.

    Parameters
    ----------
    slices : SliceSet
        The prepared slices (ground truth and splits).
    spl_index, spl_maps, cam_index, cam_maps, cam_threshold
        As :func:`prediction_masks`.
    seeds : DataFrame, optional
        The seeds table of :func:`umcam_lib.gse.spl_batch` (columns ``row``, ``threshold``);
        adds the ``UM-CAM seed mask`` rows.
    splits : sequence of str

    Returns
    -------
    summary : DataFrame
        Columns ``method, split, n, dsc_mean, dsc_std, hd95_mean, hd95_std`` (std with ddof 1).
    scores : DataFrame
        One row per (method, split, slice): ``method, split, row, dsc, hd95``.
    """
    records = []
    for split in splits:
        rows = slices.indices(split, positive_only=True)
        if rows.size == 0:
            continue
        t_seed = None
        if seeds is not None:
            by_row = seeds.set_index("row")["threshold"]
            missing = [int(r) for r in rows if int(r) not in by_row.index]
            if missing:
                raise ValueError(f"seeds table lacks slice rows {missing[:10]}")
            t_seed = by_row.loc[rows].to_numpy(dtype=float)
        preds = prediction_masks(rows, spl_index, spl_maps, cam_index, cam_maps, cam_threshold, t_seed)
        gts = slices.masks[rows]
        for method, pred in preds.items():
            dsc, hd = metrics.score_masks(pred, gts)
            records.append(pd.DataFrame(dict(method=method, split=split, row=rows, dsc=dsc, hd95=hd)))
    scores = pd.concat(records, ignore_index=True) if records else pd.DataFrame(
        columns=["method", "split", "row", "dsc", "hd95"])
    summary = summarise(scores)
    return summary, scores


def summarise(scores: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation (ddof 1; 0 for one slice) per method and split."""
    rows = []
    for (method, split), g in scores.groupby(["method", "split"], sort=False):
        sd = (lambda x: float(x.std(ddof=1)) if len(x) > 1 else 0.0)
        rows.append(dict(method=method, split=split, n=len(g), dsc_mean=float(g["dsc"].mean()), dsc_std=sd(g["dsc"]),
                         hd95_mean=float(g["hd95"].mean()), hd95_std=sd(g["hd95"])))
    return pd.DataFrame(rows, columns=COLUMNS)
