"""Run the study: execute the notebooks in order with papermill.

Usage::

    python -m umcam_lib.pipeline --profile quick
    python -m umcam_lib.pipeline --params my.yaml --set seed=7 --set data.n_volumes=12
    python -m umcam_lib.pipeline --profile quick --only 03,04      # later notebooks read earlier artifacts
    python -m umcam_lib.pipeline --profile quick --from 05 --out runs/try --figures /tmp/try
    python -m umcam_lib.pipeline --profile quick --dry-run         # what would run, and why
    python -m umcam_lib.pipeline --publish-only --out runs/quick   # docs/study/quick from a finished run

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

Reuse: stale means changed inputs of that notebook. A finished notebook leaves
``<out>/.done/NN.json`` with what its result was made from (:mod:`umcam_lib.plan`): its code
cells (markdown and outputs do not count), the parameters it reads (``params["key"]``) and the
run and figure folders, the ``umcam_lib`` modules its code imports, transitively (read with
``ast``: a notebook's ``from umcam_lib...`` imports, then each module's imports, relative ones
and package ``__init__`` files included; each hashed by its source), the input files' contents
for NIfTI data (notebooks that read ``data``), and the run ids of the earlier notebooks'
results it read. It is reused only when all of these still hold: editing markdown, or a module
no notebook's imports reach, reruns nothing; editing ``umcam_lib/cam/fusion.py`` reruns the
notebooks that import it and the ones after them. ``--dry-run`` prints the plan (what runs,
what is reused, and why: ``parameters changed: seg.lr``, ``code of umcam_lib/cam/fusion.py
changed``, ``upstream 02 reruns``, ``no result yet``, ``--force``) and exits. ``--only`` /
``--from`` refuse to start when an earlier notebook's result is missing or stale, and print the
command that makes it. ``--force`` recomputes the selected notebooks from scratch: caches are
ignored and training starts again instead of resuming. Training resume follows the same rule
(:mod:`umcam_lib.train.common`): it keys on the training module's transitive imports only.

Provenance. Every notebook records the commit and whether tracked files differ from it
(``<out>/provenance/NN.json``; notebook 08 gathers them into ``<figures>/provenance.json``);
the folders the run writes into do not count as changes. Figures that git would track (the
committed ``figures/<profile>/``) are not written from a tree with uncommitted changes: the run
refuses before anything starts, unless ``--allow-dirty`` is given, in which case it says so
loudly and the provenance records ``dirty: true``. Figures written outside the checkout or
under an ignored folder (``--figures /tmp/fig``, ``runs/``) are not checked.

The executed study. A run that writes the repository's ``figures/<profile>/`` also copies the
executed notebooks to ``docs/study/<profile>/NN_name.ipynb`` (outputs and images kept, widget
state and heavy metadata dropped) with an index ``README.md`` (title, run time, commit and date
of each notebook; :mod:`umcam_lib.publish`). ``--docs DIR`` publishes elsewhere (any run). To
rebuild it from an existing run folder without rerunning::

    python -m umcam_lib.pipeline --publish-only --out runs/quick
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
from .config import ParameterError, fingerprint, flatten
from .data.nifti import NIFTI_EXTENSIONS
from .io import write_json
from .paths import NOTEBOOK_DIR, PACKAGE_DIR, REPO_ROOT, resolve
from .plan import REUSE, Inputs, PlanEntry, blocked, format_plan, make_plan
from .progress import ProgressLine, console_stream, notebook_title, redirect_output
from .provenance import OUTPUTS_ENV, DirtyTreeError, check_figures_write, module_closure, module_hashes
from .publish import publish

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

#: The library whose modules a notebook's fingerprint hashes (tests point it at a copy).
LIBRARY_DIR = PACKAGE_DIR

#: Environment variable that tells a notebook's library calls to recompute (``--force``).
FORCE_ENV = "UMCAM_FORCE"

#: Environment variable naming the companion runs whose trainings a profile may take over
#: (``umcam_lib.train.common.DONORS_ENV``; kept here so that planning imports no torch).
DONORS_ENV = "UMCAM_DONOR_RUNS"


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


def code_cells(path: Path) -> list[str]:
    """The source of a notebook's code cells, in order (markdown, outputs and metadata left out)."""
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    return ["".join(c.get("source", "")) for c in nb.get("cells", []) if c.get("cell_type") == "code"]


