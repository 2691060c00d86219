"""Notebook 05's steps that compute and write: the GSE setting validation chooses, the SPL of every
positive slice, and the leakage comparison of settings.

The algorithms live in :mod:`umcam_lib.gse.settings` and :mod:`umcam_lib.gse.pseudo_labels`; this
module reads the run's UM-CAMs for the right slices and writes ``<run>/spl/`` (``gse_choice.json``,
``spl.npz``, ``seeds.csv``, ``summary.json``), each file atomically.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from .. import io
from ..config.schema import GseParams
from ..data import SliceSet
from ..data.maps import load_maps, save_maps, take_rows
from ..data.thresholds import load_thresholds
from ..paths import resolve
from .pseudo_labels import SPLBatch, spl_batch
from .settings import chosen_gse, dense_spl, score_spl, spl_settings, sweep_gse
from .threshold import resolve_threshold

#: Hint of the error raised when the UM-CAMs lack a slice.
RERUN_04 = "rerun notebook 04"


def spl_dir(run_dir: str | Path) -> Path:
    """``<run>/spl``: where notebook 05 writes."""
    return resolve(run_dir) / "spl"


@dataclass(frozen=True)
class GseChoice:
    """The GSE sweep on validation and the setting it chose (:func:`choose_gse`)."""

    sweep: pd.DataFrame          # one row per setting (columns of settings.SWEEP_COLUMNS)
    chosen: dict[str, Any]       # the gse section with the chosen setting filled in
    settings: dict[str, Any]     # keyword settings of spl_batch for it (margin in pixels)
    seconds: float


def choose_gse(run_dir: str | Path, slices: SliceSet, cam_index: np.ndarray, cam_maps: np.ndarray,
               threshold: float | str, gse_cfg: GseParams | Mapping[str, Any], workers: int = 1) -> GseChoice:
    """Sweep the GSE settings on the positive validation slices, choose the best, write ``gse_choice.json``.

    Parameters
    ----------
    cam_index, cam_maps : ndarray, shapes (n,) and (n, H, W)
        The run's UM-CAMs (``cams/umcam.npz``) and their slice rows.
    threshold : float or "variance"
        The UM-CAM seed threshold.
    gse_cfg : section
        The ``gse`` section with its sweep lists.
    """
    val_rows = slices.indices("val", positive_only=True)
    start = time.perf_counter()
    sweep = sweep_gse(slices.images[val_rows], take_rows(cam_index, cam_maps, val_rows, "cams/umcam.npz"),
                      slices.masks[val_rows], threshold, gse_cfg, slices.spacing_mm, workers=workers)
    chosen = chosen_gse(sweep, gse_cfg)
    settings = spl_settings(chosen, slices.spacing_mm)
    io.write_json(spl_dir(run_dir) / "gse_choice.json", dict(gse=chosen, settings=settings))
    return GseChoice(sweep=sweep, chosen=chosen, settings=settings, seconds=time.perf_counter() - start)


@dataclass(frozen=True)
class SplRun:
    """The SPL of the positive slices as written by :func:`write_spl`."""

    result: SPLBatch
    summary: dict[str, Any]      # as written to spl/summary.json
    per_split: pd.DataFrame      # positive_slices, with_spl, without_component per split
    seconds: float


def write_spl(run_dir: str | Path, slices: SliceSet, rows: np.ndarray, cam_index: np.ndarray, cam_maps: np.ndarray,
              threshold: float | str, grid: Sequence[float], choice: GseChoice, threshold_rule: str,
              workers: int = 1) -> SplRun:
    """SPL of ``rows`` with the chosen setting; writes ``spl.npz``, ``seeds.csv`` and ``summary.json``.

    Parameters
    ----------
    rows : ndarray, int, shape (k,)
        The positive slices of every split.
    grid : sequence of float
        CAM thresholds of the per-slice ``variance`` rule.
    choice : GseChoice
        From :func:`choose_gse`.
    threshold_rule : str
        ``gse.threshold_rule``, recorded in the summary.
    """
    cams = take_rows(cam_index, cam_maps, rows, "cams/umcam.npz", hint=RERUN_04)
    start = time.perf_counter()
    result = spl_batch(slices.images[rows], cams, threshold, grid=grid, rows=rows, workers=workers,
                       **choice.settings)
    seconds = time.perf_counter() - start
    out = spl_dir(run_dir)
    save_maps(run_dir, "spl", "spl", result.index, result.maps)
    with io.atomic_path(out / "seeds.csv") as tmp:
        result.seeds.to_csv(tmp, index=False)
    seeds = result.seeds.assign(split=slices.split[result.seeds["row"].to_numpy()])
    per_split = seeds.groupby("split")["has_spl"].agg(positive_slices="size", with_spl="sum")
    per_split["without_component"] = per_split["positive_slices"] - per_split["with_spl"]
    summary = dict(gse=choice.chosen, settings=choice.settings, threshold_rule=threshold_rule,
                   threshold=None if isinstance(threshold, str) else threshold,
                   positive_slices=int(len(rows)), with_spl=int(len(result.index)),
                   without_component=int(result.n_without_component), seconds=round(seconds, 2),
                   per_split={s: {k: int(v) for k, v in r.items()} for s, r in per_split.iterrows()})
    io.write_json(out / "summary.json", summary)
    return SplRun(result=result, summary=summary, per_split=per_split, seconds=seconds)


def write_seed_spl(labels_dirs: Sequence[str | Path], slices: SliceSet, rows: np.ndarray, threshold_rule: str,
                   grid: Sequence[float], choice: GseChoice, workers: int = 1) -> dict[str, SplRun]:
    """SPL of the other classifier seeds whose labels a UNet trains on (the crossed design).

    Each folder (:func:`umcam_lib.train.label_seeds.labels_dir`) holds that seed's UM-CAMs and
    thresholds (notebook 04); its SPL is grown with the setting validation chose on the primary
    seed (``choice``) and the seed's own UM-CAM threshold, and written there as :func:`write_spl`
    writes the run's.

    Returns
    -------
    dict
        Folder (as str) -> :class:`SplRun`.
    """
    out = {}
    for folder in labels_dirs:
        index, maps = load_maps(folder, "cams", "umcam")
        threshold = resolve_threshold(threshold_rule, load_thresholds(folder))
        out[str(folder)] = write_spl(folder, slices, rows, index, maps, threshold, grid, choice, threshold_rule,
                                     workers=workers)
    return out


def compare_leakage(slices: SliceSet, rows: np.ndarray, cam_index: np.ndarray, cam_maps: np.ndarray,
                    threshold: float | str, grid: Sequence[float], variants: Mapping[str, Mapping[str, Any]],
                    workers: int = 1) -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    """SPL of ``rows`` under each named setting, and how much of it leaks outside the brain.

    Returns
    -------
    dense : dict
        Setting title -> SPL, float32 array (k, H, W) (zeros where a slice has no SPL).
    table : DataFrame
        One row per setting: ``leak_pixels_mean`` (SPL > 0.5 outside the true mask, pixels per
        slice) and ``dsc_mean`` (%).
    """
    cams = take_rows(cam_index, cam_maps, rows, "cams/umcam.npz", hint=RERUN_04)
    masks = slices.masks[rows]
    dense = {title: dense_spl(slices.images[rows], cams, threshold, kw, workers=workers, grid=grid)[0]
             for title, kw in variants.items()}
    table = []
    for title, m in dense.items():
        dsc, _, fp = score_spl(m, masks)
        table.append({"setting": title, "leak_pixels_mean": float(fp.mean()), "dsc_mean": float(np.mean(dsc))})
    return dense, pd.DataFrame(table)


def leakiest(dense: np.ndarray, masks: np.ndarray, k: int = 4) -> np.ndarray:
    """Positions of the ``k`` slices whose SPL (> 0.5) leaks most outside ``masks`` (most first)."""
    leak = ((np.asarray(dense) > 0.5) & ~np.asarray(masks).astype(bool)).reshape(len(dense), -1).sum(1)
    return np.argsort(-leak)[:k]


__all__ = ["GseChoice", "SplRun", "choose_gse", "compare_leakage", "leakiest", "spl_dir", "write_spl"]
