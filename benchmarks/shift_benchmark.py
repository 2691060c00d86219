"""The shift benchmark (issue 34, item 1): the extractor on stacks unlike its one training fetus.

Two halves built the same way from the CC0 stacks (:mod:`umcam_lib.segment.shift`):

* **validation half**: every case of :data:`~umcam_lib.segment.shift.CASES` made from sub-01's
  validation stack (``sub-01_run-6``, the stack the shipped models were chosen on). Model choices
  may be made on it, beside plain validation;
* **test half**: the same cases made from sub-02's three stacks (taken in turn). It is reported
  and never chosen on.

Each case's parameters are drawn from its ranges with a fixed seed (case index, and +1000 for
the test half), so the cases are the same on every machine. Each shifted stack is written as a
NIfTI file with its mask beside it and segmented by ``umcam_lib.segment.segment`` exactly as the
command does (native grid, the model's default TTA and post-processing); its 3D DSC is scored on
the stack's own grid against the shifted mask.

Usage::

    OMP_NUM_THREADS=2 python benchmarks/shift_benchmark.py --models weak,fullysup \\
        --out benchmarks/results/shift_benchmark_shipped
    OMP_NUM_THREADS=2 python benchmarks/shift_benchmark.py --run runs/real \\
        --models segmenter/fs-s0,segmenter/dr-s0 --out /tmp/levers     # segment-only UNets of a run

Writes ``--out`` ``.csv`` (one row per case and model: the case's parameters, geometry, brain
volume, DSC, HD95, the mask's confidence (:mod:`umcam_lib.segment.confidence`), seconds) and
``.md`` (per-case DSC side by side, mean and minimum per half, and how well confidence ranks the
cases by DSC: Spearman's rho per model).
"""
from __future__ import annotations

import argparse
import re
import sys
import time
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from umcam_lib.data.fetch import DATASET, resolve_root  # noqa: E402
from umcam_lib.data.nifti import read_stack, stack_ref  # noqa: E402
from umcam_lib.segment import shift as sh  # noqa: E402

#: The halves: name -> source stacks (file names without extension) and the seed offset.
HALVES = {"val": (["sub-01_run-6_T2w"], 0), "test": (["sub-02_run-1_T2w", "sub-02_run-2_T2w", "sub-02_run-3_T2w"], 1000)}


