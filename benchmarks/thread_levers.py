"""Threads against processes on the 2-core machine: is one job on 2 threads the best use of it?

Issue 19 lists "batch size and threads" among the levers. The study runs one training at a
time with ``threads: 2``; the UNets of notebook 06 are independent of each other, so they could
instead run two at a time, one thread each. This script measures which is faster for each
step of the quick profile (the UNet training step, its prediction, the classifier step with the
equivariance loss), built as :mod:`benchmarks.speed_levers` builds them:

- ``1 job x 2 threads``: what the study does;
- ``1 job x 1 thread``: the cost of one thread alone;
- ``2 jobs x 1 thread``: two processes at once, one thread each; their throughput together.

It reports steps per second of the whole machine and the speed-up over ``1 job x 2 threads``.
A speed-up above 1 for ``2 jobs x 1 thread`` is the most that running two UNets side by side
could save; below 1, the study's one-at-a-time order is already the faster one.

Usage::

    python benchmarks/thread_levers.py --seconds 20 --out benchmarks/results

Writes ``<out>/thread_levers_quick.csv`` and ``.md``.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))


def _make(kind: str):
    import speed_levers as SL
    from umcam_lib.config import check_section, load_params, profile_path
    if kind == "unet_train":
        return SL._unet_step(channels_last=False)
    if kind == "unet_eval":
        return SL._unet_eval(channels_last=False, chunk=8)
    if kind == "classifier":
        cfg = check_section("classifier", load_params(profile_path("quick"))["classifier"]).to_dict()
        return SL._classifier_step(cfg, channels_last=False)
    raise ValueError(f"unknown step kind {kind!r}")


def _worker(kind: str, threads: int, seconds: float, start, queue) -> None:
    import torch
    torch.set_num_threads(threads)
    step = _make(kind)
    step()  # warm-up
    step()
    start.wait()  # both jobs of a pair start timing together
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        step()
        n += 1
    queue.put((n, time.perf_counter() - t0))


def throughput(kind: str, jobs: int, threads: int, seconds: float) -> float:
    """Steps per second of ``jobs`` processes of ``threads`` threads each, summed."""
    ctx = mp.get_context("spawn")
    start, queue = ctx.Barrier(jobs), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(kind, threads, seconds, start, queue)) for _ in range(jobs)]
    for p in procs:
        p.start()
    got = [queue.get() for _ in procs]
    for p in procs:
        p.join()
    return sum(n / t for n, t in got)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="timed seconds per configuration")
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    setups = [("1 job x 2 threads", 1, 2), ("1 job x 1 thread", 1, 1), ("2 jobs x 1 thread", 2, 1)]
    rows = []
    for kind in ("unet_train", "unet_eval", "classifier"):
        base = None
        for name, jobs, threads in setups:
            rate = throughput(kind, jobs, threads, args.seconds)
            base = rate if base is None else base
            rows.append({"step": kind, "setup": name, "steps_per_s": round(rate, 3),
                         "speedup": round(rate / base, 3), "load_avg_1min": round(os.getloadavg()[0], 2)})
            print(rows[-1], flush=True)
    df = pd.DataFrame(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "thread_levers_quick.csv", index=False)
    lines = ["# Threads against processes (quick profile's steps, 2-core machine)", "",
             f"`OMP_NUM_THREADS=2 python benchmarks/thread_levers.py --seconds {args.seconds:g}`; steps: UNet "
             "training step (12 x 128^2, width 16, contiguous), UNet prediction of 64 slices 8 at a time, "
             "classifier step (batch 32, equivariance loss). Throughput of the whole machine; speed-up over "
             "one job on two threads (what the study does).", "",
             "| step | setup | steps per second | speed-up | load |", "|---|---|---|---|---|"]
    lines += [f"| {r.step} | {r.setup} | {r.steps_per_s} | {r.speedup} | {r.load_avg_1min} |" for r in df.itertuples()]
    (out / "thread_levers_quick.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
