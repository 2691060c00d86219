"""Seconds per stack and peak memory of ``python -m umcam_lib.segment`` (issue 18, item 5).

Each configuration runs in a fresh Python process (so that its peak resident memory, the
``ru_maxrss`` of that process, is its own) with ``--threads`` torch/OpenMP threads, and segments
every stack of ``--data`` (default: the nine CC0 stacks) through :func:`umcam_lib.segment.segment`
exactly as the command does (reading and checking every stack first, then per stack: read,
prepare, UNet, inverse geometry, largest component, write, QC picture; then the summary page).
``seconds`` per stack is the per-stack part (``scores.seconds``); ``total_s`` also holds the
model load, the first check of every stack and the summary page.

The model: ``--run RUN`` (a pipeline run folder, ``--method``), or without a run the
architecture and preprocessing of ``--profile`` (``seg.width``, ``data.spacing_mm``,
``data.image_size``, ``seg.tta``, ``seg.postprocess``) with untrained weights: time and memory
do not depend on the weights' values, the masks (and their DSC) mean nothing then and are not
reported.

Usage::

    OMP_NUM_THREADS=2 python benchmarks/bench_segment.py --profile real --threads 2
    python benchmarks/bench_segment.py --run runs/real --method UM-CAM+SPL
    python benchmarks/bench_segment.py --shipped fullysup --configs profile --out /tmp/fs   # a model of models/

Writes ``--out`` (default ``benchmarks/results/segment_bench``) ``.csv`` (one row per stack and
configuration) and ``.md`` (a summary per configuration).

Robustness (issue 18, item 3): ``--robust RUN`` segments the run's validation and test stacks
(``data/volumes.csv``) after a synthetic multiplicative bias field (``exp(k (x + y / 2))`` with
``x``, ``y`` the in-plane coordinates in [-1, 1]; ``k`` of ``--strengths``) and after scaling
by 1000, each without and with ``--bias-correct``, and reports 3D DSC to
``benchmarks/results/segment_robustness.{csv,md}``. Without a real-profile run folder,
``--make-run DIR`` first trains a small fully supervised UNet on the CC0 stacks for it (the
real profile's splits, coarser slices, a few epochs: a probe of robustness, not a shipped model)::

    python benchmarks/bench_segment.py --make-run /tmp/segrun --robust /tmp/segrun
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {  # name -> segment() keyword arguments
    "profile": {},                       # the run's / profile's TTA and postprocess (segment's default views)
    "tta-d8": {"tta": True, "tta_views": "d8"},
    "tta-flip4": {"tta": True, "tta_views": "flip4"},
    "tta-rot4": {"tta": True, "tta_views": "rot4"},
    "tta-flip2": {"tta": True, "tta_views": "flip2"},
    "no-tta": {"tta": False},
    "no-tta+bias-correct": {"tta": False, "bias_sigma_mm": 40.0},
    "no-tta+no-qc": {"tta": False, "qc": False},
}


def child(spec: dict) -> dict:
    """Run one configuration in this process; return per-stack rows and memory."""
    import torch

    torch.set_num_threads(int(spec["threads"]))
    from umcam_lib import segment as sg
    from umcam_lib.config import load_params, profile_path
    from umcam_lib.models.unet import build_unet

    t0 = time.perf_counter()
    kwargs = dict(spec["kwargs"])
    if spec.get("shipped"):
        from umcam_lib.segment import shipped
        model, info, p = shipped.load(shipped.MODELS_DIR, spec["shipped"], "cpu")
        prep = sg.Preprocessing(float(p["spacing_mm"]), int(p["image_size"]))
        cfg = info.get("config", {})
        source = (f"shipped model {spec['shipped']} ({info.get('method')}, width {cfg.get('width')}, "
                  f"models/registry.json)")
        trained = True
    elif spec.get("run"):
        model, info = sg.load_model(spec["run"], spec["method"], "cpu")
        prep = sg.run_preprocessing(spec["run"])
        cfg = info.get("config", {})
        source = f"run {spec['run']} ({spec['method']}, epoch {info.get('epoch')})"
        trained = True
    else:
        params = load_params(profile_path(spec["profile"]))
        seg, data = params["seg"], params["data"]
        torch.manual_seed(0)
        model = build_unet(int(seg["width"])).eval()
        prep = sg.Preprocessing(float(data["spacing_mm"]), int(data["image_size"]))
        cfg = {"tta": bool(seg.get("tta", False)), "postprocess": str(seg.get("postprocess", "none"))}
        source = f"untrained UNet of the {spec['profile']} profile (width {seg['width']})"
        trained = False
    kwargs.setdefault("tta", bool(cfg.get("tta", False)))
    kwargs.setdefault("postprocess", str(cfg.get("postprocess", "none")))
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with tempfile.TemporaryDirectory(prefix="bench_segment_") as out:
        t1 = time.perf_counter()
        run = spec.get("run") or "untrained"
        unet = sg.LoadedUNet(model, {"method": spec["method"], "config": cfg}, prep, run)
        scores = sg.segment(run, [spec["data"]], out, method=spec["method"], device="cpu", progress=False,
                            unet=unet, **kwargs)
        seg_s = time.perf_counter() - t1
    rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    cols = ["image", "shape", "n_slices", "seconds", "volume_ml", "dsc"]
    rows = scores[cols].assign(image=scores.image.map(lambda s: Path(s).name)).to_dict("records")
    return {"rows": rows, "segment_s": seg_s, "total_s": time.perf_counter() - t0, "rss_before_mb": rss_before / 1024,
            "rss_peak_mb": rss_peak / 1024, "source": source, "trained": trained,
            "tta": kwargs["tta"], "tta_views": kwargs.get("tta_views", sg.DEFAULT_TTA_VIEWS), "postprocess": kwargs["postprocess"], "spacing_mm": prep.spacing_mm,
            "image_size": prep.image_size}


MAKE_RUN_DATA = {"spacing_mm": 4.0, "image_size": 96}
MAKE_RUN_SEG = {"width": 8, "epochs": 60, "patience": None, "min_epochs": 0, "epoch_slices": 96, "augment": False,
                "postprocess": "lcc", "tta": False, "batch_size": 12}


def make_run(run_dir: str | Path, threads: int) -> Path:
    """Prepare the CC0 slices (real profile's splits, :data:`MAKE_RUN_DATA`) into ``run_dir`` and
    train a fully supervised UNet (:data:`MAKE_RUN_SEG`) at ``run_dir/seg/FullySup``."""
    import torch

    from umcam_lib.config import load_params, profile_path
    from umcam_lib.data.prepare import prepare_dataset
    from umcam_lib.train import segmentation as S

    torch.set_num_threads(threads)
    params = load_params(profile_path("real"))
    slices = prepare_dataset({**params["data"], **MAKE_RUN_DATA}, run_dir, seed=0, progress=False)
    cfg = {**params["seg"], **MAKE_RUN_SEG}
    targets = S.variant_targets("FullySup", slices, run_dir, cfg)
    S.train_variant("FullySup", slices, targets, cfg, run_dir, device="cpu", seed=0, progress=False)
    return Path(run_dir)


def robustness(run_dir: str | Path, method: str, strengths: list[float], out: Path, threads: int,
               sigmas: list[float] | None = None, command: str = "") -> pd.DataFrame:
    """DSC of ``method`` on the run's validation and test stacks under bias fields / x1000, with
    and without ``--bias-correct`` at each of ``sigmas`` mm (module doc)."""
    import warnings

    import nibabel as nib
    import numpy as np
    import torch

    from umcam_lib import segment as sg

    torch.set_num_threads(threads)
    vols = pd.read_csv(Path(run_dir) / "data" / "volumes.csv")
    vols = vols[vols.split.isin(["val", "test"])]
    model, info = sg.load_model(run_dir, method, "cpu")
    rows = []
    with tempfile.TemporaryDirectory(prefix="segrobust_") as tmp:
        for cond in [*(f"bias{k:g}" for k in strengths), "x1000"]:
            paths = []
            for r in vols.itertuples():
                img = nib.load(r.image_path)
                data = img.get_fdata(dtype=np.float32)
                if cond == "x1000":
                    data = data * np.float32(1000.0)
                else:
                    k = float(cond[4:])
                    axes = [a for a in range(3) if a != int(np.argmax(img.header.get_zooms()[:3]))]
                    c = [np.linspace(-1, 1, data.shape[a]).reshape([-1 if i == a else 1 for i in range(3)])
                         for a in axes]
                    data = data * np.exp(k * (c[0] + 0.5 * c[1])).astype(np.float32)
                p = Path(tmp) / cond / Path(r.image_path).name
                p.parent.mkdir(parents=True, exist_ok=True)
                hdr = img.header.copy()
                hdr.set_data_dtype(np.float32)  # x1000 must not be clipped or quantised by an integer type
                nib.save(nib.Nifti1Image(data, img.affine, hdr), str(p))
                m = nib.load(r.mask_path)
                nib.save(m, str(p.parent / Path(r.mask_path).name))
                paths.append(p)
            for corr in (None, *(sigmas or [sg.BIAS_SIGMA_MM])):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", sg.EmptyMaskWarning)
                    sc = sg.segment(run_dir, paths, Path(tmp) / "out", method=method, device="cpu", progress=False,
                                    qc=False, bias_sigma_mm=corr, bids=False)
                for v, d in zip(vols.itertuples(), sc.itertuples()):
                    rows.append({"condition": cond, "bias_correct_mm": corr or 0, "split": v.split,
                                 "image": Path(v.image_path).name, "dsc": d.dsc, "hd95_mm": d.hd95_mm})
                print(cond, corr, round(float(sc.dsc.mean()), 1), flush=True)
    table = pd.DataFrame(rows)
    table.to_csv(out.with_suffix(".csv"), index=False, float_format="%.2f")
    piv = table.pivot_table(index=["condition"], columns=["split", "bias_correct_mm"], values="dsc", aggfunc="mean")
    cfg = info.get("config", {})
    lines = ["# `segment` under bias fields and intensity scale", "", f"`{command}`" if command else "", "",
             f"Model: {method} of {Path(run_dir).resolve()} (width {cfg.get('width')}, epoch {info.get('epoch')}, "
             f"validation DSC {info.get('score', float('nan')):.1f} on the slice grid; a run made by `--make-run`: "
             f"data {MAKE_RUN_DATA}, seg {MAKE_RUN_SEG}, the real profile's splits: sub-01 runs 1-5 train, "
             f"sub-01_run-6 validation, sub-02 test). Mean 3D DSC (%) on the native grid per split, without "
             f"(corr=0) and with `--bias-correct` at `--bias-sigma-mm` corr. `biasK`: field exp(K (x + y/2)) "
             f"in-plane, x, y in [-1, 1] across the field of view (max/min ratio e^(3K)); `bias0`: the stacks "
             f"as they are; `x1000`: intensities times 1000.", "",
             "| condition | " + " | ".join(f"{sp} corr={c:g}" for sp, c in piv.columns) + " |",
             "|---|" + "---|" * len(piv.columns)]
    for cond, vals in piv.iterrows():
        lines.append(f"| {cond} | " + " | ".join(f"{x:.1f}" for x in vals) + " |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    return table


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", help="pipeline run folder with a trained UNet (default: an untrained one, --profile)")
    ap.add_argument("--method", default="UM-CAM+SPL")
    ap.add_argument("--shipped", metavar="ALIAS", help="a model shipped in models/ (weak, fullysup) instead of --run")
    ap.add_argument("--profile", default="real", help="architecture and preprocessing without --run")
    ap.add_argument("--data", default=None, help="folder of stacks (default: the CC0 stacks)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--configs", default=",".join(CONFIGS), help=f"comma-separated, of {', '.join(CONFIGS)}")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "segment_bench"))
    ap.add_argument("--make-run", metavar="DIR", help="train a small fully supervised UNet on the CC0 stacks into DIR")
    ap.add_argument("--robust", metavar="RUN", help="measure DSC under bias fields / x1000 with RUN's --method UNet")
    ap.add_argument("--strengths", default="0,0.5,1,1.5", help="bias field strengths K (comma-separated)")
    ap.add_argument("--sigmas", default="80", help="--bias-sigma-mm values to try with the correction (comma-separated)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print("RESULT " + json.dumps(child(json.loads(args.child)), default=float))
        return 0
    if args.make_run or args.robust:
        if args.make_run:
            make_run(args.make_run, args.threads)
        if args.robust:
            robustness(args.robust, args.method, [float(k) for k in args.strengths.split(",")],
                       REPO / "benchmarks" / "results" / "segment_robustness", args.threads,
                       [float(x) for x in args.sigmas.split(",")],
                       " ".join(["python", "benchmarks/bench_segment.py", *(argv if argv is not None else sys.argv[1:])]))
        return 0
    if args.data is None:
        from umcam_lib.data.fetch import resolve_root

        args.data = str(resolve_root("fetal-mri-cc0", download=False))
    results = []
    for name in args.configs.split(","):
        spec = {"shipped": args.shipped, "run": args.run, "method": args.method, "profile": args.profile, "data": args.data,
                "threads": args.threads, "kwargs": CONFIGS[name]}
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], env=env, cwd=REPO,
                              capture_output=True, text=True)
        if proc.returncode:
            sys.stderr.write(proc.stderr)
            return proc.returncode
        res = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))[7:])
        res.update(config=name, process_s=time.perf_counter() - t0)
        results.append(res)
        secs = [r["seconds"] for r in res["rows"]]
        print(f"{name}: {sum(secs) / len(secs):.2f} s/stack (max {max(secs):.2f}), peak RSS {res['rss_peak_mb']:.0f} MB")
    rows = [{"config": r["config"], **row} for r in results for row in r["rows"]]
    table = pd.DataFrame(rows)
    if not results[0]["trained"]:
        table = table.drop(columns=["dsc", "volume_ml"])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out.with_suffix(".csv"), index=False, float_format="%.3f")
    r0 = results[0]
    lines = [f"# `segment` speed and memory ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})", "",
             f"`{' '.join(['python', 'benchmarks/bench_segment.py', *(argv if argv is not None else sys.argv[1:])])}`",
             "", f"- model: {r0['source']}; slices at {r0['spacing_mm']:g} mm, {r0['image_size']} px",
             f"- data: {len(r0['rows'])} stacks of {args.data}",
             f"- machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs visible, "
             f"{args.threads} torch/OpenMP thread(s); other jobs may share it",
             "- seconds: per stack (read, prepare, UNet, inverse geometry, postprocess, write, QC); total: the "
             "whole call with model load and the first check of every stack; peak RSS: the process's "
             "`ru_maxrss` (Python, torch and the libraries included; 'before' = after imports and model load)", "",
             "| config | TTA | postprocess | s/stack mean | median | max | total s | peak RSS MB | RSS before MB |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        s = pd.Series([row["seconds"] for row in r["rows"]])
        lines.append(f"| {r['config']} | {r.get('tta_views', 'd8') if r['tta'] else 'off'} | {r['postprocess']} | {s.mean():.2f} | "
                     f"{s.median():.2f} | {s.max():.2f} | {r['total_s']:.1f} | {r['rss_peak_mb']:.0f} | "
                     f"{r['rss_before_mb']:.0f} |")
    if r0["trained"]:
        lines += ["", "Mean DSC (%) where a reference lies beside the stack: "
                  + ", ".join(f"{r['config']} {pd.Series([x['dsc'] for x in r['rows']]).mean():.1f}" for r in results)]
    else:
        lines += ["", "Untrained weights: the masks are meaningless, so no DSC or volume is reported."]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {out.with_suffix('.csv')} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
