"""Seed-derived pseudo labels (SPL, METHOD section 4, Eq. 6-7) for one slice or a batch.

For one slice: threshold the UM-CAM (:mod:`.threshold`), take seeds from the largest component
(:mod:`.seed_points`), z-score the image, compute the geodesic distances D_f and D_b to the foreground
and background seeds (:mod:`.geodesic`), turn them into exponential geodesic distance (EGD) cues
E_f = exp(-beta D_f) and E_b = exp(-beta D_b), and combine them (``gse.spl_rule``):

``ratio`` (default)
    SPL = E_f / (E_f + E_b) = 1 / (1 + exp(-beta (D_b - D_f))), a logistic of the distance
    difference, computed in that form so that it never divides 0 by 0 far from both seeds.
``authors``
    The blend of the authors' code: P_f = exp(-beta D_f), P_b = 1 - exp(-beta D_b);
    P = P_b where P_b < 0.5, P_f where P_f > 0.5, the nearer seed's value where both hold,
    0.5 elsewhere; weight w = max(0, 2 exp(-beta min(D_f, D_b)) - 1); SPL = w P + (1 - w) CAM,
    min-max normalised per slice. (Their code calls beta ``ratio`` and defaults it to 1.)
"""
from __future__ import annotations

import concurrent.futures as cf
from typing import Iterable, NamedTuple, Sequence

import numpy as np
import pandas as pd
from scipy.special import expit

from .. import runtime
from ..config.schema import check_choice, choices
from ..metrics import binarise
from .geodesic import geodesic_batch, geodesic_batch_points, geodesic_geodistk, zscore
from .seed_points import largest_component, seed_mask, seeds, seeds_batch
from .threshold import DEFAULT_GRID, variance_thresholds

#: ``gse.spl_rule`` values (from the schema, :class:`umcam_lib.config.GseParams`).
SPL_RULES = choices("gse.spl_rule")
BACKENDS = ("batched", "geodistk")
N_BG = 4


class NoSeedsError(ValueError):
    """The thresholded CAM of a slice has no foreground component, so it has no seeds."""


def egd_cues(d_f: np.ndarray, d_b: np.ndarray, beta: float = 4.0) -> tuple[np.ndarray, np.ndarray]:
    """Exponential geodesic distance cues E_f = exp(-beta D_f), E_b = exp(-beta D_b) (Eq. 6-7)."""
    return np.exp(-beta * np.asarray(d_f, np.float64)), np.exp(-beta * np.asarray(d_b, np.float64))


def _check_rule(rule: str) -> None:
    if rule not in SPL_RULES:
        check_choice("gse.spl_rule", rule)


def spl_from_distances(d_f: np.ndarray, d_b: np.ndarray, beta: float = 4.0, rule: str = "ratio",
                       cam: np.ndarray | None = None) -> np.ndarray:
    """SPL from geodesic distance maps.

    Parameters
    ----------
    d_f, d_b : ndarray, shape (..., H, W)
        Distances to the foreground and background seeds.
    beta : float
        EGD scale (per unit of distance).
    rule : {"ratio", "authors"}
        See the module docstring.
    cam : ndarray, shape like ``d_f``
        The UM-CAM in [0, 1]; needed by the ``authors`` rule only.

    Returns
    -------
    ndarray, float32, same shape, values in [0, 1]
    """
    _check_rule(rule)
    if not beta > 0:
        raise ValueError(f"gse.beta must be positive, got {beta!r}")
    if rule == "ratio":  # float32 is ample: SPL saturates long before distances lose precision
        diff = np.asarray(d_b, np.float32) - np.asarray(d_f, np.float32)
        diff *= np.float32(beta)
        return expit(diff).astype(np.float32, copy=False)
    d_f, d_b = np.asarray(d_f, np.float64), np.asarray(d_b, np.float64)
    if cam is None:
        raise ValueError("gse.spl_rule='authors' blends SPL with the UM-CAM: pass cam")
    cam = np.asarray(cam, np.float64)
    p_f, p_b = np.exp(-beta * d_f), 1.0 - np.exp(-beta * d_b)
    near_b, near_f = p_b < 0.5, p_f > 0.5
    p = np.where(near_b, p_b, 0.5)
    p = np.where(near_f, p_f, p)
    p = np.where(near_b & near_f & (d_b < d_f), p_b, p)
    weight = np.maximum(0.0, 2.0 * np.exp(-beta * np.minimum(d_f, d_b)) - 1.0)
    out = weight * p + (1.0 - weight) * cam
    lo = out.min(axis=(-2, -1), keepdims=True)
    hi = out.max(axis=(-2, -1), keepdims=True)
    out = np.where(hi > lo, (out - lo) / np.where(hi > lo, hi - lo, 1.0), np.clip(out, 0.0, 1.0))
    return out.astype(np.float32)


