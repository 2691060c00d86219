"""GSE parameters in physical units, and the validation sweep that chooses them.

The authors' code pushes the background seeds 5 pixels out from the UM-CAM box on a 1 mm grid,
i.e. 5 mm. On the quick profile's 2 mm grid the same 5 pixels are 10 mm. ``gse.margin_mm``
states the margin in millimetres and :func:`margin_pixels` converts it with the slice set's
in-plane spacing, so a profile at another resolution keeps the same anatomy between the box and
its background seeds.

The geodesic distance of Eq. 5 with ``gse.lamb = 1`` integrates intensity change along a path
and has no spatial unit; with ``lamb < 1`` a Euclidean term in pixels enters. Its weight is
swept, not converted.

The sweep (:func:`sweep_gse`) scores the SPL (> 0.5) as a pseudo mask on the **validation**
positive slices for every combination of ``sweep_margin_mm`` x ``sweep_lamb`` x SPL rule, with
``sweep_beta`` only for the ``authors`` rule (under the ``ratio`` rule ``SPL > 0.5`` is
``D_f < D_b`` whatever beta, so beta only changes the label's softness). :func:`chosen_gse`
returns the best setting; the test split is not looked at.
"""
from __future__ import annotations

import itertools
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from .. import metrics
from ..config.schema import GseParams, check_section
from .pseudo_labels import spl_batch
from .threshold import DEFAULT_GRID

#: Columns of the sweep table.
SWEEP_COLUMNS = ["spl_rule", "beta", "lamb", "margin_mm", "margin_px", "n", "with_spl", "val_dsc_mean",
                 "val_dsc_std", "val_hd95_mean", "val_fp_pixels_mean"]


def margin_pixels(margin_mm: float, spacing_mm: float) -> int:
    """Seed margin in pixels: ``margin_mm / spacing_mm`` rounded half up (>= 0)."""
    if margin_mm is None or float(margin_mm) < 0:
        raise ValueError(f"gse.margin_mm must be a non-negative number, got {margin_mm!r}")
    if not float(spacing_mm) > 0:
        raise ValueError(f"the in-plane spacing must be positive, got {spacing_mm!r}")
    return int(np.floor(float(margin_mm) / float(spacing_mm) + 0.5))


def spl_settings(gse_cfg: GseParams | Mapping[str, Any], spacing_mm: float) -> dict[str, Any]:
    """Keyword arguments of :func:`umcam_lib.gse.spl_batch` from the ``gse`` section.

    The section is checked against the schema (:func:`umcam_lib.config.check_section`; keys it
    lacks take their defaults); ``margin`` is ``margin_mm`` converted with ``spacing_mm``.
    """
    g = check_section("gse", gse_cfg)
    return {"beta": g.beta, "lamb": g.lamb, "iterations": g.iterations,
            "margin": margin_pixels(g.margin_mm, spacing_mm), "spl_rule": g.spl_rule}


def sweep_points(gse_cfg: GseParams | Mapping[str, Any]) -> list[dict[str, Any]]:
    """The grid of the GSE sweep (rule, beta, lamb, margin_mm); empty when every sweep list is empty.

    An empty list stands for the single configured value. The ``ratio`` rule takes only
    ``gse.beta`` (its mask does not depend on beta); the ``authors`` rule takes every ``sweep_beta``.
    """
    g = check_section("gse", gse_cfg)
    keys = ("sweep_margin_mm", "sweep_lamb", "sweep_rules", "sweep_beta")
    if not any(g[k] for k in keys):
        return []
    margins = [float(m) for m in (g.sweep_margin_mm or [g.margin_mm])]
    lambs = [float(v) for v in (g.sweep_lamb or [g.lamb])]
    rules = [str(r) for r in (g.sweep_rules or [g.spl_rule])]
    betas = [float(b) for b in (g.sweep_beta or [g.beta])]
    out = []
    for rule, lamb, margin in itertools.product(rules, lambs, margins):
        for beta in (betas if rule == "authors" else [g.beta]):
            out.append({"spl_rule": rule, "beta": beta, "lamb": lamb, "margin_mm": margin})
    return out


