"""Training targets of the segmentation variants, built from the artifacts of notebooks 03-05.

Pseudo labels of a variant are a dict ``targets`` with

- ``index`` : int [n], slice rows (of the :class:`~umcam_lib.data.SliceSet`) of positive training
  slices,
- ``maps``  : float [n, H, W] in [0, 1], the label of the first CE term of Eq. 8,
- ``spl``   : optional float [n, H, W] in [0, 1], the label of the second term,
- ``lambda``: optional float, the weight of the second term (default ``seg.lambda_spl``).

Every training slice is used (:func:`training_set`). A slice whose image-level label is 0 gets
an all-background target under every variant (its entry in ``targets``, if any, is ignored); a
positive training slice missing from ``targets['index']`` is an error, so no slice is silently
dropped.

A positive training slice for which notebook 05 produced no SPL (its thresholded UM-CAM had no
connected component to seed from) takes its UM-CAM pseudo mask as SPL (:func:`load_spl`), so
the slice is not dropped and both terms of Eq. 8 agree on it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..config.schema import SegParams, check_section
from ..data import SliceSet
from ..data.maps import load_maps, map_path, require_rows, row_positions
from ..data.thresholds import load_threshold

#: The segmentation variants of this notebook, in table order.
VARIANTS: tuple[str, ...] = ("Grad-CAM", "UM-CAM", "SPL", "UM-CAM+SPL", "FullySup")

#: CAM map file (``cams/<name>.npz``) of each CAM-derived variant.
CAM_MAPS: dict[str, str] = {"Grad-CAM": "gradcam", "UM-CAM": "umcam"}


def _take(index: np.ndarray, maps: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Maps of ``rows`` that ``index`` has, and the boolean mask of which rows it has."""
    pos = row_positions(index, rows)
    have = pos >= 0
    return maps[pos[have]], have


def cam_pseudo_masks(run_dir: str | Path, slices: SliceSet, variant: str) -> dict[str, Any]:
    """Thresholded CAM pseudo masks of the positive training slices for ``Grad-CAM``/``UM-CAM``."""
    name = CAM_MAPS[variant]
    rows = slices.indices("train", positive_only=True)
    index, maps = load_maps(run_dir, "cams", name)
    taken, have = _take(index, maps, rows)
    if not have.all():
        raise ValueError(f"{map_path(run_dir, 'cams', name)} lacks {int((~have).sum())} positive training slices "
                         f"(e.g. row {int(rows[~have][0])}): notebook 03/04 must compute CAMs for every slice")
    t = load_threshold(run_dir, name, variant)
    return {"index": rows, "maps": (taken >= t).astype(np.float32), "threshold": t}


def load_spl(run_dir: str | Path, slices: SliceSet, fallback: Mapping[str, Any] | None = None,
             spl: tuple[np.ndarray, np.ndarray] | None = None) -> dict[str, Any]:
    """SPL of every positive training slice, with the UM-CAM pseudo mask where no SPL exists.

    Parameters
    ----------
    spl : (index, maps), optional
        SPL maps to use instead of ``run_dir/spl/spl.npz`` (e.g. recomputed with another beta).
    fallback : dict, optional
        UM-CAM pseudo masks (:func:`cam_pseudo_masks`); loaded when needed and not given.

    Returns
    -------
    dict
        ``index`` [n], ``maps`` [n, H, W] float32, ``n_fallback`` (slices that took the UM-CAM mask).
    """
    rows = slices.indices("train", positive_only=True)
    index, maps = spl if spl is not None else load_maps(run_dir, "spl", "spl")
    out = np.zeros((len(rows),) + slices.images.shape[1:], dtype=np.float32)
    taken, have = _take(index, maps, rows)
    out[have] = taken
    if not have.all():
        fb = fallback if fallback is not None else cam_pseudo_masks(run_dir, slices, "UM-CAM")
        fb_maps, fb_have = _take(fb["index"], fb["maps"], rows[~have])
        if not fb_have.all():
            raise ValueError("UM-CAM pseudo masks lack positive training slices that also have no SPL")
        out[~have] = fb_maps
    return {"index": rows, "maps": np.clip(out, 0.0, 1.0), "n_fallback": int((~have).sum())}


