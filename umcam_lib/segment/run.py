"""Segment a list of stacks: check every input, then one mask, QC picture and score row per stack
(see :mod:`umcam_lib.segment`).
"""
from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch
import torch.nn as nn
from tqdm import tqdm

from .. import io, metrics, runtime
from ..data import nifti
from ..paths import resolve
from ..scoring import largest_component_3d
from ..train.seg_predict import TTA_VIEWS
from . import output as so
from . import confidence as segment_confidence
from . import qc as segment_qc
from . import shipped
from .inputs import Job, find_jobs, output_label, read_input
from .model import DEFAULT_METHOD, Preprocessing, load_model, run_preprocessing
from .predict import stack_probs, to_file_axes, write_mask

SCORE_COLUMNS = ["image", "mask", "reference", "method", "shape", "spacing_mm", "slice_axis", "n_slices",
                 "gt_voxels", "pred_voxels", "volume_ml", "confidence", "largest_share", "dsc", "hd95_mm", "seconds",
                 "qc", "warning", "qc_flags"]


BIAS_SIGMA_MM = 80.0
#: The views ``segment`` averages with TTA on (``--tta-views``): chosen on validation among
#: :data:`~umcam_lib.train.seg_predict.TTA_VIEWS` (``benchmarks/results/segment_tta_views.md``:
#: flip2 ties d8 on validation over six trained UNets, at 2 forward passes instead of 8).
DEFAULT_TTA_VIEWS = "flip2"
"""``--bias-sigma-mm`` default: the scale of the ``--bias-correct`` field fit (mm), chosen on validation
(benchmarks/results/segment_robustness.md: 20, 40, 80, 160 mm tried)."""


class EmptyMaskWarning(UserWarning):
    """A stack where the UNet found no brain (its mask is written empty)."""


# --------------------------------------------------------------------------- the options
@dataclass(frozen=True)
class SegmentOptions:
    """How every stack of a :func:`segment` call is segmented and what is written beside its mask.

    Checked when made (``ValueError`` naming the option). ``postprocess`` and ``tta`` may be None
    (the UNet's own: :meth:`for_checkpoint` fills them from its checkpoint's config).

    Attributes
    ----------
    threshold : float
        Foreground probability at or above which a voxel is brain.
    batch_size : int
        Slices per forward pass.
    postprocess : {"none", "lcc"} or None
        ``lcc`` keeps the largest 3D connected component of each mask (native grid).
    tta : bool or None
        Average each slice's prediction over right-angle rotations and flips.
    tta_views : str
        Which views with ``tta`` (:data:`~umcam_lib.train.seg_predict.TTA_VIEWS`): ``d8`` (all 8,
        the study's), ``rot4``, ``flip4`` or ``flip2``; the default is validation's choice
        (:data:`DEFAULT_TTA_VIEWS`, ``benchmarks/segment_tta_views.py``).
    bids : bool or None
        BIDS-derivative output, the input's layout, or BIDS when every input has a BIDS name (None).
    dilate : float
        Grow each mask by this many millimetres (0: as predicted).
    qc : bool
        Write a QC picture per stack and the report page.
    bias_sigma_mm : float or None
        Divide each stack by its foreground intensity smoothed at this scale (mm); None: off.
    desc : str or None
        The ``desc`` label of the written names (:func:`~umcam_lib.segment.inputs.output_label`).
    mask_suffix : str
        Reference-mask naming rule (:func:`umcam_lib.data.nifti.mask_path_for`).
    device : str or torch.device
        ``auto``, ``cpu``, ``cuda`` or a device.
    amp : bool
        float16 autocast (CUDA only).
    progress : bool
        Progress bars.
    """

    threshold: float = 0.5
    batch_size: int = 32
    postprocess: str | None = None
    tta: bool | None = None
    tta_views: str = DEFAULT_TTA_VIEWS
    bids: bool | None = None
    dilate: float = 0.0
    qc: bool = True
    bias_sigma_mm: float | None = None
    desc: str | None = None
    mask_suffix: str = "_desc-brain_mask"
    device: str | torch.device = "auto"
    amp: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        if self.dilate < 0 or not np.isfinite(self.dilate):
            raise ValueError(f"--dilate-mm must be a finite number >= 0, got {self.dilate}")
        if self.bias_sigma_mm is not None and not self.bias_sigma_mm > 0:
            raise ValueError(f"--bias-correct sigma must be > 0 mm, got {self.bias_sigma_mm}")
        if self.tta_views not in TTA_VIEWS:
            raise ValueError(f"--tta-views must be one of {', '.join(TTA_VIEWS)}, got {self.tta_views!r}")
        if self.postprocess is not None and self.postprocess not in ("none", "lcc"):
            raise ValueError(f"postprocess must be 'none' or 'lcc', got {self.postprocess!r}")

    def for_checkpoint(self, config: dict[str, Any]) -> SegmentOptions:
        """These options with ``postprocess`` and ``tta`` settled (the checkpoint's ``config``
        where None: what the UNet was trained and selected with; ``none`` / off when not
        recorded) and ``device`` a :class:`torch.device`."""
        post = self.postprocess if self.postprocess is not None else str(config.get("postprocess", "none"))
        tta = bool(self.tta) if self.tta is not None else bool(config.get("tta", False))
        return replace(self, postprocess=post, tta=tta, device=runtime.as_device(self.device))


