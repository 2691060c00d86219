"""Two runs of one profile that differ only in thread count: does the rerun stay inside the intervals?

Usage::

    python benchmarks/rerun_check.py RUN RERUN --label "threads 2 vs 1" \
        [--out benchmarks/results/rerun_real.md]

RUN is the run whose figures are reported (e.g. the clean run behind ``figures/real``), RERUN the
same profile rerun with another ``threads`` / ``--jobs`` setting (same data, seeds and code). For
every row and every claim both runs measured, it prints the first run's mean (or gap) with its
95 % hierarchical-bootstrap interval and its rerun interval (where a rerun with fresh seeds lands),
the rerun's value, the shift and whether the rerun lies inside each (:mod:`umcam_lib.report.rerun`).
Writes Markdown (and a CSV beside it) with ``--out``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from umcam_lib.report import to_markdown  # noqa: E402
from umcam_lib.report.rerun import claim_shifts, row_shifts  # noqa: E402


def _count(table) -> str:
    """``16 of 18`` (and how many had no rerun interval, for one seed)."""
    known = table["inside"].dropna()
    none = len(table) - len(known)
    return f"{int(known.astype(bool).sum())} of {len(known)}" + (f" ({none} of one seed, without one)" if none else "")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path, help="the reported run folder")
    ap.add_argument("rerun", type=Path, help="the same profile rerun with another thread count")
    ap.add_argument("--label", default="", help="what differs between the runs (for the heading)")
    ap.add_argument("--out", type=Path, help="write Markdown here (and a .csv of the rows beside it)")
    args = ap.parse_args(argv)
    for p in (args.run, args.rerun):
        if not (p / "scores").is_dir():
            ap.error(f"{p}: no scores/ folder (not a run folder, or nothing scored yet)")
    rows, claims = row_shifts(args.run, args.rerun), claim_shifts(args.run, args.rerun)
    lines = [f"# Rerun check: `{args.run}` against `{args.rerun}`" + (f" ({args.label})" if args.label else ""), "",
             f"Command: `python benchmarks/rerun_check.py {args.run} {args.rerun}"
             + (f" --label \"{args.label}\"" if args.label else "") + "`", "",
             f"**Rows** (DSC %, mean over seeds of the per-volume mean): {_count(rows)} rerun means inside the first "
             "run's rerun interval; "
             f"{int(rows['inside_ci'].sum())} of {len(rows)} inside its 95 % interval of the mean (hierarchical "
             f"bootstrap over volumes and seeds); largest shift {rows['shift'].abs().max():.2f} points, "
             f"{rows['shift_in_seed_sd'].abs().max():.2f} seed SDs.", "",
             to_markdown(rows.round(3)), "",
             f"**Claims**: {_count(claims)} rerun gaps inside the first run's rerun interval; "
             f"{int(claims['inside_ci'].sum())} of {len(claims)} inside its 95 % interval; verdicts equal in "
             f"{int((claims['verdict'] == claims['rerun_verdict']).sum())} of {len(claims)}.", "",
             to_markdown(claims.round(3)), ""]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_suffix(".tmp")
        tmp.write_text(text)
        tmp.replace(args.out)
        rows.assign(kind="row").to_csv(args.out.with_suffix(".csv"), index=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
