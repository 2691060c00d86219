"""The synthetic fetal MRI cohort (STUDY.md section 5).

One volume is a stack of 2D single-shot T2 slices axial to the mother, as in the UM-CAM
paper: field of view 0.55-0.67 mm x 512 (``matrix`` sets the pixel count, the field of view
stays physical), slices 6.5-7.15 mm thick, 36-54 slices over the abdomen. Each slice
integrates its slab (``n_sub`` sub-planes averaged), so the top and bottom of the brain are
partial-volumed. The fetus moves in-plane between slices; a bias field, Rician noise and a
per-volume intensity scale make the uint16 image look like scanner data.

The brain mask (parenchyma, ventricles, cerebellum, brainstem; not skull or extra-axial CSF)
of a slice keeps the pixels that are brain over at least half of its slab.

Typical use (notebook 01)::

    from umcam_lib.data.phantom import generate_cohort
    images = generate_cohort(run_dir / "cohort", n_volumes=40, seed=0, matrix=256)
    # images[i] = .../sub-001/anat/sub-001_T2w.nii.gz, mask beside it (mask_path(images[i]))

Volume ``i`` of a cohort uses the seed :func:`volume_seed` ``(seed, i)``, so the first 40
volumes of a 115-volume cohort equal a 40-volume cohort with the same seed and matrix.
"""
from __future__ import annotations

import json
import multiprocessing
import re
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from ..io import atomic_path, write_json, write_text
from .phantom_anatomy import Anatomy, AnatomyRanges, sample_anatomy
from .phantom_geometry import F32, Grid
from .phantom_render import Textures, render_fetus, render_mother
from ..hashing import file_sha256, value_hash

#: Bump when the generator's output changes: cached cohorts of another version are regenerated.
PHANTOM_VERSION = "1"
#: Sub-planes averaged through each slab.
N_SUB = 3
IMAGE_SUFFIX = "_T2w.nii.gz"
MASK_SUFFIX = "_T2w_desc-brain_mask.nii.gz"
PARTICIPANT_COLUMNS = ("participant_id", "gestational_age_weeks", "seed", "spacing_mm", "thickness_mm",
                       "n_slices", "matrix", "positive_slices")


@dataclass
class PhantomVolume:
    """One synthetic stack.

    Attributes
    ----------
    image : ndarray, uint16, shape (X, Y, Z)
        T2-weighted intensities; Z is the slice axis (axial to the mother).
    mask : ndarray, uint8, shape (X, Y, Z)
        Brain mask (0/1) of each slice.
    affine : ndarray, float64, shape (4, 4)
        Voxel to world (mm): diagonal ``(sx, sy, thickness)``, origin so that the centre of
        the stack is the world origin (the scanner's isocentre).
    spacing : (float, float, float)
        ``(sx, sy, thickness)`` in mm.
    meta : dict
        ``gestational_age_weeks``, ``ofd_mm``, ``bpd_mm``, ``head_centre_mm`` (rest pose,
        world), ``head_rotation`` (3x3, columns: head left-right, face, vertex axes in world),
        ``motion_shift_mm`` (Z, 2), ``motion_rotation_deg`` (Z,), ``brain_semi_axes_mm``,
        ``head_radius_mm``, ``placement`` ("sampled" or "fallback"), ``fov_mm``,
        ``noise_sigma``, ``edge_blur_mm``, ``intensity_scale``, ``positive_slices``, ``seed``,
        ``matrix``, ``n_sub``, ``version``.
    head_mask : ndarray, uint8, shape (X, Y, Z)
        1 inside the outer skull surface on any sub-plane of the slab (for checks).
    """

    image: np.ndarray
    mask: np.ndarray
    affine: np.ndarray
    spacing: tuple[float, float, float]
    meta: dict = field(default_factory=dict)
    head_mask: np.ndarray | None = None


# ============================================================================ one volume
def _check_args(seed: int, matrix: int, n_slices: int | None) -> None:
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"phantom seed must be a non-negative integer, got {seed!r}")
    if not isinstance(matrix, (int, np.integer)) or not 32 <= matrix <= 2048:
        raise ValueError(f"phantom matrix must be an integer in [32, 2048], got {matrix!r}")
    if n_slices is not None and (not isinstance(n_slices, (int, np.integer)) or not 4 <= n_slices <= 200):
        raise ValueError(f"phantom n_slices must be None or an integer in [4, 200], got {n_slices!r}")


def _affine(anat: Anatomy) -> np.ndarray:
    acq = anat.acq
    sp = np.array([acq.spacing_mm, acq.spacing_mm, acq.thickness_mm])
    shape = np.array([acq.matrix, acq.matrix, acq.n_slices])
    affine = np.diag([*sp, 1.0])
    affine[:3, 3] = -(shape - 1) / 2.0 * sp
    return affine


