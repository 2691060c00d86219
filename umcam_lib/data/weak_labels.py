"""Image-level weak labels: the paper's slice label, or labels of crops.

The paper labels each 2D slice "brain" or "no brain". On stacks centred on the fetal head,
as public fetal MRI stacks are, nearly every slice holds brain: the label is almost constant,
so a classifier learns it from the presence of a head-like scene, not from where the brain is,
and its CAMs carry no localisation (notebooks 02-04 of the real profile show it).

A *crop* label keeps the annotation cost of the paper (one yes/no per image shown to the
annotator) but shows the annotator squares cut from the slices: a crop is "brain" when it holds
at least ``min_fraction`` of the brain visible on its slice, "no brain" otherwise. Crops of
the same positive slice then disagree, and the only way to tell them apart is where the brain
is. The crop positions are drawn uniformly at random (seeded), never from the masks; the masks
only stand in for the annotator's answer.

Functions
---------
crop_size_px      crop side in pixels from millimetres
crop_boxes        seeded random crop positions, per slice
crop_labels       the annotator's answer for each crop (from the brain masks)
crop_set          crops and labels of a set of slices, ready for the classifier
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Label units (``classifier.label_unit``).
LABEL_UNITS = ("slice", "crop")


def crop_size_px(crop_mm: float, spacing_mm: float, image_size: int) -> int:
    """Side of a square crop in pixels: ``crop_mm / spacing_mm``, rounded to a multiple of 32.

    A multiple of 32 keeps the five poolings of VGG-16 exact. Raises ``ValueError`` when the
    crop is smaller than 32 px or larger than the slice.
    """
    if crop_mm <= 0 or spacing_mm <= 0:
        raise ValueError(f"classifier.crop_mm ({crop_mm}) and the slice spacing ({spacing_mm} mm) must be > 0")
    px = int(round(crop_mm / spacing_mm / 32.0)) * 32
    if px < 32 or px > image_size:
        raise ValueError(f"classifier.crop_mm = {crop_mm} mm is {crop_mm / spacing_mm:.0f} px at {spacing_mm} mm "
                         f"per pixel: a crop must be 32 px to the slice size ({image_size} px)")
    return px


def crop_boxes(n_slices: int, image_size: int, crop: int, per_slice: int, seed: int) -> np.ndarray:
    """Top-left corners of ``per_slice`` random crops on each of ``n_slices`` slices.

    Returns
    -------
    ndarray, int64, shape (n_slices, per_slice, 2)
        ``(row, column)`` of each crop's top-left pixel, uniform in ``[0, image_size - crop]``.
    """
    if per_slice < 1:
        raise ValueError(f"classifier.crops_per_slice must be >= 1, got {per_slice}")
    rng = np.random.default_rng(seed)
    return rng.integers(0, image_size - crop + 1, size=(n_slices, per_slice, 2), dtype=np.int64)


def crop_labels(masks: np.ndarray, boxes: np.ndarray, crop: int, min_fraction: float) -> np.ndarray:
    """The annotator's yes/no for each crop: does it hold ``min_fraction`` of the slice's brain?

    Parameters
    ----------
    masks : ndarray, shape (n, H, W), 0/1
        Brain masks of the slices (they stand in for the annotator; they are not shown to the
        classifier).
    boxes : ndarray, shape (n, k, 2)
        Crop corners from :func:`crop_boxes`.
    crop : int
        Crop side in pixels.
    min_fraction : float in (0, 1]
        Share of the slice's brain pixels a crop must hold to be labelled "brain".

    Returns
    -------
    ndarray, uint8, shape (n, k)
        1 = brain, 0 = no brain (every crop of a slice without brain is 0).
    """
    if not 0.0 < min_fraction <= 1.0:
        raise ValueError(f"classifier.crop_brain_fraction must be in (0, 1], got {min_fraction}")
    m = np.asarray(masks) > 0
    # summed-area table: the brain pixels in any box in O(1)
    sat = np.zeros((m.shape[0], m.shape[1] + 1, m.shape[2] + 1), dtype=np.int64)
    sat[:, 1:, 1:] = m.cumsum(1).cumsum(2)
    n = np.arange(m.shape[0])[:, None]
    r, c = boxes[..., 0], boxes[..., 1]
    inside = sat[n, r + crop, c + crop] - sat[n, r, c + crop] - sat[n, r + crop, c] + sat[n, r, c]
    total = m.reshape(m.shape[0], -1).sum(1)[:, None]
    return ((total > 0) & (inside >= min_fraction * total)).astype(np.uint8)


@dataclass
class CropSet:
    """Crops cut from slices, with their weak labels.

    Attributes
    ----------
    images : ndarray, float32, shape (M, c, c)
    labels : ndarray, uint8, shape (M,)
    rows : ndarray, int64, shape (M,)
        Row (in the slice set) of the slice each crop comes from.
    boxes : ndarray, int64, shape (M, 2)
        Top-left corner of each crop on its slice.
    """

    images: np.ndarray
    labels: np.ndarray
    rows: np.ndarray
    boxes: np.ndarray


def crop_set(images: np.ndarray, masks: np.ndarray, rows: np.ndarray, crop: int, per_slice: int,
             min_fraction: float, seed: int) -> CropSet:
    """Cut ``per_slice`` random crops from each slice in ``rows`` and label them.

    Parameters
    ----------
    images, masks : ndarray, shape (N, H, W)
        All slices of the slice set (``H == W``).
    rows : ndarray of int, shape (n,)
        The slices to crop (e.g. one split).
    crop, per_slice, min_fraction, seed
        See :func:`crop_boxes` and :func:`crop_labels`. The same arguments give the same crops.

    Returns
    -------
    CropSet
        ``n * per_slice`` crops, slice by slice.
    """
    rows = np.asarray(rows, dtype=np.int64)
    size = int(images.shape[-1])
    boxes = crop_boxes(len(rows), size, crop, per_slice, seed)
    labels = crop_labels(masks[rows], boxes, crop, min_fraction)
    off = np.arange(crop)
    rr = (boxes[..., 0, None] + off)[..., :, None]        # (n, k, c, 1)
    cc = (boxes[..., 1, None] + off)[..., None, :]        # (n, k, 1, c)
    cut = images[rows[:, None, None, None], rr, cc]       # (n, k, c, c)
    return CropSet(images=np.ascontiguousarray(cut.reshape(-1, crop, crop), dtype=np.float32),
                   labels=labels.reshape(-1), rows=np.repeat(rows, per_slice), boxes=boxes.reshape(-1, 2))
