"""The command line of ``segment``: ``python -m umcam_lib.segment`` (``umcam-segment``).

See :mod:`umcam_lib.segment` for what happens to each stack.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch

from ..data.nifti import DataError
from ..paths import resolve
from . import shipped
from .model import DEFAULT_METHOD, available_methods, desc_label, run_preprocessing
from ..train.seg_predict import TTA_VIEWS
from .run import BIAS_SIGMA_MM, DEFAULT_TTA_VIEWS, segment


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
                    help="on: average each slice over right-angle rotations/flips (--tta-views; 2-8x the cost); "
                         "run (default): as the run reported its UNets (seg.tta)")
    ap.add_argument("--tta-views", choices=tuple(TTA_VIEWS), default=DEFAULT_TTA_VIEWS,
                    help="which views TTA averages: d8 (all 8), rot4 (4 quarter turns), flip4 (flips and a half "
                         f"turn), flip2 (a left-right flip); default {DEFAULT_TTA_VIEWS}, validation's choice "
                         "(benchmarks/results/segment_tta_views.md)")
    ap.add_argument("--fast", action="store_true",
                    help="no test-time augmentation, whatever the model was selected with (--tta off): "
                         "one forward pass per slice; benchmarks/results/segment_bench_shipped_*.md gives the costs")
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
    if args.fast and args.tta == "on":
        ap.error("--fast turns test-time augmentation off; it cannot be given with --tta on")
    if args.fast:
        args.tta = "off"
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
                         dilate=args.dilate_mm, qc=not args.no_qc, tta_views=args.tta_views, bias_sigma_mm=args.bias_sigma_mm if args.bias_correct else None)
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
