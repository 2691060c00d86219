"""Segmentation metrics: Dice (percent) and HD95, for 2D slices and 3D volumes.

Both are computed with MONAI underneath. MONAI returns NaN (HD95) or a value with a warning
when one side is empty; a study that drops those cases flatters a method that misses slices,
so the empty cases get explicit, finite values here:

==========================  ===========  ===================================================
prediction / ground truth   Dice (%)     HD95
==========================  ===========  ===================================================
both empty                  100          0
one empty, the other not    0            ``EMPTY_PENALTY``: the diagonal of the array extent
                                         (pixels, or mm when ``spacing`` is given)
==========================  ===========  ===================================================
"""
from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
import torch
from monai.metrics import compute_hausdorff_distance
from scipy import stats


def _binary(a: np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    a = np.asarray(a)
    if a.ndim not in (2, 3):
        raise ValueError(f"{name} must be a 2D or 3D array, got shape {a.shape}")
    return a > 0.5 if a.dtype.kind == "f" else a.astype(bool)


def _check(pred: np.ndarray, gt: np.ndarray) -> None:
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from ground-truth shape {gt.shape}")


def empty_penalty(shape: Sequence[int], spacing: Sequence[float] | None = None) -> float:
    """HD95 given when exactly one of prediction and truth is empty: the extent's diagonal.

    Parameters
    ----------
    shape : sequence of int
        Array shape (2D or 3D).
    spacing : sequence of float, optional
        Voxel size per axis in mm; pixels when omitted.
    """
    sp = np.ones(len(shape)) if spacing is None else np.asarray(spacing, dtype=float)
    return float(np.sqrt(np.sum((np.asarray(shape) * sp) ** 2)))


def dice(pred: np.ndarray, gt: np.ndarray) -> float:
    """Dice similarity coefficient in percent for binary 2D or 3D arrays.

    Float inputs are binarised at 0.5. Both empty gives 100.

    Examples
    --------
    >>> import numpy as np
    >>> p = np.zeros((8, 8), bool); p[2:6, 2:6] = True     # a 4 x 4 square
    >>> g = np.zeros((8, 8), bool); g[2:6, 3:7] = True     # the same, one column to the right
    >>> dice(p, g)
    75.0
    >>> dice(p, p), dice(np.zeros((4, 4)), np.zeros((4, 4)))
    (100.0, 100.0)
    """
    p, g = _binary(pred, "pred"), _binary(gt, "gt")
    _check(p, g)
    denom = p.sum() + g.sum()
    if denom == 0:
        return 100.0
    return float(200.0 * np.logical_and(p, g).sum() / denom)


def dice_batch(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Dice (%) of each slice of binary stacks [n, H, W]: :func:`dice` slice by slice, vectorised.

    Parameters
    ----------
    pred, gt : ndarray, shape (n, H, W)
        Binary (or 0/1) stacks of one shape.

    Returns
    -------
    ndarray, float64, shape (n,)
        Both empty gives 100; exactly one empty gives 0.
    """
    p = np.asarray(pred).astype(bool)
    g = np.asarray(gt).astype(bool)
    if p.shape != g.shape or p.ndim != 3:
        raise ValueError(f"expected two stacks [n, H, W] of one shape, got {p.shape} and {g.shape}")
    inter = np.logical_and(p, g).sum(axis=(1, 2), dtype=np.int64)
    denom = p.sum(axis=(1, 2), dtype=np.int64) + g.sum(axis=(1, 2), dtype=np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        d = np.where(denom > 0, 200.0 * inter / np.maximum(denom, 1), 100.0)
    return d.astype(float)


def hd95(pred: np.ndarray, gt: np.ndarray, spacing: Sequence[float] | float | None = None) -> float:
    """95th-percentile symmetric Hausdorff distance between binary masks (MONAI).

    Parameters
    ----------
    pred, gt : ndarray, shape (H, W) or (D, H, W) / (H, W, D)
        Binary masks (float inputs binarised at 0.5).
    spacing : float or sequence of float, optional
        Voxel size per axis in mm. ``None`` measures in pixels (voxel units).

    Returns
    -------
    float
        Distance in pixels or mm; never NaN (see the module docstring for empty inputs).

    Examples
    --------
    >>> import numpy as np
    >>> p = np.zeros((8, 8), bool); p[2:6, 2:6] = True
    >>> g = np.zeros((8, 8), bool); g[2:6, 3:7] = True     # shifted by one column
    >>> hd95(p, g), hd95(p, g, spacing=0.5)
    (1.0, 0.5)
    >>> round(hd95(p, np.zeros_like(p)), 3)                # one side empty: the 8 x 8 diagonal
    11.314
    """
    p, g = _binary(pred, "pred"), _binary(gt, "gt")
    _check(p, g)
    sp = None
    if spacing is not None:
        sp = [float(spacing)] * p.ndim if np.isscalar(spacing) else [float(s) for s in spacing]
        if len(sp) != p.ndim:
            raise ValueError(f"spacing has {len(sp)} values for a {p.ndim}D array")
    if not p.any() and not g.any():
        return 0.0
    if not p.any() or not g.any():
        return empty_penalty(p.shape, sp)
    with warnings.catch_warnings():  # MONAI warns about its own deprecated internals
        warnings.simplefilter("ignore", FutureWarning)
        value = compute_hausdorff_distance(
            torch.from_numpy(p[None, None].astype(np.float32)),
            torch.from_numpy(g[None, None].astype(np.float32)),
            include_background=True, percentile=95, spacing=sp,
        )
    return float(value.reshape(-1)[0])


def score_masks(preds: Sequence[np.ndarray] | np.ndarray, gts: Sequence[np.ndarray] | np.ndarray,
                spacing: Sequence[float] | float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Dice (%) and HD95 for each pair of a batch of 2D slices or a list of 3D volumes.

    Returns
    -------
    dsc, hd : ndarray, shape (n,)
    """
    if len(preds) != len(gts):
        raise ValueError(f"{len(preds)} predictions but {len(gts)} ground truths")
    dsc = np.array([dice(p, g) for p, g in zip(preds, gts)], dtype=float)
    hd = np.array([hd95(p, g, spacing) for p, g in zip(preds, gts)], dtype=float)
    return dsc, hd


def threshold_grid(spec: Sequence[float]) -> np.ndarray:
    """Inclusive grid ``[start, stop, step]`` -> e.g. 0.05, 0.10, ..., 0.95."""
    if len(spec) != 3:
        raise ValueError(f"threshold grid must be [start, stop, step], got {spec!r}")
    start, stop, step = (float(x) for x in spec)
    if step <= 0 or stop < start:
        raise ValueError(f"threshold grid {spec!r}: need step > 0 and stop >= start")
    n = int(np.floor((stop - start) / step + 1e-9)) + 1
    return np.round(start + step * np.arange(n), 10)


def binarise(maps: np.ndarray, threshold: float | np.ndarray) -> np.ndarray:
    """Masks ``maps >= threshold``, compared in float32 (bool, the shape of ``maps``).

    Parameters
    ----------
    maps : ndarray, shape (N, H, W) or (H, W)
        Maps in [0, 1] (CAMs, SPLs); float16 maps are converted first.
    threshold : float or ndarray of shape (N,)
        One threshold, or one per map.

    Both sides are float32, as for maps read back with :func:`umcam_lib.data.maps.load_maps`:
    comparing float16 values with a Python float would round the threshold to float16
    (0.05 -> 0.04999) and shift the mask.
    """
    maps = np.asarray(maps, dtype=np.float32)
    t = np.asarray(threshold, dtype=np.float32)
    if t.ndim == 1:
        t = t.reshape((-1,) + (1,) * (maps.ndim - 1))
    return maps >= t


def paired_test(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided Wilcoxon signed-rank p-value for paired samples (NaN when undefined).

    Undefined means fewer than two pairs or all differences zero.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in length: {a.shape} vs {b.shape}")
    d = a - b
    if d.size < 2 or np.allclose(d, 0):
        return float("nan")
    return float(stats.wilcoxon(a, b, zero_method="wilcox").pvalue)
