"""Segment new stacks with a trained UNet of a run: one brain mask per stack, in its own grid.

::

    python -m umcam_lib.segment RUN_DIR INPUT [INPUT ...] --out OUT [--method UM-CAM+SPL]
    python -m umcam_lib.segment RUN_DIR --list
    python -m umcam_lib.segment INPUT [INPUT ...] --out OUT [--model weak|fullysup] [--models DIR]
    python -m umcam_lib.segment --list

Without a run folder (the first argument is one when it holds ``seg/``, ``data/fingerprint.json``
or ``provenance/01.json``; ``--run RUN_DIR`` names one explicitly) the UNets shipped in the
repository's ``models/`` are used (:mod:`umcam_lib.shipped`, written by
``python -m umcam_lib.ship runs/real``): ``--model weak`` (the default: the weakly supervised UNet
that validation chose), ``fullysup``, or a shipped method's name. Every file of the model is
checked against ``models/registry.json`` (SHA-256) before it is loaded.

``RUN_DIR`` is a pipeline run folder (``runs/<profile>``); ``--method`` names any UNet it
trained (``seg/<method>/best.pt``: ``UM-CAM+SPL``, ``SPL``, ``UM-CAM``, ``Grad-CAM``,
``FullySup``, ``DRS``, ``AMR``, or a sweep point ``sweep/beta4_lambda0.1``); ``--list`` shows
them. ``INPUT`` is a NIfTI file (``.nii`` or ``.nii.gz``) or a folder searched recursively
(files whose name ends in ``_mask`` or holds ``--mask-suffix`` are masks, not inputs).

What happens to each stack (the model was trained on slices prepared by
:func:`umcam_lib.data.prepare.prepare_stack`, and sees exactly the same here):

1. read and check it (:mod:`umcam_lib.data.nifti`); the slice axis is the axis with the largest
   spacing; it is moved last;
2. :func:`~umcam_lib.data.prepare.prepare_stack` with the run's ``data.spacing_mm`` and
   ``data.image_size`` (in-plane resampling, robust intensity normalisation, centre pad/crop);
3. the UNet's foreground probability on every slice (with ``--tta on``, the default when the
   UNet was trained with ``seg.tta: true``, averaged over the slice's 8 right-angle rotations
   and flips);
4. the inverse geometry (:func:`invert`): un-crop / un-pad, resample each slice's probabilities
   back to the native in-plane grid (the same edge-aligned linear interpolation), threshold at
   ``--threshold``, move the slice axis back;
4b. with ``--postprocess lcc`` (the default when the UNet was trained with
   ``seg.postprocess: lcc``, as in the real profile), keep the largest 3D connected component;
4c. with ``--dilate-mm X``, grow the mask by X millimetres (Euclidean, with the voxel spacing
   of each axis: :func:`umcam_lib.segment_output.dilate_mm`);
5. write the mask (uint8 0/1) with the input's header, so shape, affine, qform and sform equal
   the input's, and a QC picture (``OUT/qc/...png``, :mod:`umcam_lib.segment_qc`; ``--no-qc``
   skips it). A stack where no brain is found gets an empty mask and a warning, not an error.

Where the masks go (``--bids`` / ``--no-bids``; default: BIDS when every input's file name is a
BIDS name, ``sub-<label>_..._<suffix>.nii[.gz]``):

* BIDS derivative: ``OUT/sub-01[/ses-2]/anat/sub-01[_ses-2]_run-1_desc-brain_mask.nii.gz``
  (:func:`umcam_lib.segment_output.bids_mask_path`) with a JSON sidecar (``Type``, ``Sources``),
  ``OUT/dataset_description.json`` (``DatasetType: derivative``, ``GeneratedBy`` with the
  package version and git commit) and ``OUT/.bidsignore`` for the files below;
* otherwise ``<stem>_desc-<label>_mask.nii.gz``; folders keep their layout under ``OUT``.

``<label>`` is ``--desc``, by default ``brain`` for BIDS output and the method in lower-case
letters and digits (``umcamspl``) otherwise.

Clinical stacks: intensities are normalised between robust percentiles, so their scale (x1000,
x0.001) does not matter; ``--bias-correct`` (``--bias-sigma-mm``) divides each stack by a smooth
multiplicative field first (:func:`umcam_lib.segment_output.bias_correct`; opt-in, see
docs/segment.md for what it was measured to do).

A reference mask beside an input (``X_T2w.nii.gz`` -> ``X_T2w_desc-brain_mask.nii.gz``, the
rule of ``--mask-suffix``) is checked like the pipeline's masks and scored in 3D in the native
grid: ``OUT/scores_desc-<label>.csv`` holds one row per stack (``volume_ml``; ``dsc`` in %,
``hd95_mm`` in mm, :mod:`umcam_lib.metrics`, empty for stacks without a reference; ``seconds``;
``warning``), ``OUT/report_desc-<label>.html`` shows every stack's QC picture with them, and
``OUT/segment_desc-<label>.json`` records the run, method, checkpoint and preprocessing.

Bad input: every input (and reference) is read and checked before the first mask is written; an
error names the file (:class:`~umcam_lib.data.nifti.DataError`). Each file is written atomically
(:mod:`umcam_lib.io`), so an interrupted call leaves no half-written mask.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd
import torch
import torch.nn as nn
from tqdm import tqdm

from . import io, metrics, runtime, segment_qc, shipped
from . import segment_output as so
from .data import nifti
from .data.nifti import DataError, Stack, StackRef
from .data.prepare import center_fit, prepare_stack, resample_inplane
from .models.unet import build_unet
from .paths import resolve
from .train.seg_predict import predict_probs, variant_dir
from .scoring import largest_component_3d

DEFAULT_METHOD = "UM-CAM+SPL"
SCORE_COLUMNS = ["image", "mask", "reference", "method", "shape", "spacing_mm", "slice_axis", "n_slices",
                 "gt_voxels", "pred_voxels", "volume_ml", "dsc", "hd95_mm", "seconds", "qc", "warning"]
BIAS_SIGMA_MM = 80.0
"""``--bias-sigma-mm`` default: the scale of the ``--bias-correct`` field fit (mm), chosen on validation
(benchmarks/results/segment_robustness.md: 20, 40, 80, 160 mm tried)."""


class EmptyMaskWarning(UserWarning):
    """A stack where the UNet found no brain (its mask is written empty)."""


# --------------------------------------------------------------------------- the run's model
@dataclass(frozen=True)
class Preprocessing:
    """What the run's slices were prepared with (``data.spacing_mm``, ``data.image_size``)."""

    spacing_mm: float
    image_size: int