def _slice_threshold(image: np.ndarray, cam: np.ndarray, threshold: float | str,
                     grid: Sequence[float]) -> float:
    if isinstance(threshold, str):
        if threshold != "variance":
            raise ValueError(f"threshold must be a number or 'variance', got {threshold!r}")
        return float(variance_thresholds(image, cam, grid))
    return float(threshold)


def explain(image: np.ndarray, cam: np.ndarray, beta: float = 4.0, *, threshold: float | str = "variance",
            lamb: float = 1.0, iterations: int = 2, margin: int = 5, spl_rule: str = "ratio",
            grid: Sequence[float] = DEFAULT_GRID, backend: str = "batched") -> dict[str, object]:
    """Every intermediate of one slice's SPL, for teaching figures.

    Returns
    -------
    dict
        ``threshold`` (float), ``mask`` (thresholded CAM), ``component`` (its largest
        component), ``fg`` and ``bg`` (seed points), ``z`` (z-scored image), ``d_f``, ``d_b``
        (geodesic distances), ``e_f``, ``e_b`` (EGD cues) and ``spl`` -- the last six are None
        when there are no seeds.
    """
    image, cam = np.asarray(image, np.float32), np.asarray(cam, np.float32)
    if image.ndim != 2 or image.shape != cam.shape:
        raise ValueError(f"image {image.shape} and cam {cam.shape} must be the same 2D shape")
    t = _slice_threshold(image, cam, threshold, grid)
    mask = binarise(cam, t) if np.isfinite(t) else np.zeros(cam.shape, bool)
    fg, bg = seeds(mask, margin)
    out: dict[str, object] = dict(threshold=t, mask=mask, component=largest_component(mask), fg=fg, bg=bg,
                                  z=None, d_f=None, d_b=None, e_f=None, e_b=None, spl=None)
    if not fg:
        return out
    z = zscore(image)
    marks = np.stack([seed_mask(image.shape, fg), seed_mask(image.shape, bg)])
    d = _distances(z[None], marks[:, None], lamb, iterations, backend)[:, 0]
    e_f, e_b = egd_cues(d[0], d[1], beta)
    out.update(z=z, d_f=d[0], d_b=d[1], e_f=e_f, e_b=e_b,
               spl=spl_from_distances(d[0], d[1], beta, spl_rule, cam))
    return out


def spl(image: np.ndarray, cam: np.ndarray, beta: float = 4.0, *, threshold: float | str = "variance",
        lamb: float = 1.0, iterations: int = 2, margin: int = 5, spl_rule: str = "ratio",
        grid: Sequence[float] = DEFAULT_GRID, backend: str = "batched") -> np.ndarray:
    """Seed-derived pseudo label of one slice.

    Parameters
    ----------
    image : ndarray, shape (H, W)
        The slice (any intensity scale; it is z-scored before the distance transform).
    cam : ndarray, shape (H, W)
        Its UM-CAM in [0, 1].
    beta : float
        EGD scale of Eq. 6-7.
    threshold : float or "variance"
        CAM threshold of the pseudo mask the seeds come from: a number (the ``grid`` rule's
        validation-chosen value) or ``"variance"`` (the authors' per-slice label-free rule).
    lamb, iterations : float, int
        Geodesic distance parameters (``gse.lamb``, ``gse.iterations``).
    margin : int
        Background seed margin in pixels (``gse.margin``).
    spl_rule : {"ratio", "authors"}
        How the cues become a label (``gse.spl_rule``).
    grid : [start, stop, step]
        Candidate thresholds of the variance rule.
    backend : {"batched", "geodistk"}
        Geodesic engine; both give the same distances within float32 rounding.

    Returns
    -------
    ndarray, float32, shape (H, W), values in [0, 1]
        Foreground probability; > 0.5 at the foreground seed.

    Raises
    ------
    NoSeedsError
        When the thresholded CAM has no foreground pixel (:func:`spl_batch` counts such
        slices instead).

    Examples
    --------
    A bright 6 x 6 square whose CAM covers only its 4 x 4 centre: the SPL grows to the square.

    >>> import numpy as np
    >>> image = np.zeros((12, 12), np.float32); image[3:9, 3:9] = 1.0
    >>> cam = np.zeros((12, 12), np.float32); cam[4:8, 4:8] = 1.0
    >>> s = spl(image, cam, threshold=0.5, margin=2)
    >>> s.shape, s.dtype
    ((12, 12), dtype('float32'))
    >>> int((s > 0.5).sum()), bool((s > 0.5)[3:9, 3:9].all())
    (36, True)
    >>> round(float(s[6, 6]), 3), round(float(s[0, 0]), 3)
    (1.0, 0.0)
    """
    out = explain(image, cam, beta, threshold=threshold, lamb=lamb, iterations=iterations, margin=margin,
                  spl_rule=spl_rule, grid=grid, backend=backend)
    if out["spl"] is None:
        raise NoSeedsError(f"the CAM thresholded at {out['threshold']:.3g} has no foreground component: "
                           f"no seeds, no SPL for this slice")
    return out["spl"]  # type: ignore[return-value]


