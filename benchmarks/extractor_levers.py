"""Levers for an extractor that generalises (issue 34, item 2): train each lever's segment-only UNet
over several seeds, score every seed on plain validation, on sub-02 (test) and on both halves of
the shift benchmark, and write the lever table.

Choices are made on validation and the shift benchmark's validation half; sub-02 and the test
half are reported beside them and never chosen on.

Usage (a real-profile run folder with notebooks 01-05 done; hours on 2 CPU cores)::

    OMP_NUM_THREADS=2 python benchmarks/extractor_levers.py runs/real --levers shipped,strong,dr12 \\
        --seeds 0,1,2 --out benchmarks/results/extractor_levers
    python benchmarks/extractor_levers.py runs/real --list          # the levers and what each changes

A seed already trained with the same request is not trained again (the segmenter's resume rule),
so an interrupted call continues where it stopped. Writes ``--out`` ``.csv`` (one row per lever,
seed and scored set), ``.md`` (per lever: mean and seed SD of each set, min over shift cases) and
``_cases.csv`` (per model and shift case, the table ``umcam_lib.segment.ship --shift`` reads).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import shift_benchmark as sb  # noqa: E402
from umcam_lib.data.fetch import DATASET, resolve_root  # noqa: E402
from umcam_lib.segment import segmenter as so  # noqa: E402
from umcam_lib.segment.restack import Restack  # noqa: E402

SHIPPED = ("width=16",)  # the shipped recipe: the real profile's seg section at width 16
STRONG = (*SHIPPED, "augment=true", "augment_scale=[0.6, 1.6]", "augment_gamma=[0.5, 2.0]",
          "augment_resolution=[1.0, 2.0]", "augment_bias=0.4", "augment_noise=0.05")

#: lever -> (method, --set changes, synthetic stacks, what it tests)
LEVERS: dict[str, tuple[str, tuple[str, ...], int, str]] = {
    "shipped": ("FullySup", SHIPPED, 0, "the shipped FullySup recipe, retrained per seed"),
    "scale": ("FullySup", (*SHIPPED, "augment_scale=[0.5, 1.6]"), 0, "zoom that also shrinks (smaller brains)"),
    "strong": ("FullySup", STRONG, 0, "strong spatial and intensity augmentation of the real stacks"),
    "dr6": ("FullySup", STRONG, 6, "strong + 6 domain-randomised phantom stacks (1:1 with the real ones)"),
    "dr12": ("FullySup", STRONG, 12, "strong + 12 phantom stacks (2:1)"),
    "dr24": ("FullySup", STRONG, 24, "strong + 24 phantom stacks (4:1)"),
    "weak-shipped": ("UM-CAM+SPL", SHIPPED, 0, "the shipped weak recipe, retrained per seed"),
    "weak-strong": ("UM-CAM+SPL", STRONG, 0, "weak, strong augmentation (image-level labels only)"),
    "views": ("FullySup", STRONG, 0, "strong + the real stacks resliced into the other two planes and cropped tight"),
    "views-light": ("FullySup", STRONG, 0, "strong + reslices only, every 4th slab (about 1:1 with the real slices)"),
    "tight": ("FullySup", STRONG, 0, "strong + tight crops of the real stacks only (1:1 with the real slices)"),
    "tight-quarter": ("FullySup", STRONG, 0, "strong + a quarter of each tight crop's slices (about 1:4)"),
    "tight-eighth": ("FullySup", STRONG, 0, "strong + an eighth of each tight crop's slices (about 1:8)"),
    "weak-tight-quarter": ("UM-CAM+SPL", STRONG, 0, "weak-strong + a quarter of each tight crop's slices, "
                           "cropped to the pseudo label's box"),
    "weak-views": ("UM-CAM+SPL", STRONG, 0, "weak-strong + those stacks, with the weak route's pseudo labels"),
}

#: levers that add the stacks of umcam_lib.segment.restack (other planes, tight field of view), and how
RESTACKED: dict[str, Restack] = {"views": Restack(), "weak-views": Restack(),
                                 "views-light": Restack(plane_step=4.0, tight=False), "tight": Restack(planes=()),
                                 "tight-quarter": Restack(planes=(), tight_share=0.25),
                                 "tight-eighth": Restack(planes=(), tight_share=0.125),
                                 "weak-tight-quarter": Restack(planes=(), tight_share=0.25)}


def train(run: Path, levers: list[str], seeds: list[int], jobs: int) -> None:
    """Every seed of every lever (finished seeds are kept, also under another version of the library:
    the table scores their checkpoints, and a retrained seed would replace them)."""
    for lever in levers:
        method, changes, synthetic, what = LEVERS[lever]
        print(f"== {lever}: {what} ({method}, {' '.join(changes)}, synthetic {synthetic}, "
              f"restack {RESTACKED.get(lever)})", flush=True)
        for s in so.train_segmenter_seeds(run, lever, method, list(changes), seeds, jobs=jobs, synthetic=synthetic,
                                          keep_finished=True, restack=RESTACKED.get(lever, False)):
            print(so.describe(s), flush=True)


def plain_scores(run: Path, levers: list[str], seeds: list[int]) -> pd.DataFrame:
    """Validation and test 3D DSC of every seed on the run's grid (2 mm slices), from its summary."""
    rows = []
    for lever in levers:
        for s in seeds:
            summary = so.read_summary(run, f"{lever}-s{s}" if len(seeds) > 1 else lever)
            for split, e in summary["scores"].items():
                rows.append({"lever": lever, "seed": s, "set": "run grid " + ("val" if split == "val" else "test"),
                             "dsc": e["dsc_mean"], "dsc_min": e["dsc_min"]})
    return pd.DataFrame(rows)


