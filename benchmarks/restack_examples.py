"""A picture of the stacks ``segmenter --restack`` cuts from one training stack: the stack itself,
its reslices into the two other planes and its tight crop, each with its brain mask.

Usage (a real-profile run folder with notebook 01 done; seconds)::

    python benchmarks/restack_examples.py runs/real --out benchmarks/results/restack_examples.png
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from umcam_lib.data import load_slices  # noqa: E402
from umcam_lib.io import save_figure  # noqa: E402
from umcam_lib.segment import restack as rs  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path, help="a run folder with notebook 01's slices")
    ap.add_argument("--volume", type=int, default=None, help="training volume to show (default: the first)")
    ap.add_argument("--per-row", type=int, default=5, help="slices shown per stack")
    ap.add_argument("--window", type=int, default=144, help="pixels shown around the slice centre")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "restack_examples.png")
    args = ap.parse_args(argv)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    slices = load_slices(args.run)
    vol = int(args.volume if args.volume is not None else slices.volume_ids("train")[0])
    rows = np.flatnonzero((slices.volume == vol) & (slices.split == "train"))
    if not len(rows):
        raise SystemExit(f"--volume {vol}: not a training volume of {args.run}")
    pos = rows[slices.labels[rows] == 1]
    one = slices.volumes["volume"] == vol
    volumes = slices.volumes.assign(split=np.where(one, "train", "val"))  # only this stack is cut
    sub = slices.__class__(**{**slices.__dict__, "split": np.where(slices.volume == vol, "train", "val"),
                              "volumes": volumes})
    targets = {"index": pos, "maps": slices.masks[pos].astype(np.float32)}
    both, _, made = rs.with_restacks(sub, targets, rs.Restack())
    stacks = [("the training stack (axial)", rows)]
    first = int(slices.volumes["volume"].max()) + 1
    for i, kind in enumerate(made["kind"]):
        stacks.append((f"{kind}: " + {"axis0": "resliced across rows", "axis1": "resliced across columns",
                                      "tight": f"cropped, margin {made['margin_mm'][i]:g} mm"}[kind],
                       np.flatnonzero(both.volume == first + i)))
    size = both.images.shape[-1]
    lo, hi = size // 2 - args.window // 2, size // 2 + args.window // 2
    window = (slice(max(lo, 0), min(hi, size)),) * 2  # the centre of the slices (the rest is padding)
    fig, axes = plt.subplots(len(stacks), args.per_row, figsize=(2.2 * args.per_row, 2.4 * len(stacks)))
    for r, (title, idx) in enumerate(stacks):
        idx = idx[both.labels[idx] == 1]
        pick = idx[np.linspace(0, len(idx) - 1, args.per_row).round().astype(int)]
        for c, row in enumerate(pick):
            ax = axes[r, c]
            ax.imshow(both.images[row][window], cmap="gray", vmin=0, vmax=1)
            ax.contour(both.masks[row][window], [0.5], colors="lime", linewidths=0.8)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(title, fontsize=8)
    name = str(slices.volumes.loc[one, "name"].iloc[0]) if "name" in slices.volumes else f"volume {vol}"
    fig.suptitle(f"segmenter --restack: extra training stacks cut from {name} (brain mask in green)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
