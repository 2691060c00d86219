"""Stacks unlike the training fetus, made from the stacks we have: the shift benchmark's transforms.

The shipped extractor learned from six stacks of one fetus (brain 149-171 mL, 320 x 320 x 22 at
1.125 x 1.125 x 3.3 mm, one scanner). :func:`make_case` turns one real stack and its mask into
a stack from another site or age, by transforms whose effect on the mask is known, so the
reference mask follows exactly:

* **brain size** (``volume_ml``): every voxel spacing is scaled by ``(V / V0) ** (1/3)``, so the
  brain (and everything around it) takes the volume ``V`` (a fetus of 20-38 weeks has about
  60-400 mL);
* **resolution** (``inplane_mm``, ``thickness_mm``): resampled to that in-plane spacing and slice
  thickness; a thicker slice averages its slab (Gaussian along the slice axis before sampling);
* **plane** (``plane``): ``native`` keeps the stack's slicing; ``axis0`` / ``axis1`` reslice it
  so that the thick slices cut across one of the two in-plane axes instead (another
  acquisition plane);
* **field of view** (``fov``): ``native``, ``tight`` (cropped to the brain plus ``margin_mm``) or
  ``wide`` (padded by ``pad_fraction`` of the size on each in-plane side with background noise);
* **slices** (``n_slices``): only that many slices, centred on the brain;
* **intensity** (``gamma``, ``contrast``, ``noise``): ``x -> contrast * x ** gamma`` on intensities
  scaled to [0, 1] by their 99.5th percentile, then Rician noise of SD ``noise`` (of that scale).

:data:`CASES` names the benchmark's cases (one transform at a time, then everything at once);
:func:`draw_case` draws a case's parameters from its ranges with a seed, so the benchmark is the
same on every machine. ``benchmarks/shift_benchmark.py`` writes the cases as NIfTI stacks with
their masks and scores the shipped models on them.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping

import numpy as np
from scipy import ndimage

#: Each case: parameter -> value or (low, high) range drawn by :func:`draw_case`. Parameters
#: left out keep the stack as it is.
CASES: dict[str, dict[str, Any]] = {
    "small brain": {"volume_ml": (60.0, 90.0)},
    "large brain": {"volume_ml": (330.0, 400.0)},
    "fine in-plane, thick slices": {"inplane_mm": (0.7, 0.8), "thickness_mm": (5.0, 6.0)},
    "coarse in-plane, thin slices": {"inplane_mm": (1.4, 1.5), "thickness_mm": (2.0, 2.5)},
    "tight field of view": {"fov": "tight", "margin_mm": (8.0, 15.0)},
    "wide field of view": {"fov": "wide", "pad_fraction": (0.4, 0.8)},
    "other contrast": {"gamma": (0.5, 0.7), "contrast": (0.6, 0.8), "noise": (0.03, 0.05)},
    "other contrast, bright": {"gamma": (1.5, 2.0), "contrast": (1.0, 1.0), "noise": (0.01, 0.03)},
    "few slices": {"n_slices": (12, 15)},
    "another plane (axis 0)": {"plane": "axis0"},
    "another plane (axis 1)": {"plane": "axis1"},
    "all at once": {"volume_ml": (60.0, 400.0), "inplane_mm": (0.7, 1.5), "thickness_mm": (2.0, 6.0),
                    "plane": ("native", "axis0", "axis1"), "fov": ("tight", "native", "wide"),
                    "margin_mm": (8.0, 15.0), "pad_fraction": (0.3, 0.8), "gamma": (0.5, 2.0),
                    "contrast": (0.6, 1.0), "noise": (0.0, 0.05), "n_slices": (12, 15)},
}


@dataclass(frozen=True)
class Shift:
    """The parameters of one case (``None``: the stack's own)."""

    volume_ml: float | None = None
    inplane_mm: float | None = None
    thickness_mm: float | None = None
    plane: str = "native"
    fov: str = "native"
    margin_mm: float = 10.0
    pad_fraction: float = 0.5
    n_slices: int | None = None
    gamma: float = 1.0
    contrast: float = 1.0
    noise: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """Plain values, for a results table."""
        return asdict(self)


def draw_case(name: str, seed: int) -> Shift:
    """The parameters of case ``name`` of :data:`CASES`, drawn from its ranges with ``seed``.

    Examples
    --------
    >>> draw_case("few slices", 0) == draw_case("few slices", 0)
    True
    >>> 60 <= draw_case("small brain", 3).volume_ml <= 90
    True
    """
    if name not in CASES:
        raise ValueError(f"unknown shift case {name!r}; the cases are {list(CASES)}")
    rng = np.random.default_rng(seed)
    values: dict[str, Any] = {}
    for key, spec in CASES[name].items():
        if isinstance(spec, tuple) and all(isinstance(v, str) for v in spec):
            values[key] = spec[int(rng.integers(len(spec)))]
        elif isinstance(spec, tuple):
            lo, hi = spec
            values[key] = int(rng.integers(lo, hi + 1)) if isinstance(lo, int) else float(rng.uniform(lo, hi))
        else:
            values[key] = spec
    return Shift(**values)


def brain_volume_ml(mask: np.ndarray, spacing: tuple[float, float, float]) -> float:
    """Volume of a mask in millilitres."""
    return float(np.count_nonzero(mask)) * float(np.prod(spacing)) / 1000.0


def _resample(image: np.ndarray, mask: np.ndarray, spacing: np.ndarray,
              target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Image (linear, slab-averaged where coarser) and mask (linear, then > 0.5) on ``target`` spacing."""
    factors = spacing / target
    sigma = [0.4 / f if f < 1 else 0.0 for f in factors]  # average what a coarser voxel covers
    img = ndimage.gaussian_filter(image, sigma) if any(sigma) else image
    img = ndimage.zoom(img, factors, order=1, prefilter=False, grid_mode=True, mode="grid-constant")
    msk = ndimage.zoom(mask.astype(np.float32), factors, order=1, prefilter=False, grid_mode=True,
                       mode="grid-constant") > 0.5
    return img.astype(np.float32), msk.astype(np.uint8)


def make_case(image: np.ndarray, mask: np.ndarray, spacing: tuple[float, float, float], shift: Shift,
              seed: int = 0) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """One shifted stack: ``shift`` applied to a stack and its mask.

    Parameters
    ----------
    image, mask : ndarray, shape (X, Y, Z)
        The stack (any intensity scale) and its brain mask, slice axis last.
    spacing : (float, float, float)
        Voxel spacing in mm.
    shift : Shift
        What to change (:func:`draw_case`).
    seed : int
        Seed of the noise.

    Returns
    -------
    image : ndarray, float32, shape (X', Y', Z')
        Intensities in [0, ~1.2] (the 99.5th percentile of the source maps to 1 before gamma).
    mask : ndarray, uint8, same shape
    spacing : (float, float, float)
        The new spacing (slice axis last).
    """
    img = np.asarray(image, np.float32)
    msk = np.asarray(mask) > 0
    if not msk.any():
        raise ValueError("make_case: the mask is empty")
    sp = np.asarray(spacing, dtype=float)
    if shift.volume_ml is not None:
        sp = sp * (float(shift.volume_ml) / brain_volume_ml(msk, tuple(sp))) ** (1.0 / 3.0)
    inplane = float(shift.inplane_mm) if shift.inplane_mm is not None else float(sp[0])
    thick = float(shift.thickness_mm) if shift.thickness_mm is not None else float(sp[2])
    if shift.plane == "native":
        img, msk = _resample(img, msk.astype(np.uint8), sp, np.array([inplane, inplane, thick]))
    elif shift.plane in ("axis0", "axis1"):
        iso = np.array([inplane, inplane, inplane])
        img, msk = _resample(img, msk.astype(np.uint8), sp, iso)
        axis = 0 if shift.plane == "axis0" else 1
        img, msk = np.moveaxis(img, axis, -1), np.moveaxis(msk, axis, -1)
        img, msk = _resample(img, msk, iso, np.array([inplane, inplane, thick]))
    else:
        raise ValueError(f"plane must be native, axis0 or axis1, got {shift.plane!r}")
    spacing_out = (inplane, inplane, thick)
    if not msk.any():
        raise ValueError(f"make_case: the brain vanished at {spacing_out} mm (shift {shift})")

    rng = np.random.default_rng(seed)
    scale = float(np.percentile(img, 99.5)) or 1.0
    img = np.clip(img / scale, 0.0, None)
    if shift.fov == "tight":
        lo, hi = _brain_box(msk, shift.margin_mm / inplane)
        img, msk = img[lo[0]:hi[0], lo[1]:hi[1]], msk[lo[0]:hi[0], lo[1]:hi[1]]
    elif shift.fov == "wide":
        pad = [int(round(shift.pad_fraction * n)) for n in img.shape[:2]]
        widths = ((pad[0], pad[0]), (pad[1], pad[1]), (0, 0))
        background = float(np.percentile(img, 5))
        img = np.pad(img, widths, constant_values=background)
        msk = np.pad(msk, widths)
    elif shift.fov != "native":
        raise ValueError(f"fov must be native, tight or wide, got {shift.fov!r}")
    if shift.n_slices is not None and img.shape[2] > shift.n_slices:
        z = np.flatnonzero(msk.any(axis=(0, 1)))
        centre = int(round((z[0] + z[-1]) / 2))
        start = int(np.clip(centre - shift.n_slices // 2, 0, img.shape[2] - shift.n_slices))
        img, msk = img[..., start:start + shift.n_slices], msk[..., start:start + shift.n_slices]
    img = float(shift.contrast) * img ** float(shift.gamma)
    if shift.noise > 0:
        n1, n2 = (rng.normal(0.0, float(shift.noise), img.shape) for _ in range(2))
        img = np.sqrt((img + n1) ** 2 + n2 ** 2)  # Rician: the magnitude of a noisy complex signal
    return img.astype(np.float32), msk.astype(np.uint8), spacing_out


def _brain_box(mask: np.ndarray, margin_px: float) -> tuple[list[int], list[int]]:
    """In-plane bounding box of the brain over all slices, grown by ``margin_px`` (clipped)."""
    rows = np.flatnonzero(mask.any(axis=(1, 2)))
    cols = np.flatnonzero(mask.any(axis=(0, 2)))
    m = int(np.ceil(margin_px))
    lo = [max(0, int(rows[0]) - m), max(0, int(cols[0]) - m)]
    hi = [min(mask.shape[0], int(rows[-1]) + 1 + m), min(mask.shape[1], int(cols[-1]) + 1 + m)]
    return lo, hi


def case_table_row(name: str, source: str, shift: Shift, mask: np.ndarray,
                   spacing: tuple[float, float, float]) -> Mapping[str, Any]:
    """What a case is, for the results table: its name, source stack, parameters and geometry."""
    return {"case": name, "source": source, **shift.as_dict(), "shape": "x".join(map(str, mask.shape)),
            "spacing_mm": "x".join(f"{s:.2f}" for s in spacing), "brain_ml": round(brain_volume_ml(mask, spacing), 1)}


__all__ = ["CASES", "Shift", "brain_volume_ml", "case_table_row", "draw_case", "make_case"]
