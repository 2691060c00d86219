"""Start a run folder from a finished one (``--base RUN``): an exercise reruns only what it changes.

A lab or a reader trying one parameter should not wait for notebooks 01-04 again, nor overwrite
the run everyone starts from. :func:`start_from` copies a finished run folder (its results, its
``.done`` markers, the executed notebooks) into a new, empty one, and the figures the base run
wrote into the new figure folder. The markers record the run and figure folders among each
notebook's inputs (:mod:`umcam_lib.pipeline.plan`); the copy's markers name the new folders, so
the plan of the new run reuses every notebook whose other inputs still hold and reruns the rest::

    python -m umcam_lib.pipeline --profile lesson --base runs/lesson --out runs/ex05 \\
        --figures runs/ex05/figures --from 05 --set gse.margin_mm=10
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from ..hashing import value_hash
from ..io import write_json
from ..paths import resolve

#: What a copy leaves out: the base run's console logs (the new run writes its own).
IGNORED = ("logs",)


class BaseRunError(ValueError):
    """``--base`` cannot start this run folder (the message says why)."""


def start_from(base: str | Path, run_dir: str | Path, figures_dir: str | Path) -> list[str]:
    """Copy the finished run ``base`` into the new run folder ``run_dir``.

    Parameters
    ----------
    base : path
        A run folder with at least one finished notebook (``.done/NN.json``).
    run_dir : path
        The new run folder; it must not exist or be empty.
    figures_dir : path
        The new run's figure folder; the base run's figures are copied into it.

    Returns
    -------
    list of str
        The notebooks whose results were copied (``["01", "02", ...]``).

    Raises
    ------
    BaseRunError
        ``base`` has no finished notebook, is the new folder itself, or ``run_dir`` is not empty.
    """
    base, run_dir, figures_dir = resolve(base), resolve(run_dir), resolve(figures_dir)
    markers = sorted((base / ".done").glob("*.json")) if (base / ".done").is_dir() else []
    if not markers:
        raise BaseRunError(f"--base {base}: no finished notebook (.done/NN.json); run the pipeline into it first")
    if base == run_dir:
        raise BaseRunError(f"--base {base}: the base is the run folder itself; name a new --out")
    if run_dir.exists() and any(run_dir.iterdir()):
        raise BaseRunError(f"--base: the run folder {run_dir} is not empty; --base starts a new one (name another --out)")
    tmp = run_dir.with_name(run_dir.name + ".copying")
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(base, tmp, ignore=shutil.ignore_patterns(*IGNORED))
    old_figures: set[str] = set()
    for path in sorted((tmp / ".done").glob("*.json")):
        marker = json.loads(path.read_text(encoding="utf-8"))
        components = marker.get("components") or {}
        old_figures.add(str((components.get("params") or {}).get("figures_dir", "")))
        for record in (components.get("params"), marker.get("params"), marker.get("depends")):
            if isinstance(record, dict):
                record.update({k: str(v) for k, v in (("run_dir", run_dir), ("figures_dir", figures_dir)) if k in record})
        if components:
            marker["fingerprint"] = value_hash(components)
        write_json(path, marker)
    if run_dir.exists():
        run_dir.rmdir()
    tmp.rename(run_dir)
    for folder in sorted(f for f in old_figures if f):
        src = Path(folder)
        if src.is_dir() and src.resolve() != figures_dir:
            shutil.copytree(src, figures_dir, dirs_exist_ok=True)
    return [p.stem for p in markers]


__all__ = ["BaseRunError", "IGNORED", "start_from"]
