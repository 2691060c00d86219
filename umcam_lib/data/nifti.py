"""Reading fetal MRI slice stacks and their brain masks from NIfTI files.

One reader serves both cohorts: the synthetic phantom writes its stacks as NIfTI and a user's
own data (or the CC0 stacks in ``../shared/data/fetal-mri-cc0``) are read the same way.

Layout (BIDS-style by default)::

    root/sub-01/anat/sub-01_run-1_T2w.nii.gz                   image
    root/sub-01/anat/sub-01_run-1_T2w_desc-brain_mask.nii.gz   its brain mask (0/1)

A stack is a pile of thick 2D slices: the slice axis is the array axis with the largest voxel
spacing (3.3 mm in the CC0 stacks, 6.5-7.15 mm in the paper's data); the reader moves it last
so that ``stack.image[..., k]`` is slice ``k``. Every check that can fail raises
:class:`DataError` with the file and the problem in its message.
"""
from __future__ import annotations

import re
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

IMAGE_SUFFIX = "_T2w"
NIFTI_EXTENSIONS = (".nii.gz", ".nii")


class DataError(ValueError):
    """An input file is missing, unreadable or inconsistent (the message names the file)."""


@dataclass(frozen=True)
class StackRef:
    """Where one stack lives.

    Attributes
    ----------
    image : Path
        The image NIfTI file.
    mask : Path
        Its brain mask (may not exist yet; :func:`read_stack` checks).
    subject : str
        Subject id (the BIDS ``sub-XX`` entity, else the parent folder's name); splits are
        made per subject.
    name : str
        The image file name without its NIfTI extension (unique within a cohort).
    """

    image: Path
    mask: Path
    subject: str
    name: str


@dataclass
class Stack:
    """One slice stack in memory, slice axis last.

    Attributes
    ----------
    image : ndarray, float32, shape (H, W, S)
        Intensities as stored (scaled by the header's slope/intercept).
    mask : ndarray, uint8, shape (H, W, S)
        Brain mask, 0/1.
    spacing : tuple of float
        In-plane voxel spacing ``(row, column)`` in mm.
    thickness : float
        Spacing along the slice axis in mm (slice distance; the slab thickness when slices
        are contiguous).
    slice_axis : int
        Which axis of the file was the slice axis (0, 1 or 2).
    affine : ndarray, shape (4, 4)
        The image's voxel-to-world affine (axes as in the file).
    ref : StackRef
        Where it was read from.
    """

    image: np.ndarray
    mask: np.ndarray
    spacing: tuple[float, float]
    thickness: float
    slice_axis: int
    affine: np.ndarray
    ref: StackRef

    @property
    def n_slices(self) -> int:
        return int(self.image.shape[-1])

    @property
    def labels(self) -> np.ndarray:
        """Image-level labels [S] (uint8): 1 where the slice's mask is non-empty."""
        return self.mask.reshape(-1, self.n_slices).any(axis=0).astype(np.uint8)


# --------------------------------------------------------------------------- finding files
def strip_nifti_ext(name: str) -> str:
    """A file name without its NIfTI extension (``.nii.gz`` or ``.nii``; other names unchanged).

    Examples
    --------
    >>> strip_nifti_ext("sub-01_T2w.nii.gz"), strip_nifti_ext("x.nii"), strip_nifti_ext("notes.txt")
    ('sub-01_T2w', 'x', 'notes.txt')
    """
    for ext in NIFTI_EXTENSIONS:
        if name.endswith(ext):
            return name[: -len(ext)]
    return name


def _nifti_ext(name: str) -> str:
    for ext in NIFTI_EXTENSIONS:
        if name.endswith(ext):
            return ext
    return ""


def mask_path_for(image: str | Path, mask_suffix: str = "_desc-brain_mask") -> Path:
    """The mask file of an image: ``X_T2w.nii.gz`` -> ``X_T2w<mask_suffix>.nii.gz``.

    When the name has no ``_T2w`` entity the suffix is appended to the stem.
    """
    image = Path(image)
    ext = _nifti_ext(image.name)
    stem = strip_nifti_ext(image.name)
    if IMAGE_SUFFIX in stem:
        head, _, tail = stem.rpartition(IMAGE_SUFFIX)
        stem = f"{head}{IMAGE_SUFFIX}{mask_suffix}{tail}"
    else:
        stem = f"{stem}{mask_suffix}"
    return image.with_name(stem + ext)


