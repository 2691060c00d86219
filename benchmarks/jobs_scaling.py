"""How much ``--jobs`` buys on this machine: notebook 06's UNet tasks, serial against worker processes.

Usage::

    python benchmarks/jobs_scaling.py --run runs/quick --rows FullySup SPL --seeds 2 --jobs 2
    python benchmarks/jobs_scaling.py --run runs/quick --identity      # also serial at 1 thread per task

``--run`` is a finished run folder of the profile (notebooks 01-05: slices, CAMs, SPL). The
benchmark builds the targets of ``--rows`` as notebook 06 does, copies the run's ``data/`` and the
targets into one scratch run folder per setting, and times the same tasks (rows x UNet seeds,
the profile's ``seg`` recipe) three ways:

* ``serial``: in this process, each task with the profile's ``threads`` (what ``--jobs 1`` does);
* ``processes``: ``--jobs`` worker processes, each task with ``threads // jobs`` threads (``--jobs N``);
* with ``--identity``, ``serial`` at the processes' threads per task, whose UNets must equal the
  processes' bit for bit (the claim of ``docs/cluster.md``; tests/test_tasks.py checks it on
  small data).

Writes ``benchmarks/results/jobs_<profile>.md`` (and ``.csv``): wall seconds, speed-up, and the
per-task seconds.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from umcam_lib import config  # noqa: E402
from umcam_lib.data import load_slices  # noqa: E402
from umcam_lib.train import executors, tasks  # noqa: E402
from umcam_lib.train.segmentation import unet_seeds, variant_targets  # noqa: E402


def scratch_run(source: Path, parent: Path, name: str, rows: dict) -> Path:
    """A run folder with the source's ``data/`` and the rows' targets, and nothing trained."""
    run = parent / name
    shutil.copytree(source / "data", run / "data")
    for row, t in rows.items():
        tasks.write_targets(run, row, t)
    return run


def timed(executor, task_list) -> tuple[float, list[pd.DataFrame]]:
    t0 = time.perf_counter()
    out = executors.run_tasks(executor, tasks.run_unet_task, task_list, progress=True)
    return time.perf_counter() - t0, out


def same_unets(a: Path, b: Path, folders: list[str]) -> bool:
    for f in folders:
        wa = torch.load(a / "seg" / f / "best.pt", map_location="cpu", weights_only=True)["model"]
        wb = torch.load(b / "seg" / f / "best.pt", map_location="cpu", weights_only=True)["model"]
        if wa.keys() != wb.keys() or not all(torch.equal(wa[k], wb[k]) for k in wa):
            return False
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", default="runs/quick")
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--rows", nargs="+", default=["FullySup", "SPL"])
    ap.add_argument("--seeds", type=int, default=2, help="UNet seeds per row")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--identity", action="store_true", help="also time serial at the processes' threads per task")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = ap.parse_args(argv)
    params = config.validate_params(config.load_params(config.profile_path(args.profile)))
    seg, threads = params["seg"], int(params["threads"] or torch.get_num_threads())
    source = Path(args.run).resolve()
    slices = load_slices(source)
    rows = {r: variant_targets(r, slices, source, seg) for r in args.rows}
    seeds = unet_seeds(params["seed"], args.seeds)
    share = executors.threads_per_task({"kind": "processes", "jobs": args.jobs}, threads)
    settings = [("serial", executors.SerialExecutor(), threads),
                (f"processes x{args.jobs}", None, share)]
    if args.identity:
        settings.append((f"serial, {share} thread(s) per task", executors.SerialExecutor(), share))
    results, folders = [], [tasks.seed_folder(r, s, seeds[0]) for r in args.rows for s in seeds]
    with tempfile.TemporaryDirectory(prefix="umcam-jobs-") as tmp:
        runs = {}
        for label, executor, per_task in settings:
            run = scratch_run(source, Path(tmp), label.replace(" ", "_").replace(",", ""), rows)
            task_list = [t for r in args.rows for t in tasks.unet_tasks(run, r, seg, seeds, seeds[0], device="cpu",
                                                                        amp=False, threads=per_task)]
            if executor is None:
                executor = executors.make_executor({"kind": "processes", "jobs": args.jobs})
            seconds, out = timed(executor, task_list)
            executor.shutdown()
            runs[label] = run
            per = [float(o["seconds"].iloc[0]) for o in out]
            results.append({"setting": label, "threads_per_task": per_task, "tasks": len(task_list),
                            "wall_s": round(seconds, 1), "task_s_mean": round(sum(per) / len(per), 1)})
            print(results[-1], flush=True)
        identical = same_unets(runs[settings[1][0]], runs[settings[2][0]], folders) if args.identity else None
    df = pd.DataFrame(results)
    df["speedup_vs_serial"] = (df["wall_s"].iloc[0] / df["wall_s"]).round(2)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / f"jobs_{args.profile}.csv", index=False)
    lines = [f"# --jobs on this machine: notebook 06's UNet tasks ({args.profile})", "",
             f"{len(folders)} tasks: rows {', '.join(args.rows)} x UNet seeds {seeds}, the profile's seg recipe, "
             f"on the slices and targets of `{args.run}`; {torch.get_num_threads()} torch threads available, "
             f"profile threads {threads}.", "",
             "| setting | threads per task | tasks | wall (s) | mean task (s) | speed-up |", "|---|---|---|---|---|---|"]
    lines += [f"| {r.setting} | {r.threads_per_task} | {r.tasks} | {r.wall_s} | {r.task_s_mean} | "
              f"{r.speedup_vs_serial} |" for r in df.itertuples()]
    if identical is not None:
        lines += ["", f"Serial at {share} thread(s) per task and {args.jobs} processes give the same UNets bit for bit: "
                  f"**{identical}**."]
    lines += ["", f"Command: `python benchmarks/jobs_scaling.py --run {args.run} --profile {args.profile} --rows "
              f"{' '.join(args.rows)} --seeds {args.seeds} --jobs {args.jobs}{' --identity' if args.identity else ''}`", ""]
    (out / f"jobs_{args.profile}.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0 if identical in (None, True) else 1


if __name__ == "__main__":
    sys.exit(main())