#: the real stacks scored on their own grids, by `segment` as a user runs it: set -> stacks
NATIVE = {"sub-01 val": ["sub-01_run-6_T2w"], "sub-02 test": ["sub-02_run-1_T2w", "sub-02_run-2_T2w", "sub-02_run-3_T2w"]}


def model_names(levers: list[str], seeds: list[int]) -> dict[str, tuple[str, int]]:
    """``segmenter/<lever>-s<seed>`` (the segmenter's name for each seed) -> (lever, seed)."""
    return {f"segmenter/{lever}-s{s}" if len(seeds) > 1 else f"segmenter/{lever}": (lever, s)
            for lever in levers for s in seeds}


def native_scores(run: Path, levers: list[str], seeds: list[int], work: Path, cc0: Path, reuse: bool = False,
                  tta_views: str = "d8") -> pd.DataFrame:
    """3D DSC of every seed on sub-01's validation stack and sub-02, each on its own grid
    (``python -m umcam_lib.segment`` with the shipped defaults but ``tta_views``, against the CC0
    reference masks; ``reuse``: :func:`shift_benchmark.cached_scores`)."""
    from umcam_lib.segment import segment

    rows = []
    for model, (lever, s) in model_names(levers, seeds).items():
        for name, stacks in NATIVE.items():
            paths = [next(cc0.rglob(f"{st}.nii*")) for st in stacks]
            out = work / "native" / sb.slug(model) / sb.slug(name)
            sc = sb.cached_scores(out, tta_views) if reuse else None
            if sc is None:
                sc = segment(run, paths, out, method=model, device="cpu", progress=False, qc=False, bids=False,
                             tta_views=tta_views)
            rows.append({"lever": lever, "seed": s, "set": name, "dsc": sc["dsc"].mean(), "dsc_min": sc["dsc"].min()})
            print(f"{model} {name} (native grid): mean DSC {sc['dsc'].mean():.1f}", flush=True)
    return pd.DataFrame(rows)