# --------------------------------------------------------------------------- one stack
class MaskPrediction(NamedTuple):
    """The written mask of one stack and how far to trust it (:mod:`umcam_lib.segment.confidence`)."""

    mask: np.ndarray        # uint8 0/1, shape (H, W, S), slice axis last
    confidence: float       # mean foreground probability on the mask's boundary (before dilation)
    largest_share: float    # share of the mask in its largest 3D component


def predict_mask(model: nn.Module, stack: nifti.Stack, prep: Preprocessing, options: SegmentOptions) -> MaskPrediction:
    """The written mask of one stack: predicted on the native grid, then ``postprocess`` and
    ``dilate``; with its boundary confidence and largest-component share.

    Returns
    -------
    MaskPrediction
        ``mask``: uint8 0/1, shape (H, W, S), slice axis last (as ``stack.image``).
    """
    probs = stack_probs(model, stack, prep, options.device, options.amp, options.batch_size, bool(options.tta),
                        options.bias_sigma_mm, options.tta_views)
    mask = (probs >= options.threshold).astype(np.uint8)
    if options.postprocess == "lcc":
        mask = largest_component_3d(mask.astype(bool)).astype(np.uint8)
    confidence = segment_confidence.boundary_confidence(probs, mask)
    if options.dilate > 0:
        mask = so.dilate_mm(mask, _geometry(stack), options.dilate)
    return MaskPrediction(mask, confidence, segment_confidence.largest_share(mask))


def _geometry(stack: nifti.Stack) -> tuple[float, float, float]:
    """Voxel size (mm) along the axes of ``stack.image`` (slice axis last)."""
    return (*stack.spacing, stack.thickness)


def _volume_ml(mask: np.ndarray, stack: nifti.Stack) -> float:
    """The mask's volume in mL (``mask`` on ``stack``'s grid, slice axis last)."""
    return float(mask.sum()) * float(np.prod(_geometry(stack))) / 1000.0


def write_qc_picture(job: Job, stack: nifti.Stack, mask: np.ndarray, out_dir: Path) -> Path:
    """``out_dir/qc/<the mask's path under out_dir>.png``: the stack with its mask (and reference)."""
    rel = job.out.relative_to(out_dir)
    path = out_dir / "qc" / rel.parent / (nifti.strip_nifti_ext(rel.name) + ".png")
    segment_qc.write_qc(path, stack.image, mask, stack.spacing, stack.mask if job.reference is not None else None,
                        title=f"{job.image.name}: {_volume_ml(mask, stack):.1f} mL")
    return path


