"""Where a study run's time went: the slowest cells of each executed notebook of a run folder.

papermill records each cell's duration in the executed copy (``<run>/notebooks/*.ipynb``).
This script lists, per notebook, its total and every cell above ``--min-seconds``, with the
first code line of the cell, so a speed lever can be aimed at what costs (issue 19)::

    python benchmarks/cell_times.py runs/quick --out benchmarks/results/cell_times_quick.md

Nothing is run; the times are those of the machine and load the run had.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def cell_times(notebook: Path) -> list[tuple[int, float, str]]:
    """(cell index, seconds, first code line) of every executed code cell of one notebook."""
    nb = json.loads(notebook.read_text())
    out = []
    for i, cell in enumerate(nb.get("cells", [])):
        seconds = (cell.get("metadata", {}).get("papermill", {}) or {}).get("duration")
        if cell.get("cell_type") != "code" or seconds is None:
            continue
        lines = [ln.strip() for ln in "".join(cell.get("source", "")).splitlines()]
        code = next((ln for ln in lines if ln and not ln.startswith("#")), "")
        out.append((i, float(seconds), code))
    return out


def report(run_dir: Path, min_seconds: float = 10.0) -> str:
    """A markdown summary of the run folder's executed notebooks (raises when there are none)."""
    books = sorted((run_dir / "notebooks").glob("*.ipynb"))
    if not books:
        raise FileNotFoundError(f"{run_dir / 'notebooks'}: no executed notebooks (run the pipeline into {run_dir})")
    lines = [f"# Cell times of `{run_dir}`", "", "| notebook | cell | seconds | share of notebook | first line |",
             "|---|---|---|---|---|"]
    grand = 0.0
    for book in books:
        cells = cell_times(book)
        total = sum(s for _, s, _ in cells)
        grand += total
        lines.append(f"| **{book.stem}** | all | **{total:.0f}** | 100 % | |")
        for i, s, code in sorted(cells, key=lambda c: -c[1]):
            if s < min_seconds:
                break
            lines.append(f"| | [{i}] | {s:.0f} | {100 * s / max(total, 1e-9):.0f} % | `{code[:90].replace('|', '/')}` |")
    lines += ["", f"Sum of cell times: {grand:.0f} s ({grand / 60:.1f} min); kernel start-up and papermill overhead "
              "are not in it."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path, help="a run folder (with notebooks/)")
    ap.add_argument("--min-seconds", type=float, default=10.0, help="list cells at least this long")
    ap.add_argument("--out", type=Path, help="also write the markdown here")
    args = ap.parse_args(argv)
    text = report(args.run, args.min_seconds)
    print(text)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.out.with_name(args.out.name + ".tmp")
        tmp.write_text(text)
        tmp.replace(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