def notebook_inputs(path: Path, params: dict[str, Any], keys: Sequence[str], run_dir: Path, fig_dir: Path,
                    identity: Any = None, package_dir: Path | None = None) -> tuple[Inputs, dict[str, Any]]:
    """What a notebook's result depends on (:class:`umcam_lib.plan.Inputs`), and the parameter values.

    Parameters
    ----------
    path : Path
        The notebook.
    params : dict
        The run's validated parameters.
    keys : sequence of str
        The top-level keys it reads (:func:`notebook_keys`).
    run_dir, fig_dir : Path
        The run's folders (part of the inputs: the notebook writes there).
    identity : optional
        :func:`input_identity` of the input files, for a notebook that reads ``data``.
    package_dir : Path, optional
        The library whose modules are hashed (default :data:`LIBRARY_DIR`).

    Raises
    ------
    PipelineError
        A code cell is not valid Python (its imports cannot be read).
    """
    cells = code_cells(path)
    try:
        modules = module_closure(sources=cells, package_dir=package_dir or LIBRARY_DIR)
        hashes = module_hashes(modules, package_dir or LIBRARY_DIR)
    except SyntaxError as exc:
        raise PipelineError(f"{path.name}: a code cell (or a library module it imports) is not valid Python: "
                            f"{exc}") from exc
    depends = {k: params[k] for k in ["profile", *keys] if k in params}
    depends.update(run_dir=str(run_dir), figures_dir=str(fig_dir))
    code = hashlib.sha256(json.dumps(cells).encode()).hexdigest()[:16]
    inputs = Inputs(code=code, params=flatten(depends), modules=hashes,
                    inputs=None if identity is None else fingerprint(identity))
    return inputs, depends


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


@dataclass
class RunPlan:
    """Everything a run decided before executing anything (:func:`plan_run`)."""

    params: dict[str, Any]
    name: str
    run_dir: Path
    fig_dir: Path
    docs_dir: Path | None
    selected: list[str]
    sources: dict[str, Path]                 # number -> notebook file
    inputs: dict[str, Inputs]                # number -> what its result depends on
    depends: dict[str, dict[str, Any]]       # number -> parameter values it reads
    markers: dict[str, dict[str, Any] | None]
    entries: list[PlanEntry]
    inject: dict[str, Any]
    unread: list[str]                        # parameters no notebook reads


def default_docs_dir(fig_dir: Path, name: str, repo: Path = REPO_ROOT) -> Path | None:
    """``docs/study/<profile>`` when the figures go to the repository's ``figures/<profile>``, else None."""
    return repo / "docs" / "study" / name if Path(fig_dir).resolve() == (repo / "figures" / name).resolve() else None


def _markers(run_dir: Path, numbers: Sequence[str]) -> dict[str, dict[str, Any] | None]:
    return {n: _read_marker(run_dir / ".done" / f"{n}.json") for n in numbers}


