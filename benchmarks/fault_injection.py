"""Kill the pipeline at random points and check that rerunning the same command gives the tables
of an uninterrupted run (issue 11).

Usage::

    python benchmarks/fault_injection.py --profile tiny --kills 5 --seed 0 --workdir /tmp/fault
    python benchmarks/fault_injection.py --profile quick --kills 6          # the issue's setting
    python benchmarks/fault_injection.py --profile tiny --kills 5 --reuse   # keep the reference of a previous call
    python benchmarks/fault_injection.py --profile tiny --kills 5 --jobs 2  # kills land in training workers too

What it does:

1. Runs the pipeline uninterrupted into ``<workdir>/run`` (figures in ``<workdir>/fig``), in
   steps (``--only 01``, ``--only 02,03``, ``--only 04,05``, ``--only 06,07,08``) and keeps a
   copy of the run and figure folders before notebooks 02, 04 and 06 (the "snapshots"). The
   figures' CSV files at the end are the reference.
2. For each of ``--kills`` trials: picks a notebook among 02, 04 and 06 (each in turn, in a
   seeded random order) and a random moment within it (uniform over 5-95 % of its duration in
   the reference run), restores the snapshot taken before it into the same folders, starts the
   full pipeline command, waits until that notebook has run for the chosen time and kills the
   pipeline and every process it started (the Jupyter kernel included) with SIGKILL, as a
   crash or a power cut would. It then reruns the same command to the end and compares every
   CSV under the figure folder with the reference, byte for byte. A trial whose notebook had
   already finished when the kill came (the machine ran faster than in the reference) does not
   count: it is repeated with half the delay, so every counted kill lands inside 02, 04 or 06.

Runs always use the same two folders, because the pipeline's fingerprints include the run and
figure folders. Prints one line per trial and a summary; writes ``<workdir>/result.json``.
Exit status 0 when every trial ends with ``table1.csv`` and ``table2.csv`` identical to the
reference (other CSVs that differ are listed too, and also fail the trial).
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import threading
import sys
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
STEPS = [("01",), ("02", "03"), ("04", "05"), ("06", "07", "08")]
KILL_IN = ("02", "04", "06")
NAMES = {"01": "01_data_preparation", "02": "02_classifier_training", "03": "03_cam_variants",
         "04": "04_umcam_ablation", "05": "05_spl_generation", "06": "06_segmentation",
         "07": "07_baselines", "08": "08_report"}


#: ``--jobs`` of every pipeline command (main): with 2 or more, notebook 06-07's trainings run in worker
#: processes, and a kill inside 06 kills workers mid-task (kill_tree takes every descendant).
JOBS: list[str] = []


def command(profile: str, run: Path, fig: Path, only: tuple[str, ...] | None = None) -> list[str]:
    # --verbose: the "NN_name.ipynb: running" line that marks a notebook's start is printed only there
    cmd = [sys.executable, "-m", "umcam_lib.pipeline", "--profile", profile, "--out", str(run), "--figures", str(fig),
           "--verbose", *JOBS]
    return cmd + (["--only", ",".join(only)] if only else [])


def run_to_end(cmd: list[str], log: Path) -> float:
    t0 = time.time()
    with open(log, "a") as fh:
        rc = subprocess.run(cmd, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        raise SystemExit(f"{' '.join(cmd)} failed with exit status {rc}; see {log}")
    return time.time() - t0


def kill_tree(pid: int) -> int:
    """SIGKILL a process and all its descendants (the kernel too); return how many."""
    try:
        root = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return 0
    procs = root.children(recursive=True) + [root]
    for p in procs:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=30)
    return len(procs)


def restore(snapshot: Path, run: Path, fig: Path) -> None:
    for target, name in ((run, "run"), (fig, "fig")):
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(snapshot / name, target, symlinks=True)


def csvs(fig: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(fig.glob("*.csv"))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="tiny")
    ap.add_argument("--kills", type=int, default=5, help="number of trials (>= 5 for the issue)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=1,
                    help="pipeline --jobs: with 2, the trainings of 06-07 run in worker processes that the kills hit")
    ap.add_argument("--workdir", default="/tmp/umcam-fault-injection")
    ap.add_argument("--reuse", action="store_true",
                    help="keep the reference and snapshots of a previous call in --workdir (same code and profile)")
    args = ap.parse_args(argv)
    if args.jobs > 1:
        JOBS[:] = ["--jobs", str(args.jobs)]
    work = Path(args.workdir).resolve()
    run, fig, log = work / "run", work / "fig", work / "pipeline.log"
    ref_dir = work / "reference"
    rng = random.Random(args.seed)

    t0 = time.time()
    if args.reuse and (ref_dir / "seconds.json").is_file():
        reference = csvs(ref_dir)
        seconds = json.loads((ref_dir / "seconds.json").read_text())
    else:
        if args.reuse and all((work / f"snap-{n}").is_dir() for n in KILL_IN):
            # snapshots kept: the reference is the uninterrupted run from the last snapshot on
            restore(work / "snap-06", run, fig)
            run_to_end(command(args.profile, run, fig, STEPS[-1]), log)
        else:
            # 1. the uninterrupted reference, with snapshots before 02, 04 and 06
            if work.exists():
                shutil.rmtree(work)
            work.mkdir(parents=True)
            for step in STEPS:
                if step[0] in KILL_IN:
                    snap = work / f"snap-{step[0]}"
                    shutil.copytree(run, snap / "run", symlinks=True)
                    shutil.copytree(fig, snap / "fig", symlinks=True)
                run_to_end(command(args.profile, run, fig, step), log)
        reference = csvs(fig)
        seconds = {n: json.loads((run / ".done" / f"{n}.json").read_text())["seconds"] for n in NAMES}
        ref_dir.mkdir(exist_ok=True)
        for name, data in reference.items():
            (ref_dir / name).write_bytes(data)
        (ref_dir / "seconds.json").write_text(json.dumps(seconds, indent=2) + "\n")
    print(f"reference run: {time.time() - t0:.0f} s; {len(reference)} CSV files; seconds per notebook {seconds}", flush=True)
    if not {"table1.csv", "table2.csv"} <= set(reference):
        raise SystemExit(f"the reference run wrote no table1.csv / table2.csv under {fig}")

    # 2. the trials
    order = []
    while len(order) < args.kills:
        order += rng.sample(KILL_IN, len(KILL_IN))
    order = order[: args.kills]
    trials = []
    k, shrink = 0, {nb: 1.0 for nb in KILL_IN}
    while order:
        nb = order[0]
        k += 1
        restore(work / f"snap-{nb}", run, fig)
        delay = rng.uniform(0.05, 0.95) * seconds[nb] * shrink[nb]
        cmd = command(args.profile, run, fig)
        with open(log, "a") as fh:
            fh.write(f"\n===== trial {k}: kill in {nb} after {delay:.1f} s\n")
            fh.flush()
            proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
            started = None
            assert proc.stdout is not None
            for line in proc.stdout:
                fh.write(line)
                if started is None and f"{NAMES[nb]}.ipynb: running" in line:
                    started = time.time()
                    break
            if started is None:
                raise SystemExit(f"trial {k}: notebook {nb} never started; see {log}")
            # keep draining output while waiting, so the pipeline never blocks on a full pipe

            drain = threading.Thread(target=lambda: [fh.write(ln) for ln in proc.stdout], daemon=True)
            drain.start()
            while time.time() - started < delay and proc.poll() is None:
                time.sleep(0.05)
            finished_first = proc.poll() is not None
            killed = kill_tree(proc.pid)
            proc.wait()
            drain.join(timeout=10)
            marker = (run / ".done" / f"{nb}.json").is_file()
        if finished_first or marker:
            shrink[nb] /= 2
            print(f"trial {k}: notebook {nb} had finished before the kill at {delay:.1f} s; not counted, "
                  f"repeated with half the delay", flush=True)
            continue
        order.pop(0)
        t1 = time.time()
        run_to_end(cmd, log)
        rerun = time.time() - t1
        got = csvs(fig)
        differ = sorted(n for n in set(reference) | set(got) if reference.get(n) != got.get(n))
        ok = not differ
        trials.append({"trial": k, "notebook": nb, "kill_after_s": round(delay, 1), "processes_killed": killed,
                       "rerun_s": round(rerun, 1),
                       "identical": ok, "differing_csv": differ})
        print(f"trial {k}: killed {killed} process(es) {delay:.1f} s into notebook {nb}; rerun {rerun:.0f} s; "
              f"{'tables identical' if ok else 'DIFFER: ' + ', '.join(differ)}", flush=True)
    passed = sum(t["identical"] for t in trials)
    summary = {"profile": args.profile, "kills": len(trials), "identical": passed, "seed": args.seed,
               "trials": trials, "reference_csv": sorted(reference)}
    (work / "result.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"{passed} of {len(trials)} interrupted runs ended with tables identical to the uninterrupted run "
          f"({work / 'result.json'})", flush=True)
    return 0 if passed == len(trials) else 1


if __name__ == "__main__":
    sys.exit(main())
