"""3D scoring of slice-wise segmentations: stack every slice of a volume, then score it.

The paper reports DSC and HD95 of the final segmentation "in 3D". The authors' evaluation
predicted only the slices whose ground truth was non-empty, i.e. it used the answer to decide
where to look (an oracle slice selection that hides every false positive outside the brain).
Here every slice of every volume of a split is predicted and stacked in ``slice_index`` order;
no slice is chosen by its ground truth. A volume with an empty prediction is scored with
:mod:`umcam_lib.metrics`' finite penalty (DSC 0, HD95 = the diagonal of the volume), never
dropped.

Units. A volume is an array ``[S, H, W]`` (slices, rows, columns).

- ``hd95`` (pixels): :func:`umcam_lib.metrics.hd95` with ``spacing=None``, i.e. voxel units:
  one in-plane pixel of the profile's grid per step in H and W, and **one slice per step in
  S**. The slice axis is therefore measured in slice units (a step of ``thickness_mm``, i.e.
  ``thickness_mm / spacing_mm`` in-plane pixels), as the paper's "pixels" leave it undefined.
- ``hd95_mm``: the same distance with ``spacing=(thickness_mm, spacing_mm, spacing_mm)``.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import pandas as pd

from . import metrics
from .config.schema import check_choice, choices
from .data import SliceSet
from .data.maps import require_rows

SCORE_COLUMNS = ["volume", "n_slices", "gt_voxels", "pred_voxels", "dsc", "hd95", "hd95_mm"]


def score_volume(pred: np.ndarray, gt: np.ndarray, spacing_mm: float, thickness_mm: float) -> dict[str, float]:
    """DSC (%), HD95 (voxel units) and HD95 (mm) of one 3D prediction.

    Parameters
    ----------
    pred, gt : ndarray, bool or {0, 1}, shape (S, H, W)
        Predicted and true masks, slices along axis 0.
    spacing_mm : float
        In-plane pixel size (mm).
    thickness_mm : float
        Slice step (mm).

    Returns
    -------
    dict
        ``dsc``, ``hd95``, ``hd95_mm`` (finite also for empty inputs), ``gt_voxels``,
        ``pred_voxels``.
    """
    pred, gt = np.asarray(pred).astype(bool), np.asarray(gt).astype(bool)
    if pred.ndim != 3 or pred.shape != gt.shape:
        raise ValueError(f"score_volume expects two (S, H, W) arrays of one shape, got {pred.shape} and {gt.shape}")
    return {
        "dsc": metrics.dice(pred, gt),
        "hd95": metrics.hd95(pred, gt),
        "hd95_mm": metrics.hd95(pred, gt, spacing=(float(thickness_mm), float(spacing_mm), float(spacing_mm))),
        "gt_voxels": int(gt.sum()),
        "pred_voxels": int(pred.sum()),
    }


def split_rows(slices: SliceSet, split: str) -> np.ndarray:
    """Rows of every slice of the split's volumes, volume by volume in stack order."""
    vols = slices.volume_ids(split)
    if len(vols) == 0:
        raise ValueError(f"the slice set has no {split!r} volumes")
    return np.concatenate([slices.volume_slices(int(v)) for v in vols])


def iter_volumes(slices: SliceSet, split: str, index: np.ndarray, pred: np.ndarray
                 ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield ``(volume, pred3d, gt3d)`` for every volume of ``split``.

    Parameters
    ----------
    slices : SliceSet
    split : {"val", "test", "train"}
    index : ndarray, int, shape (n,)
        Slice rows that ``pred`` covers; must include every slice of the split's volumes.
    pred : ndarray, shape (n, H, W)
        Binary (or probability, binarised at 0.5) prediction per row of ``index``.
    """
    index = np.asarray(index)
    if pred.shape[0] != index.shape[0]:
        raise ValueError(f"pred has {pred.shape[0]} slices but index has {index.shape[0]}")
    for v in slices.volume_ids(split):
        rows = slices.volume_slices(int(v))
        pos = require_rows(index, rows, f"the predictions of volume {int(v)} ({split})", "every slice must be predicted")
        p = pred[pos]
        p = p > 0.5 if p.dtype.kind == "f" else p.astype(bool)
        yield int(v), p, slices.masks[rows].astype(bool)


def largest_component_3d(pred: np.ndarray) -> np.ndarray:
    """Keep the largest 26-connected component of a 3D binary volume (``seg.postprocess: lcc``).

    Parameters
    ----------
    pred : ndarray, bool, shape (S, H, W)

    Returns
    -------
    ndarray, bool, shape (S, H, W)
        All-false when ``pred`` is empty. Slices are treated as neighbours in stack order,
        whatever their thickness (connectivity counts voxels, not millimetres).
    """
    from skimage.measure import label

    pred = np.asarray(pred).astype(bool)
    if pred.ndim != 3:
        raise ValueError(f"largest_component_3d expects an (S, H, W) volume, got shape {pred.shape}")
    if not pred.any():
        return pred
    lab = label(pred, connectivity=3)
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return lab == int(np.argmax(sizes))


#: ``seg.postprocess`` values (from the schema, :class:`umcam_lib.config.SegParams`).
POSTPROCESS: tuple[str, ...] = choices("seg.postprocess")


def evaluate_volumes(slices: SliceSet, split: str, index: np.ndarray, pred: np.ndarray,
                     postprocess: str = "none") -> pd.DataFrame:
    """Score the 3D prediction of every volume of ``split``.

    Parameters
    ----------
    slices : SliceSet
        Provides ground-truth masks, stack order, ``spacing_mm`` and ``volumes.thickness_mm``.
    split : str
        ``val`` or ``test`` (``train`` works too).
    index : ndarray, int, shape (n,)
        Slice rows covered by ``pred`` (all slices of the split's volumes, at least).
    pred : ndarray, shape (n, H, W)
        Binary masks, or foreground probabilities binarised at 0.5.
    postprocess : {"none", "lcc"}
        ``lcc``: keep only the largest 3D connected component of each volume before scoring.

    Returns
    -------
    DataFrame
        One row per volume: ``volume, n_slices, gt_voxels, pred_voxels, dsc, hd95, hd95_mm``.
    """
    check_choice("seg.postprocess", postprocess)
    thickness = slices.volumes.set_index("volume")["thickness_mm"]
    rows = []
    for v, p, g in iter_volumes(slices, split, index, pred):
        if postprocess == "lcc":
            p = largest_component_3d(p)
        s = score_volume(p, g, slices.spacing_mm, float(thickness.loc[v]))
        rows.append({"volume": v, "n_slices": p.shape[0], **s})
    return pd.DataFrame(rows, columns=SCORE_COLUMNS)


def oracle_selection(slices: SliceSet, index: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """The authors' evaluation: keep predictions only on slices whose ground truth is non-empty.

    Returns ``pred`` with every slice of an empty ground truth set to background -- an oracle
    that hides all false positives outside the brain's slices. Shown for comparison only.
    """
    keep = slices.masks[np.asarray(index)].reshape(len(index), -1).any(axis=1)
    out = np.array(pred, copy=True)
    out[~keep] = 0
    return out