def plan_run(profile: str | None = "quick", params_file: str | Path | None = None, overrides: Sequence[str] = (),
             only: str | Sequence[str] | None = None, start: str | None = None, out: str | Path | None = None,
             figures: str | Path | None = None, force: bool = False, docs: str | Path | None = None) -> RunPlan:
    """Resolve the parameters and folders and decide what runs, starting nothing.

    Parameters are those of :func:`run_pipeline`. The decision is :func:`umcam_lib.plan.make_plan`
    on each notebook's :func:`notebook_inputs` and the ``.done`` markers in the run folder.

    Raises
    ------
    ParameterError
        Bad parameters or selection.
    PipelineError
        A selected notebook is missing, or a notebook's code cannot be read.
    """
    params = resolve_params(profile, params_file, overrides)
    name = str(params.get("profile"))
    run_dir = resolve(out) if out else resolve(Path("runs") / name)
    fig_dir = resolve(figures) if figures else resolve(Path("figures") / name)
    docs_dir = resolve(docs) if docs else default_docs_dir(fig_dir, name)
    selected = _select(only, start)
    inject = {"profile": _profile_argument(profile, params_file), "overrides": notebook_params.parse_set(overrides),
              "run_dir": str(run_dir), "figures_dir": str(fig_dir)}
    identity = None
    sources: dict[str, Path] = {}
    inputs: dict[str, Inputs] = {}
    depends: dict[str, dict[str, Any]] = {}
    read_anywhere: set[str] = set()
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
        if "data" in keys and identity is None:
            identity = input_identity(params)
        sources[number] = src
        inputs[number], depends[number] = notebook_inputs(src, params, keys, run_dir, fig_dir,
                                                          identity if "data" in keys else None)
    unread = sorted(set(params) - read_anywhere - {"profile"})
    markers = _markers(run_dir, list(sources))
    nb_out = run_dir / "notebooks"
    missing = [n for n, m in markers.items() if m is not None and not (nb_out / NOTEBOOKS[n]).is_file()]
    entries = make_plan([(n, NOTEBOOKS[n]) for n in sources], inputs, markers, selected, force=force,
                        missing_outputs=missing)
    return RunPlan(params, name, run_dir, fig_dir, docs_dir, selected, sources, inputs, depends, markers,
                   entries, inject, unread)


@contextlib.contextmanager
def _environ(var: str, value: str | None) -> Any:
    """Set (or, with None, leave) an environment variable for the block; restore it after."""
    old = os.environ.get(var)
    if value is not None:
        os.environ[var] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(var, None)
        else:
            os.environ[var] = old


def _dirty_banner(state: dict[str, Any], fig_dir: Path) -> str:
    changed = state.get("changed") or []
    bar = "!" * 78
    return (f"{bar}\n!! --allow-dirty: writing {fig_dir} from a working tree with uncommitted changes\n"
            f"!! ({', '.join(changed[:6])}{' ...' if len(changed) > 6 else ''}).\n"
            f"!! provenance.json will record dirty: true: no commit reproduces these figures.\n{bar}")


