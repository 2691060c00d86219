"""The score store of a run: per-item scores of every (table, section, method, split[, seed]).

Notebooks 03-07 record per-item scores (one CSV file per method, section and split, under
``<run>/scores/``) with :func:`record_scores`; :func:`load_scores` reads them back as one long
frame, from which :mod:`umcam_lib.report.tables` builds Tables 1 and 2.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..io import atomic_path
from ..paths import resolve

TABLES = ("table1", "table2")


SECTIONS = ("pseudo_mask", "segmentation")


SPLITS = ("val", "test")


#: ``seed`` value of scores recorded without a seed.
NO_SEED = -1


def _slug(text: str) -> str:
    """File-name form of a method name; ``+`` is kept distinct (Grad-CAM++ is not Grad-CAM)."""
    return re.sub(r"[^A-Za-z0-9]+", "-", text.replace("+", "plus")).strip("-").lower()


def scores_dir(run_dir: str | Path) -> Path:
    return resolve(run_dir) / "scores"


def _check_key(table: str, section: str, split: str) -> None:
    if table not in TABLES:
        raise ValueError(f"table must be one of {TABLES}, got {table!r}")
    if section not in SECTIONS:
        raise ValueError(f"section must be one of {SECTIONS}, got {section!r}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def record_scores(run_dir: str | Path, table: str, section: str, method: str, split: str,
                  ids: Sequence[int], dsc: Sequence[float], hd95: Sequence[float],
                  hd95_mm: Sequence[float] | None = None, seed: int | None = None) -> Path:
    """Store per-item scores of one (table, section, method, split[, seed]).

    Parameters
    ----------
    ids : sequence of int, shape (n,)
        Slice rows (pseudo masks) or volume indices (segmentation); pairs tests across methods.
    dsc : sequence of float, shape (n,)
        Dice in percent.
    hd95 : sequence of float, shape (n,)
        HD95 in pixels of the profile's grid.
    hd95_mm : sequence of float, shape (n,), optional
        HD95 in millimetres.
    seed : int, optional
        Seed of the classifier-and-CAM stage that produced these scores; rows recorded for
        several seeds are averaged and get a seed spread in :func:`summarise`.
    """
    _check_key(table, section, split)
    if seed is not None and int(seed) < 0:
        raise ValueError(f"seed must be >= 0, got {seed!r}")
    df = pd.DataFrame({"id": np.asarray(ids, dtype=np.int64), "dsc": np.asarray(dsc, dtype=float),
                       "hd95": np.asarray(hd95, dtype=float)})
    if hd95_mm is not None:
        df["hd95_mm"] = np.asarray(hd95_mm, dtype=float)
    if df[["dsc", "hd95"]].isna().any().any():
        raise ValueError(f"{method} {split}: scores contain NaN; empty predictions must be scored with the metrics penalty")
    if df.empty:
        raise ValueError(f"{method} {split}: no items to record")
    df.insert(0, "method", method)
    stem = f"{table}__{section}__{_slug(method)}__{split}"
    folder = scores_dir(run_dir)
    if seed is not None:
        # a seeded file replaces an unseeded one of the same row (and vice versa)
        (folder / f"{stem}.csv").unlink(missing_ok=True)
        stem += f"__s{int(seed)}"
    else:
        for old in folder.glob(f"{stem}__s*.csv"):
            old.unlink()
    path = folder / f"{stem}.csv"
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)
    return path


def load_scores(run_dir: str | Path, table: str | None = None) -> pd.DataFrame:
    """All recorded scores as one long DataFrame (columns table, section, split, method, id, dsc,
    hd95, seed, ...); ``seed`` is :data:`NO_SEED` for scores recorded without one."""
    frames = []
    for p in sorted(scores_dir(run_dir).glob("*.csv")):
        parts = p.stem.split("__")
        if len(parts) not in (4, 5):
            raise ValueError(f"{p}: not a score file name (table__section__method__split[__sN].csv)")
        t, section, _, split = parts[:4]
        if table is not None and t != table:
            continue
        df = pd.read_csv(p)
        df["seed"] = int(parts[4][1:]) if len(parts) == 5 else NO_SEED
        df.insert(0, "split", split)
        df.insert(0, "section", section)
        df.insert(0, "table", t)
        frames.append(df)
    if not frames:
        return pd.DataFrame(columns=["table", "section", "split", "method", "id", "dsc", "hd95", "seed"])
    return pd.concat(frames, ignore_index=True)
