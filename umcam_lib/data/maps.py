"""Per-slice maps (CAMs, SPLs, predictions) stored between notebooks.

A map file ``runs/<profile>/<kind>/<name>.npz`` holds ``index`` [n] int64 (rows of the slice
set) and ``maps`` [n, H, W] float16 in [0, 1].
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..io import save_npz
from ..paths import resolve


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


def row_positions(index: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Position of each of ``rows`` in a map set's ``index`` (-1 where the set lacks the row).

    Parameters
    ----------
    index : ndarray, int, shape (n,)
        Slice rows of a map set (``index`` of a map file, or of a ``targets`` dict).
    rows : ndarray, int, shape (k,)
        Slice rows to find.

    Returns
    -------
    ndarray, int64, shape (k,)
        ``maps[positions]`` are the maps of ``rows`` where every position is >= 0. A row listed
        twice in ``index`` resolves to its last position.
    """
    pos = {int(r): i for i, r in enumerate(np.asarray(index))}
    return np.array([pos.get(int(r), -1) for r in np.asarray(rows).ravel()], dtype=np.int64)


def require_rows(index: np.ndarray, rows: np.ndarray, name: str = "maps",
                 hint: str = "compute the map for every slice that is used") -> np.ndarray:
    """Positions of ``rows`` in ``index`` (:func:`row_positions`), all of which must be there.

    Raises
    ------
    ValueError
        ``"<name> lacks slice rows [...] (k missing): <hint>"`` when some are not.
    """
    pos = row_positions(index, rows)
    if (pos < 0).any():
        missing = [int(r) for r in np.asarray(rows).ravel()[pos < 0]]
        raise ValueError(f"{name} lacks slice rows {missing[:10]}{'...' if len(missing) > 10 else ''} "
                         f"({len(missing)} missing): {hint}")
    return pos


def take_rows(index: np.ndarray, maps: np.ndarray, rows: np.ndarray, name: str = "maps",
              hint: str = "compute the map for every slice that is used") -> np.ndarray:
    """The maps of slice ``rows`` from a map set (``index`` [n] rows, ``maps`` [n, H, W]).

    Raises
    ------
    ValueError
        When the set lacks some of ``rows``, naming them (``name`` says which set).

    Examples
    --------
    >>> import numpy as np
    >>> index = np.array([10, 11, 12])                      # slice rows of the set
    >>> maps = np.arange(12, dtype=np.float32).reshape(3, 2, 2)
    >>> out = take_rows(index, maps, np.array([12, 10]))
    >>> out.shape, out[:, 0, 0].tolist()
    ((2, 2, 2), [8.0, 0.0])
    >>> take_rows(index, maps, np.array([13]), name="cams")
    Traceback (most recent call last):
    ...
    ValueError: cams lacks slice rows [13] (1 missing): compute the map for every slice that is used
    """
    pos = require_rows(index, rows, name, hint)
    return maps[pos]
