"""One stack through the UNet: preprocessing, slice probabilities, and the inverse geometry back to
the stack's native grid."""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
import torch.nn as nn

from .. import io
from ..data.nifti import Stack
from ..data.prepare import prepare_stack, resample_inplane
from ..train.seg_predict import predict_probs
from . import output as so
from .model import Preprocessing


# --------------------------------------------------------------------------- geometry
def resampled_shape(shape: Sequence[int], spacing: Sequence[float], spacing_mm: float) -> tuple[int, int]:
    """In-plane shape of a slice of ``shape[:2]`` pixels after :func:`resample_inplane`.

    Examples
    --------
    >>> resampled_shape((200, 100, 30), (0.8, 0.8), 1.6)   # 0.8 mm pixels resampled to 1.6 mm
    (100, 50)
    """
    probe = resample_inplane(np.zeros((int(shape[0]), int(shape[1]), 1), np.uint8), spacing, spacing_mm,
                             is_mask=True)
    return int(probe.shape[0]), int(probe.shape[1])


def uncenter_fit(volume: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Inverse of :func:`~umcam_lib.data.prepare.center_fit`: the first two axes of ``volume``
    (``image_size`` pixels) back to ``shape[:2]``: what the crop removed comes back as 0, the
    padding is cut away.

    Examples
    --------
    >>> import numpy as np
    >>> from umcam_lib.data.prepare import center_fit
    >>> x = np.arange(16).reshape(4, 4)
    >>> bool((uncenter_fit(center_fit(x, 6), x.shape) == x).all())   # padding cut away
    True
    >>> uncenter_fit(center_fit(x, 2), x.shape).tolist()              # the crop's border is 0
    [[0, 0, 0, 0], [0, 5, 6, 0], [0, 9, 10, 0], [0, 0, 0, 0]]
    """
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


def stack_probs(model: nn.Module, stack: Stack, prep: Preprocessing, device: str | torch.device = "cpu",
                amp: bool = False, batch_size: int = 32, tta: bool = False,
                bias_sigma_mm: float | None = None, tta_views: str = "d8") -> np.ndarray:
    """Foreground probabilities of one stack on its native grid (``tta``, ``tta_views``:
    :func:`umcam_lib.train.seg_predict.predict_probs`; ``bias_sigma_mm``: divide the image by
    its smoothed foreground first, :func:`umcam_lib.segment.output.bias_correct`).

    Returns
    -------
    ndarray, float32, shape (H, W, S)
        In [0, 1], the shape of ``stack.image`` (slice axis last).
    """
    if bias_sigma_mm:
        stack = dataclasses.replace(stack, image=so.bias_correct(
            stack.image, (*stack.spacing, stack.thickness), bias_sigma_mm))
    probs = predict_probs(model, preprocess(stack, prep), device, amp, batch_size, tta, tta_views)
    return invert(probs, stack.image.shape, stack.spacing, prep.spacing_mm)


def segment_stack(model: nn.Module, stack: Stack, prep: Preprocessing, device: str | torch.device = "cpu",
                  amp: bool = False, threshold: float = 0.5, batch_size: int = 32, tta: bool = False,
                  bias_sigma_mm: float | None = None, tta_views: str = "d8") -> np.ndarray:
    """Predict one stack: :func:`stack_probs` at or above ``threshold``.

    Returns
    -------
    ndarray, uint8, shape (H, W, S)
        0/1, the shape of ``stack.image``.
    """
    probs = stack_probs(model, stack, prep, device, amp, batch_size, tta, bias_sigma_mm, tta_views)
    return (probs >= threshold).astype(np.uint8)


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