def variant_targets(variant: str, slices: SliceSet, run_dir: str | Path, seg_cfg: SegParams | Mapping[str, Any],
                    spl: tuple[np.ndarray, np.ndarray] | None = None, lamb: float | None = None) -> dict[str, Any]:
    """Training targets of one of :data:`VARIANTS` from the artifacts of notebooks 03-05.

    Parameters
    ----------
    variant : str
        One of :data:`VARIANTS`.
    spl : (index, maps), optional
        SPL maps replacing ``spl/spl.npz`` (the beta sweep).
    lamb : float, optional
        Eq. 8 weight for ``UM-CAM+SPL`` (default ``seg.lambda_spl``).

    Returns
    -------
    dict
        ``index``, ``maps`` and, for ``UM-CAM+SPL``, ``spl`` and ``lambda``; see the module docstring.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown segmentation variant {variant!r}; expected one of {VARIANTS}")
    if variant in CAM_MAPS:
        return cam_pseudo_masks(run_dir, slices, variant)
    if variant == "FullySup":
        rows = slices.indices("train", positive_only=True)
        return {"index": rows, "maps": slices.masks[rows].astype(np.float32)}
    um = cam_pseudo_masks(run_dir, slices, "UM-CAM")
    s = load_spl(run_dir, slices, fallback=um, spl=spl)
    if s["n_fallback"]:
        print(f"{variant}: {s['n_fallback']} positive training slices have no SPL; their UM-CAM pseudo mask stands in")
    if variant == "SPL":
        return {"index": s["index"], "maps": s["maps"], "n_fallback": s["n_fallback"]}
    lam = float(check_section("seg", seg_cfg)["lambda_spl"] if lamb is None else lamb)
    return {"index": um["index"], "maps": um["maps"], "spl": s["maps"], "lambda": lam, "n_fallback": s["n_fallback"]}


def all_targets(slices: SliceSet, run_dir: str | Path, seg_cfg: SegParams | Mapping[str, Any],
                variants: Sequence[str] = VARIANTS) -> dict[str, dict[str, Any]]:
    """:func:`variant_targets` of each variant (variant name -> targets dict)."""
    return {name: variant_targets(name, slices, run_dir, seg_cfg) for name in variants}


def training_set(slices: SliceSet, targets: Mapping[str, Any], soft: bool = True
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Labels for every training slice: ``targets`` on positive slices, background on negatives.

    Returns
    -------
    rows : ndarray, int, shape (n,)
        All training rows.
    y : ndarray, float32, shape (n, H, W)
        First label of Eq. 8 (thresholded at 0.5 when ``soft`` is False).
    y_spl : ndarray, float32, shape (n, H, W), or None
        Second label when ``targets`` has ``spl``.
    """
    if "index" not in targets or "maps" not in targets:
        raise KeyError("targets must have 'index' and 'maps' (and optionally 'spl', 'lambda')")
    index, maps = np.asarray(targets["index"]), np.asarray(targets["maps"])
    if maps.shape[0] != index.shape[0] or maps.shape[1:] != slices.images.shape[1:]:
        raise ValueError(f"targets['maps'] has shape {maps.shape}; expected ({len(index)}, "
                         f"{slices.images.shape[1]}, {slices.images.shape[2]})")
    rows = slices.indices("train")
    pos = rows[slices.labels[rows] == 1]
    sel = require_rows(index, pos, "the targets' positive training slices", "every training slice must have a label")
    place = np.searchsorted(rows, pos)

    def fill(m: np.ndarray) -> np.ndarray:
        out = np.zeros((len(rows),) + slices.images.shape[1:], dtype=np.float32)
        out[place] = np.clip(np.asarray(m, dtype=np.float32)[sel], 0.0, 1.0)
        return out if soft else (out >= 0.5).astype(np.float32)

    y = fill(maps)
    y_spl = None
    if targets.get("spl") is not None:
        spl = np.asarray(targets["spl"])
        if spl.shape != maps.shape:
            raise ValueError(f"targets['spl'] has shape {spl.shape}, targets['maps'] {maps.shape}")
        y_spl = fill(spl)
    return rows, y, y_spl


def label_examples(slices: SliceSet, targets: Mapping[str, Mapping[str, Any]], row: int) -> dict[str, np.ndarray]:
    """The training label of slice ``row`` under each variant (name -> [H, W] map in [0, 1])."""
    out = {}
    for name, t in targets.items():
        (pos,) = require_rows(t["index"], [row], f"the targets of {name!r}", "pick a training slice")
        out[name] = np.asarray(t["maps"][pos], dtype=np.float32)
        if t.get("spl") is not None:
            out[f"{name}: SPL term"] = np.asarray(t["spl"][pos], dtype=np.float32)
    return out