def _distances(z: np.ndarray, marks: np.ndarray, lamb: float, iterations: int, backend: str) -> np.ndarray:
    """Distances [K, N, H, W] of z-scored slices ``z`` [N, H, W] to seed maps ``marks`` [K, N, H, W]."""
    if backend == "batched":
        return geodesic_batch(z, marks, lamb, iterations)
    if backend == "geodistk":
        return np.stack([np.stack([geodesic_geodistk(z[n], marks[k, n], lamb, iterations)
                                   for n in range(z.shape[0])]) for k in range(marks.shape[0])])
    raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")


class SPLBatch(NamedTuple):
    """What :func:`spl_batch` returns (unpacks as a 4-tuple)."""

    index: np.ndarray          #: [n] int64, rows (of ``rows``) of the slices that got an SPL
    maps: np.ndarray           #: [n, H, W] float32 SPLs in [0, 1], in the order of ``index``
    seeds: pd.DataFrame        #: one row per input slice (see :func:`seeds_table`)
    n_without_component: int  #: input slices whose thresholded CAM had no component


def seeds_table(rows: Iterable[int], thresholds: Sequence[float], points: Sequence[tuple[list, list]],
                component_px: Sequence[int]) -> pd.DataFrame:
    """One row per slice: ``row, threshold, component_px, has_spl, fg_row, fg_col,
    bg1_row, bg1_col, ..., bg4_row, bg4_col`` (empty point columns where there are no seeds)."""
    records = []
    for row, t, (fg, bg), size in zip(rows, thresholds, points, component_px):
        rec: dict[str, object] = dict(row=int(row), threshold=float(t), component_px=int(size), has_spl=bool(fg))
        rec["fg_row"], rec["fg_col"] = fg[0] if fg else (None, None)
        for i in range(N_BG):
            rec[f"bg{i + 1}_row"], rec[f"bg{i + 1}_col"] = bg[i] if bg else (None, None)
        records.append(rec)
    df = pd.DataFrame.from_records(records, columns=_SEED_COLUMNS)
    for c in _SEED_COLUMNS[4:]:
        df[c] = df[c].astype("Int64")
    return df


_SEED_COLUMNS = ["row", "threshold", "component_px", "has_spl", "fg_row", "fg_col"] + [
    f"bg{i + 1}_{a}" for i in range(N_BG) for a in ("row", "col")]


def _chunk_spl(images: np.ndarray, cams: np.ndarray, fg: list, bg: list, beta: float, lamb: float,
               iterations: int, spl_rule: str, backend: str) -> np.ndarray:
    """SPLs [n, H, W] of one chunk of slices that all have seeds (runs in a worker)."""
    z = zscore(images)
    if backend == "batched":  # seeds as coordinates: (set, slice, row, col) per seed pixel
        coords = [(k, i, r, c) for k, sets in enumerate((fg, bg)) for i, pts in enumerate(sets) for r, c in pts]
        d = geodesic_batch_points(z, tuple(np.array(coords).T), 2, lamb, iterations)
    else:
        shape = images.shape[1:]
        marks = np.stack([np.stack([seed_mask(shape, p) for p in sets]) for sets in (fg, bg)])
        d = _distances(z, marks, lamb, iterations, backend)
    return spl_from_distances(d[0], d[1], beta, spl_rule, cams)


