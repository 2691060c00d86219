"""Which UM-CAM threshold gives the pseudo mask that seeds are taken from (METHOD section 3).

Two rules, chosen by ``gse.threshold_rule``:

``grid``
    One threshold for every slice: the one notebook 04 chose on the validation set (maximum
    mean DSC over the grid), read from ``run_dir/cams/thresholds.json``.
``variance``
    The authors' label-free rule, per slice: the grid value t that minimises the mean of the
    two within-class variances of the image intensities, (var{I : CAM >= t} + var{I : CAM < t}) / 2,
    an Otsu-like criterion that uses no ground truth. Unlike the authors' code (which scores an
    empty class as variance 0), thresholds that leave either class empty are not candidates;
    a slice with no candidate gets no threshold (NaN) and hence no seeds.

A pixel is foreground when ``CAM >= t`` (both compared in float32: :func:`umcam_lib.metrics.binarise`).
The thresholds file is read with :func:`umcam_lib.data.thresholds.load_thresholds`.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from ..config.schema import check_choice, choices, default
from ..metrics import threshold_grid

#: ``gse.threshold_rule`` values (from the schema, :class:`umcam_lib.config.GseParams`).
RULES = choices("gse.threshold_rule")
#: ``cam.threshold_grid``'s default: 0.05, 0.10, ..., 0.95.
DEFAULT_GRID: tuple[float, ...] = tuple(default("cam.threshold_grid"))


def grid_values(spec: Sequence[float] = DEFAULT_GRID) -> np.ndarray:
    """Inclusive threshold grid ``[start, stop, step]`` as float64 (0.05, 0.10, ..., 0.95)."""
    return threshold_grid(spec)


def within_class_variance(images: np.ndarray, cams: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Mean within-class intensity variance for every slice and every grid threshold.

    Parameters
    ----------
    images, cams : ndarray, shape (N, H, W)
        Slice intensities and CAMs in [0, 1].
    grid : ndarray, shape (T,)
        Increasing thresholds.

    Returns
    -------
    ndarray, float64, shape (N, T)
        (var_fg + var_bg) / 2 (intensity units squared); NaN where a class is empty.
    """
    images = np.asarray(images, dtype=np.float64)
    cams = np.asarray(cams, dtype=np.float32)
    if images.shape != cams.shape or images.ndim != 3:
        raise ValueError(f"images {images.shape} and cams {cams.shape} must both be (N, H, W)")
    grid32 = np.asarray(grid, dtype=np.float32)
    if np.any(np.diff(grid32) <= 0):
        raise ValueError(f"threshold grid must be increasing, got {grid!r}")
    n, t = images.shape[0], grid32.size
    # bin j holds the pixels with exactly j grid values <= CAM: foreground of threshold i = bins > i
    bins = np.searchsorted(grid32, cams.reshape(n, -1), side="right")
    flat = (bins + (t + 1) * np.arange(n)[:, None]).ravel()
    x = images.reshape(-1)
    stats = [np.bincount(flat, weights=w, minlength=n * (t + 1)).reshape(n, t + 1)
             for w in (None, x, x * x)]
    tail = [np.cumsum(s[:, ::-1], axis=1)[:, ::-1][:, 1:] for s in stats]  # sums over bins > i
    total = [s.sum(axis=1, keepdims=True) for s in stats]

    def var(c: np.ndarray, s1: np.ndarray, s2: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            v = s2 / c - (s1 / c) ** 2
        return np.where(c > 0, np.maximum(v, 0.0), np.nan)

    fg = var(*tail)
    bg = var(*(tot - tl for tot, tl in zip(total, tail)))
    return (fg + bg) / 2.0


def variance_thresholds(images: np.ndarray, cams: np.ndarray,
                        grid: Sequence[float] = DEFAULT_GRID) -> np.ndarray | float:
    """The authors' per-slice threshold for each slice (NaN when no grid value splits it).

    Parameters
    ----------
    images, cams : ndarray, shape (N, H, W) or (H, W)
    grid : [start, stop, step]
        The candidate thresholds (inclusive grid, ``cam.threshold_grid``).

    Returns
    -------
    ndarray, float64, shape (N,) (or a float for one slice)
        Ties go to the lowest threshold.
    """
    values = grid_values(grid)
    single = np.ndim(images) == 2
    images, cams = np.asarray(images), np.asarray(cams)
    if single:
        images, cams = images[None], cams[None]
    out = np.full(images.shape[0], np.nan)
    for start in range(0, images.shape[0], 64):  # bounded memory: ~30 bytes per pixel of a block
        score = within_class_variance(images[start : start + 64], cams[start : start + 64], values)
        ok = np.isfinite(score).any(axis=1)
        if ok.any():
            out[start : start + 64][ok] = values[np.nanargmin(score[ok], axis=1)]
    return float(out[0]) if single else out


#: Keys under which thresholds.json may hold the UM-CAM threshold (map name first).
UMCAM_KEYS = ("umcam", "UM-CAM")


def resolve_threshold(rule: str, thresholds: Mapping[str, float] | None = None,
                      keys: Sequence[str] = UMCAM_KEYS) -> float | str:
    """Turn ``gse.threshold_rule`` into what :func:`umcam_lib.gse.spl_batch` takes.

    Parameters
    ----------
    rule : {"grid", "variance"}
    thresholds : mapping, optional
        Contents of ``cams/thresholds.json``; needed by ``grid``.
    keys : sequence of str
        Names under which the UM-CAM threshold may be stored; the first present is used.

    Returns
    -------
    float or "variance"
        The validation-chosen UM-CAM threshold for ``grid``, the string ``"variance"`` for
        the per-slice rule.
    """
    if check_choice("gse.threshold_rule", rule) == "variance":
        return "variance"
    found = [k for k in keys if thresholds and k in thresholds]
    if not found:
        known = sorted(thresholds) if thresholds else []
        raise KeyError(f"gse.threshold_rule='grid' needs the validation-chosen UM-CAM threshold "
                       f"(one of {list(keys)}) in cams/thresholds.json, which holds {known}: run notebook 04")
    t = float(thresholds[found[0]])  # type: ignore[index]
    if not 0.0 <= t <= 1.0:
        raise ValueError(f"threshold {found[0]!r} in cams/thresholds.json is {t}, outside [0, 1]")
    return t
