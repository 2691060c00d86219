"""Try classifier levers side by side and measure whether each layer's Grad-CAM localises the brain.

For every variant given on the command line this trains the slice classifier of a prepared run
(notebook 01's ``data/slices.npz``) from the run's ``classifier`` section updated by the
variant, then measures on the *validation* positives (choose on validation; the test split is
reported only with ``--test``):

- val F1 of the classifier;
- per layer (block1..block5, head): mean Dice (%) of the best grid threshold, and the pointing
  game (share of slices whose map maximum lies inside the brain);
- Average-CAM and UM-CAM of ``cam.layers``;
- the all-foreground floor (a mask of the whole slice).

Usage (one variant = comma-separated ``key=value`` of the classifier section, ``cam.target=...``
for the Grad-CAM target, else both ``logit`` and ``margin`` are measured; ``base`` = no change;
separate the pairs with ``;`` instead when a value holds commas, e.g. ``augment={rotation: 180, scale: [0.8, 1.8]}``)::

    python benchmarks/cam_levers.py --run runs/quick --out /tmp/levers \\
        base "pooling=lse" "pooling=lse,input_norm=zero_background,cam.target=margin"

Each variant's result is appended to ``<out>/levers.csv`` (one row per variant and seed), so a
lever table can be grown over several calls.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml

from umcam_lib.cam.diagnostics import layer_localisation
from umcam_lib.config import load_params, profile_path
from umcam_lib.data.artifacts import load_slices
from umcam_lib.train.classifier import build_classifier, load_classifier, metrics_table, train_classifier


def parse_variant(text: str) -> tuple[dict, dict]:
    """``"a=1,b=x,cam.target=margin"`` -> ({"a": 1, "b": "x"}, {"target": "margin"})."""
    clf, cam = {}, {}
    if text in ("", "base"):
        return clf, cam
    for item in text.split(";" if ";" in text else ","):  # ";" when a value holds commas
        key, _, value = item.partition("=")
        value = yaml.safe_load(value)
        if key.startswith("cam."):
            cam[key[4:]] = value
        else:
            clf[key] = value
    return clf, cam


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("variants", nargs="+")
    ap.add_argument("--run", default="runs/quick", help="run folder with data/slices.npz (notebook 01)")
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--out", default="/tmp/cam_levers")
    ap.add_argument("--seeds", default="0", help="comma-separated seeds")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--test", action="store_true", help="also report the test split")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    params = load_params(profile_path(args.profile))
    slices = load_slices(args.run)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    splits = ("val", "test") if args.test else ("val",)
    for text in args.variants:
        clf_over, cam_over = parse_variant(text)
        cfg = {**params["classifier"], **clf_over}
        cam = {**params["cam"], **cam_over}
        for seed in [int(s) for s in args.seeds.split(",")]:
            name = f"{text.replace('=', '-').replace(',', '_')}_s{seed}"
            t0 = time.perf_counter()
            model = build_classifier(cfg, seed=seed)
            train_classifier(model, slices, cfg, out / name, device="cpu", amp=False, seed=seed, progress=False)
            model = load_classifier(out / name, cfg)
            train_s = time.perf_counter() - t0
            f1 = metrics_table(model, slices, splits=splits).set_index("split")["f1"].to_dict()
            targets = [cam["target"]] if "target" in cam else ["logit", "margin"]
            for split, target in [(sp, t) for sp in splits for t in targets]:
                loc = layer_localisation(model, slices, split, cam["layers"], target=target,
                                         grid=cam["threshold_grid"])
                row = {"variant": text, "target": target, "seed": seed, "split": split,
                       "f1": round(float(f1[split]), 3), "train_s": round(train_s, 1)}
                for _, r in loc.iterrows():
                    row[f"{r['layer']}_dsc"] = round(float(r["dsc"]), 1)
                    row[f"{r['layer']}_pg"] = round(float(r["pointing"]), 2)
                print(json.dumps(row), flush=True)
                table = out / "levers.csv"
                df = pd.DataFrame([row])
                df.to_csv(table, mode="a", header=not table.exists(), index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
