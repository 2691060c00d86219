"""From slice stacks to the prepared slice set: resampling, normalisation, labels and splits.

Steps, per stack (see :func:`prepare_stack`):

1. resample every slice in-plane to ``data.spacing_mm`` keeping its physical size (linear
   interpolation; a Gaussian anti-aliasing filter first when the grid gets coarser; masks are
   interpolated linearly and thresholded at 0.5);
2. normalise the volume's intensities to [0, 1] between robust percentiles (0.5 and 99.5);
3. centre-pad (with 0) or centre-crop every slice to ``data.image_size`` pixels;
4. label each slice: 1 when its brain mask is non-empty (the image-level, weak label).

Then the stacks are split into train / validation / test by subject (:func:`split_subjects`),
never by slice, and everything is written with :func:`umcam_lib.data.save_slices`.
:func:`prepare_dataset` does the whole step and reuses its previous result when the data
parameters did not change.
"""
from __future__ import annotations

import contextlib
import functools
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage
from tqdm import tqdm

from .. import io, runtime
from ..config.schema import check_section, default
from ..config.files import fingerprint as _hash
from ..paths import resolve
from .artifacts import SPLITS, SliceSet, load_slices, save_slices, slices_path, volumes_path
from .nifti import DataError, Stack, StackRef, find_stacks, read_stack, scan_stacks, stack_ref
from ..hashing import files_hash

PREPARE_VERSION = 2
"""Bump when the preparation changes, so that cached slice sets are rebuilt."""

DEFAULT_GLOB: str = default("data.image_glob")
"""Images: ``.nii`` and ``.nii.gz`` stacks named ``*_T2w``."""

MIN_SPLIT_SLICES = {"val": 5, "test": 1}
"""Fewest slices the validation and test splits may have: the validation split chooses the best
epochs, thresholds and the beta/lambda point, so it must hold more than a slice or two."""

FORCE_ENV = "UMCAM_FORCE"
"""Environment variable set by ``python -m umcam_lib.pipeline --force``: caches are not trusted."""

PAPER_DATASET = pd.DataFrame(
    {"split": ["train", "val", "test"], "volumes": [80, 10, 25],
     "positive_slices": [976, 116, 318], "negative_slices": [3140, 408, 950]}
)
"""The paper's cohort (Sec. 3.1.1): volumes and positive / negative slices per split."""