def _executor(workers: int, backend: str) -> cf.Executor:
    # the batched engine spends its time in numpy/torch kernels that release the GIL: threads
    # suffice and start instantly; GeodisTK holds the GIL, so it needs processes
    if backend == "geodistk":
        import multiprocessing as mp

        return cf.ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"))
    return cf.ThreadPoolExecutor(max_workers=workers)


def spl_batch(images: np.ndarray, cams: np.ndarray, threshold: float | str | Sequence[float] = "variance", *,
              beta: float = 4.0, lamb: float = 1.0, iterations: int = 2, margin: int = 5,
              spl_rule: str = "ratio", grid: Sequence[float] = DEFAULT_GRID, rows: Sequence[int] | None = None,
              workers: int = 1, chunk_size: int = 32, backend: str = "batched") -> SPLBatch:
    """SPLs of many slices: seeds per slice, then the geodesic distances of whole chunks at once.

    Parameters
    ----------
    images : ndarray, shape (N, H, W)
        Slices (e.g. ``SliceSet.images[rows]``).
    cams : ndarray, shape (N, H, W)
        Their UM-CAMs in [0, 1].
    threshold : float, "variance" or sequence of N floats
        One CAM threshold for all slices (``grid`` rule), the per-slice ``variance`` rule, or
        explicit per-slice thresholds (NaN = no seeds).
    beta, lamb, iterations, margin, spl_rule, grid, backend
        As :func:`spl`.
    rows : sequence of int, optional
        Identifiers of the N slices (rows of the slice set) used in ``index`` and the seeds
        table; default ``0 .. N-1``.
    workers : int
        Chunks computed in parallel (threads for the batched engine, processes for GeodisTK).
    chunk_size : int
        Slices per chunk: memory is about 70 x chunk_size x H x W bytes per worker.

    Returns
    -------
    SPLBatch
        ``(index, maps, seeds, n_without_component)``; a slice whose thresholded CAM has no
        component gets no SPL, is listed in ``seeds`` with ``has_spl = False`` and is counted.
    """
    _check_rule(spl_rule)
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    images, cams = np.asarray(images, np.float32), np.asarray(cams, np.float32)
    if images.ndim != 3 or images.shape != cams.shape:
        raise ValueError(f"images {images.shape} and cams {cams.shape} must both be (N, H, W)")
    n = images.shape[0]
    rows = np.arange(n) if rows is None else np.asarray(rows, dtype=np.int64)
    if rows.shape != (n,):
        raise ValueError(f"rows has shape {rows.shape}, expected ({n},)")
    workers = runtime.worker_count(workers)
    if int(chunk_size) < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")

    if isinstance(threshold, str):
        if threshold != "variance":
            raise ValueError(f"threshold must be a number, per-slice numbers or 'variance', got {threshold!r}")
        per_slice = variance_thresholds(images, cams, grid) if n else np.zeros(0)
    else:
        per_slice = np.broadcast_to(np.asarray(threshold, dtype=float), (n,)).copy()

    masks = binarise(cams, np.where(np.isfinite(per_slice), per_slice, np.inf))
    points, sizes = seeds_batch(masks, margin)
    table = seeds_table(rows, per_slice, points, sizes)

    keep = np.flatnonzero([bool(fg) for fg, _ in points])
    chunks = [keep[i:i + int(chunk_size)] for i in range(0, keep.size, int(chunk_size))]
    jobs = [(images[c], cams[c], [points[i][0] for i in c], [points[i][1] for i in c],
             float(beta), float(lamb), int(iterations), spl_rule, backend) for c in chunks]
    if int(workers) > 1 and len(jobs) > 1:
        with _executor(min(int(workers), len(jobs)), backend) as pool:
            parts = list(pool.map(_chunk_spl, *zip(*jobs)))
    else:
        parts = [_chunk_spl(*job) for job in jobs]
    maps = np.concatenate(parts) if parts else np.zeros((0,) + images.shape[1:], np.float32)
    return SPLBatch(index=rows[keep], maps=maps, seeds=table, n_without_component=int(n - keep.size))