def run_pipeline(profile: str | None = "quick", params_file: str | Path | None = None,
                 overrides: Sequence[str] = (), only: str | Sequence[str] | None = None,
                 start: str | None = None, out: str | Path | None = None,
                 figures: str | Path | None = None, force: bool = False,
                 verbose: bool = False, dry_run: bool = False, allow_dirty: bool = False,
                 docs: str | Path | None = None) -> list[NotebookResult]:
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
    dry_run : bool
        Print the plan (what would run, what would be reused, and why) and return ``[]``.
    allow_dirty : bool
        Write figures that git tracks even from a tree with uncommitted changes (said loudly;
        the provenance records ``dirty: true``).
    docs : path, optional
        Where to publish the executed notebooks and their index (:mod:`umcam_lib.publish`);
        default ``docs/study/<profile>`` when the figures go to the repository's
        ``figures/<profile>``, else nowhere.

    Raises
    ------
    ParameterError
        A parameter is unknown, of the wrong type or out of range (nothing has run).
    PipelineError
        A notebook failed; or a selected notebook needs an earlier notebook's result that is
        missing or stale (the message gives the command that makes it); or the figures would
        be written into a folder git tracks from a dirty tree without ``allow_dirty``.
    Interrupted
        Ctrl-C; the message names the notebook. Rerunning the same command resumes.
    """
    rp = plan_run(profile, params_file, overrides, only, start, out, figures, force, docs)
    run_dir, fig_dir, name, params = rp.run_dir, rp.fig_dir, rp.name, rp.params
    outputs = [p for p in (fig_dir, rp.docs_dir, run_dir) if p is not None]
    outputs += [Path(p) for p in os.environ.get(OUTPUTS_ENV, "").split(os.pathsep) if p]  # a companion's main run
    try:
        state = check_figures_write(fig_dir, allow_dirty, outputs=outputs)
    except DirtyTreeError as exc:
        if not dry_run:
            raise PipelineError(str(exc)) from None
        state = {"dirty": True, "guarded": True, "refused": str(exc)}
    if dry_run:
        companion_plans = run_companions(params, overrides, rp.selected, run_dir, fig_dir, force, verbose,
                                         dry_run=True, allow_dirty=allow_dirty)
        print(f"plan for profile {name} | run folder {run_dir} | figures {fig_dir}"
              + (f" | executed notebooks to {rp.docs_dir}" if rp.docs_dir else ""))
        for line in format_plan(rp.entries):
            print("  " + line)
        if blocked(rp.entries):
            print("  nothing would run: " + _blocked_message(rp, profile, params_file, overrides, out, figures))
        if state.get("refused"):
            print(f"  nothing would run: {state['refused']}")
        return companion_plans
    if state.get("dirty") and state.get("guarded"):
        print(_dirty_banner(state, fig_dir), file=sys.stderr, flush=True)
    with _environ(OUTPUTS_ENV, os.pathsep.join(str(p) for p in outputs)):
        companion_results = run_companions(params, overrides, rp.selected, run_dir, fig_dir, force, verbose,
                                           allow_dirty=allow_dirty)
        donors = [companion_dirs(run_dir, fig_dir, str(c))[0] for c in params.get("companions") or []]
        with _environ(DONORS_ENV, os.pathsep.join(str(d) for d in donors) if donors else None):
            results = _execute(rp, profile, params_file, overrides, out, figures, force, verbose)
        if rp.docs_dir is not None:
            readme = publish_run(run_dir, rp.docs_dir, fig_dir, rp)
            print(f"executed notebooks and their index in {readme.parent} ({readme.name})", flush=True)
    if state.get("dirty") and state.get("guarded"):
        print(_dirty_banner(state, fig_dir), file=sys.stderr, flush=True)
    return companion_results + results


def _blocked_message(rp: RunPlan, profile: str | None, params_file: str | Path | None, overrides: Sequence[str],
                     out: str | Path | None, figures: str | Path | None) -> str:
    stale = blocked(rp.entries)
    todo = [e.number for e in rp.entries if e.number in rp.selected]
    need = [e.number for e in rp.entries if e.number >= stale[0].number]
    why = "; ".join(f"notebook {e.number}: " + ("no finished result in this run folder" if "no result yet" in e.reasons
                                              else "its result is stale (" + "; ".join(e.reasons) + ")")
                    for e in stale)
    return (f"cannot run notebook(s) {', '.join(todo)} in {rp.run_dir}: they read the results of earlier notebooks, "
            f"and {why}.\n  Run them first, with the same options:\n    "
            + rerun_command(profile if not params_file else None, params_file, overrides, out, figures, need))


def publish_run(run_dir: Path, docs_dir: Path, fig_dir: Path | None, rp: RunPlan | None = None) -> Path:
    """Publish a run folder's executed notebooks (:func:`umcam_lib.publish.publish`).

    ``rp``, a plan of every notebook against the current code and parameters, marks those whose
    result is stale in the index.
    """
    stale: dict[str, tuple[str, ...]] = {}
    if rp is not None:
        markers = _markers(run_dir, list(rp.sources))
        entries = make_plan([(n, NOTEBOOKS[n]) for n in rp.sources], rp.inputs, markers, list(rp.sources))
        stale = {e.number: e.reasons for e in entries if e.stale and markers.get(e.number) is not None}
    return publish(run_dir, docs_dir, [(n, NOTEBOOKS[n]) for n in NOTEBOOKS],
                   rp.name if rp is not None else run_dir.name, figures_dir=fig_dir, stale=stale)


def publish_only(out: str | Path, docs: str | Path | None = None) -> Path:
    """Rebuild the published executed notebooks from an existing run folder, rerunning nothing.

    The profile, ``--set`` overrides and figure folder are those recorded in the run's ``.done``
    markers. Publishes to ``docs`` or, when the run's figures went to the repository's
    ``figures/<profile>``, to ``docs/study/<profile>``.

    Raises
    ------
    PipelineError
        The folder holds no finished notebook, or no destination is known.
    """
    run_dir = resolve(out)
    markers = {n: m for n, m in _markers(run_dir, list(NOTEBOOKS)).items() if m}
    if not markers:
        raise PipelineError(f"{run_dir}: no finished notebook (.done/NN.json) to publish; run the pipeline first")
    inject = (markers[max(markers)].get("params") or {})
    fig_dir = Path(inject["figures_dir"]) if inject.get("figures_dir") else None
    rp = None
    try:
        prof = str(inject.get("profile") or "quick")
        sets = [f"{k}={json.dumps(v)}" for k, v in (inject.get("overrides") or {}).items()]
        by_file = prof.endswith((".yaml", ".yml"))
        rp = plan_run(None if by_file else prof, prof if by_file else None, sets, out=run_dir, figures=fig_dir)
    except (ParameterError, PipelineError) as exc:
        print(f"warning: cannot tell which results are stale ({exc}); publishing as they are", file=sys.stderr)
    name = rp.name if rp is not None else run_dir.name
    dest = resolve(docs) if docs else (default_docs_dir(fig_dir, name) if fig_dir is not None else None)
    if dest is None:
        raise PipelineError(f"{run_dir}: its figures went to {fig_dir}, not the repository's figures/{name}; "
                            f"say where to publish with --docs DIR")
    return publish_run(run_dir, dest, fig_dir, rp)


def _execute(rp: RunPlan, profile: str | None, params_file: str | Path | None, overrides: Sequence[str],
             out: str | Path | None, figures: str | Path | None, force: bool, verbose: bool) -> list[NotebookResult]:
    """Run the plan's selected notebooks (reusing those it reuses); write markers and the run log."""
    import papermill as pm

    params, name, run_dir, fig_dir = rp.params, rp.name, rp.run_dir, rp.fig_dir
    if rp.unread:
        print(f"warning: parameters no notebook reads (ignored): {', '.join(rp.unread)}", file=sys.stderr)
    if blocked(rp.entries):
        raise PipelineError(_blocked_message(rp, profile, params_file, overrides, out, figures))
    run_dir.mkdir(parents=True, exist_ok=True)
    fig_dir.mkdir(parents=True, exist_ok=True)
    _kernel_env(params)
    nb_out = run_dir / "notebooks"
    done_dir = run_dir / ".done"
    nb_out.mkdir(parents=True, exist_ok=True)
    results: list[NotebookResult] = []
    todo = [e for e in rp.entries if e.number in rp.selected]
    current: dict[str, str | None] = {e.number: (rp.markers[e.number] or {}).get("run_id")
                                      for e in rp.entries if e.number not in rp.selected}

    header = (f"UM-CAM study | profile {name} | run folder {run_dir} | figures {fig_dir} | "
              f"notebooks {', '.join(e.number for e in todo)}")
    log_path = run_dir / "logs" / time.strftime("run-%Y%m%d-%H%M%S.log")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    t_all = time.time()
    running = None
    with (open(log_path, "a", encoding="utf-8", buffering=1) as log, console_stream() as console,
          console_stream(sys.stderr) as err_console):
        log.write(header + "\n" + f"parameters: {json.dumps(params, sort_keys=True, default=str)}\n")
        log.write("plan:\n" + "".join(f"  {line}\n" for line in format_plan(rp.entries)))
        say = print if verbose else (lambda *a, **k: print(*a, **{**k, "file": console}))
        say(header, flush=True)
        width = max((len(notebook_title(e.name)) for e in todo), default=0)
        logger = _papermill_log(log, verbose)
        quiet = contextlib.nullcontext() if verbose else redirect_output(log)
        try:
            with quiet:
                for i, entry in enumerate(todo, 1):
                    number, nb_name, src = entry.number, entry.name, rp.sources[entry.number]
                    output = nb_out / nb_name
                    marker = done_dir / f"{number}.json"
                    upstream = {u: current.get(u) for u in current if u < number}
                    if entry.action == REUSE:
                        text = (f"[{i}/{len(todo)}] {nb_name}: parameters, code, inputs and earlier results unchanged, "
                                f"reusing {output}")
                        log.write(text + "\n")
                        if verbose:
                            print(text, flush=True)
                        else:
                            say(f"{number} {notebook_title(nb_name).ljust(width)}  reused (parameters, code, inputs "
                                f"and earlier results unchanged)", flush=True)
                        current[number] = (rp.markers[number] or {}).get("run_id")
                        results.append(NotebookResult(number, nb_name, "reused", 0.0, output))
                        continue
                    marker.unlink(missing_ok=True)
                    current[number] = None
                    text = f"[{i}/{len(todo)}] {nb_name}: running ({'; '.join(entry.reasons)}) ..."
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
                                    str(src), str(output), parameters=dict(rp.inject), kernel_name="python3",
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
                    inputs = rp.inputs[number]
                    write_json(marker, {"fingerprint": inputs.digest(), "components": inputs.as_dict(),
                                        "run_id": run_id, "upstream": upstream, "seconds": round(dt, 1),
                                        "params": rp.inject, "depends": rp.depends[number]})
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
    return results


