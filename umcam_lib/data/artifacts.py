"""The prepared slice set: what notebook 01 writes and every later notebook reads.

Layout under a run folder (``runs/<profile>/``)::

    data/slices.npz    images [N, H, W] float32 in [0, 1], masks [N, H, W] uint8,
                       labels [N] uint8 (1 = brain present), volume [N] int32 (row of
                       volumes.csv), slice_index [N] int32 (position in its stack),
                       split [N] str (train / val / test), spacing_mm (in-plane, scalar)
    data/volumes.csv   one row per stack: volume, subject, split, image_path, n_slices,
                       thickness_mm, native_spacing_mm, shape

Slices of one volume are contiguous and ordered by ``slice_index``, so a 3D prediction is the
stack of its slices.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from ..io import atomic_path, save_npz
from ..paths import resolve

SPLITS = ("train", "val", "test")


@dataclass
class SliceSet:
    """All prepared 2D slices of a cohort.

    Attributes
    ----------
    images : ndarray, float32, shape (N, H, W)
        Intensity-normalised slices in [0, 1] on the profile's grid.
    masks : ndarray, uint8, shape (N, H, W)
        Brain masks (0/1). Used for evaluation only; training sees ``labels``.
    labels : ndarray, uint8, shape (N,)
        Image-level labels: 1 when the slice's mask is non-empty.
    volume : ndarray, int32, shape (N,)
        Index of the slice's volume (row of ``volumes``).
    slice_index : ndarray, int32, shape (N,)
        Position of the slice within its stack.
    split : ndarray of str, shape (N,)
        ``train``, ``val`` or ``test`` (assigned per subject).
    spacing_mm : float
        In-plane pixel spacing of ``images`` in millimetres.
    volumes : DataFrame
        One row per volume (see module docstring).
    """

    images: np.ndarray
    masks: np.ndarray
    labels: np.ndarray
    volume: np.ndarray
    slice_index: np.ndarray
    split: np.ndarray
    spacing_mm: float
    volumes: pd.DataFrame

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def indices(self, split: str, positive_only: bool = False) -> np.ndarray:
        """Row indices of the slices of ``split`` (optionally only positive ones)."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        keep = self.split == split
        if positive_only:
            keep &= self.labels == 1
        return np.flatnonzero(keep)

    def positive_rows(self, splits: Sequence[str] = SPLITS) -> np.ndarray:
        """Rows of the positive slices of ``splits``, split after split (ascending within each).

        The slices a map is computed for, a threshold chosen on or a pseudo mask scored on.
        """
        parts = [self.indices(s, positive_only=True) for s in splits]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def volume_slices(self, volume: int) -> np.ndarray:
        """Row indices of one volume's slices, in stack order."""
        rows = np.flatnonzero(self.volume == volume)
        return rows[np.argsort(self.slice_index[rows], kind="stable")]

    def volume_ids(self, split: str) -> np.ndarray:
        """Volume indices that belong to ``split``."""
        return self.volumes.loc[self.volumes["split"] == split, "volume"].to_numpy()


def slices_path(run_dir: str | Path) -> Path:
    return resolve(run_dir) / "data" / "slices.npz"


def volumes_path(run_dir: str | Path) -> Path:
    return resolve(run_dir) / "data" / "volumes.csv"


def save_slices(run_dir: str | Path, s: SliceSet) -> None:
    """Write a :class:`SliceSet` under ``run_dir/data`` (atomically: volumes table last)."""
    n = len(s)
    for name in ("masks", "labels", "volume", "slice_index", "split"):
        if getattr(s, name).shape[0] != n:
            raise ValueError(f"SliceSet.{name} has {getattr(s, name).shape[0]} rows, images has {n}")
    save_npz(
        slices_path(run_dir),
        images=s.images.astype(np.float32),
        masks=s.masks.astype(np.uint8),
        labels=s.labels.astype(np.uint8),
        volume=s.volume.astype(np.int32),
        slice_index=s.slice_index.astype(np.int32),
        split=s.split.astype("U5"),
        spacing_mm=np.float64(s.spacing_mm),
    )
    with atomic_path(volumes_path(run_dir)) as tmp:
        s.volumes.to_csv(tmp, index=False)


def load_slices(run_dir: str | Path) -> SliceSet:
    """Read the slice set written by notebook 01 under ``run_dir``."""
    p, v = slices_path(run_dir), volumes_path(run_dir)
    if not p.is_file() or not v.is_file():
        raise FileNotFoundError(
            f"no prepared slices under {resolve(run_dir)}/data: run notebook 01 first "
            f"(python -m umcam_lib.pipeline --only 01)"
        )
    with np.load(p) as z:
        return SliceSet(
            images=z["images"],
            masks=z["masks"],
            labels=z["labels"],
            volume=z["volume"],
            slice_index=z["slice_index"],
            split=z["split"],
            spacing_mm=float(z["spacing_mm"]),
            volumes=pd.read_csv(v),
        )