def slug(text: str) -> str:
    """``another plane (axis 0)`` -> ``another-plane-axis-0``."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def build_cases(cc0: Path, work: Path, seed: int = 0) -> pd.DataFrame:
    """Write every case of both halves under ``work/<half>/``; return one row per case."""
    rows = []
    for half, (sources, offset) in HALVES.items():
        folder = work / half
        folder.mkdir(parents=True, exist_ok=True)
        stacks = {}
        for name in sources:
            hits = list(cc0.rglob(f"{name}.nii*"))
            if not hits:
                raise FileNotFoundError(f"{cc0}: no {name}.nii[.gz] (is this the CC0 folder?)")
            stacks[name] = read_stack(stack_ref(hits[0]))
        for i, case in enumerate(sh.CASES):
            source = sources[i % len(sources)]
            st = stacks[source]
            shift = sh.draw_case(case, seed + offset + i)
            spacing = (float(st.spacing[0]), float(st.spacing[1]), float(st.thickness))
            img, msk, sp = sh.make_case(st.image, st.mask, spacing, shift, seed=seed + offset + i)
            stem = f"{half}-{i:02d}-{slug(case)}_T2w"
            affine = np.diag([*sp, 1.0])
            nib.save(nib.Nifti1Image(img, affine), str(folder / f"{stem}.nii.gz"))
            nib.save(nib.Nifti1Image(msk, affine), str(folder / f"{stem}_desc-brain_mask.nii.gz"))
            rows.append({"half": half, "stack": stem, **sh.case_table_row(case, source, shift, msk, sp)})
            print(f"{half} {i:2d} {case:30s} from {source}: {msk.shape} at {sp[0]:.2f}x{sp[1]:.2f}x{sp[2]:.2f} mm, "
                  f"brain {rows[-1]['brain_ml']} mL", flush=True)
    return pd.DataFrame(rows)


def cached_scores(out: Path, tta_views: str) -> pd.DataFrame | None:
    """The scores ``segment`` wrote into ``out`` before, when they can stand for a new call: the
    record names a checkpoint that still exists and is older than the scores, and the same TTA
    views (a record from before ``--tta-views`` averaged ``d8``). None otherwise."""
    import json

    records, tables = sorted(out.glob("segment_desc-*.json")), sorted(out.glob("scores_desc-*.csv"))
    if len(records) != 1 or len(tables) != 1:
        return None
    record = json.loads(records[0].read_text())
    checkpoint = Path(str(record.get("checkpoint", "")))
    views = record.get("tta_views") or ("d8" if record.get("tta") else None)
    want = tta_views if record.get("tta") else None
    if not checkpoint.is_file() or checkpoint.stat().st_mtime >= tables[0].stat().st_mtime or views != want:
        return None
    return pd.read_csv(tables[0])


def score(work: Path, cases: pd.DataFrame, models: list[str], run: Path | None = None, reuse: bool = False,
          tta_views: str | None = None) -> pd.DataFrame:
    """Segment every case with each shipped model (or each UNet of ``run``); one row per case and model.

    ``tta_views``: the views ``segment`` averages (default its own); ``reuse``: take a model's
    scores from an earlier call where they still hold (:func:`cached_scores`)."""
    from umcam_lib.segment import DEFAULT_TTA_VIEWS, EmptyMaskWarning, segment

    views = tta_views or DEFAULT_TTA_VIEWS
    out = []
    for model in models:
        for half in HALVES:
            t0 = time.perf_counter()
            folder = work / "out" / slug(model) / half
            sc = cached_scores(folder, views) if reuse else None
            if sc is None:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", EmptyMaskWarning)
                    sc = segment(run, [work / half], folder, method=model, device="cpu", progress=False, qc=False,
                                 bids=False, tta_views=views)
            else:
                print(f"{model} {half}: reusing {folder}", flush=True)
            sc = sc.assign(stack=[Path(p).name.split(".nii")[0] for p in sc["image"]])
            print(f"{model} {half}: mean DSC {sc['dsc'].mean():.1f} in {time.perf_counter() - t0:.0f} s", flush=True)
            out.append(sc[["stack", "dsc", "hd95_mm", "volume_ml", "confidence", "seconds"]]
                       .assign(model=model, half=half))
    scores = pd.concat(out, ignore_index=True).rename(columns={"volume_ml": "predicted_ml"})
    return cases.merge(scores, on=["half", "stack"], how="left")


def write_report(table: pd.DataFrame, out: Path, command: str) -> None:
    """``out.csv`` and ``out.md``: per-case DSC of each model, and mean / minimum per half."""
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out.with_suffix(".csv"), index=False, float_format="%.2f")
    models = list(dict.fromkeys(table["model"]))
    piv = table.pivot_table(index=["half", "case", "source", "brain_ml", "spacing_mm", "shape"], columns="model",
                            values="dsc", sort=False).reset_index()
    lines = ["# The shift benchmark: the extractor on stacks unlike its training fetus", "",
             f"`{command}`", "",
             "Cases made from the CC0 stacks by `umcam_lib.segment.shift` (brain size, resolution and "
             "slice thickness, acquisition plane, field of view, number of slices, contrast and noise); the "
             "validation half from sub-01_run-6, the test half from sub-02's three stacks. 3D DSC (%) of "
             "`python -m umcam_lib.segment` on each case's own grid, against the shifted reference mask.", "",
             "| half | case | source | brain (mL) | spacing (mm) | shape | " + " | ".join(models) + " |",
             "|---|---|---|---|---|---|" + "---|" * len(models)]
    for d in piv.to_dict("records"):  # not itertuples: a model named segmenter/x is no field name
        lines.append(f"| {d['half']} | {d['case']} | {d['source'].replace('_T2w', '')} | {d['brain_ml']:.0f} | "
                     f"{d['spacing_mm']} | {d['shape']} | " + " | ".join(f"{d[m]:.1f}" for m in models) + " |")
    lines += ["", "| half | " + " | ".join(f"{m} mean | {m} min" for m in models) + " |",
              "|---|" + "---|---|" * len(models)]
    for half, g in table.groupby("half", sort=False):
        cells = []
        for m in models:
            d = g[g["model"] == m]["dsc"]
            cells += [f"{d.mean():.1f}", f"{d.min():.1f}"]
        lines.append(f"| {half} | " + " | ".join(cells) + " |")
    if "confidence" in table:
        from scipy.stats import spearmanr

        rhos = []
        for m in models:
            d = table[table["model"] == m]
            rhos.append(f"{m} {spearmanr(d['confidence'], d['dsc']).statistic:.2f}")
        lines += ["", "Does the QC page's confidence (mean foreground probability on the mask's boundary) rank "
                  "the cases as DSC does? Spearman's rho over both halves: " + ", ".join(rhos) + "."]
    secs = table["seconds"]
    lines += ["", f"Seconds per stack (segment, 2 CPU threads, TTA as shipped): median {secs.median():.1f}, "
              f"max {secs.max():.1f}."]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cc0", default=DATASET, help="the CC0 folder (default: the local copy or a download)")
    ap.add_argument("--models", default="weak,fullysup",
                    help="shipped models (models/registry.json), or with --run that run's UNets "
                         "(e.g. segmenter/NAME), comma-separated")
    ap.add_argument("--run", type=Path, default=None, help="a run folder whose UNets --models names (default: shipped)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/umcam-shift"), help="where the cases and masks are written")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "shift_benchmark_shipped")
    ap.add_argument("--tta-views", default=None, help="views segment averages with TTA (default: segment's own)")
    ap.add_argument("--reuse", action="store_true",
                    help="take a model's scores from --work where an earlier call left them and they still hold")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    cases = build_cases(resolve_root(args.cc0), args.work, args.seed)
    table = score(args.work, cases, [m.strip() for m in args.models.split(",") if m.strip()], args.run,
                  reuse=args.reuse, tta_views=args.tta_views)
    command = "OMP_NUM_THREADS=2 python benchmarks/shift_benchmark.py " + " ".join(argv or sys.argv[1:])
    write_report(table, args.out, command.strip())
    print(f"wrote {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
