"""Cheaper test-time augmentation for ``segment`` (issue 34, item 5): which views to average.

``segment`` averages each slice over the 8 right-angle rotations and flips (``d8``), 8 forward
passes per slice. Its cheaper subgroups (:data:`~umcam_lib.train.seg_predict.TTA_VIEWS`:
``rot4``, ``flip4``, ``flip2``) and no TTA (``off``) are scored here beside it, on the sets of
the extractor's lever table: sub-01's validation stack and the shift benchmark's validation half
(chosen on), sub-02 and the test half (reported, never chosen on).

Each stack is predicted once per view; every view set is then the mean of its views, exactly as
``segment`` averages them (same order, float64 sum), inverted to the native grid, thresholded,
post-processed as the model's checkpoint says and scored in 3D against the reference. So one
pass of 8 views scores all five settings, and each setting's masks are those ``segment
--tta-views`` writes.

The rule (fixed before the numbers were seen): the view set with the highest validation mean
(the mean of the two validation sets, averaged over the models given, which are replicates such
as one lever's training seeds); a set within 0.05 points of it with fewer views wins the tie.

Usage (the shift cases as ``shift_benchmark.py`` / ``extractor_levers.py`` wrote them under
``--work``; minutes per model on 2 CPU cores)::

    OMP_NUM_THREADS=2 python benchmarks/segment_tta_views.py --run runs/real \\
        --models segmenter/strong-s0,segmenter/strong-s1,segmenter/strong-s2 --out benchmarks/results/segment_tta_views
    OMP_NUM_THREADS=2 python benchmarks/segment_tta_views.py --models fullysup,weak   # the shipped models

Writes ``--out`` ``.csv`` (one row per model, set, stack and view set: DSC) and ``.md`` (per view
set: forward passes, mean +- SD over models of each set, paired difference from ``d8`` on
validation, and the choice).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import shift_benchmark as sb  # noqa: E402
from umcam_lib import metrics  # noqa: E402
from umcam_lib.data.fetch import DATASET, resolve_root  # noqa: E402
from umcam_lib.scoring import largest_component_3d  # noqa: E402
from umcam_lib.segment.inputs import find_jobs, read_input  # noqa: E402
from umcam_lib.segment.predict import invert, preprocess  # noqa: E402
from umcam_lib.segment.run import load_unet  # noqa: E402
from umcam_lib.train.seg_predict import TTA_VIEWS, from_view, predict_probs, to_view  # noqa: E402

#: view sets scored: ``off`` is the identity view alone (``segment --fast``)
SETTINGS: dict[str, tuple[tuple[int, bool], ...]] = {**TTA_VIEWS, "off": ((0, False),)}
#: scored set -> stacks: the CC0 stacks by name, the shift halves by folder under ``--work``
NATIVE = {"sub-01 val": ["sub-01_run-6_T2w"], "sub-02 test": ["sub-02_run-1_T2w", "sub-02_run-2_T2w", "sub-02_run-3_T2w"]}
VALIDATION = ("sub-01 val", "shift val")
TIE_POINTS = 0.05


def set_inputs(cc0: Path, work: Path) -> dict[str, list[Path]]:
    """Scored set -> its input files (the shift halves' folders are built when missing)."""
    if not all((work / half).is_dir() and any((work / half).glob("*_T2w.nii.gz")) for half in sb.HALVES):
        sb.build_cases(cc0, work)
    sets = {name: [next(cc0.rglob(f"{st}.nii*")) for st in stacks] for name, stacks in NATIVE.items()}
    return {"sub-01 val": sets["sub-01 val"], "shift val": [work / "val"],
            "sub-02 test": sets["sub-02 test"], "shift test": [work / "test"]}


def score_model(run: Path | None, model_name: str, sets: dict[str, list[Path]], scratch: Path) -> pd.DataFrame:
    """DSC (%) of every stack of every set under every view setting; one row per stack and setting.

    Kept in ``scratch/<model>.csv`` and reused while it is newer than the model's checkpoint."""
    model, info, prep, _ = load_unet(run, model_name, "cpu")
    cache = scratch / f"{sb.slug(model_name)}.csv"
    checkpoint = Path(str(info.get("checkpoint", "")))
    if cache.is_file() and checkpoint.is_file() and cache.stat().st_mtime > checkpoint.stat().st_mtime:
        print(f"{model_name}: reusing {cache}", flush=True)
        return pd.read_csv(cache)
    post = str(info.get("config", {}).get("postprocess", "none"))
    rows = []
    for set_name, inputs in sets.items():
        for job in find_jobs(inputs, scratch / sb.slug(model_name) / sb.slug(set_name), bids=False, method=model_name):
            stack, _ = read_input(job)
            images = preprocess(stack, prep)
            views, seconds = {}, []
            for k, flip in SETTINGS["d8"]:
                t0 = time.perf_counter()
                views[(k, flip)] = from_view(predict_probs(model, to_view(images, k, flip), "cpu", False, 32), k, flip)
                seconds.append(time.perf_counter() - t0)
            for setting, chosen in SETTINGS.items():
                total = np.zeros(images.shape, dtype=np.float64)
                for view in chosen:
                    total += views[view]
                probs = invert((total / len(chosen)).astype(np.float32), stack.image.shape, stack.spacing,
                               prep.spacing_mm)
                mask = probs >= 0.5
                if post == "lcc":
                    mask = largest_component_3d(mask)
                rows.append({"model": model_name, "set": set_name, "stack": job.image.name.split(".nii")[0],
                             "views": setting, "n_views": len(chosen), "dsc": metrics.dice(mask, stack.mask > 0),
                             "forward_s": float(np.mean(seconds)) * len(chosen)})  # under whatever load
            print(f"{model_name} {set_name} {job.image.name}: " + ", ".join(
                f"{r['views']} {r['dsc']:.1f}" for r in rows[-len(SETTINGS):]), flush=True)
    table = pd.DataFrame(rows)
    cache.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(cache.with_suffix(".tmp"), index=False)
    cache.with_suffix(".tmp").replace(cache)
    return table


def choose(table: pd.DataFrame) -> str:
    """Validation's view set: the highest mean over models of the mean of the two validation sets
    (each set's mean over its stacks); fewer views win a tie within :data:`TIE_POINTS`."""
    per = table[table["set"].isin(VALIDATION)].groupby(["views", "model", "set"])["dsc"].mean()
    val = per.groupby(level=["views", "model"]).mean().groupby(level="views").mean()
    best = val.max()
    near = [v for v in val.index if val[v] >= best - TIE_POINTS]
    return min(near, key=lambda v: (len(SETTINGS[v]), -val[v]))


def write_table(table: pd.DataFrame, out: Path, command: str) -> str:
    """``out.csv`` and ``out.md``; return the chosen view set."""
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out.with_suffix(".csv"), index=False, float_format="%.3f")
    per = table.groupby(["views", "model", "set"], sort=False)["dsc"].mean().unstack("set")
    per["validation"] = per[list(VALIDATION)].mean(axis=1)
    diff = per["validation"] - per.xs("d8", level="views")["validation"].reindex(per.index, level="model")
    chosen = choose(table)
    models = list(dict.fromkeys(table["model"]))
    lines = ["# Test-time augmentation: which views `segment` averages", "", f"`{command}`", "",
             f"Models (replicates): {', '.join(models)}. 3D DSC (%) on each stack's own grid; mean over models "
             "+- SD over models. Chosen on the validation column (the mean of sub-01 val and shift val); "
             "the test columns are reported, never chosen on. Time per stack grows with the passes; "
             "`benchmarks/bench_segment.py` measures it on a quiet machine.", "",
             "| views | passes | sub-01 val | shift val | validation | vs d8 (validation) | sub-02 test | shift test |",
             "|---|---|---|---|---|---|---|---|"]
    for v in SETTINGS:
        g = per.xs(v, level="views")
        cells = [f"{g[c].mean():.1f} +- {g[c].std(ddof=1) if len(g) > 1 else 0:.1f}"
                 for c in ["sub-01 val", "shift val", "validation"]]
        d = diff.xs(v, level="views")
        test = [f"{g[c].mean():.1f} +- {g[c].std(ddof=1) if len(g) > 1 else 0:.1f}" for c in ["sub-02 test", "shift test"]]
        name = f"**{v}**" if v == chosen else v
        lines.append(f"| {name} | {len(SETTINGS[v])} | " + " | ".join(cells)
                     + f" | {d.mean():+.2f} (models {d.min():+.2f} to {d.max():+.2f}) | " + " | ".join(test) + " |")
    lines += ["", f"Validation's choice (highest validation mean; fewer views win a tie within {TIE_POINTS} "
              f"points): **{chosen}**."]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return chosen


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", type=Path, default=None, help="run folder of --models (default: the shipped models)")
    ap.add_argument("--models", required=True, help="comma-separated: segmenter/<name> of --run, or shipped aliases")
    ap.add_argument("--cc0", default=DATASET)
    ap.add_argument("--work", type=Path, default=Path("/tmp/umcam-shift-levers"), help="where the shift cases are")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "segment_tta_views")
    args = ap.parse_args(argv)
    sets = set_inputs(resolve_root(args.cc0), args.work)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    table = pd.concat([score_model(args.run, m, sets, args.work / "tta-scratch") for m in models], ignore_index=True)
    command = "OMP_NUM_THREADS=2 python benchmarks/segment_tta_views.py " + " ".join(argv or sys.argv[1:])
    chosen = write_table(table, args.out, command.strip())
    print(f"wrote {args.out.with_suffix('.md')}; validation's choice: {chosen}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
