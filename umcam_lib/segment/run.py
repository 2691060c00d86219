"""Segment a list of stacks: check every input, then one mask, QC picture and score row per stack
(see :mod:`umcam_lib.segment`).
"""
from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch.nn as nn
from tqdm import tqdm

from .. import io, metrics, runtime
from ..data import nifti
from ..paths import resolve
from ..scoring import largest_component_3d
from . import output as so
from . import qc as segment_qc
from . import shipped
from .inputs import find_jobs, read_input
from .model import DEFAULT_METHOD, Preprocessing, desc_label, load_model, run_preprocessing
from .predict import segment_stack, to_file_axes, write_mask

SCORE_COLUMNS = ["image", "mask", "reference", "method", "shape", "spacing_mm", "slice_axis", "n_slices",
                 "gt_voxels", "pred_voxels", "volume_ml", "dsc", "hd95_mm", "seconds", "qc", "warning"]


BIAS_SIGMA_MM = 80.0


"""``--bias-sigma-mm`` default: the scale of the ``--bias-correct`` field fit (mm), chosen on validation
(benchmarks/results/segment_robustness.md: 20, 40, 80, 160 mm tried)."""


class EmptyMaskWarning(UserWarning):
    """A stack where the UNet found no brain (its mask is written empty)."""


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
