"""Extra training stacks cut from the real ones: other acquisition planes and tight fields of view.

The shift benchmark's cases that no augmentation moved are stacks acquired in another plane
and stacks whose field of view is cropped tight around the brain. Per-slice augmentation cannot
make either from an axial slice: another plane shows the brain's other profile (with the source's
coarse slice direction inside the image), and a tight crop changes the intensity scale and puts
zeros right next to the head. Both can be made from the training stacks themselves, as whole
extra stacks, with :func:`with_restacks`:

* **other planes** (:func:`reslice`): each training stack is resampled to isotropic voxels along
  its slice axis, then cut into thick slabs across one of its two in-plane axes (``axis0``,
  ``axis1``; slab thickness = the stack's own slice thickness, Gaussian slab averaging as the
  shift benchmark does, one slab every ``plane_step`` thicknesses). Each new slice is
  zero-padded to the run's slice size, as ``segment`` pads a stack whose field of view is small.
  Only slabs within the brain's extent, and ``negatives`` beyond each end, are kept.
* **tight field of view** (:func:`tight_crop`): each training stack cropped in-plane to the box
  of its training label plus a margin drawn from ``margin_mm``, renormalised to [0, 1] as
  notebook 01 normalises a stack, and zero-padded back to the slice size. ``tight_share`` < 1 keeps
  only that share of each cropped copy's slices (evenly spaced), so the crops weigh less in training.

Every channel of a stack (image, brain mask, and each training label map) goes through the same
geometry, so the labels stay aligned. The labels are the variant's own: FullySup's true masks,
or the weak route's pseudo labels (its UM-CAM and SPL maps) for a weak method. The image-level
label of a new slice is whether the brain is in it, which is what an annotator of that slice
would give; the weak route sees no mask. Binary labels stay binary (slab average >= 0.5).

What these stacks cannot show: the source stacks cover only 22 x 3.3 mm = 73 mm across their
slice axis, so a resliced slice is a band of that height, as the shift benchmark's plane cases
are; a stack acquired in another plane at another site has a full field of view.

Examples
--------
>>> import numpy as np
>>> vol = np.zeros((10, 32, 32), np.float32); vol[3:7, 10:20, 12:22] = 1
>>> reslice(vol, thickness_mm=3.0, spacing_mm=1.5, plane="axis0", step=1.0).shape
(16, 20, 32)
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage

from ..data import SliceSet
from ..data.prepare import center_fit, normalise_intensity

#: The in-plane axes a stack can be cut across (``axis0``: across rows, ``axis1``: across columns).
PLANES: tuple[str, ...] = ("axis0", "axis1")


@dataclasses.dataclass(frozen=True)
class Restack:
    """Which extra stacks :func:`with_restacks` makes from each training stack.

    Attributes
    ----------
    planes : tuple of str
        Planes of :data:`PLANES` to reslice into (empty: none).
    plane_step : float
        Distance between kept slabs, in slab thicknesses (2: every other slab; fewer new slices).
    negatives : int
        Brainless slabs kept beyond each end of the brain, per resliced stack.
    tight : bool
        Add a tight-field-of-view copy of each stack.
    margin_mm : (float, float)
        Range of the tight crop's margin around the label's box (mm), drawn per stack.
    tight_share : float
        Share of each tight copy's slices kept, evenly spaced, in (0, 1] (1: all; 0.25: one in four).
    seed : int
        Seed of the margins.
    """

    planes: tuple[str, ...] = PLANES
    plane_step: float = 2.0
    negatives: int = 3
    tight: bool = True
    margin_mm: tuple[float, float] = (5.0, 20.0)
    tight_share: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = [p for p in self.planes if p not in PLANES]
        if unknown:
            raise ValueError(f"restack planes: unknown {unknown}; expected some of {PLANES}")
        if self.plane_step <= 0:
            raise ValueError(f"restack plane_step must be > 0 slab thicknesses, got {self.plane_step}")
        if self.negatives < 0:
            raise ValueError(f"restack negatives must be >= 0, got {self.negatives}")
        lo, hi = self.margin_mm
        if not 0 <= lo <= hi:
            raise ValueError(f"restack margin_mm must be (low, high) with 0 <= low <= high, got {self.margin_mm}")
        if not 0 < self.tight_share <= 1:
            raise ValueError(f"restack tight_share must be in (0, 1], got {self.tight_share}")


def as_recipe(restack: bool | Restack | Mapping[str, Any] | None) -> Restack | None:
    """The recipe meant by a ``restack`` argument or record: ``None``/``False`` -> ``None``, ``True`` ->
    the defaults, a :class:`Restack` as it is, a segmenter summary's ``restack`` record -> its recipe.

    >>> as_recipe(True) == Restack() and as_recipe(None) is None
    True
    >>> as_recipe({"planes": ["axis0"], "plane_step": 4, "tight": False, "n_stacks": 5}).planes
    ('axis0',)
    """
    if restack is None or restack is False:
        return None
    if restack is True:
        return Restack()
    if isinstance(restack, Restack):
        return restack
    fields = {f.name for f in dataclasses.fields(Restack)}
    values = {k: v for k, v in dict(restack).items() if k in fields}
    for key in ("planes", "margin_mm"):
        if key in values:
            values[key] = tuple(values[key])
    return Restack(**values)


def reslice(volume: np.ndarray, thickness_mm: float, spacing_mm: float, plane: str, step: float = 1.0,
            binary: bool = False) -> np.ndarray:
    """Cut a stack into thick slabs across one of its in-plane axes.

    Parameters
    ----------
    volume : ndarray, shape (S, H, W)
        The stack's slices (slice axis first), in-plane pixels of ``spacing_mm``.
    thickness_mm : float
        The stack's slice thickness; also the thickness of the new slabs.
    spacing_mm : float
        In-plane pixel spacing (mm); the new slices have it in both directions.
    plane : {"axis0", "axis1"}
        Cut across H (``axis0``) or across W (``axis1``).
    step : float
        Distance between slab centres, in slab thicknesses.
    binary : bool
        Threshold the slab average at 0.5 (labels), else keep it (images, soft maps).

    Returns
    -------
    ndarray, float32, shape (K, S', W) for ``axis0`` or (K, S', H) for ``axis1``
        K slabs; ``S' = round(S * thickness_mm / spacing_mm)`` rows along the old slice axis.
    """
    if plane not in PLANES:
        raise ValueError(f"plane must be one of {PLANES}, got {plane!r}")
    vol = np.asarray(volume, np.float32)
    if vol.ndim != 3:
        raise ValueError(f"reslice: expected a stack of shape (S, H, W), got {vol.shape}")
    slab = float(thickness_mm) / float(spacing_mm)  # slab thickness in pixels
    iso = ndimage.zoom(vol, (slab, 1.0, 1.0), order=1, mode="nearest", grid_mode=True)
    axis = 1 if plane == "axis0" else 2
    iso = ndimage.gaussian_filter1d(iso, 0.4 * slab, axis=axis) if slab > 1 else iso
    centres = np.arange(slab * step / 2.0, iso.shape[axis], slab * step)
    picked = np.moveaxis(np.take(iso, np.round(centres).astype(int).clip(0, iso.shape[axis] - 1), axis=axis),
                         axis, 0)
    return (picked >= 0.5).astype(np.float32) if binary else picked.astype(np.float32)


def _fit(slabs: np.ndarray, size: int) -> np.ndarray:
    """(K, A, B) slices zero-padded / centre-cropped to (K, size, size)."""
    return np.ascontiguousarray(np.moveaxis(center_fit(np.moveaxis(slabs, 0, -1), size), -1, 0))


def brain_range(present: np.ndarray, negatives: int) -> np.ndarray:
    """Indices of the slices from the first to the last ``present`` one, ``negatives`` more each side.

    >>> brain_range(np.array([0, 0, 0, 1, 1, 0, 0, 0, 0]), 2).tolist()
    [1, 2, 3, 4, 5, 6]
    """
    idx = np.flatnonzero(present)
    if not len(idx):
        return idx
    return np.arange(max(0, idx[0] - negatives), min(len(present), idx[-1] + 1 + negatives))


def tight_crop(channels: Mapping[str, np.ndarray], box_from: np.ndarray, margin_px: float, size: int,
               image_key: str = "image") -> dict[str, np.ndarray]:
    """Crop every channel of a stack to the in-plane box of ``box_from`` plus a margin, renormalise
    the image to [0, 1] and zero-pad back to ``size``.

    Parameters
    ----------
    channels : mapping of str to ndarray, each shape (S, H, W)
        The stack's image (under ``image_key``) and its label channels.
    box_from : ndarray, bool, shape (S, H, W)
        What the box must hold (the training label; its union over slices).
    margin_px : float
        Margin around the box, in pixels (clipped at the image's edge).
    size : int
        Output slice size.

    Returns
    -------
    dict of str to ndarray, float32, shape (S, size, size)
    """
    rows = np.flatnonzero(box_from.any(axis=(0, 2)))
    cols = np.flatnonzero(box_from.any(axis=(0, 1)))
    if not len(rows):
        raise ValueError("tight_crop: the label is empty; there is no box to crop to")
    m = int(np.ceil(margin_px))
    h, w = box_from.shape[1:]
    r0, r1 = max(0, rows[0] - m), min(h, rows[-1] + 1 + m)
    c0, c1 = max(0, cols[0] - m), min(w, cols[-1] + 1 + m)
    out = {}
    for key, c in channels.items():
        crop = np.asarray(c, np.float32)[:, r0:r1, c0:c1]
        if key == image_key:
            crop = normalise_intensity(crop)
        out[key] = _fit(crop, size)
    return out


def share_of(n: int, share: float) -> np.ndarray:
    """Indices of ``ceil(n * share)`` evenly spaced slices out of ``n`` (all of them for share 1).

    >>> share_of(8, 0.25).tolist(), share_of(5, 1.0).tolist()
    ([0, 7], [0, 1, 2, 3, 4])
    """
    if share >= 1 or n == 0:
        return np.arange(n)
    return np.unique(np.round(np.linspace(0, n - 1, max(1, int(np.ceil(n * share))))).astype(int))


def _volume_channels(slices: SliceSet, targets: Mapping[str, Any], volume: int
                     ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A training volume's rows (in slice order) and its channels: image, mask, and the target maps
    (zero on slices the targets do not cover: negatives)."""
    rows = np.flatnonzero(slices.volume == volume)
    rows = rows[np.argsort(slices.slice_index[rows], kind="stable")]
    channels = {"image": slices.images[rows].astype(np.float32), "mask": slices.masks[rows].astype(np.float32)}
    pos = {int(r): i for i, r in enumerate(np.asarray(targets["index"]))}
    for key in ("maps", "spl"):
        if targets.get(key) is None:
            continue
        src = np.asarray(targets[key])
        vol = np.zeros(channels["image"].shape, np.float32)
        for j, r in enumerate(rows):
            if int(r) in pos:
                vol[j] = src[pos[int(r)]]
        channels[key] = vol
    return rows, channels


def _is_binary(a: np.ndarray) -> bool:
    return bool(np.isin(a, (0.0, 1.0)).all())


def with_restacks(slices: SliceSet, targets: Mapping[str, Any], restack: Restack,
                  thickness_mm: Mapping[int, float] | None = None) -> tuple[SliceSet, dict[str, Any], pd.DataFrame]:
    """``slices`` and ``targets`` with the extra stacks of ``restack`` made from every real
    training stack (synthetic ones are left as they are), appended as training stacks.

    Parameters
    ----------
    slices : SliceSet
        The training slice set (validation and test rows are kept untouched).
    targets : mapping
        The variant's targets (:func:`umcam_lib.train.seg_targets.variant_targets`): ``index``,
        ``maps`` and optionally ``spl``; other keys are passed through.
    restack : Restack
        What to make.
    thickness_mm : mapping of volume id to mm, optional
        Slice thickness per volume; default the ``thickness_mm`` column of ``slices.volumes``.

    Returns
    -------
    slices : SliceSet
        With the new stacks (named ``<stack>-<plane>`` / ``<stack>-tight``).
    targets : dict
        With the new positive slices' maps appended.
    made : DataFrame
        One row per new stack: name, source volume, kind, slices, positive slices, margin_mm.
    """
    vols = slices.volumes.set_index("volume")
    if thickness_mm is None:
        if "thickness_mm" not in vols:
            raise ValueError("with_restacks: the slice set's volumes table has no thickness_mm column")
        thickness_mm = vols["thickness_mm"].to_dict()
    size = int(slices.images.shape[-1])
    keys = [k for k in ("maps", "spl") if targets.get(k) is not None]
    binary = {k: _is_binary(np.asarray(targets[k])) for k in keys}
    rng = np.random.default_rng(restack.seed)
    first = int(slices.volumes["volume"].max()) + 1
    new: list[dict[str, np.ndarray]] = []
    rows_out: list[dict[str, Any]] = []
    for v in slices.volume_ids("train"):
        if str(vols.loc[v, "subject"]) == "synthetic":
            continue
        _, ch = _volume_channels(slices, targets, int(v))
        name = str(vols.loc[v, "name"]) if "name" in vols else f"volume-{v}"
        for plane in restack.planes:
            cut = {k: reslice(c, float(thickness_mm[v]), slices.spacing_mm, plane, restack.plane_step,
                              binary=(k == "mask") or binary.get(k, False)) for k, c in ch.items()}
            keep = brain_range(cut["mask"].any(axis=(1, 2)), restack.negatives)
            if len(keep):
                new.append({k: _fit(c[keep], size) for k, c in cut.items()})
                rows_out.append({"name": f"{name}-{plane}", "source": int(v), "kind": plane, "margin_mm": np.nan})
        box = ch["maps"] >= 0.5 if "maps" in ch else ch["mask"] > 0
        if restack.tight and box.any():
            margin = float(rng.uniform(*restack.margin_mm))
            crop = tight_crop(ch, box, margin / slices.spacing_mm, size)
            keep = share_of(len(crop["image"]), restack.tight_share)
            new.append({k: c[keep] for k, c in crop.items()})
            rows_out.append({"name": f"{name}-tight", "source": int(v), "kind": "tight", "margin_mm": round(margin, 1)})
    if not new:
        return slices, dict(targets), pd.DataFrame(rows_out)
    images, masks, labels, volume, index, split = [], [], [], [], [], []
    new_index, new_maps = [], {k: [] for k in keys}
    n0 = len(slices)
    for i, (stack, row) in enumerate(zip(new, rows_out)):
        n = len(stack["image"])
        present = stack["mask"].reshape(n, -1).any(axis=1)
        row.update(n_slices=n, n_positive=int(present.sum()))
        start = n0 + sum(len(s["image"]) for s in new[:i])
        images.append(stack["image"])
        masks.append((stack["mask"] >= 0.5).astype(np.uint8))
        labels.append(present.astype(np.uint8))
        volume.append(np.full(n, first + i, np.int32))
        index.append(np.arange(n, dtype=np.int32))
        split.append(np.full(n, "train", dtype=slices.split.dtype))
        new_index.append(start + np.flatnonzero(present))
        for k in keys:
            new_maps[k].append(stack[k][present])
    made = pd.DataFrame(rows_out)
    extra = pd.DataFrame({"volume": np.arange(first, first + len(new)),
                          "subject": [str(vols.loc[s, "subject"]) for s in made["source"]], "split": "train",
                          "n_slices": made["n_slices"].to_numpy(),
                          "thickness_mm": [float(thickness_mm[s]) for s in made["source"]]})
    if "name" in slices.volumes:
        extra["name"] = made["name"].to_numpy()
    out = dataclasses.replace(
        slices,
        images=np.concatenate([slices.images, *images]).astype(slices.images.dtype),
        masks=np.concatenate([slices.masks, *masks]),
        labels=np.concatenate([slices.labels, *labels]),
        volume=np.concatenate([slices.volume, *volume]),
        slice_index=np.concatenate([slices.slice_index, *index]),
        split=np.concatenate([slices.split, *split]),
        volumes=pd.concat([slices.volumes, extra], ignore_index=True))
    new_targets = dict(targets)
    new_targets["index"] = np.concatenate([np.asarray(targets["index"]), *new_index])
    for k in keys:
        new_targets[k] = np.concatenate([np.asarray(targets[k], np.float32), *new_maps[k]]).astype(np.float32)
    return out, new_targets, made


__all__ = ["PLANES", "Restack", "as_recipe", "brain_range", "reslice", "share_of", "tight_crop", "with_restacks"]
