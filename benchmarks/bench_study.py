"""Time the whole study, notebook by notebook, from an empty run folder.

Runs ``python -m umcam_lib.pipeline --profile PROFILE --out OUT --figures FIG`` in a fresh
temporary run folder (so nothing is reused) and prints the seconds each notebook took, read from
the pipeline's ``pipeline_last.json``, with the total and the machine's core count. The target
of the quick profile is 15 minutes on a 2-core CPU.

Usage::

    python benchmarks/bench_study.py                       # quick profile
    python benchmarks/bench_study.py --profile tiny
    python benchmarks/bench_study.py --keep runs/bench     # keep the run folder there

The run's tables and figures go to a temporary folder, never to ``figures/<profile>``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--keep", default=None, help="run folder to use and keep (must not exist)")
    ap.add_argument("--target-min", type=float, default=15.0, help="report whether the total is within this")
    ap.add_argument("--set", action="append", default=[], help="extra --set overrides for the pipeline")
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="umcam-bench-"))
    run = Path(args.keep) if args.keep else work / "run"
    if run.exists():
        print(f"error: {run} exists; the benchmark needs an empty run folder", file=sys.stderr)
        return 2
    cmd = [sys.executable, "-m", "umcam_lib.pipeline", "--profile", args.profile, "--out", str(run),
           "--figures", str(work / "figures")]
    for s in args.set:
        cmd += ["--set", s]
    print(" ".join(cmd), flush=True)
    t0 = time.perf_counter()
    rc = subprocess.call(cmd)
    wall = time.perf_counter() - t0
    try:
        info = json.loads((run / "pipeline_last.json").read_text())
        print(f"\n{'notebook':10s} {'seconds':>9s} status")
        for nb in info["notebooks"]:
            print(f"{nb['number']:10s} {nb['seconds']:9.1f} {nb['status']}")
        print(f"{'total':10s} {wall:9.1f}  ({wall / 60:.1f} min wall clock, {os.cpu_count()} cores, "
              f"profile {args.profile}; target {args.target_min:g} min: "
              f"{'met' if wall / 60 <= args.target_min else 'missed'})")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
