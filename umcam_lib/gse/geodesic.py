"""Geodesic distance maps (METHOD Eq. 5) by raster scanning, one slice or a batch at once.

Two engines compute the same thing:

- :func:`geodesic_geodistk` calls GeodisTK's ``geodesic2d_raster_scan`` on one slice (the
  study's named dependency; C++, one slice per call, holds the GIL).
- :func:`geodesic_batch` is this module's own implementation of the same raster scan for a
  whole batch of slices and several seed sets at once, in numpy (plus ``torch.cummin``).

The raster scan (Criminisi et al.; GeodisTK's variant) initialises the distance to 0 on the
seeds and infinity elsewhere, then repeats ``iterations`` times a forward pass (top-to-bottom,
left-to-right; each pixel takes the minimum over its upper-left, upper, upper-right and left
neighbours of ``neighbour distance + edge cost``) and a backward pass (the same on the image
rotated by 180 degrees). The cost of the step between 8-neighbours p and q is::

    cost(p, q) = |step| / ((1 - lamb) + lamb / (|I(p) - I(q)| + 1e-5))

with |step| = 1 or sqrt(2): ``lamb = 1`` gives a pure intensity-change cost (a path that
crosses an edge pays the jump), ``lamb = 0`` the chamfer (Euclidean-like) distance.

How the batch engine vectorises the scan: within one row of the forward pass, the upper
neighbours are final, so their contribution ``a[w]`` is one vectorised minimum. The left
neighbour makes the row a recurrence ``d[w] = min(a[w], d[w-1] + c[w])`` whose solution is a
prefix minimum: with ``C`` the running sum of the horizontal costs ``c``,
``d[w] = C[w] + min_{k <= w}(a[k] - C[k])``. The engine keeps distances relative to ``C``
(``e = d - C``, with the step costs between rows converted once per batch), so a row of every
slice and every seed set costs six array operations and one ``torch.cummin`` (the fastest
prefix minimum at hand), and the only sequential loop left is over the H rows (4 H row steps
for 2 iterations). The backward pass runs the same code on the 180-degree rotated arrays, in
the frame ``e = d + C``, where its step costs equal the forward pass's (rotated).
Rows of all slices are laid out end to end (with one padding column on each side, whose edge
costs are infinite) so that the diagonal neighbours are plain one-element shifts of a
contiguous vector. Results equal GeodisTK's up to float32 rounding of the running sums (about
1e-5 relative; the tests hold them to 1e-3 + 1e-4 * distance).
"""
from __future__ import annotations

import numpy as np
import torch

#: Distance GeodisTK reports for pixels no seed reaches (an image without seeds).
UNREACHED = 1.0e10

_SQRT2 = np.float32(np.sqrt(2.0))


def zscore(image: np.ndarray) -> np.ndarray:
    """Return ``(image - mean) / std`` as float32 (all zeros for a constant image).

    Parameters
    ----------
    image : ndarray, shape (H, W) or (N, H, W)
        One slice or a batch; a batch is normalised slice by slice (statistics in float64).
    """
    x = np.asarray(image, dtype=np.float32)
    axes = (-2, -1)
    out = x - x.mean(axis=axes, dtype=np.float64, keepdims=True).astype(np.float32)
    std = np.sqrt(np.square(out).mean(axis=axes, dtype=np.float64, keepdims=True))
    out *= np.where(std > 0, 1.0 / np.where(std > 0, std, 1.0), 0.0).astype(np.float32)
    return out


def _check_lamb_iterations(lamb: float, iterations: int) -> None:
    if not 0.0 <= float(lamb) <= 1.0:
        raise ValueError(f"gse.lamb must lie in [0, 1] (1 geodesic, 0 Euclidean), got {lamb!r}")
    if int(iterations) != iterations or iterations < 1:
        raise ValueError(f"gse.iterations must be a positive integer, got {iterations!r}")