def run_preprocessing(run_dir: str | Path) -> Preprocessing:
    """The ``data`` parameters a run prepared its slices with.

    Read from ``data/fingerprint.json`` (written by notebook 01 with the slice set), else from
    ``provenance/01.json``.

    Raises
    ------
    FileNotFoundError
        Neither file exists (notebook 01 never finished in this run folder).
    """
    run = resolve(run_dir)
    for path, keys in ((run / "data" / "fingerprint.json", ("data",)),
                       (run / "provenance" / "01.json", ("params", "data"))):
        if path.is_file():
            d: Any = json.loads(path.read_text())
            for k in keys:
                d = d.get(k, {}) if isinstance(d, dict) else {}
            if "spacing_mm" in d and "image_size" in d:
                return Preprocessing(float(d["spacing_mm"]), int(d["image_size"]))
    raise FileNotFoundError(f"{run}: no data/fingerprint.json or provenance/01.json with data.spacing_mm and "
                            f"data.image_size; is this a pipeline run folder (notebook 01 finished)?")


def available_methods(run_dir: str | Path) -> dict[str, Path]:
    """Trained UNets of a run: ``{method: folder holding best.pt}``.

    ``seg/<name>/best.pt`` gives ``<name>`` (notebooks 06 and 07); the beta/lambda sweep's
    points ``seg/sweep/<point>/best.pt`` give ``sweep/<point>``.
    """
    seg = resolve(run_dir) / "seg"
    out: dict[str, Path] = {}
    for ckpt in sorted(seg.glob("*/best.pt")):
        out[ckpt.parent.name] = ckpt.parent
    for ckpt in sorted(seg.glob("sweep/*/best.pt")):
        out[f"sweep/{ckpt.parent.name}"] = ckpt.parent
    return out


def desc_label(method: str) -> str:
    """A BIDS ``desc`` label (letters and digits) for a method: ``UM-CAM+SPL`` -> ``umcamspl``."""
    label = re.sub(r"[^a-z0-9]", "", method.lower())
    return label or "seg"


