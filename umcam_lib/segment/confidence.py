"""How far to trust a mask written without a reference: signals a person can sort stacks by, and
the flags that send a stack to the top of the QC page.

Three signals, none of which needs a reference mask:

- ``confidence``: the mean foreground probability over the mask's boundary voxels (the mask minus
  its in-plane erosion). A UNet sure of where the brain ends has probabilities near 1 just
  inside the edge; one that is guessing has probabilities near the 0.5 threshold there.
- ``volume_ml`` against :data:`BRAIN_VOLUME_ML`, the brain volumes of 20-38 weeks of gestation
  with a margin: a mask far outside it has missed the brain or taken in the abdomen.
- ``largest_share``: the share of the mask's volume in its largest 3D connected component; a
  brain is one piece, a scatter of islands is not.

A stack is flagged when its mask is empty, its volume is outside the range, it is fragmented,
or its confidence is an outlier of the batch (:func:`low_outliers`: a robust z-score below -3,
no threshold tuned on any data).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

BRAIN_VOLUME_ML = (40.0, 500.0)
"""Plausible fetal brain volumes (mL): about 60-400 mL from 20 to 38 weeks, widened by a third."""

LARGEST_SHARE_MIN = 0.9
"""A mask whose largest 3D component holds less than this share of its volume is fragmented."""

OUTLIER_Z = -3.0
"""Robust z-score (median / 1.4826 MAD of the batch) below which a confidence is an outlier."""


def boundary_confidence(probs: np.ndarray, mask: np.ndarray) -> float:
    """Mean foreground probability over the boundary voxels of ``mask``.

    Parameters
    ----------
    probs : ndarray, float, shape (H, W, S)
        Foreground probabilities on the mask's grid, in [0, 1].
    mask : ndarray, shape (H, W, S)
        The written mask (0/1), slice axis last.

    Returns
    -------
    float
        In [0, 1]; 0 for an empty mask. The boundary is the mask minus its erosion within each
        slice (3 x 3 cross), so thick slices do not make every voxel a boundary voxel.

    Examples
    --------
    >>> import numpy as np
    >>> m = np.zeros((9, 9, 1), np.uint8); m[2:7, 2:7] = 1
    >>> round(boundary_confidence(np.where(m > 0, 0.9, 0.1), m), 3)
    0.9
    """
    m = np.asarray(mask).astype(bool)
    if probs.shape != m.shape:
        raise ValueError(f"probs shape {probs.shape} differs from the mask's {m.shape}")
    if not m.any():
        return 0.0
    cross = np.zeros((3, 3, 1), bool)
    cross[1, :, 0] = cross[:, 1, 0] = True
    edge = m & ~ndimage.binary_erosion(m, structure=cross, border_value=0)
    return float(np.asarray(probs, np.float64)[edge].mean())


def largest_share(mask: np.ndarray) -> float:
    """Share of the mask's voxels in its largest 3D (26-connected) component; 0 when empty.

    Examples
    --------
    >>> import numpy as np
    >>> m = np.zeros((10, 10, 3), np.uint8); m[1:4, 1:4, 1] = 1; m[8, 8, 1] = 1
    >>> largest_share(m)
    0.9
    """
    m = np.asarray(mask).astype(bool)
    if not m.any():
        return 0.0
    labels, n = ndimage.label(m, structure=np.ones((3, 3, 3), bool))
    sizes = np.bincount(labels.ravel())[1:]
    return float(sizes.max() / sizes.sum())


def low_outliers(values: Sequence[float], z: float = OUTLIER_Z) -> np.ndarray:
    """Which ``values`` lie far below the rest: robust z-score ``(v - median) / (1.4826 MAD)``
    below ``z``. Needs at least 4 values (else none is an outlier); a MAD of 0 counts any value
    below the median.

    Examples
    --------
    >>> low_outliers([0.95, 0.94, 0.96, 0.93, 0.55]).tolist()
    [False, False, False, False, True]
    """
    v = np.asarray(values, float)
    out = np.zeros(v.shape, bool)
    ok = np.isfinite(v)
    if ok.sum() < 4:
        return out
    med = float(np.median(v[ok]))
    mad = 1.4826 * float(np.median(np.abs(v[ok] - med)))
    out[ok] = v[ok] < med if mad == 0 else (v[ok] - med) / mad < z
    return out


def stack_flags(volume_ml: float, share: float, empty: bool,
                volume_range: tuple[float, float] = BRAIN_VOLUME_ML) -> list[str]:
    """The reasons (short phrases) why one stack's mask should be looked at first, from its own
    numbers (the batch outlier test is :func:`low_outliers`)."""
    if empty:
        return ["empty mask"]
    flags = []
    lo, hi = volume_range
    if volume_ml < lo:
        flags.append(f"volume {volume_ml:.0f} mL below {lo:.0f}")
    elif volume_ml > hi:
        flags.append(f"volume {volume_ml:.0f} mL above {hi:.0f}")
    if share < LARGEST_SHARE_MIN:
        flags.append(f"fragmented ({100 * share:.0f} % in the largest piece)")
    return flags


def flag_batch(confidence: Sequence[float], volume_ml: Sequence[float], shares: Sequence[float],
               empty: Sequence[bool]) -> list[str]:
    """One ``"; "``-joined flag string per stack ("" when nothing calls for a look): its own
    :func:`stack_flags` plus ``low confidence`` when its confidence is a :func:`low_outliers`."""
    low = low_outliers(confidence)
    out = []
    for c, v, s, e, lo in zip(confidence, volume_ml, shares, empty, low):
        flags = stack_flags(float(v), float(s), bool(e))
        if lo and not e:
            flags.append(f"low confidence ({c:.2f}, an outlier of this batch)")
        out.append("; ".join(flags))
    return out
