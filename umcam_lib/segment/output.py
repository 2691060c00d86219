"""What ``python -m umcam_lib.segment`` writes besides the masks' voxels: BIDS-derivative names
and ``dataset_description.json``, dilation in millimetres, and the N4-free bias correction.

BIDS-derivative layout (``--bids``; the default when every input's name is a BIDS name, i.e.
starts with a ``sub-<label>`` entity): the mask of ``.../sub-01/ses-2/anat/sub-01_ses-2_run-1_T2w.nii.gz``
is ``OUT/sub-01/ses-2/anat/sub-01_ses-2_run-1_desc-brain_mask.nii.gz``: the input's entities in
their order, its own ``desc`` dropped, ``desc-<label>`` last and the suffix ``mask`` (BIDS
derivatives, "Masks"); the folders come from the ``sub``/``ses`` entities and the input's
datatype folder (``anat`` when the input is not in one). ``OUT/dataset_description.json``
says ``DatasetType: derivative`` and what generated it.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data import nifti

BIDS_VERSION = "1.10.0"
PACKAGE = "umcam-study"
BIDS_DATATYPES = ("anat", "func", "dwi", "fmap", "perf")
BIDSIGNORE = "qc/\nreport_*\nscores_*\nsegment_*\n"
"""Files of ``OUT`` that are not BIDS (QC pictures, the summary page, scores and the run record)."""

_LABEL = re.compile(r"^[A-Za-z0-9]+$")
_SUFFIX = re.compile(r"^[A-Za-z0-9]+$")


@dataclass(frozen=True)
class BidsName:
    """A parsed BIDS file name: ``entities`` in file order (``(("sub", "01"), ("run", "1"))``) and
    the ``suffix`` (``T2w``; None when the last part is an entity)."""

    entities: tuple[tuple[str, str], ...]
    suffix: str | None

    def get(self, key: str) -> str | None:
        return dict(self.entities).get(key)


def parse_bids_name(name: str) -> BidsName | None:
    """Parse ``sub-01_ses-2_run-1_T2w.nii.gz``; None when the name is not a BIDS name (the first
    part must be ``sub-<label>``, every other part ``key-label`` except an optional last suffix)."""
    parts = nifti.strip_nifti_ext(Path(name).name).split("_")
    suffix = None
    if parts and "-" not in parts[-1]:
        suffix = parts.pop()
        if not _SUFFIX.match(suffix):
            return None
    entities = []
    for part in parts:
        key, sep, label = part.partition("-")
        if not sep or not _LABEL.match(key) or not _LABEL.match(label):
            return None
        entities.append((key, label))
    if not entities or entities[0][0] != "sub" or len({k for k, _ in entities}) != len(entities):
        return None
    return BidsName(tuple(entities), suffix)


def bids_mask_path(image: str | Path, out_dir: str | Path, desc: str) -> Path:
    """The BIDS-derivative path of ``image``'s mask under ``out_dir`` (module doc).

    Raises
    ------
    ValueError
        ``image``'s name is not a BIDS name.
    """
    image = Path(image)
    parsed = parse_bids_name(image.name)
    if parsed is None:
        raise ValueError(f"{image}: not a BIDS file name (sub-<label>[_ses-<label>]..._<suffix>.nii[.gz])")
    ents = [(k, v) for k, v in parsed.entities if k != "desc"] + [("desc", desc)]
    folder = Path(out_dir) / f"sub-{parsed.get('sub')}"
    if parsed.get("ses"):
        folder = folder / f"ses-{parsed.get('ses')}"
    folder = folder / (image.parent.name if image.parent.name in BIDS_DATATYPES else "anat")
    return folder / ("_".join(f"{k}-{v}" for k, v in ents) + "_mask.nii.gz")


def dataset_description(method: str, run_dir: str | Path, sources: Sequence[str | Path] = (),
                        git: dict[str, Any] | None = None) -> dict[str, Any]:
    """``dataset_description.json`` of a mask folder (BIDS derivative).

    Parameters
    ----------
    method : str
        The UNet that made the masks.
    run_dir : path
        The run folder the UNet came from (named in ``GeneratedBy.Description``).
    sources : paths
        The input folders / files (``SourceDatasets``: their datasets, :func:`source_root`, as
        ``file://`` URLs).
    git : dict, optional
        :func:`umcam_lib.provenance.git_state` (default: read now); its commit becomes the local
        part of ``GeneratedBy.Version`` (``0.1.0+g<12 hex>``, ``.dirty`` when the tree differs).
    """
    from .. import provenance

    version = _package_version()
    state = git if git is not None else provenance.git_state()
    commit = state.get("commit")
    generated: dict[str, Any] = {
        "Name": PACKAGE,
        "Version": version + (f"+g{commit[:12]}" + (".dirty" if state.get("dirty") else "") if commit else ""),
        "Description": f"python -m umcam_lib.segment: brain masks by the {method} UNet of the run folder "
                       f"{Path(run_dir).resolve()}" + (f"; git commit {commit}" if commit else ""),
    }
    desc: dict[str, Any] = {
        "Name": f"{PACKAGE} brain masks ({method})",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [generated],
    }
    urls = sorted({source_root(s).as_uri() for s in sources})
    if urls:
        desc["SourceDatasets"] = [{"URL": u} for u in urls]
    return desc


def source_root(path: str | Path) -> Path:
    """The dataset an input belongs to: for a file or folder inside a ``sub-<label>`` folder, the
    folder above it (the BIDS root); otherwise the input itself."""
    path = Path(path).resolve()
    for parent in [path, *path.parents]:
        if parent.name.startswith("sub-") and parent.is_dir():
            return parent.parent
    return path


def mask_sidecar(image: str | Path, method: str) -> dict[str, Any]:
    """The JSON sidecar of one mask (BIDS derivatives, "Masks": ``Type`` and ``Sources``)."""
    return {"Type": "Brain", "Sources": [Path(image).resolve().as_uri()], "Method": method}


def _package_version() -> str:
    from importlib import metadata

    try:
        return metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:  # running from a checkout that was not installed
        return "0+unknown"


# --------------------------------------------------------------------------- masks
def dilate_mm(mask: np.ndarray, spacing: Sequence[float], mm: float) -> np.ndarray:
    """Grow a binary mask by ``mm`` millimetres in every direction (Euclidean, in mm).

    Parameters
    ----------
    mask : ndarray, shape (X, Y, Z)
        0/1 (any dtype).
    spacing : (float, float, float)
        Voxel spacing of the three axes in mm (anisotropic: a 4.5 mm slice gap grows by whole
        slices only where ``mm`` reaches them).
    mm : float
        Distance; 0 returns the mask unchanged.

    Returns
    -------
    ndarray, uint8, shape (X, Y, Z)
        Voxels whose centre lies within ``mm`` of a mask voxel's centre.
    """
    from scipy import ndimage

    if mm < 0:
        raise ValueError(f"dilation must be >= 0 mm, got {mm}")
    m = np.asarray(mask).astype(bool)
    if mm == 0 or not m.any():
        return m.astype(np.uint8)
    sp = np.asarray(spacing, float)
    margin = np.floor(mm / sp).astype(int) + 1
    nz = np.nonzero(m)
    lo = [max(0, int(a.min()) - g) for a, g in zip(nz, margin)]
    hi = [min(n, int(a.max()) + g + 1) for a, n, g in zip(nz, m.shape, margin)]
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    out = np.zeros(m.shape, np.uint8)
    dist = ndimage.distance_transform_edt(~m[box], sampling=sp)
    out[box] = dist <= mm + 1e-6
    return out


def bias_correct(image: np.ndarray, spacing: Sequence[float], sigma_mm: float = 80.0, ridge: float = 0.05) -> np.ndarray:
    """Divide out a smooth multiplicative field (N4-free).

    The log-intensity of the foreground is fitted, around every point, by a plane (a local
    linear fit with Gaussian weights of ``sigma_mm`` in millimetres along each axis: normalised
    convolution of first order), and ``exp`` of the fit is the field. A plane follows a field
    that rises across the field of view up to the edges, where a plain smoothed mean would be
    pulled towards the inside; tissue contrast at scales below ``sigma_mm`` (the brain against
    the body) is mostly kept. The fit runs on blocks of about ``sigma_mm / 4`` (foreground-
    weighted means of the log-intensity) and the field is interpolated back linearly, so the
    cost is a few block sums on the native grid.

    Parameters
    ----------
    image : ndarray, float, shape (X, Y, Z)
    spacing : (float, float, float)
        mm per voxel along each axis.
    sigma_mm : float
        Scale of the fit; larger than a fetal brain so that the brain's own contrast survives.
    ridge : float
        Penalty on the local slopes (keeps directions without extent, e.g. a single slice, defined).

    Returns
    -------
    ndarray, float32, shape (X, Y, Z)
        The corrected image, 0 outside the foreground (voxels above a tenth of the median of the
        positive voxels), scaled so that the foreground median equals the input's.
    """
    from scipy import ndimage

    img = np.asarray(image, np.float32)
    pos = img[img > 0]
    if pos.size == 0:
        return img.copy()
    w = (img > 0.1 * float(np.median(pos))).astype(np.float32)
    logi = np.where(w > 0, np.log(np.maximum(img, np.float32(1e-12))), 0).astype(np.float32)
    sp = np.asarray(spacing, float)
    f = np.maximum(1, np.round(sigma_mm / 4 / sp)).astype(int)  # block size (voxels) per axis
    wc, lc = _block_sum(w, f), _block_sum(w * logi, f)
    logc = np.where(wc > 0, lc / np.maximum(wc, 1e-12), 0.0)
    wc = wc / float(np.prod(f))  # foreground fraction of each block
    logf_c = _local_plane(logc, wc, sp * f, sigma_mm, ridge)
    coords = np.meshgrid(*[(np.arange(n) - (k - 1) / 2) / k for n, k in zip(img.shape, f)], indexing="ij",
                         sparse=True)
    logf = ndimage.map_coordinates(logf_c, np.broadcast_arrays(*coords), order=1, mode="nearest")
    out = np.where(w > 0, np.exp(logi - logf), 0.0).astype(np.float32)
    fg = w > 0
    ref, new = float(np.median(img[fg])), float(np.median(out[fg]))
    return out * np.float32(ref / new) if new > 0 else out


def _block_sum(a: np.ndarray, f: Sequence[int]) -> np.ndarray:
    """Sums over blocks of ``f`` voxels (the last block of an axis may be partial)."""
    pad = [(0, (-n) % k) for n, k in zip(a.shape, f)]
    a = np.pad(a.astype(np.float64), pad)
    shape = [x for n, k in zip(a.shape, f) for x in (n // k, k)]
    return a.reshape(shape).sum(axis=(1, 3, 5))


def _local_plane(values: np.ndarray, weights: np.ndarray, spacing: Sequence[float], sigma_mm: float,
                 ridge: float) -> np.ndarray:
    """Weighted local linear fit of ``values`` at every voxel (Gaussian weights of ``sigma_mm``)."""
    from scipy import ndimage

    shape = values.shape
    sig = [sigma_mm / float(v) for v in spacing]
    axes = [(np.arange(n) - (n - 1) / 2) * float(v) / sigma_mm for n, v in zip(shape, spacing)]
    X = [axes[0][:, None, None], axes[1][None, :, None], axes[2][None, None, :]]

    def smooth(a: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(np.broadcast_to(a, shape).astype(np.float64), sig, mode="constant").ravel()

    w = weights
    A = np.empty((values.size, 4, 4))
    b = np.empty((values.size, 4))
    s0 = smooth(w)
    A[:, 0, 0], b[:, 0] = s0, smooth(w * values)
    for i in range(3):
        A[:, 0, i + 1] = A[:, i + 1, 0] = smooth(w * X[i])
        b[:, i + 1] = smooth(w * values * X[i])
        for j in range(i, 3):
            A[:, i + 1, j + 1] = A[:, j + 1, i + 1] = smooth(w * X[i] * X[j])
        A[:, i + 1, i + 1] += ridge * s0
    far = s0 <= 1e-6  # no foreground within reach
    A[far], b[far] = np.eye(4), 0.0
    coef = np.linalg.solve(A, b[..., None])[..., 0]
    xb = [np.broadcast_to(x, shape).ravel() for x in X]
    return (coef[:, 0] + sum(coef[:, i + 1] * xb[i] for i in range(3))).reshape(shape)