def sweep_gse(images: np.ndarray, cams: np.ndarray, masks: np.ndarray, threshold: float | str,
              gse_cfg: GseParams | Mapping[str, Any], spacing_mm: float, workers: int = 1) -> pd.DataFrame:
    """Score the SPL (> 0.5) of the given (validation) slices at every point of :func:`sweep_points`.

    Parameters
    ----------
    images, cams, masks : ndarray, shape (N, H, W)
        Positive validation slices, their UM-CAMs and true masks (used to score only).
    threshold : float or "variance"
        The UM-CAM seed threshold (as notebook 05).
    gse_cfg : dict
        The ``gse`` section (``iterations`` and the sweep lists).
    spacing_mm : float
        In-plane spacing, converts ``margin_mm``.

    Returns
    -------
    DataFrame
        Columns :data:`SWEEP_COLUMNS`; a slice without SPL counts as an empty prediction.
    """
    rows = []
    for point in sweep_points(gse_cfg):
        cfg = {**dict(gse_cfg), **point}
        kw = spl_settings(cfg, spacing_mm)
        dense, with_spl = dense_spl(images, cams, threshold, kw, workers=workers)
        dsc, hd, fp = score_spl(dense, masks)
        rows.append({**point, "margin_px": kw["margin"], "n": len(masks), "with_spl": with_spl,
                     "val_dsc_mean": float(np.mean(dsc)), "val_dsc_std": float(np.std(dsc, ddof=1)) if len(dsc) > 1 else 0.0,
                     "val_hd95_mean": float(np.mean(hd)), "val_fp_pixels_mean": float(np.mean(fp))})
    return pd.DataFrame(rows, columns=SWEEP_COLUMNS)


def dense_spl(images: np.ndarray, cams: np.ndarray, threshold: float | str, settings: Mapping[str, Any],
              workers: int = 1, grid: Sequence[float] = DEFAULT_GRID) -> tuple[np.ndarray, int]:
    """SPL of every slice as one dense stack: zeros where a slice has no SPL (no seed component).

    Parameters
    ----------
    images, cams : ndarray, shape (N, H, W)
    threshold : float or "variance"
        The UM-CAM seed threshold.
    settings : mapping
        Keyword settings of :func:`spl_batch` (:func:`spl_settings`).
    grid : sequence of float
        Thresholds of the per-slice ``variance`` rule.

    Returns
    -------
    dense : ndarray, float32, shape (N, H, W)
    with_spl : int
        How many slices have an SPL.
    """
    res = spl_batch(images, cams, threshold, grid=grid, workers=workers, **settings)
    dense = np.zeros(np.shape(images), np.float32)
    dense[np.asarray(res.index, dtype=int)] = np.asarray(res.maps)
    return dense, len(res.index)


def score_spl(dense: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dice (%), HD95 (pixels) and false-positive pixels of SPL (> 0.5) as masks, per slice.

    A slice without SPL is an empty prediction (the metrics' penalty, never dropped).
    """
    pred = np.asarray(dense) > 0.5
    dsc, hd = metrics.score_masks(pred, masks)
    fp = (pred & ~np.asarray(masks).astype(bool)).reshape(len(pred), -1).sum(1)
    return np.asarray(dsc), np.asarray(hd), fp


def chosen_gse(sweep: pd.DataFrame, gse_cfg: GseParams | Mapping[str, Any]) -> dict[str, Any]:
    """The ``gse`` section with the sweep's best validation point filled in.

    The point with the highest validation mean DSC (``val_dsc_mean``) is chosen; among equal
    scores the first row in sweep order wins; rows without a score (NaN) are never chosen. An
    empty sweep returns the section unchanged.

    Raises
    ------
    ValueError
        When no row of a non-empty sweep has a validation score.
    """
    if sweep.empty:
        return dict(gse_cfg)
    scores = pd.to_numeric(sweep["val_dsc_mean"], errors="coerce")
    if scores.isna().all():
        raise ValueError(f"the GSE sweep has {len(sweep)} point(s) but no validation score (val_dsc_mean is "
                         f"NaN everywhere): no setting can be chosen")
    best = sweep.loc[scores.idxmax()]
    return {**dict(gse_cfg), "spl_rule": str(best["spl_rule"]), "beta": float(best["beta"]),
            "lamb": float(best["lamb"]), "margin_mm": float(best["margin_mm"])}
