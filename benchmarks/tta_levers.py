"""Score trained UNets of a run with and without test-time augmentation, and as seed ensembles.

Each UNet (a variant of ``--run``, or any folder with a ``best.pt``, such as one that
``benchmarks/seg_levers.py`` wrote) predicts every validation and test slice of the run twice:
plainly and averaged over the slice's 8 right-angle rotations and flips (``seg.tta``). With
``--ensemble`` the UNets given are also averaged (the mean of their probabilities, with TTA),
the cheapest way to measure what averaging UNet seeds would give. Scores are mean 3D DSC (%)
after the profile's ``seg.postprocess`` (``--postprocess`` overrides it). Choose on ``val_*``;
``test_*`` is for the report only.

Usage::

    python benchmarks/tta_levers.py --run runs/real --profile real FullySup UM-CAM+SPL
    python benchmarks/tta_levers.py --run runs/real --profile real --ensemble FullySup \\
        s1=/tmp/seg/p96s1 s2=/tmp/seg/p96s2

An argument ``LABEL=FOLDER`` names a checkpoint folder; a bare name is a variant of the run.
One JSON line per UNet (and one for the ensemble) is printed and appended to
``<out>/tta_levers.jsonl``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from umcam_lib.config import check_section, load_params, profile_path
from umcam_lib.data.artifacts import load_slices
from umcam_lib.scoring import evaluate_volumes, split_rows
from umcam_lib.train import segmentation as S


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("unets", nargs="+", metavar="NAME|LABEL=FOLDER")
    ap.add_argument("--run", default="runs/real")
    ap.add_argument("--profile", default="real")
    ap.add_argument("--out", default="/tmp/tta_levers")
    ap.add_argument("--ensemble", action="store_true", help="also score the mean of all the UNets given (with TTA)")
    ap.add_argument("--postprocess", choices=("none", "lcc"), help="default: the profile's seg.postprocess")
    ap.add_argument("--width", type=int, help="UNet width of the checkpoints (default: the profile's seg.width)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = check_section("seg", load_params(profile_path(args.profile))["seg"])
    post = args.postprocess or str(cfg["postprocess"])
    slices = load_slices(args.run)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lines, views = [], {}
    for item in args.unets:
        label, _, folder = item.partition("=")
        model = S.load_variant(args.run, label, args.width or int(cfg["width"]), out_dir=folder or None)
        res = {"unet": label, "folder": folder or str(S.variant_dir(args.run, label)), "run": args.run,
               "postprocess": post}
        for split in ("val", "test"):
            for tta in (False, True):
                rows, probs = S.predict_split(model, slices, split, "cpu", False, int(cfg["eval_batch_size"]), tta)
                if tta:
                    views.setdefault(split, []).append(probs)
                dsc = evaluate_volumes(slices, split, rows, probs > 0.5, postprocess=post)["dsc"].mean()
                res[f"{split}_{'tta' if tta else 'plain'}"] = round(float(dsc), 1)
        lines.append(res)
        print(json.dumps(res), flush=True)
    if args.ensemble and len(args.unets) > 1:
        res = {"unet": "ensemble(" + ",".join(u.partition("=")[0] for u in args.unets) + ")", "run": args.run,
               "postprocess": post}
        for split, probs in views.items():
            rows = split_rows(slices, split)  # the order predict_split used
            mean = np.mean(probs, axis=0)
            res[f"{split}_tta"] = round(float(evaluate_volumes(slices, split, rows, mean > 0.5,
                                                               postprocess=post)["dsc"].mean()), 1)
        lines.append(res)
        print(json.dumps(res), flush=True)
    with open(out / "tta_levers.jsonl", "a") as f:
        f.writelines(json.dumps(r) + "\n" for r in lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