def run_companions(params: dict[str, Any], overrides: Sequence[str], selected: Sequence[str], run_dir: Path,
                   fig_dir: Path, force: bool = False, verbose: bool = False, dry_run: bool = False,
                   allow_dirty: bool = False) -> list[NotebookResult]:
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
                                figures=c_fig, force=force, verbose=verbose, dry_run=dry_run,
                                allow_dirty=allow_dirty)
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
    ap.add_argument("--dry-run", action="store_true",
                    help="print what would run, what would be reused, and why; run nothing")
    ap.add_argument("--allow-dirty", action="store_true",
                    help="write figures that git tracks even from a tree with uncommitted changes "
                         "(provenance records dirty: true)")
    ap.add_argument("--docs", default=None, metavar="DIR",
                    help="publish the executed notebooks and their index here (default docs/study/<profile> "
                         "when the figures go to figures/<profile>)")
    ap.add_argument("--publish-only", action="store_true",
                    help="rebuild the published executed notebooks from the run folder (--out) and exit")
    ap.add_argument("--list", action="store_true", help="list the notebooks and exit")
    args = ap.parse_args(argv)
    if args.list:
        for number, nb in NOTEBOOKS.items():
            print(number, nb, "" if (NOTEBOOK_DIR / nb).is_file() else "(missing)")
        return 0
    try:
        if args.publish_only:
            out = args.out or Path("runs") / (args.profile or "quick")
            readme = publish_only(out, args.docs)
            print(f"executed notebooks and their index in {readme.parent}")
            return 0
        run_pipeline(profile=args.profile or (None if args.params else "quick"), params_file=args.params,
                     overrides=args.overrides, only=args.only, start=args.start, out=args.out,
                     figures=args.figures, force=args.force, verbose=args.verbose, dry_run=args.dry_run,
                     allow_dirty=args.allow_dirty, docs=args.docs)
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
