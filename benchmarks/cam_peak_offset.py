"""Where does each layer's Grad-CAM peak, relative to the brain? And does that move with the image?

For a trained classifier of a run, prints per layer the mean offset (pixels, y down / x right)
of the map maximum from the brain's centroid on the positive validation slices, for the slices
as they are and flipped up-down / left-right. An offset that keeps its sign when the slice is
flipped is tied to the frame, not to the anatomy: the network reads its evidence out at a fixed
place relative to the image, which is the failure issue 8 diagnosed in the deep blocks.

Usage::

    python benchmarks/cam_peak_offset.py --run runs/quick                      # run's classifier
    python benchmarks/cam_peak_offset.py --run runs/quick --checkpoint /tmp/levers/base_s0 \\
        --set pooling=avg --set padding=zeros --set input_norm=imagenet --set equivariance=0
"""
from __future__ import annotations

import argparse
import sys

import numpy as np
import yaml

from umcam_lib.cam.gradcam import compute_cams
from umcam_lib.config import load_params, profile_path
from umcam_lib.data.artifacts import load_slices
from umcam_lib.train.classifier import load_classifier

LAYERS = ["block3", "block4", "block5", "head"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default="runs/quick")
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--checkpoint", default=None, help="folder with best.pt (default: RUN/classifier)")
    ap.add_argument("--set", action="append", default=[], help="classifier key=value the checkpoint was trained with")
    args = ap.parse_args(argv)
    cfg = dict(load_params(profile_path(args.profile))["classifier"])
    for item in args.set:
        key, _, value = item.partition("=")
        cfg[key] = yaml.safe_load(value)
    slices = load_slices(args.run)
    model = load_classifier(args.checkpoint or f"{args.run}/classifier", cfg)
    rows = slices.indices("val", positive_only=True)
    print(f"{len(rows)} positive validation slices; mean offset of the map maximum from the brain centroid (px)")
    for flip in ("none", "up-down", "left-right"):
        images, masks = slices.images[rows], slices.masks[rows]
        if flip == "up-down":
            images, masks = images[:, ::-1], masks[:, ::-1]
        elif flip == "left-right":
            images, masks = images[:, :, ::-1], masks[:, :, ::-1]
        maps = compute_cams(model, np.ascontiguousarray(images), LAYERS, progress=False)
        parts = []
        for j, layer in enumerate(LAYERS):
            off = []
            for i in range(len(rows)):
                py, px = np.unravel_index(int(maps[j, i].argmax()), maps[j, i].shape)
                ys, xs = np.nonzero(masks[i])
                off.append((py - ys.mean(), px - xs.mean()))
            off = np.asarray(off)
            parts.append(f"{layer} dy {off[:, 0].mean():+5.1f} dx {off[:, 1].mean():+5.1f}")
        print(f"flip {flip:10s} | " + " | ".join(parts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
