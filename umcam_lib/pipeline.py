"""Run the study: execute the notebooks in order with papermill.

Usage::

    python -m umcam_lib.pipeline --profile quick
    python -m umcam_lib.pipeline --params my.yaml --set seed=7 --set data.n_volumes=12
    python -m umcam_lib.pipeline --profile quick --only 03,04      # later notebooks read earlier artifacts
    python -m umcam_lib.pipeline --profile quick --from 05 --out runs/try --figures figures/try

Every parameter is checked against the schema (``umcam_lib.config``) before anything runs.
Each notebook receives the top-level parameters its ``parameters`` cell declares (``run_dir``
and ``figures_dir`` are set by the runner). Executed notebooks are written to
``<out>/notebooks/``.

Reuse. A finished notebook leaves ``<out>/.done/NN.json`` with its fingerprint (its parameters,
its source, the library's source, the input files' contents for NIfTI data, and the
fingerprints of every earlier notebook) and the run ids of the earlier notebooks' results it
read. It is reused only when all of these still hold; ``--only`` / ``--from`` refuse to start
when an earlier notebook's result is missing or was made from anything else, and print the
command that makes it. ``--force`` recomputes the selected notebooks from scratch: caches are
ignored and training starts again instead of resuming.
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
import shlex
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from .config import (ParameterError, apply_overrides, fingerprint, load_params, profile_path, unknown_keys,
                     validate_params)
from .data.nifti import NIFTI_EXTENSIONS
from .io import write_json
from .paths import NOTEBOOK_DIR, REPO_ROOT, resolve
from .provenance import library_fingerprint

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

#: Check parameters against the schema of :mod:`umcam_lib.config` (tests of the runner on
#: stand-in notebooks turn it off).
SCHEMA_CHECK = True

#: Environment variable that tells a notebook's library calls to recompute (``--force``).
FORCE_ENV = "UMCAM_FORCE"


class PipelineError(RuntimeError):
    """A notebook failed, or cannot run; the message says which and what to do."""


class Interrupted(RuntimeError):
    """The user interrupted the run (Ctrl-C); the message names the notebook."""


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


def _check_file(path: Path, data: dict[str, Any]) -> None:
    """Unknown keys, at any depth, of one parameter file (named in the error)."""
    bad = unknown_keys(data)
    if bad:
        raise ParameterError(f"{path}: {len(bad)} unknown key(s):\n  " + "\n  ".join(bad))


def resolve_params(profile: str | None = "quick", params_file: str | Path | None = None,
                   overrides: Sequence[str] = ()) -> dict[str, Any]:
    """Load a profile (or a parameter file), apply ``--set`` overrides, validate everything.

    Raises
    ------
    ParameterError
        A file or an override names an unknown key (at any depth), or a value has the wrong
        type or is out of range; the message names the key (and the file) and what is allowed.
    """
    path = Path(params_file) if params_file else profile_path(profile or "quick")
    params = load_params(path, check=_check_file if SCHEMA_CHECK else None)
    params = apply_overrides(params, list(overrides))
    params = _subjects_follow_root(params, overrides)
    if profile and not params_file:
        params.setdefault("profile", profile)
    params.setdefault("profile", Path(path).stem)
    if SCHEMA_CHECK:
        where = f"parameters of {path}" + (f" with --set {', '.join(overrides)}" if overrides else "")
        params = validate_params(params, where=where)
    return params


def _subjects_follow_root(params: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Explicit subjects of a parameter file belong to that file's ``data.root``.

    When ``--set data.root=...`` points a profile at another folder (the README's own-data
    command on the real profile) and ``data.val_subjects`` / ``data.test_subjects`` were not
    set on the command line too, the file's lists (``sub-02`` of the CC0 stacks) are dropped
    and the split follows ``data.split_ratio``; a line says so.
    """
    keys = {o.split("=", 1)[0].strip() for o in overrides}
    data = params.get("data")
    if "data.root" not in keys or not isinstance(data, dict):
        return params
    for name in ("val_subjects", "test_subjects"):
        if f"data.{name}" not in keys and data.get(name):
            print(f"note: data.root was set on the command line, so the parameter file's data.{name} "
                  f"{data[name]} (written for its own folder) is not used; subjects are split by "
                  f"data.split_ratio {data.get('split_ratio')} unless you pass --set data.{name}=[...]",
                  flush=True)
            data[name] = []
    return params