def score_row(job: Job, stack: nifti.Stack, shape: Sequence[int], mask: np.ndarray, method: str) -> dict[str, Any]:
    """The :data:`SCORE_COLUMNS` of one stack but ``confidence``, ``largest_share``, ``seconds``,
    ``qc``, ``warning`` and ``qc_flags``: its mask's
    size and volume, and 3D DSC (%) / HD95 (mm) against the reference in the native grid (NaN
    without one; HD95 NaN for an empty mask)."""
    spacing = nifti.voxel_spacing(stack.affine)
    row = {"image": str(job.image), "mask": str(job.out), "reference": str(job.reference or ""),
           "method": method, "shape": "x".join(str(d) for d in shape),
           "spacing_mm": "x".join(f"{s:.4g}" for s in spacing), "slice_axis": stack.slice_axis,
           "n_slices": stack.n_slices, "gt_voxels": np.nan, "pred_voxels": int(mask.sum()),
           "volume_ml": _volume_ml(mask, stack), "dsc": np.nan, "hd95_mm": np.nan}
    if job.reference is not None:
        gt = np.moveaxis(stack.mask, -1, stack.slice_axis)
        pred = np.moveaxis(mask, -1, stack.slice_axis)
        row.update(gt_voxels=int(gt.sum()), dsc=metrics.dice(pred, gt),
                   hd95_mm=metrics.hd95(pred, gt, spacing=spacing) if mask.any() else np.nan)
    return row


def segment_one(job: Job, model: nn.Module, prep: Preprocessing, options: SegmentOptions, *,
                method: str, out_dir: Path) -> dict[str, Any]:
    """Segment one stack: read -> predict -> invert -> postprocess -> write mask (and QC) -> score.

    Parameters
    ----------
    job : Job
        The stack, its reference and the mask to write (:func:`~umcam_lib.segment.inputs.find_jobs`).
    model, prep
        The UNet and the preprocessing its slices were prepared with.
    options : SegmentOptions
        Settled (:meth:`SegmentOptions.for_checkpoint`).
    method : str
        Named in the mask's header, its BIDS sidecar and the score row.
    out_dir : Path
        The output folder (the QC picture's place mirrors the mask's under it).

    Returns
    -------
    dict
        One row of :data:`SCORE_COLUMNS` but ``qc_flags`` (set over the batch by :func:`write_summary`).

    Warns
    -----
    EmptyMaskWarning
        No brain found; the empty mask is still written.
    """
    t0 = time.perf_counter()
    stack, like = read_input(job)
    mask, confidence, share = predict_mask(model, stack, prep, options)
    warning = ""
    if not mask.any():
        warning = "no brain found: the mask is empty"
        warnings.warn(f"{job.image}: {warning}", EmptyMaskWarning, stacklevel=3)  # at segment()'s caller
    write_mask(to_file_axes(mask, stack, like), like, job.out, descrip=f"umcam_lib.segment {method}")
    if job.bids:
        io.write_json(job.out.with_name(nifti.strip_nifti_ext(job.out.name) + ".json"),
                      so.mask_sidecar(job.image, method))
    qc_path = str(write_qc_picture(job, stack, mask, out_dir)) if options.qc else ""
    return {**score_row(job, stack, like.shape, mask, method), "confidence": confidence, "largest_share": share,
            "qc": qc_path, "warning": warning, "seconds": time.perf_counter() - t0}