# --------------------------------------------------------------------------- one stack
def _linear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Linear interpolation from ``n_in`` to ``n_out`` pixels as a matrix [n_out, n_in].

    Pixel edges are aligned (output pixel ``i`` covers ``[i, i + 1) * n_in / n_out`` input
    pixels, the convention of ``scipy.ndimage.zoom(..., grid_mode=True)``); samples beyond the
    first and last pixel centre take the edge value.
    """
    x = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    x = np.clip(x, 0, n_in - 1)
    i0 = np.floor(x).astype(int)
    i1 = np.minimum(i0 + 1, n_in - 1)
    w = x - i0
    m = np.zeros((n_out, n_in))
    np.add.at(m, (np.arange(n_out), i0), 1 - w)
    np.add.at(m, (np.arange(n_out), i1), w)
    return m


@functools.lru_cache(maxsize=64)
def _axis_matrix(n_in: int, n_out: int, anti_alias: bool) -> np.ndarray:
    """Resampling matrix [n_out, n_in] of one axis: Gaussian anti-aliasing (when the grid gets
    coarser, sigma = (n_in / n_out - 1) / 2 input pixels) followed by linear interpolation."""
    m = _linear_matrix(n_in, n_out)
    sigma = (n_in / n_out - 1.0) / 2.0
    if anti_alias and sigma > 0:
        # column k of the blur matrix is the filtered impulse at k (filtering is linear)
        m = m @ ndimage.gaussian_filter1d(np.eye(n_in), sigma, axis=0, mode="nearest")
    m = m.astype(np.float32)
    m.flags.writeable = False  # cached: shared between calls
    return m


def resample_inplane(volume: np.ndarray, spacing: Sequence[float], target_mm: float,
                     is_mask: bool = False) -> np.ndarray:
    """Resample the two in-plane axes of a stack to ``target_mm``, keeping its physical size.

    Parameters
    ----------
    volume : ndarray, shape (H, W, S)
        Image (float) or mask (0/1), slice axis last; slices are resampled independently.
    spacing : (float, float)
        Native in-plane spacing (row, column) in mm.
    target_mm : float
        Output pixel spacing in mm.
    is_mask : bool
        Masks are interpolated linearly and thresholded at 0.5 (uint8 out); images are
        anti-aliased when downsampled and interpolated linearly (float32 out).

    Returns
    -------
    ndarray, shape (round(H * spacing[0] / target_mm), round(W * spacing[1] / target_mm), S)
        The field of view (pixels times spacing) is kept to within half an output pixel; pixel
        edges, not centres, are aligned.

    Notes
    -----
    Linear interpolation and the Gaussian blur are separable, so each axis is one small matrix
    and a stack is resampled by two matrix products (much faster than a 3D ``ndimage.zoom``).

    Examples
    --------
    >>> import numpy as np
    >>> v = np.ones((4, 6, 2), np.float32)                 # 4 x 6 pixels of 1 mm, 2 slices
    >>> out = resample_inplane(v, (1.0, 1.0), 2.0)
    >>> out.shape, out.dtype, bool(np.allclose(out, 1.0))
    ((2, 3, 2), dtype('float32'), True)
    >>> m = np.zeros((4, 4, 1), np.uint8); m[:2] = 1       # top half of a 4 x 4 mask
    >>> up = resample_inplane(m, (1.0, 1.0), 0.5, is_mask=True)
    >>> up.shape, up.dtype, up[:, 0, 0].tolist()
    ((8, 8, 1), dtype('uint8'), [1, 1, 1, 1, 0, 0, 0, 0])
    """
    if target_mm <= 0:
        raise ValueError(f"data.spacing_mm must be positive, got {target_mm}")
    h, w = volume.shape[:2]
    out_h = max(1, int(round(h * spacing[0] / target_mm)))
    out_w = max(1, int(round(w * spacing[1] / target_mm)))
    rows = _axis_matrix(h, out_h, not is_mask)
    cols = _axis_matrix(w, out_w, not is_mask)
    data = volume.astype(np.float32, copy=False)
    tmp = np.tensordot(rows, data, axes=(1, 0))          # (out_h, W, S)
    out = np.tensordot(tmp, cols, axes=(1, 1))           # (out_h, S, out_w)
    out = np.moveaxis(out, -1, 1)                        # (out_h, out_w, S)
    if is_mask:
        return (out >= 0.5).astype(np.uint8)
    return np.ascontiguousarray(out, dtype=np.float32)


def normalise_intensity(volume: np.ndarray, low: float = 0.5, high: float = 99.5) -> np.ndarray:
    """Scale a volume to [0, 1] between its ``low`` and ``high`` percentiles (then clip).

    Robust to a few very bright voxels (vessels, fat) and to the large empty background:
    falls back to the minimum and maximum when the two percentiles coincide.
    """
    lo, hi = np.percentile(volume, [low, high])
    if hi <= lo:
        lo, hi = float(volume.min()), float(volume.max())
    if hi <= lo:
        return np.zeros_like(volume, dtype=np.float32)
    return np.clip((volume - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def center_fit(volume: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop or zero-pad the first two axes of ``volume`` to ``size`` x ``size``."""
    out = volume
    for axis in (0, 1):
        n = out.shape[axis]
        if n > size:
            start = (n - size) // 2
            out = np.take(out, np.arange(start, start + size), axis=axis)
        elif n < size:
            pad = [(0, 0)] * out.ndim
            pad[axis] = ((size - n) // 2, size - n - (size - n) // 2)
            out = np.pad(out, pad, mode="constant", constant_values=0)
    return out


def prepare_stack(stack: Stack, spacing_mm: float, image_size: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Resample, normalise and pad/crop one stack.

    Parameters
    ----------
    stack : Stack
        As returned by :func:`umcam_lib.data.nifti.read_stack` (slice axis last).
    spacing_mm : float
        Target in-plane spacing in mm.
    image_size : int
        Output slices are ``image_size`` x ``image_size`` pixels.

    Returns
    -------
    images : ndarray, float32, shape (S, image_size, image_size)
        In [0, 1]; padding is 0.
    masks : ndarray, uint8, shape (S, image_size, image_size)
    lost : float
        Fraction of the (resampled) brain voxels that the centre crop cut away (0 when the
        field of view fits).
    """
    image = resample_inplane(stack.image, stack.spacing, spacing_mm)
    mask = resample_inplane(stack.mask, stack.spacing, spacing_mm, is_mask=True)
    image = normalise_intensity(image)
    total = int(mask.sum())
    image, mask = center_fit(image, image_size), center_fit(mask, image_size)
    lost = 1.0 - int(mask.sum()) / total if total else 0.0
    return (np.ascontiguousarray(np.moveaxis(image, -1, 0)),
            np.ascontiguousarray(np.moveaxis(mask, -1, 0)), float(lost))


# --------------------------------------------------------------------------- splits
def _allocate(n: int, weights: Sequence[float]) -> list[int]:
    """Split ``n`` items by ``weights`` (largest remainder), at least one each when n allows."""
    w = np.asarray(weights, dtype=float)
    exact = n * w / w.sum()
    counts = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    for i in range(len(counts)):  # take from the largest for any empty split
        if counts[i] == 0 and n >= len(counts):
            counts[int(np.argmax(counts))] -= 1
            counts[i] += 1
    return counts.tolist()


def _name_matches(names: Sequence[str], entry: str) -> np.ndarray:
    """Stacks named ``entry``, or whose name continues it with further BIDS entities
    (``sub-01_run-6`` matches ``sub-01_run-6_T2w`` but not ``sub-01_run-60_T2w``)."""
    return np.array([n == entry or n.startswith(entry + "_") for n in names], dtype=bool)


def split_subjects(subjects: Sequence[str], ratio: Sequence[float] = (80, 10, 25), seed: int = 0,
                   val_subjects: Sequence[str] = (), test_subjects: Sequence[str] = (),
                   names: Sequence[str] | None = None) -> np.ndarray:
    """Assign train / val / test by subject, never by slice; deterministic for a seed.

    Parameters
    ----------
    subjects : sequence of str, length V
        Subject id of each stack (repeats allowed: stacks of one subject go together). Pass
        unique ids to split subjects themselves.
    ratio : (train, val, test)
        Relative sizes, in subjects, for the subjects that no explicit list names.
    seed : int
        Seed of the shuffle of subjects.
    val_subjects, test_subjects : sequence of str
        Explicit assignments. An entry matches a subject id or a stack name (``names``; also a
        leading part of it up to an underscore, e.g. ``sub-01_run-6`` for
        ``sub-01_run-6_T2w``); a stack entry wins over a subject entry, so one stack of a
        training subject may be held out (``val_subjects=["sub-01_run-6"]``). A split with
        explicit entries gets no other subjects; train takes the rest.
    names : sequence of str, length V, optional
        Stack names (default: the subject ids).

    Returns
    -------
    ndarray of str, shape (V,)
        Split of each stack.

    Raises
    ------
    ValueError
        An explicit entry matches nothing, the ratio is malformed, or a split would be empty.
    """
    subjects = [str(s) for s in subjects]
    names = subjects if names is None else [str(n) for n in names]
    if len(names) != len(subjects):
        raise ValueError(f"split_subjects: {len(names)} names for {len(subjects)} subjects")
    ratio = [float(r) for r in ratio]
    if len(ratio) != 3 or min(ratio) < 0 or sum(ratio) <= 0:
        raise ValueError(f"data.split_ratio must be three non-negative numbers (train, val, test), got {ratio}")
    explicit = {"val": [str(e) for e in val_subjects or ()], "test": [str(e) for e in test_subjects or ()]}
    both = set(explicit["val"]) & set(explicit["test"])
    if both:
        raise ValueError(f"data.val_subjects and data.test_subjects both name {sorted(both)}")
    out = np.full(len(subjects), "", dtype="U5")
    subj_arr = np.asarray(subjects)
    # subject entries first, then stack entries from the least to the most specific (longest)
    entries = [(split, e) for split, es in explicit.items() for e in es]
    entries.sort(key=lambda se: (se[1] not in set(subjects), len(se[1])))
    for split, e in entries:
        hit = subj_arr == e if e in set(subjects) else _name_matches(names, e)
        if not hit.any():
            raise ValueError(
                f"data.{split}_subjects entry {e!r} matches no subject id or stack name "
                f"(subjects: {', '.join(sorted(set(subjects)))}; stacks look like {names[0]!r})"
            )
        out[hit] = split
    free = sorted({s for s, o in zip(subjects, out) if o == ""})
    open_splits = [i for i, sp in enumerate(SPLITS) if sp == "train" or not explicit[sp]]
    weights = [ratio[i] for i in open_splits]
    if free and sum(weights) > 0:
        order = [free[i] for i in np.random.default_rng(seed).permutation(len(free))]
        counts = _allocate(len(order), weights)
        start = 0
        for i, c in zip(open_splits, counts):
            for s in order[start:start + c]:
                out[(np.asarray(subjects) == s) & (out == "")] = SPLITS[i]
            start += c
    for sp in SPLITS:
        if not np.any(out == sp):
            raise ValueError(
                f"split {sp!r} would be empty: {len(set(subjects))} subject(s) "
                f"({', '.join(sorted(set(subjects)))}) with ratio {ratio}, val_subjects={explicit['val']}, "
                f"test_subjects={explicit['test']}; every split needs a subject or stack (give explicit "
                f"data.val_subjects / data.test_subjects entries, subject ids or stack names)"
            )
    return out


# --------------------------------------------------------------------------- whole dataset
def _generate_cohort(out_dir: Path, **kwargs: Any) -> list[Path]:
    """The synthetic cohort (:func:`umcam_lib.data.phantom.generate_cohort`, cached on disk)."""
    from .phantom import generate_cohort

    return generate_cohort(out_dir, **kwargs)


def _generator_source() -> str:
    """Hash of the phantom generator's source files (``umcam_lib/data/phantom*.py``)."""
    here = Path(__file__).parent
    return files_hash(here.glob("phantom*.py"), here)


def _drop_stale_cohort(cohort_dir: Path) -> None:
    """Delete a cached synthetic cohort made by other generator code, or any under ``--force``.

    The phantom module reuses volumes whose parameters and version match; this also catches an
    edit of the generator that did not bump its version. ``cohort/.generator_source`` records
    the source hash the cohort was made with.
    """
    import shutil

    stamp = cohort_dir / ".generator_source"
    src = _generator_source()
    force = os.environ.get(FORCE_ENV) == "1"
    if cohort_dir.is_dir() and (force or not stamp.is_file() or stamp.read_text().strip() != src):
        print(f"regenerating {cohort_dir} ({'--force' if force else 'the generator code changed'})")
        shutil.rmtree(cohort_dir)
    if not stamp.is_file():
        io.write_text(stamp, src + "\n")


def _cohort_refs(data: Mapping[str, Any], run_dir: Path, seed: int, progress: bool,
                 workers: int = 1, notes: list[str] | None = None) -> list[StackRef]:
    """The stacks to read: the synthetic cohort (generated or cached) or a NIfTI folder.

    ``notes`` (when given) receives one line per input file left out and per subject formed
    from a folder name; each is also printed and warned.
    """
    source, mask_suffix = data.source, data.mask_suffix
    if source == "synthetic":
        cohort_dir = run_dir / "cohort"
        _drop_stale_cohort(cohort_dir)
        paths = _generate_cohort(cohort_dir, n_volumes=data.n_volumes, seed=seed,
                                matrix=data.phantom_matrix, workers=runtime.worker_count(workers),
                                progress=progress)
        refs: list[StackRef] = []
        for p in map(Path, paths):
            refs.extend(find_stacks(p, data.image_glob, mask_suffix)
                        if p.is_dir() else [stack_ref(p, mask_suffix)])
        return sorted(refs, key=lambda r: str(r.image))
    if source == "nifti":
        from .fetch import resolve_root  # a folder, or "fetal-mri-cc0": the public stacks (local copy or fetched)

        refs, skipped, grouped = scan_stacks(resolve_root(data.root), data.image_glob, mask_suffix)
        lines = [f"skipped {path}: {why}" for path, why in skipped] + grouped
        for line in lines:
            warnings.warn(line, stacklevel=2)
        if notes is not None:
            notes.extend(lines)
        return refs
    raise DataError(f"data.source must be 'synthetic' or 'nifti', got {source!r}")


def _files_signature(refs: Sequence[StackRef]) -> list[list[Any]]:
    """Path, size and modification time of every input file (a changed file rebuilds)."""
    out = []
    for r in refs:
        for p in (r.image, r.mask):
            st = Path(p).stat()
            out.append([str(p), st.st_size, st.st_mtime_ns])
    return out


def _params_fingerprint(data: Mapping[str, Any], seed: int, refs: Sequence[StackRef]) -> dict[str, Any]:
    return {
        "version": PREPARE_VERSION,
        "seed": int(seed),
        "data": {k: data[k] for k in sorted(data)},
        "files": _hash(_files_signature(refs)),
    }


def fingerprint_path(run_dir: str | Path) -> Path:
    return resolve(run_dir) / "data" / "fingerprint.json"


def _cached(run_dir: Path, fp: dict[str, Any]) -> SliceSet | None:
    import json

    f = fingerprint_path(run_dir)
    if not (f.is_file() and slices_path(run_dir).is_file() and volumes_path(run_dir).is_file()):
        return None
    try:
        stored = json.loads(f.read_text())
    except ValueError:
        return None
    if stored != json.loads(json.dumps(fp, default=str)):
        return None
    return load_slices(run_dir)


def build_slice_set(refs: Sequence[StackRef], spacing_mm: float, image_size: int, splits: Sequence[str],
                    progress: bool = True, notes: list[str] | None = None) -> SliceSet:
    """Read, validate and prepare every stack, and assemble the :class:`SliceSet`.

    Parameters
    ----------
    refs : sequence of StackRef, length V
    spacing_mm, image_size : see :func:`prepare_stack`
    splits : sequence of str, length V
        Split of each stack (from :func:`split_subjects`).
    notes : list of str, optional
        Receives a line per stack whose brain the centre crop cut (also warned).
    """
    images, masks, volume, slice_index, split, rows = [], [], [], [], [], []
    for v, (ref, sp) in enumerate(tqdm(list(zip(refs, splits)), desc="preparing stacks", unit="stack",
                                       disable=not progress)):
        stack = read_stack(ref)
        im, mk, lost = prepare_stack(stack, spacing_mm, image_size)
        if lost > 0:
            msg = (f"{ref.image}: the centre crop to {image_size} px at {spacing_mm} mm cut away "
                   f"{100 * lost:.1f}% of the brain mask; raise data.image_size")
            warnings.warn(msg, stacklevel=2)
            if notes is not None:
                notes.append(msg)
        n = im.shape[0]
        images.append(im)
        masks.append(mk)
        volume.append(np.full(n, v, dtype=np.int32))
        slice_index.append(np.arange(n, dtype=np.int32))
        split.append(np.full(n, sp, dtype="U5"))
        labels = mk.reshape(n, -1).any(axis=1)
        rows.append(dict(
            volume=v, subject=ref.subject, name=ref.name, split=sp, image_path=str(ref.image),
            mask_path=str(ref.mask), n_slices=n, positive_slices=int(labels.sum()),
            thickness_mm=round(stack.thickness, 4),
            native_spacing_mm="x".join(f"{s:.4g}" for s in stack.spacing),
            shape="x".join(str(d) for d in stack.image.shape),
            mask_lost_by_crop=round(lost, 4),
        ))
    masks_all = np.concatenate(masks)
    return SliceSet(
        images=np.concatenate(images),
        masks=masks_all,
        labels=masks_all.reshape(masks_all.shape[0], -1).any(axis=1).astype(np.uint8),
        volume=np.concatenate(volume),
        slice_index=np.concatenate(slice_index),
        split=np.concatenate(split),
        spacing_mm=float(spacing_mm),
        volumes=pd.DataFrame(rows),
    )


def prepare_dataset(data: Mapping[str, Any], run_dir: str | Path, seed: int, progress: bool = True,
                    workers: int = 1) -> SliceSet:
    """Notebook 01 in one call: cohort -> validated stacks -> prepared slices -> splits -> disk.

    Parameters
    ----------
    data : mapping
        The ``data`` section of a profile (``source``, ``root``, ``image_glob``,
        ``mask_suffix``, ``n_volumes``, ``phantom_matrix``, ``spacing_mm``, ``image_size``,
        ``split_ratio``, ``val_subjects``, ``test_subjects``), checked against the schema
        (:class:`umcam_lib.config.DataParams`; keys it lacks take their defaults).
    run_dir : str or Path
        Run folder; writes ``data/slices.npz``, ``data/volumes.csv``,
        ``data/fingerprint.json`` (and ``cohort/`` for the synthetic source).
    seed : int
        Seed of the synthetic cohort and of the subject shuffle.
    progress : bool
        Show tqdm progress bars.
    workers : int
        Processes generating the synthetic cohort (the volumes do not depend on it).

    Returns
    -------
    SliceSet
        Also saved with :func:`umcam_lib.data.save_slices`. When a slice set prepared with the
        same parameters from the same files (paths, sizes, modification times) exists, it is
        loaded instead.
        Nothing is written before every stack has been read and prepared.
    """
    data = check_section("data", data)
    run_dir = resolve(run_dir)
    # the synthetic cohort is cached by the phantom module (regenerated when its parameters or
    # generator change); the fingerprint covers the parameters and the files it produced
    notes: list[str] = []
    refs = _cohort_refs(data, run_dir, seed, progress, workers, notes=notes)
    fp = _params_fingerprint(data, seed, refs)
    cached = None if os.environ.get(FORCE_ENV) == "1" else _cached(run_dir, fp)
    if cached is not None:
        if progress:
            print(f"reusing {slices_path(run_dir)} (data parameters and input files unchanged)")
        cached.notes = _read_notes(run_dir)
        return cached
    splits = split_subjects(
        [r.subject for r in refs], ratio=data.split_ratio, seed=seed,
        val_subjects=data.val_subjects, test_subjects=data.test_subjects,
        names=[r.name for r in refs],
    )
    s = build_slice_set(refs, data.spacing_mm, data.image_size, splits, progress, notes=notes)
    check_splits(s)
    with contextlib.suppress(FileNotFoundError):
        fingerprint_path(run_dir).unlink()  # the old slice set is no longer trusted
    save_slices(run_dir, s)
    io.write_json(notes_path(run_dir), notes)
    io.write_json(fingerprint_path(run_dir), fp)
    s.notes = notes
    for line in notes:
        print(f"note: {line}")
    return s


def notes_path(run_dir: str | Path) -> Path:
    """``data/notes.json``: inputs skipped or grouped, and crop losses, of the last preparation."""
    return resolve(run_dir) / "data" / "notes.json"


def _read_notes(run_dir: Path) -> list[str]:
    import json

    p = notes_path(run_dir)
    return list(json.loads(p.read_text())) if p.is_file() else []


def check_splits(s: SliceSet) -> None:
    """Refuse a slice set whose validation or test split is too small to decide anything on.

    Raises
    ------
    DataError
        When a split has fewer slices than :data:`MIN_SPLIT_SLICES` or no positive slice; the
        message names the split's stacks and how to give it more.
    """
    for sp, least in MIN_SPLIT_SLICES.items():
        keep = s.split == sp
        n, pos = int(keep.sum()), int(s.labels[keep].sum())
        if n >= least and pos > 0:
            continue
        stacks = s.volumes.loc[s.volumes.split == sp, "name"].astype(str).tolist()
        raise DataError(
            f"the {sp} split has {n} slice(s), {pos} of them positive (stacks: {', '.join(stacks) or 'none'}); "
            f"it needs at least {least} slice(s) and one positive slice, because "
            f"{'the best epochs, thresholds and sweep point are chosen on it' if sp == 'val' else 'the scores are computed on it'}. "
            f"Give it more stacks (data.{sp}_subjects or data.split_ratio)"
        )


# --------------------------------------------------------------------------- summaries
def dataset_table(s: SliceSet, total: bool = True, notes: Sequence[str] | None = None) -> pd.DataFrame:
    """Volumes and positive / negative slices per split (paper Sec. 3.1.1).

    Parameters
    ----------
    s : SliceSet
    total : bool
        Add a last row ``total``.
    notes : sequence of str, optional
        Lines for the ``notes`` column (default: ``s.notes`` as set by :func:`prepare_dataset`:
        input files skipped and why, subjects formed from folder names, crop losses).

    Returns
    -------
    DataFrame
        Columns ``split, volumes, positive_slices, negative_slices, notes``; rows train, val,
        test and, with ``total``, a last row ``total``. ``notes`` is empty but on the first row,
        which joins every note with ``"; "``.
    """
    rows = []
    for sp in SPLITS:
        keep = s.split == sp
        rows.append(dict(split=sp, volumes=int(len(np.unique(s.volume[keep]))),
                         positive_slices=int(np.sum(s.labels[keep] == 1)),
                         negative_slices=int(np.sum(s.labels[keep] == 0))))
    df = pd.DataFrame(rows)
    if total:
        df.loc[len(df)] = dict(split="total", volumes=int(df.volumes.sum()),
                               positive_slices=int(df.positive_slices.sum()),
                               negative_slices=int(df.negative_slices.sum()))
    lines = list(getattr(s, "notes", []) if notes is None else notes)
    df["notes"] = ""
    df.loc[0, "notes"] = "; ".join(lines)
    return df


def compare_with_paper(table: pd.DataFrame) -> pd.DataFrame:
    """The dataset table beside the paper's numbers and positive fractions (for display)."""
    ours = table[table.split.isin(SPLITS)].set_index("split")
    paper = PAPER_DATASET.set_index("split")
    out = pd.DataFrame(index=list(SPLITS))
    for col in ("volumes", "positive_slices", "negative_slices"):
        out[col] = ours[col]
        out[f"paper_{col}"] = paper[col]
    out["positive_fraction"] = (ours.positive_slices / (ours.positive_slices + ours.negative_slices)).round(3)
    out["paper_positive_fraction"] = (paper.positive_slices / (paper.positive_slices + paper.negative_slices)).round(3)
    return out.rename_axis("split").reset_index()


def subjects_by_split(s: SliceSet) -> dict[str, list[str]]:
    """Subjects present in each split (a subject in two splits only by an explicit stack entry)."""
    v = s.volumes
    return {sp: sorted(v.loc[v.split == sp, "subject"].astype(str).unique()) for sp in SPLITS}


def summary(s: SliceSet) -> str:
    """A one-paragraph summary of a slice set (sizes, positive fraction, shape, spacing)."""
    n = len(s)
    pos = int(s.labels.sum())
    per = ", ".join(f"{sp} {int(np.sum(s.split == sp))}" for sp in SPLITS)
    return (f"{n} slices from {len(s.volumes)} volumes ({per}); {pos} positive "
            f"({100 * pos / max(n, 1):.1f}%); slice shape {s.images.shape[1]}x{s.images.shape[2]} px "
            f"at {s.spacing_mm:g} mm ({s.images.shape[1] * s.spacing_mm:g} mm field of view)")