_SUBJECT_RE = re.compile(r"sub-[^\W_]+")
"""A BIDS subject entity: ``sub-`` and a label of letters and digits (any alphabet: ``sub-Ä``)."""


def subject_of(image: str | Path, root: str | Path | None = None) -> str:
    """Subject id of an image.

    Parameters
    ----------
    image : str or Path
        The image file.
    root : str or Path, optional
        The data folder the image was found under.

    Returns
    -------
    str
        The ``sub-<label>`` BIDS entity of the file name or of a folder on its path (labels of
        letters and digits in any alphabet); else the first folder under ``root``
        (``root/patientA/anat/x_T2w.nii.gz`` -> ``patientA``); else, for a file directly in
        ``root``, its own name without extension (one stack, one subject). Without ``root``
        the parent folder's name is the fallback.
    """
    image = Path(image)
    m = _SUBJECT_RE.match(image.name)
    if m:
        return m.group(0)
    for part in reversed(image.parent.parts):
        if _SUBJECT_RE.fullmatch(part):
            return part
    if root is not None:
        try:
            rel = image.relative_to(Path(root))
        except ValueError:
            rel = None
        if rel is not None:
            return rel.parts[0] if len(rel.parts) > 1 else strip_nifti_ext(image.name)
    return image.parent.name


def stack_ref(image: str | Path, mask_suffix: str = "_desc-brain_mask", root: str | Path | None = None) -> StackRef:
    """Build the :class:`StackRef` of one image file (its mask, subject and name)."""
    image = Path(image)
    return StackRef(image=image, mask=mask_path_for(image, mask_suffix), subject=subject_of(image, root),
                    name=strip_nifti_ext(image.name))


def is_nifti(path: str | Path) -> bool:
    """Whether a file name ends in ``.nii`` or ``.nii.gz`` (the name only; the file is not opened).

    Examples
    --------
    >>> is_nifti("a/sub-01_T2w.nii.gz"), is_nifti("b.nii"), is_nifti("c.nii.zip")
    (True, True, False)
    """
    return Path(path).name.endswith(NIFTI_EXTENSIONS)


def is_mask_name(path: str | Path, mask_suffix: str = "_desc-brain_mask") -> bool:
    """Whether a file name names a mask, never an image: its stem ends in ``_mask`` or holds
    ``mask_suffix`` (the naming rule of :func:`mask_path_for`; an empty suffix: ``_mask`` only).

    Examples
    --------
    >>> is_mask_name("sub-01_T2w_desc-brain_mask.nii.gz"), is_mask_name("scan_mask.nii")
    (True, True)
    >>> is_mask_name("sub-01_T2w.nii.gz"), is_mask_name("x_T2w_seg.nii.gz", "_seg")
    (False, True)
    """
    stem = strip_nifti_ext(Path(path).name)
    return stem.endswith("_mask") or (bool(mask_suffix) and mask_suffix in stem)


