"""Run the study: execute the notebooks in order with papermill.

Usage::

    python -m umcam_lib.pipeline --profile quick
    python -m umcam_lib.pipeline --params my.yaml --set seed=7 --set data.n_volumes=12
    python -m umcam_lib.pipeline --profile quick --only 03,04      # later notebooks read earlier artifacts
    python -m umcam_lib.pipeline --profile quick --from 05 --out runs/try --figures figures/try

Every parameter is checked against the schema (``umcam_lib.config``) before anything runs.
Each notebook receives ``profile`` (the profile's name, or the path of ``--params``),
``overrides`` (the ``--set`` options as ``{"dotted.key": value}``), ``run_dir`` and
``figures_dir``, and builds its parameters from them with ``umcam_lib.notebook_params.load``,
as it does when opened by hand. Executed notebooks are written to ``<out>/notebooks/``.

Console. One line per notebook (a bar of cells done and the time; redrawn in place on a
terminal), then a summary naming the run log ``<out>/logs/run-<time>.log``, which receives
everything else: papermill's log, the kernel's messages, warnings and the notebooks' output.
On a failure the console names the notebook, the cell and the error's last lines. ``--verbose``
shows papermill's own progress bars and streams the notebooks' output to the console instead.

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
import contextlib
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

from . import notebook_params
from .compare import companion_dirs
from .config import ParameterError, fingerprint
from .data.nifti import NIFTI_EXTENSIONS
from .io import write_json
from .paths import NOTEBOOK_DIR, REPO_ROOT, resolve
from .progress import ProgressLine, console_stream, notebook_title, redirect_output
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


def notebook_keys(path: Path) -> list[str]:
    """The top-level parameter keys a notebook reads (``params["key"]``; its fingerprint's inputs)."""
    return notebook_params.keys_read(path)


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
    """Load a profile (or a parameter file), apply ``--set`` overrides, validate everything.

    Raises
    ------
    ParameterError
        A file or an override names an unknown key (at any depth), or a value has the wrong
        type or is out of range; the message names the key (and the file) and what is allowed.
    """
    source = _profile_argument(profile, params_file)
    path = notebook_params.parameter_file(source)
    where = f"parameters of {path}" + (f" with --set {', '.join(overrides)}" if overrides else "")
    return notebook_params.load(source, notebook_params.parse_set(overrides), validate=SCHEMA_CHECK, where=where)


def _profile_argument(profile: str | None, params_file: str | Path | None) -> str:
    """What a notebook's ``profile`` parameter receives: the profile's name, or the file's path."""
    if params_file:
        return str(resolve(params_file).resolve())
    return profile or "quick"


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


def _echo_warnings(number: str, output: Path, stream: Any = None) -> None:
    for w in notebook_warnings(output):
        print(f"  warning from notebook {number}: {w}", file=stream or sys.stderr, flush=True)


_ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def error_tail(exc: Exception, lines: int = 6) -> list[str]:
    """The last ``lines`` non-empty lines of a failed cell's traceback, without colour codes."""
    tb = getattr(exc, "traceback", None) or []
    text = "\n".join(tb) if isinstance(tb, (list, tuple)) else str(tb)
    out = [ln.rstrip() for ln in _ANSI_RE.sub("", text).splitlines() if ln.strip()]
    return out[-lines:]


class _Progress:
    """Papermill engine hook: calls ``callback(done, total)`` after every executed cell."""

    callback: Any = None


def _progress_engine() -> str:
    """Register (once) and name a papermill engine that reports finished cells to :class:`_Progress`."""
    from papermill.engines import NBClientEngine, papermill_engines

    name = "umcam-progress"
    if name not in papermill_engines._engines:

        class ProgressEngine(NBClientEngine):
            @classmethod
            def execute_managed_notebook(cls, nb_man, kernel_name, **kwargs):
                complete = nb_man.cell_complete
                total = len(nb_man.nb.cells)
                count = [0]

                def cell_complete(cell, cell_index=None, **kw):
                    complete(cell, cell_index=cell_index, **kw)
                    count[0] += 1
                    if _Progress.callback is not None:
                        _Progress.callback(count[0], total)

                nb_man.cell_complete = cell_complete
                return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)

        papermill_engines.register(name, ProgressEngine)
    return name


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
    tail = error_tail(exc)
    return (f"notebook {number} ({name}) failed in {where}: {ename}: {evalue}\n"
            + "".join(f"  | {ln}\n" for ln in tail)
            + f"  the partly executed notebook is at {output}")


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
        Show papermill's progress bars and stream the notebooks' output to the console. Without
        it the console gets one line per notebook and the rest goes to ``<out>/logs/``.

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
    selected = _select(only, start)
    companion_results = run_companions(params, overrides, selected, run_dir, fig_dir, force, verbose)
    run_dir.mkdir(parents=True, exist_ok=True)
    fig_dir.mkdir(parents=True, exist_ok=True)
    _kernel_env(params)

    read_anywhere: set[str] = set()
    plan = []
    library = library_fingerprint()
    inputs = input_identity(params)
    chain = fingerprint({"root": "umcam", "library": library, "inputs": inputs})
    inject_common = {"profile": _profile_argument(profile, params_file),
                     "overrides": notebook_params.parse_set(overrides),
                     "run_dir": str(run_dir), "figures_dir": str(fig_dir)}
    for number, nb_name in NOTEBOOKS.items():
        src = NOTEBOOK_DIR / nb_name
        if not src.is_file():
            if number in selected:
                raise PipelineError(f"notebook {number} is registered but {src} does not exist")
            continue
        try:
            keys = notebook_keys(src)
        except (ValueError, SyntaxError) as exc:
            raise PipelineError(f"notebook {number} ({nb_name}): {exc}") from exc
        read_anywhere |= set(keys)
        # what the notebook's result depends on: the values of the keys it reads
        depends = {k: params[k] for k in ["profile", *keys] if k in params}
        depends.update(run_dir=str(run_dir), figures_dir=str(fig_dir))
        chain = fingerprint({"prev": chain, "params": depends, "source": _file_hash(src)})
        plan.append((number, nb_name, src, dict(inject_common), depends, chain))
    unknown = sorted(set(params) - read_anywhere - {"profile"})
    if unknown:
        print(f"warning: parameters no notebook reads (ignored): {', '.join(unknown)}", file=sys.stderr)

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
    for number, nb_name, _src, _inject, _depends, chain in plan:
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

    header = (f"UM-CAM study | profile {name} | run folder {run_dir} | figures {fig_dir} | "
              f"notebooks {', '.join(p[0] for p in todo)}")
    log_path = run_dir / "logs" / time.strftime("run-%Y%m%d-%H%M%S.log")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    t_all = time.time()
    running = None
    with (open(log_path, "a", encoding="utf-8", buffering=1) as log, console_stream() as console,
          console_stream(sys.stderr) as err_console):
        log.write(header + "\n" + f"parameters: {json.dumps(params, sort_keys=True, default=str)}\n")
        say = print if verbose else (lambda *a, **k: print(*a, **{**k, "file": console}))
        say(header, flush=True)
        width = max((len(notebook_title(p[1])) for p in todo), default=0)
        logger = _papermill_log(log, verbose)
        quiet = contextlib.nullcontext() if verbose else redirect_output(log)
        try:
            with quiet:
                for i, (number, nb_name, src, inject, depends, chain) in enumerate(todo, 1):
                    output = nb_out / nb_name
                    marker = done_dir / f"{number}.json"
                    upstream = {u: current.get(u) for u in current if u < number}
                    m = None if force else valid(number, chain)
                    if m is not None:
                        text = (f"[{i}/{len(todo)}] {nb_name}: parameters, code, inputs and earlier results unchanged, "
                                f"reusing {output}")
                        log.write(text + "\n")
                        if verbose:
                            print(text, flush=True)
                        else:
                            say(f"{number} {notebook_title(nb_name).ljust(width)}  reused (parameters, code, inputs "
                                f"and earlier results unchanged)", flush=True)
                        current[number] = m.get("run_id")
                        results.append(NotebookResult(number, nb_name, "reused", 0.0, output))
                        continue
                    marker.unlink(missing_ok=True)
                    current[number] = None
                    text = f"[{i}/{len(todo)}] {nb_name}: {'recomputing (--force)' if force else 'running'} ..."
                    log.write(text + "\n")
                    if verbose:
                        print(text, flush=True)
                    t0 = time.time()
                    running = (number, nb_name)
                    if force:
                        os.environ[FORCE_ENV] = "1"
                    else:
                        os.environ.pop(FORCE_ENV, None)
                    line = ProgressLine(console, number, notebook_title(nb_name), width) if not verbose else None
                    _Progress.callback = line.update if line is not None else None
                    try:
                        with line if line is not None else contextlib.nullcontext():
                            try:
                                pm.execute_notebook(
                                    str(src), str(output), parameters=inject, kernel_name="python3",
                                    language="python", cwd=str(REPO_ROOT), progress_bar=verbose, log_output=True,
                                    stdout_file=sys.stdout if verbose else None,
                                    stderr_file=sys.stderr if verbose else None,
                                    engine_name=_progress_engine())
                            except Exception as exc:  # papermill wraps cell errors; anything else alike
                                if getattr(exc, "ename", "") == "KeyboardInterrupt":
                                    raise KeyboardInterrupt from exc
                                if line is not None:
                                    line.finish("failed")
                                _echo_warnings(number, output, None if verbose else err_console)
                                message = _describe_failure(exc, number, nb_name, output)
                                log.write(message + "\n")
                                raise PipelineError(message + f"\n  run log: {log_path}") from exc
                            dt = time.time() - t0
                            if line is not None:
                                line.finish()
                    finally:
                        _Progress.callback = None
                        os.environ.pop(FORCE_ENV, None)
                    running = None
                    run_id = uuid.uuid4().hex[:16]
                    write_json(marker, {"fingerprint": chain, "run_id": run_id, "upstream": upstream,
                                        "library": library, "seconds": round(dt, 1), "params": inject,
                                        "depends": depends})
                    current[number] = run_id
                    _echo_warnings(number, output, None if verbose else err_console)
                    text = f"[{i}/{len(todo)}] {nb_name}: done in {dt:.1f} s"
                    log.write(text + "\n")
                    if verbose:
                        print(text, flush=True)
                    results.append(NotebookResult(number, nb_name, "ran", dt, output))
        except (KeyboardInterrupt, asyncio.CancelledError):  # Ctrl-C may surface as a cancelled kernel call
            where = f"in notebook {running[0]} ({running[1]})" if running else "between notebooks"
            log.write(f"interrupted {where}\n")
            raise Interrupted(f"interrupted {where}; rerun the same command to resume") from None
        finally:
            logger()
        total = time.time() - t_all
        write_json(run_dir / "pipeline_last.json", {
            "profile": name, "seconds": round(total, 1), "log": str(log_path),
            "notebooks": [{"number": r.number, "status": r.status, "seconds": round(r.seconds, 1)} for r in results]})
        ran = sum(r.status == "ran" for r in results)
        summary = (f"finished in {total / 60:.1f} min ({ran} ran, {len(results) - ran} reused); figures and tables "
                   f"in {fig_dir}; run log {log_path}")
        log.write(summary + "\n")
        say(summary, flush=True)
    return companion_results + results