def method_dir(run_dir: str | Path, method: str) -> Path:
    """The folder of ``method``'s ``best.pt`` (exact name, the folder name notebook 06 makes of it,
    or its desc label, case-insensitive); a clear error listing the run's methods otherwise."""
    methods = available_methods(run_dir)
    if method in methods:
        return methods[method]
    d = variant_dir(run_dir, method)
    if (d / "best.pt").is_file():
        return d
    for name, folder in methods.items():
        if method.lower() in (name.lower(), desc_label(name)):
            return folder
    have = ", ".join(methods) or "none (run notebooks 06/07 first)"
    raise FileNotFoundError(f"{resolve(run_dir)}: no trained UNet for method {method!r}; this run has: {have}")


def load_model(run_dir: str | Path, method: str, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a run's UNet from ``best.pt`` (weights only; the width is read from it).

    Returns
    -------
    model : torch.nn.Module
        In eval mode, on ``device``.
    info : dict
        ``method``, ``checkpoint`` (path), ``epoch`` and ``score`` (best validation DSC) and the
        checkpoint's ``config``.
    """
    folder = method_dir(run_dir, method)
    path = folder / "best.pt"
    dev = runtime.select_device(device) if isinstance(device, str) else device
    try:
        ckpt = torch.load(path, map_location=dev, weights_only=True)
        config = dict(ckpt.get("config") or {})
        width = config.get("width")
        if width is None:  # older checkpoints: the run's seg.width
            prov = resolve(run_dir) / "provenance" / "06.json"
            width = json.loads(prov.read_text())["params"]["seg"]["width"] if prov.is_file() else None
        if width is None:
            raise ValueError("the checkpoint does not record the UNet width (seg.width)")
        model = build_unet(int(width)).to(dev)
        model.load_state_dict(ckpt["model"])
    except Exception as exc:
        raise RuntimeError(f"{path}: cannot load the {method} UNet ({type(exc).__name__}: {exc})") from exc
    info = {"method": method, "checkpoint": str(path), "epoch": ckpt.get("epoch"), "score": ckpt.get("score"),
            "config": config}
    return model.eval(), info


# --------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class Job:
    """One stack to segment: its image, its reference mask (or None) and the mask to write."""

    image: Path
    reference: Path | None
    out: Path
    bids: bool = False


def _is_nifti(p: Path) -> bool:
    return p.is_file() and p.name.endswith(nifti.NIFTI_EXTENSIONS)


def _is_mask_name(p: Path, mask_suffix: str) -> bool:
    stem = nifti._strip_nifti_ext(p.name)
    return stem.endswith("_mask") or (bool(mask_suffix) and mask_suffix in stem)


def output_path(image: Path, out_dir: Path, desc: str) -> Path:
    """``out_dir/<stem>_desc-<desc>_mask.nii.gz`` (the ``_T2w`` rule of
    :func:`umcam_lib.data.nifti.mask_path_for`), always gzip-compressed."""
    name = nifti.mask_path_for(image, f"_desc-{desc}_mask").name
    return out_dir / (nifti._strip_nifti_ext(name) + ".nii.gz")


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
            found = sorted(f for f in p.rglob("*") if _is_nifti(f) and not _is_mask_name(f, mask_suffix)
                           and out_dir not in f.parents)
            if not found:
                raise DataError(f"{p}: no NIfTI stack (*.nii, *.nii.gz, not *_mask) in this folder")
            jobs += [Job(f, None, output_path(f, out_dir / f.parent.relative_to(p), "x")) for f in found]
        elif p.is_file():
            if not p.name.endswith(nifti.NIFTI_EXTENSIONS):
                raise DataError(f"{p}: not a NIfTI file (expected .nii or .nii.gz)")
            jobs.append(Job(p, None, output_path(p, out_dir, "x")))
        else:
            raise DataError(f"{p}: no such file or folder")
    not_bids = [j.image for j in jobs if so.parse_bids_name(j.image.name) is None]
    if bids and not_bids:
        raise DataError(f"{not_bids[0]}: not a BIDS file name (sub-<label>[_ses-<label>]..._<suffix>.nii.gz), "
                        f"needed for --bids; use --no-bids")
    use_bids = not not_bids if bids is None else bool(bids)
    label = desc_label(desc) if desc else ("brain" if use_bids else desc_label(method))
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
        stack = nifti.read_stack(StackRef(job.image, job.reference, ref.subject, ref.name))
    else:
        data, affine = nifti._load(job.image, "image")
        data = nifti._as_3d(data, job.image, "image")
        if not np.all(np.isfinite(data)):
            raise DataError(f"{job.image}: image has {int(data.size - np.isfinite(data).sum())} NaN or infinite voxels")
        if float(data.max()) == float(data.min()):
            raise DataError(f"{job.image}: image is constant (every voxel = {float(data.min()):g})")
        spacing = nifti.voxel_spacing(affine)
        axis = nifti.slice_axis_of(spacing)
        in_plane = [float(spacing[i]) for i in range(3) if i != axis]
        image = np.ascontiguousarray(np.moveaxis(data, axis, -1), dtype=np.float32)
        stack = Stack(image=image, mask=np.zeros(image.shape, np.uint8), spacing=(in_plane[0], in_plane[1]),
                      thickness=float(spacing[axis]), slice_axis=axis, affine=affine, ref=ref)
    return stack, nib.load(str(job.image))


# --------------------------------------------------------------------------- geometry
def resampled_shape(shape: Sequence[int], spacing: Sequence[float], spacing_mm: float) -> tuple[int, int]:
    """In-plane shape of a slice of ``shape[:2]`` pixels after :func:`resample_inplane`."""
    probe = resample_inplane(np.zeros((int(shape[0]), int(shape[1]), 1), np.uint8), spacing, spacing_mm,
                             is_mask=True)
    return int(probe.shape[0]), int(probe.shape[1])


def uncenter_fit(volume: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Inverse of :func:`~umcam_lib.data.prepare.center_fit`: the first two axes of ``volume``
    (``image_size`` pixels) back to ``shape[:2]``: what the crop removed comes back as 0, the
    padding is cut away."""
    out = volume
    for axis in (0, 1):
        n, size = int(shape[axis]), out.shape[axis]
        if n > size:  # center_fit cropped from (n - size) // 2
            pad = [(0, 0)] * out.ndim
            start = (n - size) // 2
            pad[axis] = (start, n - size - start)
            out = np.pad(out, pad, mode="constant", constant_values=0)
        elif n < size:  # center_fit padded (size - n) // 2 in front
            start = (size - n) // 2
            out = np.take(out, np.arange(start, start + n), axis=axis)
    return out


def invert(probs: np.ndarray, native_shape: Sequence[int], spacing: Sequence[float], spacing_mm: float) -> np.ndarray:
    """Slice-wise probabilities of the prepared grid back to the stack's native grid.

    Parameters
    ----------
    probs : ndarray, float, shape (S, image_size, image_size)
        As predicted on the output of :func:`~umcam_lib.data.prepare.prepare_stack`.
    native_shape : (H, W, S)
        The stack's shape, slice axis last.
    spacing : (float, float)
        Native in-plane spacing (mm).
    spacing_mm : float
        The run's in-plane spacing.

    Returns
    -------
    ndarray, float32, shape (H, W, S)
        Probabilities on the native grid: un-padded / un-cropped to the resampled shape, then
        resampled with :func:`resample_inplane` from pixels of ``H / h`` to pixels of 1 (so that
        exactly ``H`` x ``W`` pixels come back, edges aligned as in the forward resampling;
        anti-aliased where the native grid is coarser).
    """
    h, w = resampled_shape(native_shape, spacing, spacing_mm)
    vol = uncenter_fit(np.moveaxis(np.asarray(probs, np.float32), 0, -1), (h, w))
    H, W = int(native_shape[0]), int(native_shape[1])
    out = resample_inplane(vol, (H / h, W / w), 1.0)
    if out.shape[:2] != (H, W):  # cannot happen (round(h * H / h) == H); guard the contract
        raise AssertionError(f"inverse resampling gave {out.shape[:2]}, expected {(H, W)}")
    return out


def preprocess(stack: Stack, prep: Preprocessing) -> np.ndarray:
    """The model's input slices [S, image_size, image_size] (:func:`prepare_stack`)."""
    images, _, _ = prepare_stack(stack, prep.spacing_mm, prep.image_size)
    return images


def segment_stack(model: nn.Module, stack: Stack, prep: Preprocessing, device: str | torch.device = "cpu",
                  amp: bool = False, threshold: float = 0.5, batch_size: int = 32, tta: bool = False,
                  bias_sigma_mm: float | None = None) -> np.ndarray:
    """Predict one stack; the mask on the stack's native grid, slice axis last (``tta``:
    :func:`umcam_lib.train.seg_predict.predict_probs`; ``bias_sigma_mm``: divide the image by
    its smoothed foreground first, :func:`umcam_lib.segment_output.bias_correct`).

    Returns
    -------
    ndarray, uint8, shape (H, W, S)
        0/1, the shape of ``stack.image``.
    """
    if bias_sigma_mm:
        stack = dataclasses.replace(stack, image=so.bias_correct(
            stack.image, (*stack.spacing, stack.thickness), bias_sigma_mm))
    probs = predict_probs(model, preprocess(stack, prep), device, amp, batch_size, tta)
    native = invert(probs, stack.image.shape, stack.spacing, prep.spacing_mm)
    return (native >= threshold).astype(np.uint8)


def to_file_axes(mask: np.ndarray, stack: Stack, like: nib.spatialimages.SpatialImage) -> np.ndarray:
    """Slice axis back to where the file has it, and the file's exact shape (trailing 1s)."""
    return np.moveaxis(mask, -1, stack.slice_axis).reshape(like.shape)


def write_mask(mask: np.ndarray, like: nib.spatialimages.SpatialImage, path: str | Path, descrip: str = "") -> Path:
    """Write a uint8 mask with ``like``'s header (shape, affine, qform and sform with their codes),
    atomically."""
    hdr = like.header.copy()
    hdr.set_data_dtype(np.uint8)
    img = type(like)(np.asarray(mask, dtype=np.uint8), None, hdr)  # affine None: the header's, untouched
    img.header["cal_min"], img.header["cal_max"] = 0, 1
    if descrip and "descrip" in img.header:
        img.header["descrip"] = descrip.encode()[:79]
    with io.atomic_path(path) as tmp:
        nib.save(img, str(tmp))
    return Path(path)


# --------------------------------------------------------------------------- the command
def segment(run_dir: str | Path | None, inputs: Sequence[str | Path], out_dir: str | Path, method: str = DEFAULT_METHOD,
            desc: str | None = None, mask_suffix: str = "_desc-brain_mask", device: str = "auto",
            amp: bool = False, threshold: float = 0.5, batch_size: int = 32, progress: bool = True,
            model: nn.Module | None = None, prep: Preprocessing | None = None,
            postprocess: str | None = None, tta: bool | None = None, bids: bool | None = None,
            dilate: float = 0.0, qc: bool = True, bias_sigma_mm: float | None = None,
            models_dir: str | Path | None = None) -> pd.DataFrame:
    """Segment every stack of ``inputs`` with ``method``'s UNet of ``run_dir``; see the module doc.

    Parameters
    ----------
    run_dir : path or None
        Pipeline run folder (the model and the preprocessing come from it). None: a shipped
        model of ``models_dir`` (:mod:`umcam_lib.shipped`; ``method`` is then ``weak``,
        ``fullysup`` or a shipped method's name), its files verified against ``registry.json``.
    inputs : sequence of paths
        NIfTI files and/or folders.
    out_dir : path
        Where masks (and ``scores_desc-<label>.csv``, ``segment_desc-<label>.json``) go.
    method : str
        A trained UNet of the run (:func:`available_methods`).
    desc : str, optional
        The ``desc`` label of the written names (default ``brain`` for BIDS output, else
        :func:`desc_label` of ``method``).
    mask_suffix : str
        Reference-mask naming rule (:func:`umcam_lib.data.nifti.mask_path_for`).
    device, amp, batch_size : prediction settings (``amp``: float16 on CUDA only).
    threshold : float
        Foreground probability at or above which a voxel is brain.
    model, prep : optional
        A model and preprocessing to use instead of the run's (tests; ``run_dir`` then only
        names the source in the records).
    postprocess : {"none", "lcc"}, optional
        ``lcc`` keeps the largest 3D connected component of each mask (on the native grid).
        Default: what the UNet was trained and selected with (the run's ``seg.postprocess``,
        recorded in its checkpoint; ``none`` when not recorded).
    tta : bool, optional
        Average each slice's prediction over its 8 right-angle rotations and flips. Default: as
        the run reported its UNets (``seg.tta``, recorded in the checkpoint; off when not recorded).
    bids : bool, optional
        BIDS-derivative output (True), the input's layout (False), or BIDS when every input has
        a BIDS name (None, the default).
    dilate : float
        Grow each mask by this many millimetres (0: as predicted); scores are of the written mask.
    qc : bool
        Write a QC picture per stack and ``report_desc-<label>.html``.
    bias_sigma_mm : float, optional
        Divide each stack by its foreground intensity smoothed at this scale (mm) before
        preprocessing (None: off).
    models_dir : path, optional
        The shipped models used when ``run_dir`` is None (default the repository's ``models/``).

    Returns
    -------
    DataFrame
        One row per stack (:data:`SCORE_COLUMNS`); ``dsc`` / ``hd95_mm`` are NaN without a
        reference.

    Warns
    -----
    EmptyMaskWarning
        A stack's mask is empty (no brain found); its empty mask is still written.
    """
    t0 = time.perf_counter()
    if dilate < 0 or not np.isfinite(dilate):
        raise ValueError(f"--dilate-mm must be a finite number >= 0, got {dilate}")
    if bias_sigma_mm is not None and not bias_sigma_mm > 0:
        raise ValueError(f"--bias-correct sigma must be > 0 mm, got {bias_sigma_mm}")
    out_dir = resolve(out_dir)
    dev = runtime.select_device(device)
    info: dict[str, Any] = {"method": method}
    if model is None and run_dir is None:  # a shipped model, its files checked against registry.json
        model, info, sp = shipped.load(models_dir or shipped.MODELS_DIR, method, dev)
        method, prep = info["method"], prep or Preprocessing(sp["spacing_mm"], sp["image_size"])
    source = run_dir if run_dir is not None else Path(info.get("checkpoint", ".")).parent
    jobs = find_jobs(inputs, out_dir, desc, mask_suffix, bids, method)
    use_bids = bool(jobs) and jobs[0].bids
    label = desc_label(desc) if desc else ("brain" if use_bids else desc_label(method))
    if model is None:
        model, info = load_model(source, method, dev)
    prep = prep or run_preprocessing(source)
    post = postprocess if postprocess is not None else str(info.get("config", {}).get("postprocess", "none"))
    if post not in ("none", "lcc"):
        raise ValueError(f"postprocess must be 'none' or 'lcc', got {post!r}")
    use_tta = bool(tta) if tta is not None else bool(info.get("config", {}).get("tta", False))
    # every input is read and checked before the first mask is written
    for job in tqdm(jobs, desc="checking stacks", unit="stack", disable=not progress or len(jobs) < 2, leave=False):
        read_input(job)

    rows = []
    for job in tqdm(jobs, desc=f"segmenting ({method})", unit="stack", disable=not progress):
        t1 = time.perf_counter()
        stack, like = read_input(job)
        mask = segment_stack(model, stack, prep, dev, amp, threshold, batch_size, use_tta, bias_sigma_mm)
        if post == "lcc":
            mask = largest_component_3d(mask.astype(bool)).astype(np.uint8)
        geometry = (*stack.spacing, stack.thickness)  # mm along the axes of ``mask`` (slice axis last)
        if dilate > 0:
            mask = so.dilate_mm(mask, geometry, dilate)
        warning = ""
        if not mask.any():
            warning = "no brain found: the mask is empty"
            warnings.warn(f"{job.image}: {warning}", EmptyMaskWarning, stacklevel=2)
        file_mask = to_file_axes(mask, stack, like)
        write_mask(file_mask, like, job.out, descrip=f"umcam_lib.segment {method}")
        if job.bids:
            io.write_json(job.out.with_name(nifti._strip_nifti_ext(job.out.name) + ".json"),
                          so.mask_sidecar(job.image, method))
        spacing = nifti.voxel_spacing(stack.affine)
        qc_path = ""
        if qc:
            rel = job.out.relative_to(out_dir)
            qc_file = out_dir / "qc" / rel.parent / (nifti._strip_nifti_ext(rel.name) + ".png")
            vol = float(mask.sum()) * float(np.prod(geometry)) / 1000.0
            segment_qc.write_qc(qc_file, stack.image, mask, stack.spacing,
                                stack.mask if job.reference is not None else None,
                                title=f"{job.image.name}: {vol:.1f} mL")
            qc_path = str(qc_file)
        row = {"image": str(job.image), "mask": str(job.out), "reference": str(job.reference or ""),
               "method": method, "shape": "x".join(str(d) for d in like.shape),
               "spacing_mm": "x".join(f"{s:.4g}" for s in spacing), "slice_axis": stack.slice_axis,
               "n_slices": stack.n_slices, "gt_voxels": np.nan, "pred_voxels": int(mask.sum()),
               "volume_ml": float(mask.sum()) * float(np.prod(geometry)) / 1000.0,
               "dsc": np.nan, "hd95_mm": np.nan, "qc": qc_path, "warning": warning}
        if job.reference is not None:
            gt = np.moveaxis(stack.mask, -1, stack.slice_axis)
            pred = np.moveaxis(mask, -1, stack.slice_axis)
            row.update(gt_voxels=int(gt.sum()), dsc=metrics.dice(pred, gt),
                       hd95_mm=metrics.hd95(pred, gt, spacing=spacing) if mask.any() else np.nan)
        row["seconds"] = time.perf_counter() - t1
        rows.append(row)
    scores = pd.DataFrame(rows, columns=SCORE_COLUMNS)
    scores.attrs["label"] = label
    with io.atomic_path(out_dir / f"scores_desc-{label}.csv") as tmp:
        scores.to_csv(tmp, index=False, float_format="%.4f")
    if qc:
        segment_qc.write_report(out_dir / f"report_desc-{label}.html", scores,
                                title=f"Brain masks: {method} ({len(scores)} stacks)")
    if use_bids:
        io.write_json(out_dir / "dataset_description.json",
                      so.dataset_description(method, source, [str(resolve(i)) for i in inputs]))
        io.write_text(out_dir / ".bidsignore", so.BIDSIGNORE)
    io.write_json(out_dir / f"segment_desc-{label}.json", {
        "run_dir": str(resolve(run_dir)) if run_dir is not None else None, **{k: v for k, v in info.items() if k != "config"},
        "unet": info.get("config", {}), "spacing_mm": prep.spacing_mm, "image_size": prep.image_size,
        "threshold": float(threshold), "postprocess": post, "tta": use_tta, "device": str(dev), "amp": bool(amp),
        "bids": use_bids, "dilate_mm": float(dilate), "bias_correct_sigma_mm": bias_sigma_mm, "qc": bool(qc),
        "n_stacks": len(jobs), "n_empty": int(sum(bool(r["warning"]) for r in rows)),
        "seconds": round(time.perf_counter() - t0, 2), "masks": [str(j.out) for j in jobs]})
    return scores


def is_run_dir(path: str | Path) -> bool:
    """Whether ``path`` is a pipeline run folder: it holds ``seg/``, ``data/fingerprint.json`` or
    ``provenance/01.json``."""
    p = resolve(path)
    return p.is_dir() and ((p / "seg").is_dir() or (p / "data" / "fingerprint.json").is_file()
                           or (p / "provenance" / "01.json").is_file())


def list_shipped(models_dir: str | Path) -> int:
    """Print the shipped models (every file verified against ``registry.json``)."""
    reg = shipped.verify(models_dir)
    aliases = {v: k for k, v in (reg.get("aliases") or {}).items()}
    print(f"{resolve(models_dir)}: shipped models (registry.json verified)")
    for name, m in reg["models"].items():
        card = json.loads((resolve(models_dir) / m["folder"] / "card.json").read_text())
        s = card.get("scores", {})
        print(f"  {aliases.get(name, ''):9s} {name:14s} {m.get('supervision', '')}: validation 3D DSC "
              f"{s.get('val', {}).get('dsc_mean', float('nan')):.2f} %, test {s.get('test', {}).get('dsc_mean', float('nan')):.2f} %")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m umcam_lib.segment",
                                 description="Write a brain mask for each NIfTI stack with a shipped UNet (models/) "
                                             "or a trained UNet of a run folder.")
    ap.add_argument("paths", nargs="*", metavar="[RUN_DIR] INPUT",
                    help="NIfTI files (.nii, .nii.gz) and/or folders, after an optional pipeline run folder "
                         "(e.g. runs/real: a folder with seg/, data/fingerprint.json or provenance/01.json); "
                         "without one, the shipped models of --models are used")
    ap.add_argument("--run", metavar="RUN_DIR", help="pipeline run folder whose UNet to use (explicit)")
    ap.add_argument("--models", metavar="DIR", default=None,
                    help="shipped models folder (default: the repository's models/; written by python -m umcam_lib.ship)")
    ap.add_argument("--model", default=None,
                    help="shipped model: weak (default: the weakly supervised UNet validation chose), fullysup, "
                         "or a shipped method's name")
    ap.add_argument("--out", help="output folder (required unless --list)")
    ap.add_argument("--method", default=None, help=f"trained UNet of the run (default {DEFAULT_METHOD}; --list)")
    ap.add_argument("--list", action="store_true", help="list the run's trained UNets (without a run: the shipped models) and exit")
    ap.add_argument("--desc", help="desc label of the mask names (default: from the method, e.g. umcamspl)")
    ap.add_argument("--mask-suffix", default="_desc-brain_mask", help="reference mask naming rule")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    ap.add_argument("--amp", action="store_true", help="float16 autocast (CUDA only)")
    ap.add_argument("--threshold", type=float, default=0.5, help="foreground probability threshold")
    ap.add_argument("--postprocess", choices=("run", "none", "lcc"), default="run",
                    help="lcc: keep the largest 3D component of each mask; run (default): as the UNet was "
                         "trained and selected (the run's seg.postprocess)")
    ap.add_argument("--tta", choices=("run", "on", "off"), default="run",
                    help="on: average each slice over its 8 right-angle rotations/flips (8x the cost); "
                         "run (default): as the run reported its UNets (seg.tta)")
    ap.add_argument("--bids", action=argparse.BooleanOptionalAction, default=None,
                    help="BIDS-derivative output (sub-XX/anat/sub-XX_..._desc-brain_mask.nii.gz, "
                         "dataset_description.json); default: on when every input has a BIDS name")
    ap.add_argument("--dilate-mm", type=float, default=0.0, metavar="MM",
                    help="grow each mask by MM millimetres (voxel spacing of each axis; default 0)")
    ap.add_argument("--bias-correct", action="store_true",
                    help="divide each stack by a smooth multiplicative field (fitted at --bias-sigma-mm) "
                         "before segmenting; off by default")
    ap.add_argument("--bias-sigma-mm", type=float, default=BIAS_SIGMA_MM, metavar="MM",
                    help=f"scale of the --bias-correct field fit (default {BIAS_SIGMA_MM:g} mm)")
    ap.add_argument("--no-qc", action="store_true", help="no QC pictures and no report_desc-<label>.html")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_intermixed_args(argv)  # options may come between RUN_DIR and the inputs
    args.run_dir, args.inputs = args.run, list(args.paths)
    if args.run_dir is None and args.inputs and is_run_dir(args.inputs[0]):
        args.run_dir, args.inputs = args.inputs[0], args.inputs[1:]
    method = (args.method or args.model or DEFAULT_METHOD) if args.run_dir is not None else \
        (args.model or args.method or shipped.DEFAULT_ALIAS)
    try:
        if args.list and args.run_dir is None:
            return list_shipped(args.models or shipped.MODELS_DIR)
        if args.list:
            methods = available_methods(args.run_dir)
            if not methods:
                print(f"{resolve(args.run_dir)}: no trained UNet (seg/*/best.pt)")
                return 1
            prep = run_preprocessing(args.run_dir)
            print(f"{resolve(args.run_dir)}: slices at {prep.spacing_mm:g} mm, {prep.image_size} px")
            for name, folder in methods.items():
                ck = torch.load(folder / "best.pt", map_location="cpu", weights_only=True)
                print(f"  {name:28s} best epoch {ck.get('epoch')}, validation DSC {ck.get('score', float('nan')):.2f}"
                      f"  (--desc {desc_label(name)})")
            return 0
        if not args.inputs or not args.out:
            ap.error("give INPUT file(s) or folder(s) and --out (or --list)")
        scores = segment(args.run_dir, args.inputs, args.out, method, args.desc, args.mask_suffix, args.device,
                         args.amp, args.threshold, args.batch_size, progress=not args.quiet, models_dir=args.models,
                         postprocess=None if args.postprocess == "run" else args.postprocess,
                         tta=None if args.tta == "run" else args.tta == "on", bids=args.bids,
                         dilate=args.dilate_mm, qc=not args.no_qc, bias_sigma_mm=args.bias_sigma_mm if args.bias_correct else None)
    except (DataError, FileNotFoundError, RuntimeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    label = scores.attrs.get("label", desc_label(args.desc or method))
    print(f"{len(scores)} mask(s) written to {resolve(args.out)}"
          + ("" if args.no_qc else f"; QC: {Path(args.out) / f'report_desc-{label}.html'}"))
    empty = scores[scores.warning.astype(bool)]
    if len(empty):
        print(f"warning: no brain found in {len(empty)} stack(s) (empty masks): "
              + ", ".join(Path(i).name for i in empty.image), file=sys.stderr)
    scored = scores.dropna(subset=["dsc"])
    if len(scored):
        with pd.option_context("display.width", 200, "display.max_colwidth", 60):
            print(scored.assign(image=scored.image.map(lambda s: Path(s).name))[["image", "dsc", "hd95_mm"]]
                  .to_string(index=False, float_format=lambda x: f"{x:.2f}"))
        print(f"mean DSC {scored.dsc.mean():.2f} %, mean HD95 {scored.hd95_mm.mean():.2f} mm "
              f"({len(scored)} stacks with a reference; {Path(args.out) / f'scores_desc-{label}.csv'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
