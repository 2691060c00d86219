"""Try UNet (seg section) levers on a UNet of a prepared run.

Trains the FullySup UNet of ``--run`` (notebook 01's slices; ``--variant`` names another, e.g.
``UM-CAM``, whose labels notebooks 03-05 left in the run) with the run profile's ``seg``
section updated by ``key=value`` pairs, then prints one JSON line: validation and test 3D DSC
(without and with the largest-connected-component step; and both again with test-time
augmentation, ``*_tta_*``, the mean over each slice's 8 right-angle rotations and flips),
epochs and seconds. ``--trace K``
also prints both every K epochs (a learning curve); ``--seed`` retrains with another seed (the
spread a rerun would show). Choose on the validation numbers; the test numbers are printed
beside them for the report only.

Usage::

    python benchmarks/seg_levers.py --run runs/quick --profile quick NAME [key=value ...]
    python benchmarks/seg_levers.py --run runs/quick --profile quick w16 width=16
    python benchmarks/seg_levers.py --run runs/real --profile real --trace 10 p96 patch=96 epoch_slices=192
    python benchmarks/seg_levers.py --run runs/real --profile real --seed 1 --variant UM-CAM s1

Each result is appended to ``<out>/seg_levers.jsonl``.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd
import torch
import yaml

from umcam_lib.config import check_section, load_params, profile_path
from umcam_lib.data.artifacts import load_slices
from umcam_lib.scoring import evaluate_volumes
from umcam_lib.train import segmentation as S


def lighter_unet(width: int) -> torch.nn.Module:
    """BasicUNet (w/2, w, 2w, 4w, 8w, w/2) for a first-level ``width`` w: the full-resolution levels halved."""
    from monai.networks.nets import BasicUNet
    w = int(width)
    return BasicUNet(spatial_dims=2, in_channels=1, out_channels=2, features=(w // 2, w, 2 * w, 4 * w, 8 * w, w // 2))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("name")
    ap.add_argument("changes", nargs="*", metavar="key=value")
    ap.add_argument("--run", default="runs/quick")
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--out", default="/tmp/seg_levers")
    ap.add_argument("--trace", type=int, default=0, metavar="K",
                    help="also score validation and test every K epochs (a learning curve, one JSON line each)")
    ap.add_argument("--variant", default="FullySup",
                    help="the UNet to train: FullySup or a notebook-06 variant (Grad-CAM, UM-CAM, SPL, UM-CAM+SPL)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the UNet's weights and slice order")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--no-tta", action="store_true", help="skip the test-time-augmented scores (8 predictions per slice)")
    ap.add_argument("--unet", choices=("basic", "lighter"), default="basic",
                    help="lighter: BasicUNet with the first and last levels at half seg.width (w/2, w, 2w, 4w, 8w, "
                         "w/2; the speed lever of benchmarks/speed_levers.py), for this benchmark only")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = check_section("seg", load_params(profile_path(args.profile))["seg"])
    for kv in args.changes:
        key, _, value = kv.partition("=")
        if key not in cfg:
            ap.error(f"unknown seg key {key!r}")
        cfg = cfg.replace(**{key: yaml.safe_load(value)})  # a checked copy (sections are frozen)
    slices = load_slices(args.run)
    out = Path(args.out) / args.name
    t0 = time.time()

    def scores(model: torch.nn.Module, tta: bool = False) -> dict[str, float]:
        res = {}
        for split in ("val", "test"):
            rows, probs = S.predict_split(model, slices, split, "cpu", False, cfg.eval_batch_size, tta=tta)
            for post in ("none", "lcc"):
                d = evaluate_volumes(slices, split, rows, probs > 0.5, postprocess=post)
                res[f"{split}_{'tta_' if tta else ''}dsc_{post}"] = round(float(d["dsc"].mean()), 1)
        return res

    def trace(epoch: int, model: torch.nn.Module) -> None:
        if args.trace and epoch % args.trace == 0:
            print(json.dumps({"name": args.name, "epoch": epoch, "seconds": round(time.time() - t0),
                              **scores(model)}), flush=True)

    if args.unet == "lighter":  # the training loop builds its UNet through this name
        from umcam_lib.train import seg_train
        seg_train.build_unet = lighter_unet
    targets = S.variant_targets(args.variant, slices, args.run, cfg)
    model = S.train_variant(args.variant, slices, targets, cfg, args.run, device="cpu", seed=args.seed, out_dir=out,
                            progress=False, on_epoch=trace)
    res = {"name": args.name, "changes": args.changes, "variant": args.variant, "unet": args.unet, "seed": args.seed, "seconds": round(time.time() - t0), **scores(model),
           **({} if args.no_tta else scores(model, tta=True))}
    res["epochs"] = len(pd.read_csv(out / "history.csv"))
    print(json.dumps(res))
    with open(Path(args.out) / "seg_levers.jsonl", "a") as f:
        f.write(json.dumps(res) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
