"""From a CAM to a pseudo mask, and how good that mask is (METHOD section 3).

A CAM is a soft map; a mask needs a threshold. Following the paper ("the optimal threshold found
by grid search"), each CAM method gets ONE threshold: the value of the grid
``cam.threshold_grid`` (0.05 .. 0.95, step 0.05) with the highest mean Dice over the positive
validation slices. That threshold is then applied unchanged to the test slices, so test scores
never influence the choice.

A pixel is foreground when ``CAM >= threshold``. Scores are computed over positive slices only
(slices whose ground truth is non-empty): Dice in percent and HD95 in pixels with
:mod:`umcam_lib.metrics`; a slice whose thresholded mask is empty scores Dice 0 and the metrics
module's finite HD95 penalty (it is counted, never dropped).

The chosen thresholds are stored in ``runs/<profile>/cams/thresholds.json`` (map name ->
threshold), where notebooks 05 and 06 read them to turn the Grad-CAM and UM-CAM maps of the
training slices into pseudo labels.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from .. import metrics, report
from ..data.artifacts import SliceSet
from ..io import write_json
from ..paths import resolve

#: Splits a pseudo mask is evaluated on.
EVAL_SPLITS = ("val", "test")


def binarise(maps: np.ndarray, threshold: float) -> np.ndarray:
    """Pseudo masks ``maps >= threshold`` (bool, same shape as ``maps``).

    The comparison is made in float32 (float16 maps are converted first), as for maps read
    back with :func:`umcam_lib.maps.load_maps`: comparing float16 values with a Python float
    would round the threshold to float16 (0.05 -> 0.04999) and shift the mask.
    """
    return np.asarray(maps, dtype=np.float32) >= np.float32(threshold)


def dice_batch(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Dice (%) of each slice of binary stacks [n, H, W], as :func:`umcam_lib.metrics.dice`.

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
    return np.concatenate([slices.indices(s, positive_only=True) for s in splits])


def take_rows(index: np.ndarray, maps: np.ndarray, rows: np.ndarray, name: str = "maps") -> np.ndarray:
    """The maps of slice ``rows`` from a map set (``index`` [n] rows, ``maps`` [n, H, W])."""
    index = np.asarray(index)
    pos = {int(r): i for i, r in enumerate(index)}
    missing = [int(r) for r in rows if int(r) not in pos]
    if missing:
        raise ValueError(f"{name} lacks slice rows {missing[:10]}{'...' if len(missing) > 10 else ''} "
                         f"({len(missing)} missing): compute the CAM for every evaluated slice")
    return maps[[pos[int(r)] for r in rows]]


# ----------------------------------------------------------------------------- thresholds file
def thresholds_path(run_dir: str | Path) -> Path:
    """``runs/<profile>/cams/thresholds.json``."""
    return resolve(run_dir) / "cams" / "thresholds.json"


def load_thresholds(run_dir: str | Path) -> dict[str, float]:
    """All validation-chosen thresholds (map name -> threshold); empty when none is stored."""
    p = thresholds_path(run_dir)
    if not p.is_file():
        return {}
    try:
        return {str(k): float(v) for k, v in json.loads(p.read_text()).items()}
    except (json.JSONDecodeError, AttributeError, TypeError, ValueError) as exc:
        raise ValueError(f"{p}: not a JSON object of name -> threshold ({exc})") from exc


def load_threshold(run_dir: str | Path, name: str) -> float:
    """The validation-chosen threshold of map ``name`` (e.g. ``"umcam"``, ``"gradcam"``)."""
    th = load_thresholds(run_dir)
    if name not in th:
        raise KeyError(f"{thresholds_path(run_dir)} has no threshold for {name!r} (has {sorted(th)}): "
                       f"run notebooks 03 and 04 first")
    return th[name]


def save_threshold(run_dir: str | Path, name: str, threshold: float) -> Path:
    """Store (or replace) the threshold of ``name`` in ``thresholds.json`` (atomically)."""
    th = load_thresholds(run_dir)
    th[name] = float(threshold)
    return write_json(thresholds_path(run_dir), th)


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
    rows = {s: slices.indices(s, positive_only=True) for s in EVAL_SPLITS}
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


def record_evaluation(run_dir: str | Path, table: str, result: CamEvaluation,
                      save_threshold_as: str | None = None, seed: int | None = None,
                      keep_threshold: bool = True) -> None:
    """Record a :class:`CamEvaluation` in ``table``'s pseudo-mask section and store its threshold.

    Parameters
    ----------
    table : {"table1", "table2"}
        Which table's ``pseudo_mask`` section the rows belong to.
    save_threshold_as : str, optional
        Key in ``thresholds.json`` (default: ``result.name``).
    seed : int, optional
        Seed of the classifier the maps came from (rows of several seeds get a seed spread).
    keep_threshold : bool
        Store the threshold in ``thresholds.json`` (the maps later notebooks read: only the
        primary seed's).
    """
    for split, df in result.scores.items():
        report.record_scores(run_dir, table, "pseudo_mask", result.method, split,
                             df["id"].to_numpy(), df["dsc"].to_numpy(), df["hd95"].to_numpy(), seed=seed)
    if keep_threshold:
        save_threshold(run_dir, save_threshold_as or result.name, result.threshold)


def evaluate_and_record(run_dir: str | Path, slices: SliceSet, table: str,
                        maps_by_name: Mapping[str, tuple[np.ndarray, np.ndarray]], grid: Sequence[float],
                        method_names: Mapping[str, str], seed: int | None = None,
                        keep_thresholds: bool = True) -> dict[str, CamEvaluation]:
    """Evaluate several CAMs, record their Table rows and thresholds.

    Parameters
    ----------
    maps_by_name : mapping
        map name -> ``(index [n], maps [n, H, W])``.
    method_names : mapping
        map name -> name in the table (e.g. ``{"umcam": "UM-CAM"}``).
    seed, keep_thresholds
        See :func:`record_evaluation`.

    Returns
    -------
    dict
        map name -> :class:`CamEvaluation`.
    """
    out = {}
    for name, (index, maps) in maps_by_name.items():
        res = evaluate_cam(slices, index, maps, grid, name, method_names.get(name, name))
        record_evaluation(run_dir, table, res, seed=seed, keep_threshold=keep_thresholds)
        out[name] = res
    return out


#: Table name of the floor row: a pseudo mask covering the whole slice.
FLOOR_METHOD = "All-foreground"


def record_floor(run_dir: str | Path, slices: SliceSet, tables: Sequence[str] = ("table1", "table2")) -> pd.DataFrame:
    """Record the all-foreground pseudo mask (every pixel "brain") as a row of ``tables``.

    Every pseudo-mask row must beat this floor: a CAM that does not localise at all, thresholded
    low enough, gives it. Scored on the positive validation and test slices like the CAMs.

    Returns
    -------
    DataFrame
        ``split, n, dsc, hd95`` (means).
    """
    out = []
    for split in EVAL_SPLITS:
        rows = slices.indices(split, positive_only=True)
        if rows.size == 0:
            continue
        ones = np.ones((rows.size, *slices.images.shape[1:]), dtype=np.float32)
        dsc, hd = score_pseudo_masks(ones, slices.masks[rows], 0.5)
        for table in tables:
            report.record_scores(run_dir, table, "pseudo_mask", FLOOR_METHOD, split, rows, dsc, hd)
        out.append({"split": split, "n": int(rows.size), "dsc": float(np.mean(dsc)), "hd95": float(np.mean(hd))})
    return pd.DataFrame(out)


def summary_table(results: Mapping[str, CamEvaluation]) -> pd.DataFrame:
    """One row per evaluated method (threshold, Dice and HD95 per split)."""
    return pd.DataFrame([r.summary() for r in results.values()])


def threshold_curves(results: Mapping[str, CamEvaluation]) -> pd.DataFrame:
    """Mean validation Dice per threshold, one column per method (index: threshold)."""
    return pd.DataFrame({r.method: r.val_curve for r in results.values()},
                        index=pd.Index(next(iter(results.values())).grid, name="threshold"))