def run_companions(params: dict[str, Any], overrides: Sequence[str], selected: Sequence[str], run_dir: Path,
                   fig_dir: Path, force: bool = False, verbose: bool = False) -> list[NotebookResult]:
    """Run the profiles named in ``companions`` first, each into its own folders under this run.

    They get the same ``--set`` overrides and notebook selection; notebook 08 of this run then
    shows their Tables 1 and 2 beside this run's (:mod:`umcam_lib.compare`). A companion may not
    name companions itself.
    """
    results: list[NotebookResult] = []
    for companion in params.get("companions") or []:
        try:
            sub = resolve_params(str(companion), None, overrides)
        except ParameterError as exc:
            raise ParameterError(f"companions: profile {companion!r}: {exc}") from exc
        if sub.get("companions"):
            raise ParameterError(f"companions: profile {companion!r} names companions itself "
                                 f"({sub['companions']}); only the main profile may")
        c_run, c_fig = companion_dirs(run_dir, fig_dir, str(companion))
        results += run_pipeline(profile=str(companion), overrides=overrides, only=list(selected), out=c_run,
                                figures=c_fig, force=force, verbose=verbose)
    return results


def _papermill_log(log: Any, verbose: bool) -> Any:
    """Send papermill's log (cell output included) to the run log; return the undo function."""
    import logging

    pm_logger = logging.getLogger("papermill")
    handler = logging.StreamHandler(log)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
    level = pm_logger.level
    pm_logger.addHandler(handler)
    pm_logger.setLevel(logging.INFO)

    def undo() -> None:
        pm_logger.removeHandler(handler)
        pm_logger.setLevel(level)

    return undo


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