def input_identity(params: dict[str, Any]) -> Any:
    """Identity of the input files notebook 01 reads: for NIfTI data, every ``.nii``/``.nii.gz``
    file under ``data.root`` with its size and SHA-256 (a changed mask changes it); ``None`` for
    the synthetic cohort (generated from the parameters)."""
    data = params.get("data") or {}
    if not isinstance(data, dict) or data.get("source") != "nifti" or not data.get("root"):
        return None
    root = resolve(data["root"])
    if not root.is_dir():
        return {"root": str(root), "missing": True}
    files = []
    for f in sorted(root.rglob("*")):
        if f.is_file() and f.name.endswith(NIFTI_EXTENSIONS):
            h = hashlib.sha256()
            with open(f, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
            files.append([f.relative_to(root).as_posix(), f.stat().st_size, h.hexdigest()])
    return {"root": str(root), "files": files}


def rerun_command(profile: str | None, params_file: str | Path | None, overrides: Sequence[str],
                  out: str | Path | None, figures: str | Path | None, numbers: Sequence[str]) -> str:
    """The command line that repeats the user's options and runs ``numbers``."""
    parts = ["python", "-m", "umcam_lib.pipeline"]
    parts += ["--params", str(params_file)] if params_file else (["--profile", profile] if profile else [])
    for o in overrides:
        parts += ["--set", o]
    if out is not None:
        parts += ["--out", str(out)]
    if figures is not None:
        parts += ["--figures", str(figures)]
    parts += ["--only", ",".join(numbers)]
    return " ".join(shlex.quote(p) for p in parts)


def _read_marker(path: Path) -> dict[str, Any] | None:
    try:
        m = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return m if isinstance(m, dict) else None


_WARNING_RE = re.compile(r"\b(\w*Warning): (.*)")

#: Warning categories not echoed: environment noise, not about the study's data or results
#: (tqdm's "IProgress not found" inside a headless kernel).
QUIET_WARNINGS = ("TqdmWarning",)


def notebook_warnings(output: Path) -> list[str]:
    """Warnings an executed notebook printed (``warnings.warn`` writes them to its stderr).

    Returns
    -------
    list of str
        ``"<Category>: <message>"`` once per distinct warning, in order.
    """
    try:
        cells = json.loads(output.read_text()).get("cells", [])
    except (OSError, ValueError):
        return []
    out: list[str] = []
    for cell in cells:
        for o in cell.get("outputs", []) or []:
            if o.get("output_type") != "stream" or o.get("name") != "stderr":
                continue
            for line in "".join(o.get("text", "")).splitlines():
                m = _WARNING_RE.search(line)
                if m and m.group(1) not in QUIET_WARNINGS:
                    msg = f"{m.group(1)}: {m.group(2).strip()}"
                    if msg not in out:
                        out.append(msg)
    return out


def _echo_warnings(number: str, output: Path) -> None:
    for w in notebook_warnings(output):
        print(f"  warning from notebook {number}: {w}", file=sys.stderr, flush=True)


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
        Recompute the selected notebooks: no reuse, no cache, training starts from scratch.
    verbose : bool
        Stream the notebooks' cell output to the console.

    Raises
    ------
    ParameterError
        A parameter is unknown, of the wrong type or out of range (nothing has run).
    PipelineError
        A notebook failed, or a selected notebook needs an earlier notebook's result that is
        missing or was made from other parameters, code or inputs (the message gives the
        command that makes it).
    Interrupted
        Ctrl-C; the message names the notebook. Rerunning the same command resumes.
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
    library = library_fingerprint()
    inputs = input_identity(params)
    chain = fingerprint({"root": "umcam", "library": library, "inputs": inputs})
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

    # which earlier results on disk are still valid: a marker whose fingerprint matches and
    # whose recorded upstream run ids are those of the markers on disk now
    current: dict[str, str | None] = {}   # notebook -> run id of its valid result (None: none)

    def valid(number: str, chain: str) -> dict[str, Any] | None:
        m = _read_marker(done_dir / f"{number}.json")
        if m is None or m.get("fingerprint") != chain or not (nb_out / NOTEBOOKS[number]).is_file():
            return None
        ups = m.get("upstream") or {}
        if any(ups.get(u) != current.get(u) for u in current if u < number):
            return None
        return m

    last_selected = todo[-1][0] if todo else None
    stale = []
    for number, nb_name, _src, _inject, chain in plan:
        if last_selected is None or number > last_selected:
            break
        m = valid(number, chain)
        current[number] = m.get("run_id") if m else None
        if number not in selected and m is None:
            stale.append(number)
    if stale:
        need = [p[0] for p in plan if stale[0] <= p[0] <= last_selected]
        why = []
        for number in stale:
            m = _read_marker(done_dir / f"{number}.json")
            why.append(f"notebook {number}: " + ("no finished result in this run folder" if m is None else
                       "its result was made from other parameters, code, inputs or earlier results"))
        raise PipelineError(
            f"cannot run notebook(s) {', '.join(p[0] for p in todo)} in {run_dir}: they read the results of "
            f"earlier notebooks, and " + "; ".join(why) + ".\n  Run them first, with the same options:\n    "
            + rerun_command(profile if not params_file else None, params_file, overrides, out, figures, need))

    print(f"UM-CAM study | profile {name} | run folder {run_dir} | figures {fig_dir} | notebooks {', '.join(p[0] for p in todo)}", flush=True)
    t_all = time.time()
    running = None
    try:
        for i, (number, nb_name, src, inject, chain) in enumerate(todo, 1):
            output = nb_out / nb_name
            marker = done_dir / f"{number}.json"
            upstream = {u: current.get(u) for u in current if u < number}
            m = None if force else valid(number, chain)
            if m is not None:
                print(f"[{i}/{len(todo)}] {nb_name}: parameters, code, inputs and earlier results unchanged, "
                      f"reusing {output}", flush=True)
                current[number] = m.get("run_id")
                results.append(NotebookResult(number, nb_name, "reused", 0.0, output))
                continue
            marker.unlink(missing_ok=True)
            current[number] = None
            print(f"[{i}/{len(todo)}] {nb_name}: {'recomputing (--force)' if force else 'running'} ...", flush=True)
            t0 = time.time()
            running = (number, nb_name)
            if force:
                os.environ[FORCE_ENV] = "1"
            else:
                os.environ.pop(FORCE_ENV, None)
            try:
                pm.execute_notebook(str(src), str(output), parameters=inject, kernel_name="python3",
                                    language="python", cwd=str(REPO_ROOT), progress_bar=not verbose,
                                    log_output=verbose, stdout_file=None, stderr_file=None)
            except Exception as exc:  # papermill wraps cell errors; anything else is reported alike
                if getattr(exc, "ename", "") == "KeyboardInterrupt":
                    raise KeyboardInterrupt from exc
                _echo_warnings(number, output)
                raise PipelineError(_describe_failure(exc, number, nb_name, output)) from exc
            finally:
                os.environ.pop(FORCE_ENV, None)
            running = None
            dt = time.time() - t0
            run_id = uuid.uuid4().hex[:16]
            write_json(marker, {"fingerprint": chain, "run_id": run_id, "upstream": upstream,
                                "library": library, "seconds": round(dt, 1), "params": inject})
            current[number] = run_id
            _echo_warnings(number, output)
            print(f"[{i}/{len(todo)}] {nb_name}: done in {dt:.1f} s", flush=True)
            results.append(NotebookResult(number, nb_name, "ran", dt, output))
    except (KeyboardInterrupt, asyncio.CancelledError):  # Ctrl-C may surface as a cancelled kernel call
        where = f"in notebook {running[0]} ({running[1]})" if running else "between notebooks"
        raise Interrupted(f"interrupted {where}; rerun the same command to resume") from None
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
    ap.add_argument("--force", action="store_true",
                    help="recompute the selected notebooks from scratch (no reuse, no cache, no resumed training)")
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
    except Interrupted as exc:
        print(f"\n{exc}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("\ninterrupted before any notebook ran; rerun the same command", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