# --------------------------------------------------------------------------- the command
def segment(run_dir: str | Path | None, inputs: Sequence[str | Path], out_dir: str | Path, method: str = DEFAULT_METHOD,
            desc: str | None = None, mask_suffix: str = "_desc-brain_mask", device: str | torch.device = "auto",
            amp: bool = False, threshold: float = 0.5, batch_size: int = 32, progress: bool = True,
            postprocess: str | None = None, tta: bool | None = None, bids: bool | None = None,
            dilate: float = 0.0, qc: bool = True, bias_sigma_mm: float | None = None,
            models_dir: str | Path | None = None, unet: LoadedUNet | None = None,
            tta_views: str = DEFAULT_TTA_VIEWS) -> pd.DataFrame:
    """Segment every stack of ``inputs`` with ``method``'s UNet of ``run_dir``; see the module doc.

    Parameters
    ----------
    run_dir : path or None
        Pipeline run folder (the model and the preprocessing come from it). None: a shipped
        model of ``models_dir`` (:mod:`umcam_lib.segment.shipped`; ``method`` is then ``weak``,
        ``fullysup`` or a shipped method's name), its files verified against ``registry.json``.
    inputs : sequence of paths
        NIfTI files and/or folders.
    out_dir : path
        Where masks (and ``scores_desc-<label>.csv``, ``segment_desc-<label>.json``) go.
    method : str
        A trained UNet of the run (:func:`available_methods`).
    desc, mask_suffix, device, amp, threshold, batch_size, progress, postprocess, tta, bids, dilate, qc, bias_sigma_mm,
    tta_views
        The :class:`SegmentOptions` of the call (see there; ``postprocess`` / ``tta`` None: as
        the UNet was trained and selected, recorded in its checkpoint).
    models_dir : path, optional
        The shipped models used when ``run_dir`` is None (default the repository's ``models/``).
    unet : LoadedUNet, optional
        A UNet already loaded (:func:`load_unet`, or a model of your own with its
        preprocessing), used instead of loading one: e.g. to time segmenting apart from loading.

    Returns
    -------
    DataFrame
        One row per stack (:data:`SCORE_COLUMNS`); ``dsc`` / ``hd95_mm`` are NaN without a
        reference.

    Raises
    ------
    ValueError
        An option is out of range (:class:`SegmentOptions`).
    DataError
        An input or reference is missing or bad (all are checked before the first mask is written).

    Warns
    -----
    EmptyMaskWarning
        A stack's mask is empty (no brain found); its empty mask is still written.
    """
    t0 = time.perf_counter()
    options = SegmentOptions(threshold=threshold, batch_size=batch_size, postprocess=postprocess, tta=tta,
                             tta_views=tta_views, bids=bids, dilate=dilate, qc=qc, bias_sigma_mm=bias_sigma_mm, desc=desc,
                             mask_suffix=mask_suffix, device=runtime.as_device(device), amp=amp, progress=progress)
    out_dir = resolve(out_dir)
    if run_dir is None and unet is None:  # a shipped model: the registered name its choice gives
        method = shipped.model_name(shipped.read_registry(models_dir or shipped.MODELS_DIR), method)
    jobs = find_jobs(inputs, out_dir, options.desc, options.mask_suffix, options.bids, method)
    check_inputs(jobs, options.progress)
    model, info, prep, source = unet if unet is not None else load_unet(run_dir, method, options.device, models_dir)
    options = options.for_checkpoint(info.get("config", {}))
    rows = []
    for job in tqdm(jobs, desc=f"segmenting ({method})", unit="stack", disable=not options.progress):
        rows.append(segment_one(job, model, prep, options, method=method, out_dir=out_dir))
    use_bids = bool(jobs) and jobs[0].bids
    label = output_label(options.desc, use_bids, method)
    scores = write_summary(out_dir, rows, label, method, options.qc,
                           bids_sources=[str(resolve(i)) for i in inputs] if use_bids else None, source=source)
    write_record(out_dir / f"segment_desc-{label}.json", run_dir, info, prep, options, use_bids, jobs, rows,
                 seconds=time.perf_counter() - t0)
    return scores


class LoadedUNet(NamedTuple):
    """A UNet ready to segment: the model, what it is, its preprocessing and where it came from."""

    model: nn.Module
    info: dict[str, Any]      # method, and for a loaded checkpoint: checkpoint, epoch, score, config
    prep: Preprocessing
    source: str | Path        # the run folder, or the shipped model's folder (named in the records)