def scan_stacks(root: str | Path, image_glob: str = "**/*_T2w.nii*",
                mask_suffix: str = "_desc-brain_mask") -> tuple[list[StackRef], list[tuple[Path, str]], list[str]]:
    """Find every image under ``root``, pair it with its mask, and say what was left out.

    Parameters
    ----------
    root : str or Path
        Folder to search.
    image_glob : str
        Glob pattern of the images, relative to ``root`` (default: ``.nii`` and ``.nii.gz``).
        Mask names (:func:`is_mask_name`) are never images; files that match but do not
        end in ``.nii`` or ``.nii.gz`` are skipped.
    mask_suffix : str
        Mask naming rule, see :func:`mask_path_for`.

    Returns
    -------
    refs : list of StackRef
        Sorted by image path.
    skipped : list of (Path, str)
        Every file under ``root`` that is not read, with the reason: matched the glob but is
        not NIfTI, a NIfTI file that the glob does not match, a mask without its image.
    notes : list of str
        How subjects were formed when a folder (not a ``sub-`` entity) names them.

    Raises
    ------
    DataError
        When ``root`` is not a folder, nothing matches, a mask is missing, or two images share
        a name.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data folder {root} does not exist or is not a folder")
    matched = sorted(p for p in root.glob(image_glob) if p.is_file() and not is_mask_name(p, mask_suffix))
    images = [p for p in matched if is_nifti(p)]
    skipped: list[tuple[Path, str]] = [(p, f"matches {image_glob!r} but is not a .nii or .nii.gz file")
                                       for p in matched if not is_nifti(p)]
    if not images:
        raise DataError(f"no image (.nii or .nii.gz) matches {image_glob!r} in {root}"
                        + (f"; matched but not NIfTI: {', '.join(str(p) for p, _ in skipped[:5])}" if skipped else ""))
    refs = [stack_ref(p, mask_suffix, root) for p in images]
    for ref in refs:
        if not ref.mask.is_file():
            raise DataError(f"{ref.image}: brain mask missing (expected {ref.mask})")
    seen: dict[str, Path] = {}
    for ref in refs:
        if ref.name in seen:
            raise DataError(f"{ref.image}: stack name {ref.name!r} also used by {seen[ref.name]}")
        seen[ref.name] = ref.image
    used = {p.resolve() for r in refs for p in (r.image, r.mask)}
    for p in sorted(root.rglob("*")):
        if not p.is_file() or not is_nifti(p) or p.resolve() in used or p in matched:
            continue
        if is_mask_name(p, mask_suffix):
            skipped.append((p, f"a mask (its name ends in '_mask' or holds {mask_suffix!r}) whose image is not "
                               f"among the images read"))
        else:
            skipped.append((p, f"a NIfTI file that {image_glob!r} does not match"))
    notes = []
    by_folder: dict[str, list[str]] = {}
    for ref in refs:
        if not _SUBJECT_RE.search(str(ref.image.relative_to(root))):
            by_folder.setdefault(ref.subject, []).append(ref.name)
    for subject, names in sorted(by_folder.items()):
        notes.append(f"no sub- entity: subject {subject!r} is named by its folder and groups "
                     f"{len(names)} stack(s): {', '.join(names)}")
    return refs, sorted(skipped), notes


def find_stacks(root: str | Path, image_glob: str = "**/*_T2w.nii*",
                mask_suffix: str = "_desc-brain_mask") -> list[StackRef]:
    """Find every image under ``root`` and pair it with its mask (:func:`scan_stacks`).

    Every file left out, and every subject formed from a folder name, is reported with
    :func:`warnings.warn` (the pipeline prints notebooks' warnings on the console).

    Returns
    -------
    list of StackRef
        Sorted by image path.

    Raises
    ------
    DataError
        When ``root`` is not a folder, nothing matches, a mask is missing, or two images share
        a name.
    """
    refs, skipped, notes = scan_stacks(root, image_glob, mask_suffix)
    for path, why in skipped:
        warnings.warn(f"skipped {path}: {why}", stacklevel=2)
    for note in notes:
        warnings.warn(note, stacklevel=2)
    return refs


# --------------------------------------------------------------------------- reading files
def _load(path: Path, what: str) -> tuple[np.ndarray, np.ndarray]:
    """Load a NIfTI file as float32 with its affine; any failure becomes a :class:`DataError`."""
    if not path.is_file():
        raise DataError(f"{path}: {what} file missing")
    try:
        img = nib.load(str(path))
        if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
            raise DataError(f"{path}: {what} is not a NIfTI image (nibabel read it as {type(img).__name__})")
        data = np.asarray(img.get_fdata(dtype=np.float32))
        affine = np.asarray(img.affine, dtype=np.float64)
    except DataError:
        raise
    except (OSError, EOFError, zlib.error, ValueError, nib.filebasedimages.ImageFileError) as exc:
        raise DataError(f"{path}: cannot read {what} as NIfTI ({type(exc).__name__}: {exc})") from exc
    return data, affine


def _as_3d(data: np.ndarray, path: Path, what: str) -> np.ndarray:
    """Accept 3D arrays (and 3D with trailing length-1 axes); reject 2D and true 4D."""
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise DataError(
            f"{path}: {what} has {data.ndim} dimensions (shape {data.shape}); expected a 3D slice stack"
        )
    return data


def voxel_spacing(affine: np.ndarray) -> np.ndarray:
    """Voxel spacing [3] in mm from an affine (column norms; right for oblique affines)."""
    return np.linalg.norm(np.asarray(affine)[:3, :3], axis=0)


def slice_axis_of(spacing: np.ndarray, rtol: float = 1e-3) -> int:
    """The axis with the largest spacing; ties go to the last such axis (the usual convention)."""
    spacing = np.asarray(spacing, dtype=float)
    top = spacing.max()
    return int(np.flatnonzero(spacing >= top * (1 - rtol))[-1])


def read_image(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read and validate one image (no mask): 3D, finite, not constant.

    Parameters
    ----------
    path : str or Path
        A NIfTI file.

    Returns
    -------
    image : ndarray, float32, shape (X, Y, Z)
        Axes as in the file (trailing length-1 axes dropped).
    affine : ndarray, float64, shape (4, 4)

    Raises
    ------
    DataError
        Missing or unreadable file, 2D or 4D image, NaN/inf or constant image. The message
        names the file.
    """
    path = Path(path)
    image, affine = _load(path, "image")
    image = _as_3d(image, path, "image")
    if not np.all(np.isfinite(image)):
        n_bad = int(np.size(image) - np.count_nonzero(np.isfinite(image)))
        raise DataError(f"{path}: image has {n_bad} NaN or infinite voxels")
    if float(image.max()) == float(image.min()):
        raise DataError(f"{path}: image is constant (every voxel = {float(image.min()):g})")
    return image, affine


def read_stack(ref: StackRef, affine_tol: float = 1e-3, read_mask: bool = True) -> Stack:
    """Read and validate one stack and its mask.

    Parameters
    ----------
    ref : StackRef
        Image and mask paths (see :func:`find_stacks` / :func:`stack_ref`).
    affine_tol : float
        Largest absolute difference (mm) allowed between image and mask affines.
    read_mask : bool
        False: read the image alone (a stack to segment, no reference); ``mask`` is then all
        zeros and ``ref.mask`` is not opened.

    Returns
    -------
    Stack
        Image float32 and mask uint8, both (H, W, S) with the slice axis last.

    Raises
    ------
    DataError
        Missing or unreadable file, 2D or 4D image, NaN/inf or constant image (:func:`read_image`),
        mask of another shape or affine, non-binary mask, mask empty everywhere. The message
        names the file.
    """
    image, affine = read_image(ref.image)
    if not read_mask:
        return _stack(image, np.zeros(image.shape, dtype=bool), affine, ref)

    if not Path(ref.mask).is_file():
        raise DataError(f"{ref.image}: brain mask missing (expected {ref.mask})")
    mask, mask_affine = _load(Path(ref.mask), "mask")
    mask = _as_3d(mask, ref.mask, "mask")
    if mask.shape != image.shape:
        raise DataError(f"{ref.mask}: mask shape {mask.shape} differs from image shape {image.shape} of {ref.image}")
    diff = float(np.abs(mask_affine - affine).max())
    if diff > affine_tol:
        raise DataError(
            f"{ref.mask}: mask affine differs from the affine of {ref.image} by up to {diff:.4g} mm "
            f"(tolerance {affine_tol:g} mm); the mask is not on the image's grid"
        )
    if not np.all(np.isfinite(mask)):
        raise DataError(f"{ref.mask}: mask has NaN or infinite voxels")
    is_zero, is_one = np.abs(mask) <= 1e-6, np.abs(mask - 1) <= 1e-6
    if not np.all(is_zero | is_one):
        values = np.unique(mask[~(is_zero | is_one)])[:5]
        raise DataError(
            f"{ref.mask}: mask is not binary (values other than 0 and 1, e.g. {values.tolist()}); "
            f"binarise it or give a brain mask, not a label map"
        )
    if not is_one.any():
        raise DataError(f"{ref.mask}: mask is empty on every slice (no brain voxel)")

    return _stack(image, is_one, affine, ref)


def _stack(image: np.ndarray, mask: np.ndarray, affine: np.ndarray, ref: StackRef) -> Stack:
    """A :class:`Stack` of checked arrays in the file's axes: the slice axis moved last."""
    spacing = voxel_spacing(affine)
    axis = slice_axis_of(spacing)
    in_plane = tuple(float(spacing[i]) for i in range(3) if i != axis)
    return Stack(
        image=np.ascontiguousarray(np.moveaxis(image, axis, -1), dtype=np.float32),
        mask=np.ascontiguousarray(np.moveaxis(mask, axis, -1), dtype=np.uint8),
        spacing=(in_plane[0], in_plane[1]),
        thickness=float(spacing[axis]),
        slice_axis=axis,
        affine=affine,
        ref=ref,
    )
