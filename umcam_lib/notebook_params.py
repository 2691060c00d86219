"""Keep the notebooks' ``parameters`` cells equal to ``params/quick.yaml``.

A notebook opened in JupyterLab runs with its ``parameters`` cell, so those literals must be the
quick profile's values. After changing ``params/quick.yaml`` run::

    python -m umcam_lib.notebook_params          # rewrite the cells that differ
    python -m umcam_lib.notebook_params --check  # exit 1 if any differs

Only the names a cell already declares are written; ``run_dir`` and ``figures_dir`` default to
``runs/quick`` and ``figures/quick``.
"""
from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path
from typing import Any

from .config import load_params, profile_path
from .io import write_text
from .paths import NOTEBOOK_DIR

RUNNER_DEFAULTS = {"run_dir": "runs/quick", "figures_dir": "figures/quick"}


def declared_names(source: str) -> list[str]:
    """Names assigned in a parameters cell, in order."""
    return [n.targets[0].id for n in ast.parse(source).body if isinstance(n, ast.Assign)]


def _literal(value: Any, indent: int = 0) -> str:
    pad = " " * (indent + 4)
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = ",\n".join(f"{pad}{k!r}: {_literal(v, indent + 4)}" for k, v in value.items())
        return "{\n" + items + ",\n" + " " * indent + "}"
    return repr(value)


def render_cell(names: list[str], quick: dict[str, Any]) -> str:
    """Source of a parameters cell declaring ``names`` with the quick profile's values."""
    lines = []
    for name in names:
        if name in RUNNER_DEFAULTS:
            value = RUNNER_DEFAULTS[name]
        elif name in quick:
            value = quick[name]
        else:
            raise KeyError(f"parameters cell declares {name!r}, which params/quick.yaml lacks")
        lines.append(f"{name} = {_literal(value)}")
    return "\n".join(lines)


def sync(check: bool = False, notebooks: list[Path] | None = None) -> list[Path]:
    """Rewrite (or, with ``check``, only list) notebooks whose parameters cell differs."""
    quick = load_params(profile_path("quick"))
    changed = []
    for path in notebooks or sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb")):
        nb = json.loads(path.read_text())
        cells = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
        if len(cells) != 1:
            raise ValueError(f"{path}: expected one cell tagged 'parameters', found {len(cells)}")
        src = "".join(cells[0]["source"])
        new = render_cell(declared_names(src), quick)
        current = {n.targets[0].id: ast.literal_eval(n.value) for n in ast.parse(src).body if isinstance(n, ast.Assign)}
        wanted = {n.targets[0].id: ast.literal_eval(n.value) for n in ast.parse(new).body}
        if current == wanted:
            continue
        changed.append(path)
        if not check:
            cells[0]["source"] = new
            write_text(path, json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return changed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m umcam_lib.notebook_params", description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="only report notebooks that differ")
    args = ap.parse_args(argv)
    changed = sync(check=args.check)
    for p in changed:
        print(f"{'differs' if args.check else 'updated'}: {p.name}")
    return 1 if (args.check and changed) else 0


if __name__ == "__main__":
    sys.exit(main())
