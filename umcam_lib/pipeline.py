"""Run the study: execute the notebooks in order with papermill.

Usage::

    python -m umcam_lib.pipeline --profile quick
    python -m umcam_lib.pipeline --params my.yaml --set seed=7 --set data.n_volumes=12
    python -m umcam_lib.pipeline --profile quick --only 03,04      # later notebooks read earlier artifacts
    python -m umcam_lib.pipeline --profile quick --from 05 --out runs/try --figures figures/try

Each notebook receives the top-level parameters its ``parameters`` cell declares (``run_dir``
and ``figures_dir`` are set by the runner). Executed notebooks are written to
``<out>/notebooks/``. A notebook whose parameters, whose source and whose upstream notebooks'
parameters did not change since its last successful run is reused, not rerun (``--force``
reruns it). Changes to the library's code are not detected: use ``--force`` after editing it.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from .config import ParameterError, apply_overrides, fingerprint, load_params, profile_path
from .io import write_json
from .paths import NOTEBOOK_DIR, REPO_ROOT, resolve

#: The study's notebooks, in order: number -> file name in ``notebooks/``.
NOTEBOOKS: dict[str, str] = {
    "01": "01_data_preparation.ipynb",
    "02": "02_classifier_training.ipynb",
    "03": "03_cam_variants.ipynb",
    "04": "04_umcam_ablation.ipynb",
    "05": "05_spl_generation.ipynb",
    "06": "06_segmentation.ipynb",
    "07": "07_baselines.ipynb",
    "08": "08_report.ipynb",
}

RUNNER_PARAMS = ("run_dir", "figures_dir")


class PipelineError(RuntimeError):
    """A notebook failed; the message names the notebook, the cell and the error."""


@dataclass
class NotebookResult:
    number: str
    name: str
    status: str          # "ran" or "reused"
    seconds: float
    output: Path


def notebook_parameters(path: Path) -> dict[str, Any]:
    """The names (and papermill's view of the defaults) of a notebook's ``parameters`` cell."""
    import papermill as pm

    return pm.inspect_notebook(str(path))


def _file_hash(path: Path) -> str:
    """Hash of a notebook's source cells (outputs and metadata ignored)."""
    nb = json.loads(path.read_text())
    src = [("".join(c.get("source", "")), c.get("cell_type")) for c in nb.get("cells", [])]
    return hashlib.sha256(json.dumps(src).encode()).hexdigest()[:16]


def _select(only: str | Sequence[str] | None, start: str | None) -> list[str]:
    numbers = list(NOTEBOOKS)
    if only and start:
        raise ParameterError("--only and --from cannot be combined")
    if only:
        wanted = [s.strip().zfill(2) for s in (only.split(",") if isinstance(only, str) else only) if str(s).strip()]
        unknown = [w for w in wanted if w not in NOTEBOOKS]
        if unknown:
            raise ParameterError(f"--only: unknown notebook number(s) {unknown}; known: {', '.join(numbers)}")
        return [n for n in numbers if n in wanted]
    if start:
        s = str(start).zfill(2)
        if s not in NOTEBOOKS:
            raise ParameterError(f"--from: unknown notebook number {start!r}; known: {', '.join(numbers)}")
        return numbers[numbers.index(s):]
    return numbers


def resolve_params(profile: str | None = "quick", params_file: str | Path | None = None,
                   overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Load a profile (or a parameter file) and apply ``--set`` overrides."""
    path = Path(params_file) if params_file else profile_path(profile or "quick")
    params = load_params(path)
    params = apply_overrides(params, list(overrides))
    if profile and not params_file:
        params.setdefault("profile", profile)
    params.setdefault("profile", Path(path).stem)
    return params


def _kernel_env(params: dict[str, Any]) -> None:
    """Make papermill's ``python3`` kernel this interpreter's, and pass thread limits to it."""
    share = str(Path(sys.prefix) / "share" / "jupyter")
    current = os.environ.get("JUPYTER_PATH", "")
    if share not in current.split(os.pathsep):
        os.environ["JUPYTER_PATH"] = os.pathsep.join([share] + ([current] if current else []))
    threads = params.get("threads")
    if threads:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(threads)
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")


def _describe_failure(exc: Exception, number: str, name: str, output: Path) -> str:
    cell = getattr(exc, "cell_index", None)
    count = getattr(exc, "exec_count", None)
    ename = getattr(exc, "ename", type(exc).__name__)
    evalue = getattr(exc, "evalue", str(exc))
    where = "an unknown cell"
    if cell is not None:
        where = f"cell {cell} of the executed notebook"
        if count is not None:
            where += f" (execution count {count})"
        try:  # papermill adds an error banner cell on top: find the cell by its execution count
            cells = json.loads(output.read_text())["cells"]
            hit = [c for c in cells if c.get("execution_count") == count] if count is not None else []
            src = "".join((hit[0] if hit else cells[cell]).get("source", "")).strip()
            first = next((ln for ln in src.splitlines() if ln.strip() and not ln.startswith("#")), "")
            where += f", which starts `{first[:80]}`" if first else ""
        except (OSError, ValueError, IndexError, KeyError):
            pass
    return (f"notebook {number} ({name}) failed in {where}: {ename}: {evalue}\n"
            f"  the partly executed notebook is at {output}")


def run_pipeline(profile: str | None = "quick", params_file: str | Path | None = None,
                 overrides: Sequence[str] = (), only: str | Sequence[str] | None = None,
                 start: str | None = None, out: str | Path | None = None,
                 figures: str | Path | None = None, force: bool = False,
                 verbose: bool = False) -> list[NotebookResult]:
    """Execute the selected notebooks in order; return what ran and what was reused.

    Parameters
    ----------
    profile : str, optional
        Name of a profile in ``params/`` (ignored when ``params_file`` is given).
    params_file : path, optional
        Any YAML parameter file (may name a ``base:`` profile).
    overrides : sequence of str
        ``KEY=VALUE`` with dotted keys, e.g. ``data.n_volumes=12``.
    only, start : optional
        Notebook numbers to run (``"03,04"``) or the first one to run (``"05"``).
    out, figures : path, optional
        Run folder (default ``runs/<profile>``) and figure folder (default ``figures/<profile>``).
    force : bool
        Rerun notebooks even when their parameters did not change.
    verbose : bool
        Stream the notebooks' cell output to the console.
    """
    import papermill as pm

    params = resolve_params(profile, params_file, overrides)
    name = str(params.get("profile"))
    run_dir = resolve(out) if out else resolve(Path("runs") / name)
    fig_dir = resolve(figures) if figures else resolve(Path("figures") / name)
    run_dir.mkdir(parents=True, exist_ok=True)
    fig_dir.mkdir(parents=True, exist_ok=True)
    selected = _select(only, start)
    _kernel_env(params)

    declared_anywhere: set[str] = set()
    plan = []
    chain = fingerprint({"root": "umcam"})
    for number, nb_name in NOTEBOOKS.items():
        src = NOTEBOOK_DIR / nb_name
        if not src.is_file():
            if number in selected:
                raise PipelineError(f"notebook {number} is registered but {src} does not exist")
            continue
        declared = notebook_parameters(src)
        declared_anywhere |= set(declared)
        inject = {k: params[k] for k in declared if k in params and k not in RUNNER_PARAMS}
        inject["run_dir"] = str(run_dir)
        inject["figures_dir"] = str(fig_dir)
        chain = fingerprint({"prev": chain, "params": inject, "source": _file_hash(src)})
        plan.append((number, nb_name, src, inject, chain))
    unknown = sorted(set(params) - declared_anywhere - {"profile"})
    if unknown:
        print(f"warning: parameters no notebook declares (ignored): {', '.join(unknown)}", file=sys.stderr)

    nb_out = run_dir / "notebooks"
    done_dir = run_dir / ".done"
    nb_out.mkdir(parents=True, exist_ok=True)
    results: list[NotebookResult] = []
    todo = [p for p in plan if p[0] in selected]
    print(f"UM-CAM study | profile {name} | run folder {run_dir} | figures {fig_dir} | notebooks {', '.join(p[0] for p in todo)}", flush=True)
    t_all = time.time()
    for i, (number, nb_name, src, inject, chain) in enumerate(todo, 1):
        output = nb_out / nb_name
        marker = done_dir / f"{number}.json"
        if not force and marker.is_file() and output.is_file():
            if json.loads(marker.read_text()).get("fingerprint") == chain:
                print(f"[{i}/{len(todo)}] {nb_name}: parameters unchanged, reusing {output}", flush=True)
                results.append(NotebookResult(number, nb_name, "reused", 0.0, output))
                continue
        marker.unlink(missing_ok=True)
        print(f"[{i}/{len(todo)}] {nb_name}: running ...", flush=True)
        t0 = time.time()
        try:
            pm.execute_notebook(str(src), str(output), parameters=inject, kernel_name="python3",
                                language="python", cwd=str(REPO_ROOT), progress_bar=not verbose,
                                log_output=verbose, stdout_file=None, stderr_file=None)
        except Exception as exc:  # papermill wraps cell errors; anything else is reported alike
            raise PipelineError(_describe_failure(exc, number, nb_name, output)) from exc
        dt = time.time() - t0
        write_json(marker, {"fingerprint": chain, "seconds": round(dt, 1), "params": inject})
        print(f"[{i}/{len(todo)}] {nb_name}: done in {dt:.1f} s", flush=True)
        results.append(NotebookResult(number, nb_name, "ran", dt, output))
    total = time.time() - t_all
    write_json(run_dir / "pipeline_last.json", {
        "profile": name, "seconds": round(total, 1),
        "notebooks": [{"number": r.number, "status": r.status, "seconds": round(r.seconds, 1)} for r in results]})
    print(f"finished in {total / 60:.1f} min; figures and tables in {fig_dir}", flush=True)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m umcam_lib.pipeline", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--profile", default=None, help="profile in params/ (tiny, quick, paper, real); default quick")
    src.add_argument("--params", default=None, help="any YAML parameter file")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a parameter (dotted key), repeatable")
    sel = ap.add_mutually_exclusive_group()
    sel.add_argument("--only", default=None, metavar="NN[,NN]", help="run only these notebooks")
    sel.add_argument("--from", dest="start", default=None, metavar="NN", help="run from this notebook on")
    ap.add_argument("--out", default=None, help="run folder (default runs/<profile>)")
    ap.add_argument("--figures", default=None, help="figure folder (default figures/<profile>)")
    ap.add_argument("--force", action="store_true", help="rerun notebooks whose parameters did not change")
    ap.add_argument("--verbose", action="store_true", help="stream cell output to the console")
    ap.add_argument("--list", action="store_true", help="list the notebooks and exit")
    args = ap.parse_args(argv)
    if args.list:
        for number, nb in NOTEBOOKS.items():
            print(number, nb, "" if (NOTEBOOK_DIR / nb).is_file() else "(missing)")
        return 0
    try:
        run_pipeline(profile=args.profile or (None if args.params else "quick"), params_file=args.params,
                     overrides=args.overrides, only=args.only, start=args.start, out=args.out,
                     figures=args.figures, force=args.force, verbose=args.verbose)
    except (ParameterError, PipelineError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
