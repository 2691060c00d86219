"""The UNet seed spread of a run's segmentation rows, and whether another run's rows fall inside it.

Tables 1-2 of a run hold one UNet per segmentation row (seed ``seed`` of the profile). This
script retrains each variant of notebook 06 (and, with ``--variants``, any of them) of a finished
run with other UNet seeds, the run's pseudo labels and the profile's ``seg`` section unchanged,
scores validation and test in 3D as notebook 06 does (``seg.postprocess``, ``seg.tta``), and
tabulates per row: the run's own score (seed 0), the extra seeds, their mean, SD and range.
``--compare FIG`` adds the same rows of another run's ``table1.csv`` / ``table2.csv`` (e.g. the
committed figures of an earlier recipe) and says whether each lies within the seed range and
within mean +- 2 SD.

Choose nothing on the test columns: they are printed for the report.

Usage::

    python benchmarks/seg_seeds.py --run runs/quick --profile quick --seeds 1 2 \\
        --compare figures/quick --out benchmarks/results/seg_seeds_quick

Writes ``<out>.csv`` (one row per variant and split) and ``<out>.md``; the extra UNets go to
``<out>_unets/`` (git-ignored).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from umcam_lib.config import apply_overrides, check_section, load_params, profile_path
from umcam_lib.data.artifacts import load_slices
from umcam_lib.report import to_markdown
from umcam_lib.train import segmentation as S


def _table_rows(fig: Path) -> pd.DataFrame:
    frames = [pd.read_csv(fig / f"{t}.csv") for t in ("table1", "table2") if (fig / f"{t}.csv").is_file()]
    rows = pd.concat(frames, ignore_index=True)
    rows = rows[rows["section"] == "segmentation"].drop_duplicates(["method", "split"])
    return rows.set_index(["method", "split"])["dsc_mean"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="a finished run folder (notebooks 01-06)")
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--figures", default=None, help="the run's figures folder (default <run>/../../figures/<profile>)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--variants", nargs="+", default=list(S.VARIANTS))
    ap.add_argument("--compare", default=None, help="another run's figures folder whose rows to place in the spread")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="seg.KEY=VALUE",
                    help="override a key of the profile for the extra seeds (e.g. the recipe of the compared "
                         "run: --set seg.channels_last=true --set seg.eval_batch_size=64)")
    ap.add_argument("--out", required=True, help="output stem (writes .csv and .md)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    run = Path(args.run)
    fig = Path(args.figures) if args.figures else run.parent.parent / "figures" / args.profile
    params = apply_overrides(load_params(profile_path(args.profile)), args.overrides)
    cfg = check_section("seg", params["seg"])
    slices = load_slices(run)
    own = _table_rows(fig)
    other = _table_rows(Path(args.compare)) if args.compare else None
    work = Path(args.out).parent / (Path(args.out).name + "_unets")
    records = []
    for name in args.variants:
        targets = S.variant_targets(name, slices, run, cfg)
        for seed in args.seeds:
            t0 = time.perf_counter()
            model = S.train_variant(name, slices, targets, cfg, run, device="cpu", seed=seed,
                                    out_dir=work / f"{name}-s{seed}", progress=False)
            for split in ("val", "test"):
                d = S.evaluate_variant(model, slices, split, "cpu", False, batch_size=cfg.eval_batch_size,
                                       postprocess=cfg.postprocess, tta=cfg.tta)
                records.append({"method": name, "split": split, "seed": seed, "dsc": float(d["dsc"].mean())})
            print(f"{name} seed {seed}: {time.perf_counter() - t0:.0f} s, "
                  + ", ".join(f"{r['split']} {r['dsc']:.1f}" for r in records[-2:]), flush=True)
    extra = pd.DataFrame(records)
    out = []
    for (name, split), g in extra.groupby(["method", "split"], sort=False):
        values = np.array([own.get((name, split), np.nan), *g.sort_values("seed")["dsc"]])
        row = {"method": name, "split": split, "seed_0_this_run": values[0],
               **{f"seed_{s}": v for s, v in zip(sorted(g["seed"]), values[1:])},
               "mean": np.nanmean(values), "sd": np.nanstd(values, ddof=1), "min": np.nanmin(values),
               "max": np.nanmax(values)}
        if other is not None:
            ref = float(other.get((name, split), np.nan))
            row["compared"] = ref
            row["within_range"] = bool(row["min"] <= ref <= row["max"])
            row["within_2sd"] = bool(abs(ref - row["mean"]) <= 2 * row["sd"])
        out.append(row)
    table = pd.DataFrame(out)
    stem = Path(args.out)
    stem.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(stem.with_suffix(".csv"), index=False)
    stem.with_suffix(".md").write_text(
        f"# UNet seed spread of `{run}` (profile {args.profile}), 3D DSC %\n\n"
        f"Seeds {[0, *args.seeds]} (0: the run's own Tables 1-2); overrides for the extra seeds: "
        f"{args.overrides or 'none'}; compared: `{args.compare}`\n\n"
        + to_markdown(table) + "\n")
    print(table.round(1).to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
