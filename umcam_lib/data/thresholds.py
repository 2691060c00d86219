"""The validation-chosen CAM thresholds stored between notebooks: ``cams/thresholds.json``.

Notebooks 03 and 04 (and 07 for the baselines) choose one threshold per map on the validation
slices (:func:`umcam_lib.cam.pseudo_mask.select_threshold`) and store it here under the map's
name (``"umcam"``, ``"gradcam"``, ``"drs"``, ...); notebooks 05-07 read it to turn maps into
pseudo masks. The file is one JSON object, map name -> threshold in [0, 1].
"""
from __future__ import annotations

import json
from pathlib import Path

from ..io import write_json
from ..paths import resolve


def thresholds_path(run_dir: str | Path) -> Path:
    """``runs/<profile>/cams/thresholds.json``."""
    return resolve(run_dir) / "cams" / "thresholds.json"


def _read(path: Path) -> dict[str, float]:
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise TypeError(f"a JSON {type(data).__name__}")
        return {str(k): float(v) for k, v in data.items()}
    except (json.JSONDecodeError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: not a JSON object of map name -> threshold ({exc})") from exc


def load_thresholds(run_dir: str | Path) -> dict[str, float]:
    """Every stored threshold (map name -> threshold).

    Raises
    ------
    FileNotFoundError
        When no notebook has stored a threshold yet (run notebooks 03 and 04 first).
    ValueError
        When the file is not a JSON object of numbers.
    """
    path = thresholds_path(run_dir)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: run notebooks 03 and 04 (CAM thresholds) first")
    return _read(path)


def load_threshold(run_dir: str | Path, *names: str) -> float:
    """The threshold stored under the first of ``names`` that the file has.

    Several names cover maps stored under their map name or their table name
    (``load_threshold(run_dir, "umcam", "UM-CAM")``).

    Raises
    ------
    FileNotFoundError
        As :func:`load_thresholds`.
    KeyError
        When none of ``names`` is stored, naming the file and what it holds.
    """
    if not names:
        raise TypeError("load_threshold needs at least one map name")
    th = load_thresholds(run_dir)
    for name in names:
        if name in th:
            return th[name]
    wanted = names[0] if len(names) == 1 else list(names)
    raise KeyError(f"{thresholds_path(run_dir)} has no threshold for {wanted!r} (has {sorted(th)}): "
                   f"run notebooks 03 and 04 first")


def save_threshold(run_dir: str | Path, name: str, threshold: float) -> Path:
    """Store (or replace) the threshold of map ``name`` (atomically; creates the file)."""
    path = thresholds_path(run_dir)
    th = _read(path) if path.is_file() else {}
    th[name] = float(threshold)
    return write_json(path, th)
