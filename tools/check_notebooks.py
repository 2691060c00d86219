"""Check (or strip) notebooks so that they are committed without outputs: nbstripout's job.

    python tools/check_notebooks.py notebooks/*.ipynb          # exit 1 and name the cells
    python tools/check_notebooks.py --fix notebooks/*.ipynb    # clear outputs and counts in place

A code cell is clean when it has no outputs and no execution count. Only the standard library
is used (the check runs in pre-commit and CI before anything is imported).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def dirty_cells(nb: dict) -> list[int]:
    """Indices of code cells that carry outputs or an execution count."""
    return [i for i, c in enumerate(nb.get("cells", []))
            if c.get("cell_type") == "code" and (c.get("outputs") or c.get("execution_count") is not None)]


def strip(nb: dict) -> dict:
    """Clear outputs and execution counts of every code cell (in place; returned for chaining)."""
    for c in nb.get("cells", []):
        if c.get("cell_type") == "code":
            c["outputs"] = []
            c["execution_count"] = None
    return nb


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("paths", nargs="+", type=Path)
    ap.add_argument("--fix", action="store_true", help="strip outputs in place instead of failing")
    args = ap.parse_args(argv)
    bad = 0
    for path in args.paths:
        try:
            nb = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            print(f"{path}: cannot read as a notebook: {err}", file=sys.stderr)
            bad += 1
            continue
        cells = dirty_cells(nb)
        if not cells:
            continue
        if args.fix:
            path.write_text(json.dumps(strip(nb), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
            print(f"{path}: stripped outputs of cells {cells}")
        else:
            print(f"{path}: cells {cells} have outputs or execution counts "
                  f"(python tools/check_notebooks.py --fix {path})", file=sys.stderr)
            bad += 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
