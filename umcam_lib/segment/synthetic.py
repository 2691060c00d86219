"""Domain randomisation for the extractor: synthetic training stacks drawn from the phantom with
wider anatomy and acquisition than the paper cohort, and random tissue contrasts.

The shipped extractor learned from six stacks of one fetus. SynthSeg and SynthStrip generalise
across scanners, contrasts and ages by training on images drawn from label maps with random
contrast, resolution, bias and artefacts; the study owns a generator of labelled maternal-fetal
anatomy, the phantom (:mod:`umcam_lib.data.phantom`), so the same idea costs a few seconds per
stack here. :data:`DOMAIN_RANDOMISATION` is the widened draw:

- gestational age 20-36 weeks (brains of about 60-400 mL, the range of the shift benchmark);
- field of view 256-384 mm, slices 2.5-7 mm thick, 14-54 of them;
- every tissue's intensity uniform in [0.02, 1] (no T2 order survives, so the UNet has to learn
  the brain's shape and its boundary, not its brightness);
- bias fields three times the cohort's, noise up to 0.08 of the amniotic fluid's intensity.

The slices are prepared exactly as notebook 01 prepares a run's stacks (the run's in-plane
spacing and slice size), and enter training as extra training stacks with their brain masks
(:func:`with_synthetic`). Only a fully supervised UNet may learn from them: the weak route
sees image-level labels only, and synthetic stacks would need pseudo labels of their own.

Prepared slices are cached under ``RUN_DIR/segmenter/_synthetic/<key>.npz`` (key: count, seed,
matrix, the run's grid and the phantom's version), written atomically.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.artifacts import SliceSet
from ..data.nifti import Stack, StackRef
from ..data.phantom import PHANTOM_VERSION, generate_volume, volume_seed
from ..data.phantom_anatomy import AnatomyRanges
from ..data.prepare import prepare_stack
from ..hashing import value_hash
from ..io import save_npz
from ..paths import resolve

DOMAIN_RANDOMISATION = AnatomyRanges(fov_scale=(0.5, 0.75), thickness_mm=(2.5, 7.0), n_slices=(14, 54),
                                     gestational_age=(20.0, 36.0), random_contrast=True, bias_scale=3.0,
                                     noise=(0.01, 0.08))
"""The widened draws of a synthetic training stack (see the module docstring)."""

SYNTHETIC_SEED = 7000
"""Default seed of the synthetic stacks (volume ``i`` uses ``volume_seed(seed, i)``)."""


def synthetic_stack(seed: int, matrix: int = 256, ranges: AnatomyRanges = DOMAIN_RANDOMISATION) -> Stack:
    """One domain-randomised phantom stack as a :class:`~umcam_lib.data.nifti.Stack`.

    Parameters
    ----------
    seed : int
        Seed of the phantom volume.
    matrix : int
        In-plane pixels (the field of view stays physical; 256 gives 1.0-1.5 mm pixels).
    ranges : AnatomyRanges
        The draws (default :data:`DOMAIN_RANDOMISATION`).

    Returns
    -------
    Stack
        ``image`` float32 and ``mask`` uint8, shape (matrix, matrix, S), slice axis last.
    """
    vol = generate_volume(int(seed), int(matrix), None, ranges)
    name = f"synthetic-{seed}"
    return Stack(image=vol.image.astype(np.float32), mask=vol.mask, spacing=(vol.spacing[0], vol.spacing[1]),
                 thickness=vol.spacing[2], slice_axis=2, affine=vol.affine,
                 ref=StackRef(Path(name), Path(name), "synthetic", name))


def synthetic_slices(n_volumes: int, spacing_mm: float, image_size: int, seed: int = SYNTHETIC_SEED,
                     matrix: int = 256, cache_dir: str | Path | None = None) -> dict[str, np.ndarray]:
    """Prepared slices of ``n_volumes`` domain-randomised stacks on a run's grid.

    Returns
    -------
    dict
        ``images`` float32 (N, image_size, image_size) in [0, 1], ``masks`` uint8 (N, ...),
        ``volume`` int32 (N,): 0 .. n_volumes - 1, ``slice_index`` int32 (N,),
        ``brain_ml`` float64 (n_volumes,): each stack's brain volume.
    """
    if n_volumes < 1:
        raise ValueError(f"synthetic stacks: expected a count >= 1, got {n_volumes}")
    key = value_hash({"n": int(n_volumes), "seed": int(seed), "matrix": int(matrix), "spacing_mm": float(spacing_mm),
                      "image_size": int(image_size), "phantom": PHANTOM_VERSION,
                      "ranges": dataclasses.asdict(DOMAIN_RANDOMISATION)})[:16]
    path = resolve(cache_dir) / f"{key}.npz" if cache_dir is not None else None
    if path is not None and path.is_file():
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    images, masks, volume, index, brain_ml = [], [], [], [], []
    for i in range(int(n_volumes)):
        stack = synthetic_stack(volume_seed(int(seed), i), matrix)
        im, m, _ = prepare_stack(stack, float(spacing_mm), int(image_size))
        images.append(im)
        masks.append(m)
        volume.append(np.full(len(im), i, np.int32))
        index.append(np.arange(len(im), dtype=np.int32))
        brain_ml.append(float(stack.mask.sum()) * stack.spacing[0] * stack.spacing[1] * stack.thickness / 1000.0)
    out = {"images": np.concatenate(images).astype(np.float32), "masks": np.concatenate(masks).astype(np.uint8),
           "volume": np.concatenate(volume), "slice_index": np.concatenate(index),
           "brain_ml": np.asarray(brain_ml, np.float64)}
    if path is not None:
        save_npz(path, **out)
    return out


def with_synthetic(slices: SliceSet, synthetic: dict[str, np.ndarray]) -> SliceSet:
    """``slices`` with the synthetic stacks added as training stacks (volume ids after the run's,
    named ``synthetic-<i>``); validation and test are untouched.

    Raises
    ------
    ValueError
        The synthetic slices are not on the run's slice size.
    """
    if synthetic["images"].shape[1:] != slices.images.shape[1:]:
        raise ValueError(f"synthetic slices are {synthetic['images'].shape[1:]}, the run's {slices.images.shape[1:]}")
    first = int(slices.volumes["volume"].max()) + 1 if len(slices.volumes) else 0
    vol_ids = synthetic["volume"].astype(np.int32) + first
    n_vol = int(synthetic["volume"].max()) + 1
    rows = pd.DataFrame({"volume": np.arange(first, first + n_vol), "subject": "synthetic", "split": "train",
                         "n_slices": np.bincount(synthetic["volume"], minlength=n_vol)})
    if "name" in slices.volumes:
        rows["name"] = [f"synthetic-{i}" for i in range(n_vol)]
    labels = synthetic["masks"].reshape(len(synthetic["masks"]), -1).any(axis=1).astype(np.uint8)
    return dataclasses.replace(
        slices,
        images=np.concatenate([slices.images, synthetic["images"]]),
        masks=np.concatenate([slices.masks, synthetic["masks"]]),
        labels=np.concatenate([slices.labels, labels]),
        volume=np.concatenate([slices.volume, vol_ids]),
        slice_index=np.concatenate([slices.slice_index, synthetic["slice_index"]]),
        split=np.concatenate([slices.split, np.full(len(vol_ids), "train", dtype=slices.split.dtype)]),
        volumes=pd.concat([slices.volumes, rows], ignore_index=True))