def shift_scores(run: Path, levers: list[str], seeds: list[int], work: Path, cc0: Path, reuse: bool = False,
                 tta_views: str = "d8") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Mean and minimum shift-benchmark DSC of every seed, per half; and the per-case table.

    The per-case table has the columns of ``shift_benchmark.py``'s (``model`` is
    ``segmenter/<lever>-s<seed>``), so ``umcam_lib.segment.ship --shift`` reads it.
    """
    cases = sb.build_cases(cc0, work)
    names = model_names(levers, seeds)
    table = sb.score(work, cases, list(names), run, reuse=reuse, tta_views=tta_views)
    rows = []
    for (model, half), g in table.groupby(["model", "half"], sort=False):
        lever, s = names[model]
        rows.append({"lever": lever, "seed": s, "set": f"shift {half}", "dsc": g["dsc"].mean(), "dsc_min": g["dsc"].min()})
    return pd.DataFrame(rows), table


def confidence_rho(cases: pd.DataFrame) -> pd.DataFrame:
    """Spearman's rho of the QC confidence against DSC over each model's shift cases (both halves)."""
    from scipy.stats import spearmanr

    return pd.DataFrame([{"model": m, "rho": spearmanr(g["confidence"], g["dsc"]).statistic}
                         for m, g in cases.groupby("model", sort=False)])


def choose(scores: pd.DataFrame) -> dict[str, tuple[str, int]]:
    """Validation's lever and seed per route (method): the lever with the highest mean over its seeds
    of the mean of the two validation sets (sub-01 validation, the shift benchmark's validation half),
    then its seed with the highest such mean. Test sets are never read."""
    val = scores[scores["set"].isin(["sub-01 val", "shift val"])]
    per_seed = val.groupby(["lever", "seed"], sort=False)["dsc"].mean()
    per_lever = per_seed.groupby(level="lever", sort=False).mean()
    picks = {}
    for method in dict.fromkeys(LEVERS[lv][0] for lv in per_lever.index):
        lever = per_lever[[lv for lv in per_lever.index if LEVERS[lv][0] == method]].idxmax()
        picks[method] = (str(lever), int(per_seed.loc[lever].idxmax()))
    return picks


#: per route, the lever whose recipe the shipped model has: a new choice must not lose sub-02 against it
SHIPPED_LEVER: dict[str, str] = {"FullySup": "strong", "UM-CAM+SPL": "weak-strong"}


def ship_guard(scores: pd.DataFrame, picks: dict[str, tuple[str, int]]) -> dict[str, str]:
    """Issue 34's rule on shipping: a lever validation chose over the shipped recipe's lever that scores
    lower on sub-02 (mean over seeds) is reported, not shipped. Per route with a verdict, one sentence.

    This is the one place a test set is read to decide anything, and it can only veto: it never
    picks a lever validation did not choose.
    """
    test = scores[scores["set"] == "sub-02 test"].groupby("lever")["dsc"].mean()
    out = {}
    for method, (lever, _) in picks.items():
        base = SHIPPED_LEVER.get(method)
        if base is None or lever == base or base not in test.index or lever not in test.index:
            continue
        gap = test[lever] - test[base]
        out[method] = (f"{lever} scores {test[lever]:.1f} on sub-02 against {base}'s {test[base]:.1f}: "
                       + ("reported, not shipped" if gap < 0 else "it may be shipped"))
    return out


def write_table(scores: pd.DataFrame, out: Path, command: str | list[str], cases: pd.DataFrame | None = None) -> None:
    """``out.csv`` (one row per lever, seed and set), ``out.md`` (mean, seed SD, worst case) and,
    given ``cases``, ``out_cases.csv`` (one row per model and shift case)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    scores.to_csv(out.with_suffix(".csv"), index=False, float_format="%.2f")
    if cases is not None:
        cases.to_csv(out.with_name(out.name + "_cases.csv"), index=False, float_format="%.2f")
    sets = ["sub-01 val", "shift val", "sub-02 test", "shift test"]
    commands = [command] if isinstance(command, str) else list(command)
    lines = ["# Extractor levers: validation, sub-02 and the shift benchmark", "", *[f"`{c}`" for c in commands], "",
             "3D DSC (%) of `python -m umcam_lib.segment` on each stack's own grid: mean over seeds +- seed "
             "SD, and the worst stack or case of any seed (the run-grid scores of the segmenter's summary are in "
             "the .csv). Chosen on the first two columns (sub-01 validation stack, shift benchmark's "
             "validation half); the last two are reported, never chosen on.", "",
             "| lever | what | " + " | ".join(sets) + " |", "|---|---|" + "---|" * len(sets)]
    for lever, g in scores.groupby("lever", sort=False):
        cells = []
        for st in sets:
            d = g[g["set"] == st]
            cells.append("" if d.empty else f"{d.dsc.mean():.1f} +- {d.dsc.std(ddof=1) if len(d) > 1 else 0:.1f} "
                         f"(min {d.dsc_min.min():.1f})")
        lines.append(f"| {lever} | {LEVERS[lever][3]} | " + " | ".join(cells) + " |")
    picks = "; ".join(f"{method}: **{lever}**, seed {seed}" for method, (lever, seed) in choose(scores).items())
    lines += ["", f"Validation's choice per route (the highest mean of the two validation columns over seeds, then "
              f"that lever's best seed on them): {picks}."]
    guard = ship_guard(scores, choose(scores))
    if guard:
        lines += ["", "A choice that loses on sub-02 against the shipped recipe is reported, not shipped (issue 34): "
                  + "; ".join(f"{method}: {v}" for method, v in guard.items()) + "."]
    if cases is not None and "confidence" in cases:
        rho = confidence_rho(cases)
        lines += ["", "Does the QC page's confidence (mean foreground probability on the mask's boundary) rank the "
                  "shift cases as DSC does? Spearman's rho per model over both halves: median "
                  f"{rho.rho.median():.2f}, range {rho.rho.min():.2f} to {rho.rho.max():.2f} "
                  f"(per case: `{out.name}_cases.csv`)."]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def add_to(prefix: Path, levers: list[str], scores: pd.DataFrame, cases: pd.DataFrame
           ) -> tuple[pd.DataFrame, pd.DataFrame, list[str]]:
    """An earlier table's rows of the other levers before these; and the commands that made them."""
    files = [prefix.with_suffix(".csv"), prefix.with_name(prefix.name + "_cases.csv"), prefix.with_suffix(".md")]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise SystemExit(f"--add-to {prefix}: missing {', '.join(missing)}")
    old, old_cases = pd.read_csv(files[0]), pd.read_csv(files[1])
    old = old[~old["lever"].isin(levers)]
    mine = set(model_names(levers, sorted(set(scores["seed"]))))
    old_cases = old_cases[~old_cases["model"].isin(mine)]
    earlier = [ln.strip("`") for ln in files[2].read_text().splitlines() if ln.startswith("`OMP_NUM_THREADS")]
    earlier = [c for c in earlier if c.split("--levers ")[-1].split()[0] != ",".join(levers)]
    return (pd.concat([old, scores], ignore_index=True), pd.concat([old_cases, cases], ignore_index=True), earlier)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path, help="a real-profile run folder (notebooks 01-05 done)")
    ap.add_argument("--levers", default="shipped,strong,dr12", help=f"comma-separated, of {', '.join(LEVERS)}")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--jobs", type=int, default=1, help="seeds trained side by side (worker processes)")
    ap.add_argument("--cc0", default=DATASET)
    ap.add_argument("--work", type=Path, default=Path("/tmp/umcam-shift-levers"))
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "extractor_levers")
    ap.add_argument("--list", action="store_true", help="print the levers and exit")
    ap.add_argument("--tta-views", default="d8", help="views segment averages (d8: the views the levers were compared with)")
    ap.add_argument("--add-to", type=Path, default=None, metavar="PREFIX",
                    help="an earlier table (PREFIX.csv, PREFIX_cases.csv, PREFIX.md): its rows of other levers are "
                         "kept as they are and the levers given are added (or replace their own rows)")
    ap.add_argument("--reuse", action="store_true",
                    help="take a model's scores from --work where an earlier call left them and they still hold")
    args = ap.parse_args(argv)
    if args.list:
        for name, (method, changes, synthetic, what) in LEVERS.items():
            extra = " " + " ".join(so.restack_flags(RESTACKED[name])) if name in RESTACKED else ""
            print(f"{name:13s} {method:10s} synthetic {synthetic:2d}  {what}\n{'':13s} --set {' --set '.join(changes)}{extra}")
        return 0
    levers = [x.strip() for x in args.levers.split(",") if x.strip()]
    unknown = [x for x in levers if x not in LEVERS]
    if unknown:
        ap.error(f"--levers: unknown {unknown}; known: {', '.join(LEVERS)}")
    seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
    train(args.run, levers, seeds, args.jobs)
    shift, cases = shift_scores(args.run, levers, seeds, args.work, resolve_root(args.cc0), args.reuse, args.tta_views)
    native = native_scores(args.run, levers, seeds, args.work, resolve_root(args.cc0), args.reuse, args.tta_views)
    scores = pd.concat([plain_scores(args.run, levers, seeds), native, shift], ignore_index=True)
    command = ("OMP_NUM_THREADS=2 python benchmarks/extractor_levers.py " + " ".join(argv or sys.argv[1:])).strip()
    commands = [command]
    if args.add_to is not None:
        scores, cases, earlier = add_to(args.add_to, levers, scores, cases)
        commands = [*earlier, command]
    write_table(scores, args.out, commands, cases)
    print(f"wrote {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
