"""Seeds from a pseudo mask (METHOD section 4): the largest component's centroid and the corners
of its bounding box pushed outwards by a margin."""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage
from skimage.measure import label

Point = tuple[int, int]


def largest_component(mask: np.ndarray) -> np.ndarray:
    """Keep the largest 8-connected component of a binary 2D mask.

    Parameters
    ----------
    mask : ndarray, shape (H, W)
        Non-zero = foreground.

    Returns
    -------
    ndarray, bool, shape (H, W)
        The largest component (ties: the one met first in raster order); all False when
        ``mask`` is empty.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2D (one slice), got shape {mask.shape}")
    labels = label(mask != 0, connectivity=2)
    if labels.max() == 0:
        return np.zeros(mask.shape, bool)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def seeds(mask: np.ndarray, margin: int = 5) -> tuple[list[Point], list[Point]]:
    """Foreground and background seed points of one slice's pseudo mask.

    Parameters
    ----------
    mask : ndarray, shape (H, W)
        Thresholded CAM (non-zero = foreground). Only its largest 8-connected component is used.
    margin : int
        Pixels by which each bounding-box corner is pushed outwards, on every side.

    Returns
    -------
    fg_points : list of (row, col)
        One point: the component's centroid rounded to the nearest pixel, or, when that pixel
        is not in the component (a non-convex shape), the component pixel nearest to the
        centroid.
    bg_points : list of (row, col)
        The four corners of the component's bounding box (first and last rows and columns that
        hold component pixels), each moved ``margin`` pixels away from the box on both axes and
        clipped to the image (no wrap-around): top-left, top-right, bottom-left, bottom-right.
        Clipped corners may coincide.

    Both lists are empty when ``mask`` has no foreground pixel.

    Examples
    --------
    >>> import numpy as np
    >>> m = np.zeros((10, 10), np.uint8); m[3:6, 4:8] = 1   # rows 3-5, columns 4-7
    >>> fg, bg = seeds(m, margin=2)
    >>> fg
    [(4, 6)]
    >>> bg
    [(1, 2), (1, 9), (7, 2), (7, 9)]
    >>> seeds(np.zeros((4, 4)))
    ([], [])
    """
    fg, bg, _ = seeds_with_size(mask, margin)
    return fg, bg


def seeds_with_size(mask: np.ndarray, margin: int = 5) -> tuple[list[Point], list[Point], int]:
    """:func:`seeds` plus the pixel count of the component they come from (0 when empty)."""
    if int(margin) != margin or margin < 0:
        raise ValueError(f"gse.margin must be a non-negative integer, got {margin!r}")
    comp = largest_component(mask)
    rows, cols = np.nonzero(comp)
    if rows.size == 0:
        return [], [], 0
    h, w = comp.shape
    cr, cc = rows.mean(), cols.mean()
    r0, c0 = int(np.rint(cr)), int(np.rint(cc))
    if not comp[r0, c0]:
        i = int(np.argmin((rows - cr) ** 2 + (cols - cc) ** 2))
        r0, c0 = int(rows[i]), int(cols[i])
    m = int(margin)
    top, bottom = max(int(rows.min()) - m, 0), min(int(rows.max()) + m, h - 1)
    left, right = max(int(cols.min()) - m, 0), min(int(cols.max()) + m, w - 1)
    return [(r0, c0)], [(top, left), (top, right), (bottom, left), (bottom, right)], int(rows.size)


SeedPoints = tuple[list[Point], list[Point]]


def seeds_batch(masks: np.ndarray, margin: int = 5, block: int = 64) -> tuple[list[SeedPoints], np.ndarray]:
    """:func:`seeds` for a stack of slices at once (one labelling pass over the whole stack).

    Parameters
    ----------
    masks : ndarray, shape (N, H, W)
        Thresholded CAMs; components never connect across slices.
    margin : int
        As :func:`seeds`.
    block : int
        Slices labelled together (memory about 40 x block x H x W bytes).

    Returns
    -------
    points : list of N (fg_points, bg_points)
        Identical to ``seeds(masks[i], margin)`` for each slice.
    sizes : ndarray, int64, shape (N,)
        Pixel count of each slice's largest component (0 when the slice is empty).
    """
    if int(margin) != margin or margin < 0:
        raise ValueError(f"gse.margin must be a non-negative integer, got {margin!r}")
    masks = np.asarray(masks) != 0
    if masks.ndim != 3:
        raise ValueError(f"masks must be (N, H, W), got shape {masks.shape}")
    points: list[SeedPoints] = []
    sizes = []
    for start in range(0, masks.shape[0], block):  # bounded memory: a few arrays of block x H x W
        p, sz = _seeds_block(masks[start : start + block], int(margin))
        points += p
        sizes.append(sz)
    return points, np.concatenate(sizes) if sizes else np.zeros(0, np.int64)


def _seeds_block(masks: np.ndarray, m: int) -> tuple[list[SeedPoints], np.ndarray]:
    """:func:`seeds_batch` on one block of slices (``m`` = margin)."""
    n, h, w = masks.shape
    structure = np.zeros((3, 3, 3), bool)
    structure[1] = True  # 8-connected within a slice, never across slices
    labels, count = ndimage.label(masks, structure=structure)
    points: list[SeedPoints] = [([], []) for _ in range(n)]
    sizes = np.zeros(n, np.int64)
    if count == 0:
        return points, sizes
    pix = np.flatnonzero(labels)                                # foreground pixels only
    lab = labels.ravel()[pix]
    r_pix, c_pix = np.divmod(pix % (h * w), w)
    size = np.bincount(lab, minlength=count + 1)
    sum_r = np.bincount(lab, weights=r_pix, minlength=count + 1)
    sum_c = np.bincount(lab, weights=c_pix, minlength=count + 1)
    boxes = ndimage.find_objects(labels)
    owner = np.array([b[0].start for b in boxes])             # slice of each label 1..count
    # per slice, the largest label (ties: the lowest label, i.e. first in raster order)
    order = np.lexsort((np.arange(1, count + 1), -size[1:], owner))
    first = order[np.r_[True, owner[order][1:] != owner[order][:-1]]]
    for i in first:
        lab, k = i + 1, owner[i]
        cr, cc = sum_r[lab] / size[lab], sum_c[lab] / size[lab]
        r0, c0 = int(np.rint(cr)), int(np.rint(cc))
        if labels[k, r0, c0] != lab:
            rr, ccs = np.nonzero(labels[k] == lab)
            j = int(np.argmin((rr - cr) ** 2 + (ccs - cc) ** 2))
            r0, c0 = int(rr[j]), int(ccs[j])
        _, br, bc = boxes[i]
        top, bottom = max(br.start - m, 0), min(br.stop - 1 + m, h - 1)
        left, right = max(bc.start - m, 0), min(bc.stop - 1 + m, w - 1)
        points[k] = ([(r0, c0)], [(top, left), (top, right), (bottom, left), (bottom, right)])
        sizes[k] = size[lab]
    return points, sizes


def seed_mask(shape: Sequence[int], points: Sequence[Point]) -> np.ndarray:
    """A boolean (H, W) map that is True at ``points`` [(row, col), ...]."""
    out = np.zeros(tuple(shape), bool)
    for r, c in points:
        out[r, c] = True
    return out
