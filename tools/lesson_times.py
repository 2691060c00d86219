"""The exercise table of docs/teaching.md, timed from a measured lesson run.

Every exercise starts from the lesson run (``--base runs/lesson``) and reruns only the notebooks
its change reaches (:data:`EXERCISES`); its time is the sum of those notebooks' times in the lesson
run, as ``pipeline_last.json`` recorded them. The measurement is kept in
``benchmarks/results/lesson_run.json`` so the table can be checked without the run::

    python tools/lesson_times.py --record runs/lesson   # after `make lesson`: store its times
    python tools/lesson_times.py                         # rewrite the table of docs/teaching.md
    python tools/lesson_times.py --check                 # exit 1 when the table is stale
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECORD = ROOT / "benchmarks" / "results" / "lesson_run.json"
LESSON_CLAIMS = ROOT / "benchmarks" / "results" / "lesson_claims.csv"
QUICK_CLAIMS = ROOT / "figures" / "quick" / "claims.csv"
DOC = ROOT / "docs" / "teaching.md"
_BLOCK = re.compile(r"(<!-- lesson-times:begin -->\n).*?(<!-- lesson-times:end -->)", re.S)
_VERSUS = re.compile(r"(<!-- lesson-vs-quick:begin -->\n).*?(<!-- lesson-vs-quick:end -->)", re.S)

#: (exercise, what it changes, notebooks it reruns): the commands are at the end of each notebook.
EXERCISES = [
    ("01.1", "data.spacing_mm=4.0", ["01"]),
    ("01.2", "data.split_ratio=[50,25,25]", ["01"]),
    ("02.1", "classifier.batch_norm=false", ["02"]),
    ("02.2", "classifier.augment=false", ["02"]),
    ("03.1", "cam.threshold_grid=[0.1,0.9,0.2]", ["03"]),
    ("03.2", "cam.target=margin", ["03"]),
    ("04.1", "cam.layers=[block3,block4,block5]", ["03", "04"]),
    ("04.2", "classifier.equivariance=0", ["02", "03", "04"]),
    ("05.1", "gse.threshold_rule=variance", ["05"]),
    ("05.2", "gse.sweep_margin_mm=[2.0,5.0,10.0,20.0]", ["05"]),
    ("06.1", "seg.soft_labels=false", ["06"]),
    ("06.2", "seg.postprocess=lcc", ["06"]),
    ("06.3", "seg.tta=true", ["06"]),
    ("07.1", "baselines.drs_delta=0.9", ["07"]),
    ("07.2", "baselines.amr_consistency=0", ["07"]),
    ("08.1", "`seed=1`: a whole lesson run", ["01", "02", "03", "04", "05", "06", "07", "08"]),
    ("08.2", "nothing: `--only 08` on the lesson run", []),
]


def record(run_dir: Path) -> dict:
    """The per-notebook seconds of a finished lesson run (its ``pipeline_last.json``)."""
    last = json.loads((run_dir / "pipeline_last.json").read_text(encoding="utf-8"))
    if last.get("profile") != "lesson":
        raise SystemExit(f"{run_dir}: a {last.get('profile')!r} run, not the lesson profile")
    seconds = {nb["number"]: float(nb["seconds"]) for nb in last["notebooks"]}
    if len(seconds) != 8 or any(nb["status"] != "ran" for nb in last["notebooks"]):
        raise SystemExit(f"{run_dir}: time a lesson run from an empty run folder (every notebook ran)")
    return {"seconds": seconds, "total_s": round(sum(seconds.values()), 1)}


def render(measured: dict) -> str:
    """The Markdown table: the lesson run's time, then one row per exercise."""
    s = measured["seconds"]
    where = measured.get("where", "")
    lines = [f"`make lesson` from an empty run folder: **{measured['total_s'] / 60:.1f} min** "
             f"({', '.join(f'{k} {v / 60:.1f}' for k, v in sorted(s.items()))} min; {where}).", "",
             "| exercise | change | notebooks rerun | minutes |", "|---|---|---|---|"]
    for ex, change, nbs in EXERCISES:
        minutes = sum(s[n] for n in nbs) / 60
        shown = change if " " in change else f"`{change}`"
        lines.append(f"| {ex} | {shown} | {', '.join(nbs) or '-'} | {minutes:.1f} |")
    return "\n".join(lines) + "\n"


def render_versus(quick_csv: Path = QUICK_CLAIMS, lesson_csv: Path = LESSON_CLAIMS) -> str:
    """The lesson's claims beside quick's (test, Dice): the gap of each and whether its sign agrees."""
    import csv

    def rows(path: Path) -> dict:
        with path.open(newline="", encoding="utf-8") as fh:
            return {(r["claim"]): r for r in csv.DictReader(fh) if r["split"] == "test" and r["metric"] == "dsc"}

    q, les = rows(quick_csv), rows(lesson_csv)
    lines = ["| claim | quick gap (verdict) | lesson gap (verdict) | same direction |", "|---|---|---|---|"]
    differ = []
    for claim, a in q.items():
        b = les.get(claim)
        if b is None or b["gap"] == "" or a["gap"] == "":
            continue
        same = (float(a["gap"]) > 0) == (float(b["gap"]) > 0)
        if not same:
            differ.append(claim)
        lines.append(f"| {claim} | {float(a['gap']):+.1f} ({a['verdict']}) | {float(b['gap']):+.1f} ({b['verdict']}) | "
                     f"{'yes' if same else '**no**'} |")
    head = ("Every claim's gap points the same way in both profiles." if not differ else
            f"{len(differ)} of {len(lines) - 2} claims point the other way in the lesson profile: "
            + "; ".join(differ) + ". Read them in the lesson as an exercise in spread, not as findings.")
    return head + "\n\n" + "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--record", type=Path, metavar="RUN",
                    help="store the times and claims of this finished lesson run (its figures: RUN/figures)")
    ap.add_argument("--where", default="", help="with --record: the machine and commit, in words")
    ap.add_argument("--check", action="store_true", help="exit 1 when docs/teaching.md's table is stale")
    args = ap.parse_args(argv)
    if args.record:
        RECORD.write_text(json.dumps({**record(args.record), "where": args.where}, indent=1) + "\n", encoding="utf-8")
        LESSON_CLAIMS.write_bytes((args.record / "figures" / "claims.csv").read_bytes())
    measured = json.loads(RECORD.read_text(encoding="utf-8"))
    text = DOC.read_text(encoding="utf-8")
    new = _BLOCK.sub(lambda m: m.group(1) + render(measured) + m.group(2), text)
    new = _VERSUS.sub(lambda m: m.group(1) + render_versus() + m.group(2), new)
    if args.check:
        if new != text:
            print("docs/teaching.md: the exercise table is stale; run python tools/lesson_times.py", file=sys.stderr)
            return 1
        return 0
    DOC.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