def load_unet(run_dir: str | Path | None, method: str, device: torch.device, models_dir: str | Path | None = None
              ) -> LoadedUNet:
    """The UNet of a :func:`segment` call, what it is, its preprocessing and its source folder.

    A run's UNet (:func:`~umcam_lib.segment.model.load_model`) when ``run_dir`` is given, else a
    shipped one (:func:`umcam_lib.segment.shipped.load`, its files verified).

    Returns
    -------
    model : torch.nn.Module
    info : dict
        ``method`` and, for a loaded UNet, ``checkpoint``, ``epoch``, ``score``, ``config``.
    prep : Preprocessing
    source : path
        The run folder, or the shipped model's folder (named in the records).
    """
    if run_dir is None:
        model, info, sp = shipped.load(models_dir or shipped.MODELS_DIR, method, device)
        return LoadedUNet(model, info, Preprocessing(sp["spacing_mm"], sp["image_size"]),
                          Path(info.get("checkpoint", ".")).parent)
    model, info = load_model(run_dir, method, device)
    return LoadedUNet(model, info, run_preprocessing(run_dir), run_dir)


def check_inputs(jobs: Sequence[Job], progress: bool = False) -> None:
    """Read and check every input (and reference) before the first mask is written.

    Raises
    ------
    DataError
        The first bad file (:func:`~umcam_lib.segment.inputs.read_input`).
    """
    for job in tqdm(jobs, desc="checking stacks", unit="stack", disable=not progress or len(jobs) < 2, leave=False):
        read_input(job)


def write_summary(out_dir: Path, rows: Sequence[dict[str, Any]], label: str, method: str, qc: bool,
                  bids_sources: Sequence[str] | None, source: str | Path) -> pd.DataFrame:
    """``scores_desc-<label>.csv``, the QC report page (``qc``) and, for BIDS output
    (``bids_sources``: the inputs, resolved), ``dataset_description.json`` and ``.bidsignore``.

    Returns
    -------
    DataFrame
        The scores (:data:`SCORE_COLUMNS`, one row per stack); ``attrs["label"]`` is ``label``.
    """
    scores = pd.DataFrame(list(rows), columns=SCORE_COLUMNS)
    scores["qc_flags"] = segment_confidence.flag_batch(scores.confidence, scores.volume_ml, scores.largest_share,
                                                    scores.warning.astype(bool))
    scores.attrs["label"] = label
    with io.atomic_path(out_dir / f"scores_desc-{label}.csv") as tmp:
        scores.to_csv(tmp, index=False, float_format="%.4f")
    if qc:
        segment_qc.write_report(out_dir / f"report_desc-{label}.html", scores,
                                title=f"Brain masks: {method} ({len(scores)} stacks)")
    if bids_sources is not None:
        io.write_json(out_dir / "dataset_description.json", so.dataset_description(method, source, list(bids_sources)))
        io.write_text(out_dir / ".bidsignore", so.BIDSIGNORE)
    return scores


def write_record(path: Path, run_dir: str | Path | None, info: dict[str, Any], prep: Preprocessing,
                 options: SegmentOptions, use_bids: bool, jobs: Sequence[Job], rows: Sequence[dict[str, Any]],
                 seconds: float) -> None:
    """``segment_desc-<label>.json``: the run, the model (``info``: method, checkpoint, ...; its
    config as ``unet``), the preprocessing, the settled options, and what was written."""
    io.write_json(path, {
        "run_dir": str(resolve(run_dir)) if run_dir is not None else None,
        **{k: v for k, v in info.items() if k != "config"},
        "unet": info.get("config", {}), "spacing_mm": prep.spacing_mm, "image_size": prep.image_size,
        "threshold": float(options.threshold), "postprocess": options.postprocess, "tta": bool(options.tta),
        "tta_views": options.tta_views if options.tta else None,
        "device": str(options.device), "amp": bool(options.amp), "bids": use_bids, "dilate_mm": float(options.dilate),
        "bias_correct_sigma_mm": options.bias_sigma_mm, "qc": bool(options.qc), "n_stacks": len(jobs),
        "n_empty": int(sum(bool(r["warning"]) for r in rows)), "seconds": round(seconds, 2),
        "masks": [str(j.out) for j in jobs]})