def _bias_axes(anat: Anatomy, grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """Smooth multiplicative bias field as (in-plane field (M, M), per-slice factors (Z,)).

    Each axis contributes ``exp(c1 t + c2 t^2 + c3 t^3)`` with ``t`` in [-1, 1] over the stack.
    """
    acq = anat.acq
    half_z = max(float(acq.z_centres.max()), 1.0)
    axes = (grid.xs / F32(acq.fov_mm / 2), grid.ys / F32(acq.fov_mm / 2), acq.z_centres.astype(F32) / F32(half_z))
    fx, fy, fz = [np.exp(c[0] * t + c[1] * t**2 + c[2] * t**3).astype(F32) for c, t in zip(anat.bias, axes)]
    return fx[:, None] * fy[None, :], fz


def _to_scanner(image: np.ndarray, bias: np.ndarray, sigma: float, scale: float,
                rng: np.random.Generator) -> np.ndarray:
    """Bias, Rician noise and intensity scale of one slice (M, M) float32 -> uint16.

    ``scale * |image * bias + n1 + i n2|`` with ``n1, n2 ~ N(0, sigma^2)``, computed in units
    of ``sigma``; ``image`` is overwritten (used as the work buffer).
    """
    image *= bias
    image *= F32(1.0 / sigma)
    image += rng.standard_normal(image.shape, dtype=F32)
    np.hypot(image, rng.standard_normal(image.shape, dtype=F32), out=image)
    image *= F32(sigma * scale)
    np.rint(image, out=image)
    np.minimum(image, F32(65535), out=image)
    return image.astype(np.uint16)


def _meta(anat: Anatomy, seed: int, mask: np.ndarray) -> dict[str, Any]:
    f, acq = anat.fetus, anat.acq
    return {
        "version": PHANTOM_VERSION,
        "seed": int(seed),
        "matrix": acq.matrix,
        "fov_mm": float(acq.fov_mm),
        "n_sub": acq.n_sub,
        "gestational_age_weeks": float(f.gestational_age_weeks),
        "ofd_mm": float(f.ofd_mm),
        "bpd_mm": float(f.bpd_mm),
        "brain_semi_axes_mm": [float(v) for v in f.head.semi],
        "head_centre_mm": [float(v) for v in f.head_centre],
        "head_rotation": f.head_rotation.tolist(),
        "head_radius_mm": float(f.head_radius),
        "placement": f.placement,
        "motion_shift_mm": f.motion_shift.tolist(),
        "motion_rotation_deg": np.rad2deg(f.motion_theta).tolist(),
        "noise_sigma": float(anat.noise_sigma),
        "edge_blur_mm": float(anat.blur_mm),
        "intensity_scale": float(anat.intensity_scale),
        "positive_slices": int(mask.any(axis=(0, 1)).sum()),
    }


def generate_volume(seed: int, matrix: int = 512, n_slices: int | None = None,
                    ranges: AnatomyRanges = AnatomyRanges()) -> PhantomVolume:
    """Generate one synthetic fetal MRI stack.

    Parameters
    ----------
    seed : int
        Non-negative seed; the same seed and parameters give bit-identical arrays. The anatomy
        (sizes, pose, motion, contrast) depends on ``seed`` only, not on ``matrix``.
    matrix : int
        In-plane pixel count; the field of view stays 282-343 mm, so the spacing is
        ``fov / matrix`` (0.55-0.67 mm at 512, twice that at 256).
    n_slices : int or None
        Number of slices; None draws 36-54 as in the paper.
    ranges : AnatomyRanges
        Wider draws for domain randomisation (:mod:`umcam_lib.segment.synthetic`); the default
        is the paper cohort.

    Returns
    -------
    PhantomVolume
        ``image`` uint16 and ``mask`` uint8 of shape (matrix, matrix, n_slices).
    """
    _check_args(seed, matrix, n_slices)
    ss = np.random.SeedSequence(int(seed))
    rng_anat, rng_tex, rng_noise = (np.random.default_rng(s) for s in ss.spawn(3))
    anat = sample_anatomy(rng_anat, int(matrix), n_slices, N_SUB, ranges)
    acq = anat.acq
    coords = ((np.arange(acq.matrix) - (acq.matrix - 1) / 2.0) * acq.spacing_mm).astype(F32)
    grid = Grid(coords, coords, acq.spacing_mm, edge=2.5 * anat.blur_mm)
    textures = Textures(rng_tex, acq.matrix, acq.spacing_mm, acq.n_slices)
    shape = (acq.n_slices, acq.matrix, acq.matrix)  # slice-major while rendering
    image_u16 = np.empty(shape, np.uint16)
    mask = np.zeros(shape, np.uint8)
    head = np.zeros(shape, np.uint8)
    bias_xy, bias_z = _bias_axes(anat, grid)
    for s, z in enumerate(acq.z_centres):
        fine, coarse = textures.for_slice(s)
        base = render_mother(anat.mother, anat.contrast, grid, float(z), fine, coarse)
        image, mask[s], head[s] = render_fetus(base, anat, grid, s, fine)
        image_u16[s] = _to_scanner(image, bias_xy * bias_z[s], anat.noise_sigma, anat.intensity_scale, rng_noise)

    def xyz(a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(a.transpose(1, 2, 0))

    image_u16, mask, head = xyz(image_u16), xyz(mask), xyz(head)
    spacing = (float(acq.spacing_mm), float(acq.spacing_mm), float(acq.thickness_mm))
    return PhantomVolume(image_u16, mask, _affine(anat), spacing, _meta(anat, seed, mask), head)


# ============================================================================ cohort on disk
def volume_seed(seed: int, index: int) -> int:
    """Seed of volume ``index`` (0-based) of a cohort with seed ``seed`` (depends on both only)."""
    state = np.random.SeedSequence(int(seed), spawn_key=(int(index),)).generate_state(1, np.uint32)
    return int(state[0])


def subject_id(index: int) -> str:
    """BIDS subject label of volume ``index`` (0-based): ``sub-001``, ``sub-002``, ..."""
    return f"sub-{index + 1:03d}"


def mask_path(image_path: str | Path) -> Path:
    """Mask file of an image written by :func:`generate_cohort`."""
    image_path = Path(image_path)
    if not image_path.name.endswith(IMAGE_SUFFIX):
        raise ValueError(f"{image_path}: not a phantom image (expected a name ending in {IMAGE_SUFFIX})")
    return image_path.with_name(image_path.name[: -len(IMAGE_SUFFIX)] + MASK_SUFFIX)


def _save_nifti(array: np.ndarray, affine: np.ndarray, dtype, path: Path, description: str) -> None:
    img = nib.Nifti1Image(array.astype(dtype, copy=False), affine)
    hdr = img.header
    hdr.set_data_dtype(dtype)
    hdr.set_xyzt_units("mm", "sec")
    hdr.set_dim_info(slice=2)
    hdr["descrip"] = description[:79].encode()
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    with atomic_path(path) as tmp:
        nib.save(img, tmp)


def _make_subject(out_dir: str, index: int, seed: int, matrix: int) -> dict[str, Any]:
    """Generate and write volume ``index``; returns its cohort.json record (runs in workers too)."""
    out_dir = Path(out_dir)
    sub = subject_id(index)
    vseed = volume_seed(seed, index)
    vol = generate_volume(vseed, matrix)
    anat_dir = out_dir / sub / "anat"
    image_file = anat_dir / f"{sub}{IMAGE_SUFFIX}"
    mask_file = anat_dir / f"{sub}{MASK_SUFFIX}"
    _save_nifti(vol.image, vol.affine, np.uint16, image_file, f"umcam phantom v{PHANTOM_VERSION} seed {vseed}")
    _save_nifti(vol.mask, vol.affine, np.uint8, mask_file, "brain mask")
    return {
        "participant_id": sub,
        "index": index,
        "seed": vseed,
        "matrix": int(matrix),
        "version": PHANTOM_VERSION,
        "image": image_file.relative_to(out_dir).as_posix(),
        "mask": mask_file.relative_to(out_dir).as_posix(),
        "image_sha256": file_sha256(image_file),
        "mask_sha256": file_sha256(mask_file),
        "shape": list(vol.image.shape),
        "gestational_age_weeks": round(vol.meta["gestational_age_weeks"], 3),
        "spacing_mm": round(vol.spacing[0], 6),
        "thickness_mm": round(vol.spacing[2], 6),
        "n_slices": int(vol.image.shape[2]),
        "positive_slices": vol.meta["positive_slices"],
    }


def _record_valid(out_dir: Path, rec: dict | None, index: int, seed: int, matrix: int) -> bool:
    """True when a cached record matches the requested volume and its files are intact."""
    if not rec:
        return False
    expected = {"index": index, "seed": volume_seed(seed, index), "matrix": matrix, "version": PHANTOM_VERSION}
    if any(rec.get(k) != v for k, v in expected.items()):
        return False
    for key in ("image", "mask"):
        path = out_dir / rec[key]
        if not path.is_file() or file_sha256(path) != rec.get(f"{key}_sha256"):
            return False
    return True


def _load_manifest(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}  # unreadable manifest: regenerate everything rather than trust it
    return data if isinstance(data, dict) else {}


def _remove_stale(out_dir: Path, old: dict, n_volumes: int) -> None:
    """Delete files of recorded subjects beyond ``n_volumes`` and temporary files left by a crash."""
    for rec in old.get("subjects", []):
        if isinstance(rec, dict) and rec.get("index", -1) >= n_volumes:
            for key in ("image", "mask"):
                if isinstance(rec.get(key), str):
                    (out_dir / rec[key]).unlink(missing_ok=True)
            anat = (out_dir / rec.get("image", "x/x")).parent
            for folder in (anat, anat.parent):
                if folder.is_dir() and folder != out_dir and not any(folder.iterdir()):
                    folder.rmdir()
    tmp_name = re.compile(r"^\.sub-\d+_T2w.*\.tmp.*\.nii\.gz$")
    for path in out_dir.glob("sub-*/anat/.sub-*"):
        if tmp_name.match(path.name):
            path.unlink(missing_ok=True)


def _write_participants(out_dir: Path, records: list[dict]) -> None:
    lines = ["\t".join(PARTICIPANT_COLUMNS)]
    for rec in records:
        lines.append("\t".join(str(rec[k]) for k in PARTICIPANT_COLUMNS))
    write_text(out_dir / "participants.tsv", "\n".join(lines) + "\n")


def _manifest(seed: int, matrix: int, n_volumes: int, records: list[dict]) -> dict:
    params = {"generator": "umcam_lib.data.phantom", "version": PHANTOM_VERSION, "seed": int(seed),
              "matrix": int(matrix), "n_volumes": int(n_volumes)}
    fingerprint = value_hash(params)
    return {**params, "fingerprint": fingerprint, "subjects": records}


def generate_cohort(out_dir: str | Path, n_volumes: int, seed: int, matrix: int = 512, workers: int = 1,
                    progress: bool = True) -> list[Path]:
    """Write a BIDS-style synthetic cohort, reusing volumes already on disk.

    Layout::

        out_dir/participants.tsv     participant_id, gestational_age_weeks, seed, spacing_mm,
                                     thickness_mm, n_slices, matrix, positive_slices
        out_dir/cohort.json          parameters, fingerprint, one record per subject (with
                                     sha256 of both files)
        out_dir/sub-001/anat/sub-001_T2w.nii.gz                  uint16 image
        out_dir/sub-001/anat/sub-001_T2w_desc-brain_mask.nii.gz  uint8 mask

    A volume is regenerated only when its file is missing or differs from the record, or the
    seed, matrix or generator version changed. Files of subjects beyond ``n_volumes`` that an
    earlier call recorded are removed, so globbing the folder sees exactly this cohort.

    Parameters
    ----------
    out_dir : str or Path
        Cohort folder (created).
    n_volumes : int
        Number of subjects (>= 1).
    seed : int
        Cohort seed; volume ``i`` uses :func:`volume_seed` ``(seed, i)``.
    matrix : int
        In-plane matrix (512 = paper geometry).
    workers : int
        Processes generating in parallel (1 = in this process).
    progress : bool
        Show a progress bar (tqdm, on stderr).

    Returns
    -------
    list of Path
        Image paths in subject order; each mask is :func:`mask_path` of its image.
    """
    if not isinstance(n_volumes, (int, np.integer)) or n_volumes < 1:
        raise ValueError(f"generate_cohort: n_volumes must be a positive integer, got {n_volumes!r}")
    if not isinstance(workers, (int, np.integer)) or workers < 1:
        raise ValueError(f"generate_cohort: workers must be a positive integer, got {workers!r}")
    _check_args(seed, matrix, None)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = out_dir / "cohort.json"
    old = _load_manifest(manifest_path)
    old_by_index = {r.get("index"): r for r in old.get("subjects", []) if isinstance(r, dict)}
    _remove_stale(out_dir, old, int(n_volumes))

    records: dict[int, dict] = {}
    todo = []
    for i in range(int(n_volumes)):
        rec = old_by_index.get(i)
        if _record_valid(out_dir, rec, i, int(seed), int(matrix)):
            records[i] = rec
        else:
            todo.append(i)

    from tqdm import tqdm

    bar = tqdm(total=int(n_volumes), initial=len(records), desc="phantom cohort", unit="vol",
               disable=not progress)

    def done(rec: dict) -> None:
        records[rec["index"]] = rec
        ordered = [records[k] for k in sorted(records)]
        write_json(manifest_path, _manifest(seed, matrix, n_volumes, ordered))
        bar.update(1)

    try:
        if workers == 1 or len(todo) <= 1:
            for i in todo:
                done(_make_subject(str(out_dir), i, int(seed), int(matrix)))
        else:
            ctx = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=int(workers), mp_context=ctx) as pool:
                futures = [pool.submit(_make_subject, str(out_dir), i, int(seed), int(matrix)) for i in todo]
                for fut in futures:
                    done(fut.result())
    finally:
        bar.close()

    ordered = [records[i] for i in range(int(n_volumes))]
    write_json(manifest_path, _manifest(seed, matrix, n_volumes, ordered))
    _write_participants(out_dir, ordered)
    return [out_dir / rec["image"] for rec in ordered]