def geodesic_geodistk(image: np.ndarray, seeds: np.ndarray, lamb: float = 1.0, iterations: int = 2) -> np.ndarray:
    """Geodesic distance of one slice with GeodisTK's raster scan (the reference engine).

    Parameters
    ----------
    image : ndarray, shape (H, W)
        Intensities (the study passes the z-scored slice).
    seeds : ndarray, shape (H, W)
        Non-zero where a pixel is a seed.
    lamb : float
        0 (Euclidean) .. 1 (pure intensity change).
    iterations : int
        Number of forward + backward pass pairs.

    Returns
    -------
    ndarray, float32, shape (H, W)
        Distance in units of (z-scored intensity x pixel) for ``lamb = 1``, pixels for
        ``lamb = 0``; ``UNREACHED`` (1e10) everywhere when there is no seed.
    """
    import GeodisTK

    _check_lamb_iterations(lamb, iterations)
    image = np.ascontiguousarray(image, dtype=np.float32)
    seeds = np.ascontiguousarray(np.asarray(seeds) != 0, dtype=np.uint8)
    if image.ndim != 2 or image.shape != seeds.shape:
        raise ValueError(f"image {image.shape} and seeds {seeds.shape} must be the same 2D shape")
    return GeodisTK.geodesic2d_raster_scan(image, seeds, float(lamb), int(iterations))


def _edge_cost(p: np.ndarray, q: np.ndarray, step: float, lamb: float, out: np.ndarray) -> None:
    """Write the cost of steps between pixel arrays ``p`` and ``q`` into ``out`` (float32)."""
    np.subtract(p, q, out=out)
    np.abs(out, out=out)
    if lamb == 0.0:
        out[...] = np.float32(step)
        return
    out += np.float32(1e-5)
    if lamb == 1.0:  # step / (1 / (g + 1e-5))
        if step != 1.0:
            out *= np.float32(step)
        return
    np.divide(np.float32(lamb), out, out=out)
    out += np.float32(1.0 - lamb)
    np.divide(np.float32(step), out, out=out)


def _edges(z: np.ndarray, lamb: float) -> tuple[np.ndarray, ...]:
    """Costs of all 8-neighbour steps of ``z`` [N, H, W], in row-major layout [rows, N, cols].

    Returns ``vert`` [H-1, N, W] between (h, w) and (h+1, w); ``horiz`` [H, N, W-1] between
    (h, w) and (h, w+1); ``diag`` [H-1, N, W-1] between (h, w) and (h+1, w+1); ``anti``
    [H-1, N, W-1] between (h, w+1) and (h+1, w). A step costs the same in both directions.
    """
    zt = np.ascontiguousarray(z.transpose(1, 0, 2))  # [H, N, W]
    n, h, w = z.shape
    vert = np.empty((h - 1, n, w), np.float32)
    horiz = np.empty((h, n, w - 1), np.float32)
    diag = np.empty((h - 1, n, w - 1), np.float32)
    anti = np.empty((h - 1, n, w - 1), np.float32)
    _edge_cost(zt[1:], zt[:-1], 1.0, lamb, vert)
    _edge_cost(zt[:, :, 1:], zt[:, :, :-1], 1.0, lamb, horiz)
    _edge_cost(zt[1:, :, 1:], zt[:-1, :, :-1], _SQRT2, lamb, diag)
    _edge_cost(zt[1:, :, :-1], zt[:-1, :, 1:], _SQRT2, lamb, anti)
    return vert, horiz, diag, anti


def _running_sum(horiz: np.ndarray) -> np.ndarray:
    """Running sums of the left-step costs along each row, padded [H, N, W + 2].

    ``run[h, :, j]`` is the cost of walking along row h from its first pixel to padded column
    j (0 on the left padding column and the first pixel, the row total on the right padding
    column).
    """
    h, n, w1 = horiz.shape
    w = w1 + 1
    run = np.zeros((h, n, w + 2), np.float32)
    np.cumsum(horiz, axis=-1, out=run[:, :, 2 : w + 1])
    run[:, :, w + 1] = run[:, :, w]
    return run


