"""Segment new stacks with a trained UNet of a run: one brain mask per stack, in its own grid.

::

    python -m umcam_lib.segment RUN_DIR INPUT [INPUT ...] --out OUT [--method UM-CAM+SPL]
    python -m umcam_lib.segment RUN_DIR --list
    python -m umcam_lib.segment INPUT [INPUT ...] --out OUT [--model weak|fullysup] [--models DIR]
    python -m umcam_lib.segment --list

Without a run folder (the first argument is one when it holds ``seg/``, ``data/fingerprint.json``
or ``provenance/01.json``; ``--run RUN_DIR`` names one explicitly) the UNets shipped in the
repository's ``models/`` are used (:mod:`umcam_lib.segment.shipped`, written by
``python -m umcam_lib.segment.ship runs/real``): ``--model weak`` (the default: the weakly supervised UNet
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
   UNet was trained with ``seg.tta: true``, averaged over views of the slice: by default the
   slice and its left-right mirror, ``--tta-views flip2``, which validation could not tell from
   all 8 right-angle rotations and flips, ``d8``, at a quarter of the cost);
4. the inverse geometry (:func:`invert`): un-crop / un-pad, resample each slice's probabilities
   back to the native in-plane grid (the same edge-aligned linear interpolation), threshold at
   ``--threshold``, move the slice axis back;
4b. with ``--postprocess lcc`` (the default when the UNet was trained with
   ``seg.postprocess: lcc``, as in the real profile), keep the largest 3D connected component;
4c. with ``--dilate-mm X``, grow the mask by X millimetres (Euclidean, with the voxel spacing
   of each axis: :func:`umcam_lib.segment.output.dilate_mm`);
5. write the mask (uint8 0/1) with the input's header, so shape, affine, qform and sform equal
   the input's, and a QC picture (``OUT/qc/...png``, :mod:`umcam_lib.segment.qc`; ``--no-qc``
   skips it). A stack where no brain is found gets an empty mask and a warning, not an error.

Where the masks go (``--bids`` / ``--no-bids``; default: BIDS when every input's file name is a
BIDS name, ``sub-<label>_..._<suffix>.nii[.gz]``):

* BIDS derivative: ``OUT/sub-01[/ses-2]/anat/sub-01[_ses-2]_run-1_desc-brain_mask.nii.gz``
  (:func:`umcam_lib.segment.output.bids_mask_path`) with a JSON sidecar (``Type``, ``Sources``),
  ``OUT/dataset_description.json`` (``DatasetType: derivative``, ``GeneratedBy`` with the
  package version and git commit) and ``OUT/.bidsignore`` for the files below;
* otherwise ``<stem>_desc-<label>_mask.nii.gz``; folders keep their layout under ``OUT``.

``<label>`` is ``--desc``, by default ``brain`` for BIDS output and the method in lower-case
letters and digits (``umcamspl``) otherwise.

Clinical stacks: intensities are normalised between robust percentiles, so their scale (x1000,
x0.001) does not matter; ``--bias-correct`` (``--bias-sigma-mm``) divides each stack by a smooth
multiplicative field first (:func:`umcam_lib.segment.output.bias_correct`; opt-in, see
docs/segment.md for what it was measured to do).

A reference mask beside an input (``X_T2w.nii.gz`` -> ``X_T2w_desc-brain_mask.nii.gz``, the
rule of ``--mask-suffix``) is checked like the pipeline's masks and scored in 3D in the native
grid: ``OUT/scores_desc-<label>.csv`` holds one row per stack (``volume_ml``; ``dsc`` in %,
``hd95_mm`` in mm, :mod:`umcam_lib.metrics`, empty for stacks without a reference; ``seconds``;
``warning``; and, with or without a reference, ``confidence``, ``largest_share`` and ``qc_flags`` of
:mod:`.confidence`), ``OUT/report_desc-<label>.html`` shows every stack's QC picture with them,
flagged and least confident stacks first, and ``OUT/segment_desc-<label>.json`` records the run,
method, checkpoint and preprocessing.

Bad input: every input (and reference) is read and checked before the first mask is written; an
error names the file (:class:`~umcam_lib.data.nifti.DataError`). Each file is written atomically
(:mod:`umcam_lib.io`), so an interrupted call leaves no half-written mask.

Modules: :mod:`.inputs` (which stacks, which references, where masks go), :mod:`.model` (the
UNet and its preprocessing), :mod:`.predict` (one stack through the UNet and back to its grid), :mod:`.confidence`
(how far to trust a mask without a reference),
:mod:`.run` (:func:`segment`, every stack of a call; :func:`segment_one`, one stack;
:class:`SegmentOptions`), :mod:`.output` (BIDS names, sidecars,
dilation, bias correction), :mod:`.qc` (QC pictures and the report page), :mod:`.shipped` (the
models in ``models/``), :mod:`.ship` (writing them), :mod:`.segmenter` (training a UNet for
``segment`` alone), :mod:`.cli` (the command line).
"""
from .model import (DEFAULT_METHOD, Preprocessing, run_preprocessing, available_methods, desc_label,
                    method_dir, load_model)
from .inputs import (Job, output_label, output_path, find_jobs, read_input)
from .predict import (resampled_shape, uncenter_fit, invert, preprocess, stack_probs, segment_stack, to_file_axes,
                      write_mask)
from .run import (SCORE_COLUMNS, BIAS_SIGMA_MM, DEFAULT_TTA_VIEWS, EmptyMaskWarning, SegmentOptions, segment, segment_one, LoadedUNet, load_unet)
from .cli import (is_run_dir, list_shipped, main)

__all__ = ["DEFAULT_METHOD", "Preprocessing", "run_preprocessing", "available_methods", "desc_label", "method_dir",
           "load_model", "Job", "output_label", "output_path", "find_jobs", "read_input", "resampled_shape",
           "uncenter_fit", "invert", "preprocess", "stack_probs", "segment_stack", "to_file_axes", "write_mask", "SCORE_COLUMNS",
           "BIAS_SIGMA_MM", "DEFAULT_TTA_VIEWS", "EmptyMaskWarning", "SegmentOptions", "segment", "LoadedUNet", "load_unet", "segment_one", "is_run_dir",
           "list_shipped", "main"]
