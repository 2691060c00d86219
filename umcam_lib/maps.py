"""Per-slice maps (CAMs, SPLs, predictions) stored between notebooks.

A map file ``runs/<profile>/<kind>/<name>.npz`` holds ``index`` [n] int64 (rows of the slice
set) and ``maps`` [n, H, W] float16 in [0, 1].
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .io import save_npz
from .paths import resolve


def map_path(run_dir: str | Path, kind: str, name: str) -> Path:
    return resolve(run_dir) / kind / f"{name}.npz"


def save_maps(run_dir: str | Path, kind: str, name: str, index: np.ndarray, maps: np.ndarray) -> Path:
    """Store ``maps`` [n, H, W] for slice rows ``index`` [n] (atomically)."""
    index = np.asarray(index, dtype=np.int64)
    if maps.shape[0] != index.shape[0]:
        raise ValueError(f"maps has {maps.shape[0]} rows but index has {index.shape[0]}")
    return save_npz(map_path(run_dir, kind, name), index=index, maps=np.asarray(maps, dtype=np.float16))


def load_maps(run_dir: str | Path, kind: str, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(index, maps)`` with maps as float32."""
    p = map_path(run_dir, kind, name)
    if not p.is_file():
        raise FileNotFoundError(f"{p} does not exist: run the notebook that writes {kind}/{name} first")
    with np.load(p) as z:
        return z["index"], z["maps"].astype(np.float32)