def _pass_arrays(edges: tuple[np.ndarray, ...], run: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per-row step costs of the forward pass, each [H, N, W + 2], in the pass's relative frame.

    Inside the forward pass distances are kept relative to ``run`` (``e = d - run``), which
    turns the left-neighbour recurrence into a plain prefix minimum. ``up``, ``up_left`` and
    ``up_right`` are the costs of reaching pixel (h, j) from that neighbour in the row above,
    expressed between the two rows' frames: ``cost + run[h-1, j'] - run[h, j]``. Padding
    columns (one on each side of every slice row) and the first row have infinite costs.
    """
    vert, _, diag, anti = edges
    h, n, p = run.shape
    w = p - 2
    up, up_left, up_right = (np.empty((h, n, p), np.float32) for _ in range(3))
    # target columns lo:hi (padded index) of each step and the source column offset above
    for arr, cost, lo, hi, shift in ((up, vert, 1, w + 1, 0), (up_left, diag, 2, w + 1, -1),
                                     (up_right, anti, 1, w, 1)):
        target = arr[1:, :, lo:hi]
        np.add(cost, run[:-1, :, lo + shift : hi + shift], out=target)
        np.subtract(target, run[1:, :, lo:hi], out=target)
        arr[0] = np.inf
        arr[:, :, :lo] = np.inf
        arr[:, :, hi:] = np.inf
    return up, up_left, up_right


def _backward_arrays(forward: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
    """Step costs of the backward pass, in the 180-degree rotated layout, from the forward ones.

    The backward pass keeps distances in the frame ``e = d + run`` (which makes the
    right-neighbour recurrence a prefix minimum of the rotated row). In that frame a step
    between rows h+1 and h costs ``cost + run[h, j] - run[h+1, j']``: exactly what the forward
    pass pays for the same edge walked the other way. So the backward arrays are the forward
    arrays rotated, one row down, with the diagonals' columns shifted by one.
    """
    up, up_left, up_right = forward
    h, n, p = up.shape
    out = tuple(np.full((h, n, p), np.inf, np.float32) for _ in range(3))
    np.copyto(out[0][1:], up[:0:-1, :, ::-1])                 # B[h', j'] = F[H-h', P-1-j']
    np.copyto(out[1][1:, :, 1:], up_left[:0:-1, :, p - 1 : 0 : -1])    # F_ul[H-h', P-j']
    np.copyto(out[2][1:, :, : p - 1], up_right[:0:-1, :, p - 2 :: -1])  # F_ur[H-h', P-2-j']
    return out


def _forward_pass(e: np.ndarray, arrays: tuple[np.ndarray, ...], width: int) -> None:
    """One forward raster pass over relative distances ``e`` [H, K, N * width], in place."""
    up, up_left, up_right = arrays
    h_rows = e.shape[0]
    rows_t = torch.from_numpy(e).view(h_rows, -1, width)
    buf = np.empty(e.shape[1:], np.float32)
    tmp = np.empty(e.shape[1:], np.float32)
    buf_t = torch.from_numpy(buf).view(-1, width)
    arg = torch.empty(buf_t.shape, dtype=torch.long)
    for r in range(h_rows):
        if r == 0:
            np.copyto(buf, e[0])
        else:
            prev = e[r - 1]
            np.add(prev, up[r], out=buf)
            np.minimum(buf, e[r], out=buf)
            np.add(prev[:, :-1], up_left[r, 1:], out=tmp[:, 1:])
            np.minimum(buf[:, 1:], tmp[:, 1:], out=buf[:, 1:])
            np.add(prev[:, 1:], up_right[r, :-1], out=tmp[:, :-1])
            np.minimum(buf[:, :-1], tmp[:, :-1], out=buf[:, :-1])
        torch.cummin(buf_t, dim=-1, out=(rows_t[r], arg))


def geodesic_batch(images: np.ndarray, seeds: np.ndarray, lamb: float = 1.0, iterations: int = 2) -> np.ndarray:
    """Geodesic distance maps of a batch of slices to several seed sets each (vectorised).

    Parameters
    ----------
    images : ndarray, shape (N, H, W)
        Intensities (the study passes z-scored slices); converted to float32.
    seeds : ndarray, bool, shape (K, N, H, W) or (N, H, W)
        ``seeds[k, n]`` marks seed set ``k`` of slice ``n`` (e.g. k = 0 foreground,
        k = 1 background). All K maps of a slice share its edge costs.
    lamb, iterations : float, int
        As GeodisTK's ``geodesic2d_raster_scan``.

    Returns
    -------
    ndarray, float32, shape (K, N, H, W) (or (N, H, W) when ``seeds`` was 3D)
        Same values as :func:`geodesic_geodistk` per slice and seed set, within float32
        rounding; ``UNREACHED`` where a seed set is empty.

    Notes
    -----
    Memory is about (9 + 3 K) x N x H x W float32 values; split large batches into chunks.
    """
    _check_lamb_iterations(lamb, iterations)
    images = np.asarray(images, dtype=np.float32)
    seeds = np.asarray(seeds) != 0
    squeeze = seeds.ndim == 3
    if squeeze:
        seeds = seeds[None]
    if images.ndim != 3 or seeds.ndim != 4 or seeds.shape[1:] != images.shape:
        raise ValueError(f"images must be (N, H, W) and seeds (K, N, H, W) of the same slices; "
                         f"got images {images.shape}, seeds {seeds.shape}")
    out = geodesic_batch_points(images, np.nonzero(seeds), seeds.shape[0], lamb, iterations)
    return out[0] if squeeze else out


def geodesic_batch_points(images: np.ndarray, points: tuple[np.ndarray, ...], n_sets: int, lamb: float = 1.0,
                          iterations: int = 2) -> np.ndarray:
    """:func:`geodesic_batch` with the seeds given as coordinates instead of masks.

    Parameters
    ----------
    images : ndarray, shape (N, H, W)
    points : (set, slice, row, col) integer arrays of equal length
        One entry per seed pixel: seed set index in [0, n_sets), slice, row, column.
    n_sets : int
        K, the number of seed sets per slice.

    Returns
    -------
    ndarray, float32, shape (K, N, H, W)
    """
    _check_lamb_iterations(lamb, iterations)
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 3:
        raise ValueError(f"images must be (N, H, W), got shape {images.shape}")
    n, h, w = images.shape
    kk, nn, hh, ww = (np.asarray(a, dtype=np.intp) for a in points)
    for name, a, size in (("set", kk, n_sets), ("slice", nn, n), ("row", hh, h), ("col", ww, w)):
        if a.size and (a.min() < 0 or a.max() >= size):
            raise ValueError(f"seed {name} index out of range [0, {size})")
    out = np.empty((int(n_sets), n, h, w), np.float32)
    if n and h and w and n_sets:
        _raster_scan(images, (kk, nn, hh, ww), int(n_sets), float(lamb), int(iterations), out)
    return out


def _raster_scan(images: np.ndarray, points: tuple[np.ndarray, ...], k: int, lamb: float, iterations: int,
                 out: np.ndarray) -> None:
    """The batch raster scan behind :func:`geodesic_batch`; writes ``out`` [K, N, H, W].

    Forward passes run on the upright layout in the frame ``e = d - run``, backward passes on
    the 180-degree rotated layout in the frame ``e = d + run`` (``run``: running sums of the
    left-step costs). Changing pass is one array operation: forward -> backward
    ``e' = rot(e) + rot(2 run)``, backward -> forward ``e = rot(e') - 2 run``. Both added arrays
    are +infinity on the padding columns, which resets those to unreachable.
    """
    n, h, w = images.shape
    p = w + 2
    edges = _edges(images, lamb)
    run = _running_sum(edges[1])
    forward = _pass_arrays(edges, run)
    del edges
    backward = _backward_arrays(forward)
    passes = [tuple(a.reshape(h, n * p) for a in arrays) for arrays in (forward, backward)]
    to_backward = 2.0 * run[::-1, :, ::-1]
    to_forward = -2.0 * run
    for a in (to_backward, to_forward):
        a[..., 0] = np.inf
        a[..., -1] = np.inf
    # distances, laid out [H, K, N * (W + 2)], relative to the forward pass's running sums
    e = np.full((h, k, n, p), np.inf, np.float32)
    kk, nn, hh, ww = points
    e[hh, kk, nn, ww + 1] = -run[hh, nn, ww + 1]
    e = e.reshape(h, k, n * p)
    for i in range(2 * iterations):
        _forward_pass(e, passes[i % 2], p)
        if i == 2 * iterations - 1:
            break
        rotated = e.reshape(h, k, n, p)[::-1, :, :, ::-1]
        step = to_backward if i % 2 == 0 else to_forward
        e = np.add(rotated, step[:, None]).reshape(h, k, n * p)
    # after a backward pass: upright again, d = e - run (padding columns dropped), capped as
    # GeodisTK, exactly 0 on the seeds
    grid = e.reshape(h, k, n, p)[::-1, :, :, ::-1][..., 1 : w + 1].transpose(1, 2, 0, 3)
    np.subtract(grid, run[..., 1 : w + 1].transpose(1, 0, 2)[None], out=out)
    np.clip(out, np.float32(0.0), np.float32(UNREACHED), out=out)  # frame changes round by ~1e-7
    out[kk, nn, hh, ww] = 0.0


def geodesic_distance(image: np.ndarray, seeds: np.ndarray, lamb: float = 1.0, iterations: int = 2,
                      backend: str = "batched") -> np.ndarray:
    """Geodesic distance of one slice [H, W] to a seed mask [H, W] with either engine.

    ``backend`` is ``"batched"`` (:func:`geodesic_batch`) or ``"geodistk"``.
    """
    if backend == "geodistk":
        return geodesic_geodistk(image, seeds, lamb, iterations)
    if backend == "batched":
        return geodesic_batch(np.asarray(image)[None], np.asarray(seeds)[None], lamb, iterations)[0]
    raise ValueError(f"backend must be 'batched' or 'geodistk', got {backend!r}")
