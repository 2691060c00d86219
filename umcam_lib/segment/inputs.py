"""Inputs of ``segment``: the stacks to segment, their reference masks, and where each mask goes."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib

from ..data import nifti
from ..data.nifti import DataError, Stack, StackRef
from ..paths import resolve
from . import output as so
from .model import DEFAULT_METHOD, desc_label


# --------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class Job:
    """One stack to segment: its image, its reference mask (or None) and the mask to write."""

    image: Path
    reference: Path | None
    out: Path
    bids: bool = False


def output_label(desc: str | None, bids: bool, method: str) -> str:
    """The ``desc`` label of the written names: ``desc`` (letters and digits), else ``brain`` for
    BIDS output, else the method's label (:func:`~umcam_lib.segment.model.desc_label`).

    Examples
    --------
    >>> output_label(None, True, "UM-CAM+SPL"), output_label(None, False, "UM-CAM+SPL"), output_label("My-Run", True, "x")
    ('brain', 'umcamspl', 'myrun')
    """
    return desc_label(desc) if desc else ("brain" if bids else desc_label(method))


def output_path(image: Path, out_dir: Path, desc: str) -> Path:
    """``out_dir/<stem>_desc-<desc>_mask.nii.gz`` (the ``_T2w`` rule of
    :func:`umcam_lib.data.nifti.mask_path_for`), always gzip-compressed.

    Examples
    --------
    >>> from pathlib import Path
    >>> print(output_path(Path("scans/sub-01_T2w.nii"), Path("out"), "UMCAM").as_posix())
    out/sub-01_T2w_desc-UMCAM_mask.nii.gz
    >>> print(output_path(Path("scans/fetus3.nii.gz"), Path("out"), "brain").as_posix())
    out/fetus3_desc-brain_mask.nii.gz
    """
    name = nifti.mask_path_for(image, f"_desc-{desc}_mask").name
    return out_dir / (nifti.strip_nifti_ext(name) + ".nii.gz")


def find_jobs(inputs: Sequence[str | Path], out_dir: str | Path, desc: str | None = None,
              mask_suffix: str = "_desc-brain_mask", bids: bool | None = False,
              method: str = DEFAULT_METHOD) -> list[Job]:
    """Expand files and folders into :class:`Job` s.

    Parameters
    ----------
    desc : str, optional
        The ``desc`` label; default ``brain`` for BIDS output, :func:`desc_label` of ``method``
        otherwise.
    bids : bool, optional
        True: BIDS-derivative names and folders (every input must have a BIDS name); False:
        ``<stem>_desc-<desc>_mask.nii.gz``, folders keep their layout under ``out_dir``; None:
        BIDS when every input has a BIDS name.

    Raises
    ------
    DataError
        An input does not exist or is not NIfTI, a folder holds no stack, ``bids`` is True and
        an input's name is not a BIDS name, two stacks would write one mask, or a mask would
        overwrite an input or a reference.
    """
    out_dir = resolve(out_dir)
    jobs: list[Job] = []
    for item in inputs:
        p = resolve(item)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and nifti.is_nifti(f)
                           and not nifti.is_mask_name(f, mask_suffix) and out_dir not in f.parents)
            if not found:
                raise DataError(f"{p}: no NIfTI stack (*.nii, *.nii.gz, not *_mask) in this folder")
            jobs += [Job(f, None, output_path(f, out_dir / f.parent.relative_to(p), "x")) for f in found]
        elif p.is_file():
            if not nifti.is_nifti(p):
                raise DataError(f"{p}: not a NIfTI file (expected .nii or .nii.gz)")
            jobs.append(Job(p, None, output_path(p, out_dir, "x")))
        else:
            raise DataError(f"{p}: no such file or folder")
    not_bids = [j.image for j in jobs if so.parse_bids_name(j.image.name) is None]
    if bids and not_bids:
        raise DataError(f"{not_bids[0]}: not a BIDS file name (sub-<label>[_ses-<label>]..._<suffix>.nii.gz), "
                        f"needed for --bids; use --no-bids")
    use_bids = not not_bids if bids is None else bool(bids)
    label = output_label(desc, use_bids, method)
    jobs = [Job(j.image, r if (r := nifti.mask_path_for(j.image, mask_suffix)).is_file() else None,
                so.bids_mask_path(j.image, out_dir, label) if use_bids
                else output_path(j.image, j.out.parent, label), use_bids)
            for j in jobs]
    seen: dict[Path, Path] = {}
    protected = {j.image.resolve() for j in jobs} | {j.reference.resolve() for j in jobs if j.reference}
    for j in jobs:
        if j.out in seen:
            raise DataError(f"{j.image}: its mask {j.out} would also be written for {seen[j.out]}; "
                            f"segment them into different --out folders"
                            + (" or use --no-bids" if j.bids else ""))
        if j.out.resolve() in protected:
            raise DataError(f"{j.image}: the mask {j.out} would overwrite an input or reference file; "
                            f"choose another --out or --desc")
        seen[j.out] = j.image
    return jobs


def read_input(job: Job) -> tuple[Stack, nib.Nifti1Image]:
    """Read and check one stack (and its reference mask, as the pipeline checks masks).

    Returns
    -------
    stack : Stack
        Slice axis last; ``mask`` is the reference, or all zeros without one.
    header_image : nibabel image
        The input as nibabel opened it (header and shape for writing; data not loaded).

    Raises
    ------
    DataError
        Unreadable file, 2D/4D image, NaN or constant image; a reference of another shape or
        affine, non-binary or empty. The message names the file.
    """
    ref = nifti.stack_ref(job.image)
    if job.reference is not None:
        ref = StackRef(job.image, job.reference, ref.subject, ref.name)
    stack = nifti.read_stack(ref, read_mask=job.reference is not None)
    return stack, nib.load(str(job.image))
