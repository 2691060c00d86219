"""Plan and run the study's notebooks in order: what runs, what is reused and why, and publishing the
executed copies (see :mod:`umcam_lib.pipeline`).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

from ..config import notebook as notebook_params
from ..config.files import fingerprint, flatten
from ..config.schema import ParameterError
from ..data.nifti import NIFTI_EXTENSIONS
from ..io import write_json
from ..paths import NOTEBOOK_DIR, PACKAGE_DIR, REPO_ROOT, resolve
from ..provenance import OUTPUTS_ENV, DirtyTreeError, check_figures_write, module_closure, module_hashes
from ..report.compare import companion_dirs
from .console import ConsoleReporter
from .execute import _describe_failure, _kernel_env, _papermill_log, _progress_engine
from .plan import REUSE, Inputs, PlanEntry, blocked, format_plan, make_plan
from .publish import publish
from ..hashing import file_sha256, value_hash

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
    """What became of one notebook of a run (:func:`run_notebook`)."""

    number: str
    name: str
    status: str          # "ran" or "reused"
    seconds: float
    output: Path
    run_id: str | None = None   # of the result now in the run folder (read by later notebooks' markers)


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
    code = value_hash(cells)
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
            files.append([f.relative_to(root).as_posix(), f.stat().st_size, file_sha256(f)])
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
    last = params.get("last_notebook")
    if last is not None:
        beyond = [n for n in selected if n > str(last).zfill(2)]
        if beyond and only:
            raise ParameterError(f"--only {','.join(beyond)}: profile {name} stops after notebook "
                                 f"{str(last).zfill(2)} (last_notebook)")
        selected = [n for n in selected if n not in beyond]
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
    unread = sorted(set(params) - read_anywhere - {"profile", "last_notebook"})
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
    if rp.unread:
        print(f"warning: parameters no notebook reads (ignored): {', '.join(rp.unread)}", file=sys.stderr)
    if blocked(rp.entries):
        raise PipelineError(_blocked_message(rp, profile, params_file, overrides, out, figures))
    todo = [e for e in rp.entries if e.number in rp.selected]
    log_path = _make_folders(rp)
    run_ids = {e.number: (rp.markers[e.number] or {}).get("run_id") for e in rp.entries if e.number not in rp.selected}
    results: list[NotebookResult] = []
    t_all = time.time()
    with ConsoleReporter.open(log_path, [e.name for e in todo], verbose) as reporter:
        reporter.begin(_header(rp, todo), rp.params, format_plan(rp.entries))
        with _notebooks_running(reporter, verbose):
            for i, entry in enumerate(todo, 1):
                reporter.start(i, entry)
                upstream = {u: run_ids.get(u) for u in run_ids if u < entry.number}
                result = run_notebook(rp, entry, upstream, reporter, force=force, verbose=verbose)
                reporter.done(result)
                run_ids[entry.number] = result.run_id
                results.append(result)
        reporter.summary(_record_run(rp, results, time.time() - t_all, log_path))
    return results


def _make_folders(rp: RunPlan) -> Path:
    """Create the run's folders and set up the kernel's environment; return the new run log's path."""
    rp.run_dir.mkdir(parents=True, exist_ok=True)
    rp.fig_dir.mkdir(parents=True, exist_ok=True)
    _kernel_env(rp.params)
    (rp.run_dir / "notebooks").mkdir(parents=True, exist_ok=True)
    log_path = rp.run_dir / "logs" / time.strftime("run-%Y%m%d-%H%M%S.log")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    return log_path


def _header(rp: RunPlan, todo: Sequence[PlanEntry]) -> str:
    return (f"UM-CAM study | profile {rp.name} | run folder {rp.run_dir} | figures {rp.fig_dir} | "
            f"notebooks {', '.join(e.number for e in todo)}")


@contextlib.contextmanager
def _notebooks_running(reporter: ConsoleReporter, verbose: bool) -> Iterator[None]:
    """While the notebooks run: papermill's log goes to the run log, and so (unless ``verbose``) do
    file descriptors 1 and 2; Ctrl-C becomes :class:`Interrupted`, naming the notebook."""
    restore_log = _papermill_log(reporter.log, verbose)
    try:
        with reporter.quiet():
            yield
    except (KeyboardInterrupt, asyncio.CancelledError):  # Ctrl-C may surface as a cancelled kernel call
        where = reporter.interrupted()
        raise Interrupted(f"interrupted {where}; rerun the same command to resume") from None
    finally:
        restore_log()


def run_notebook(rp: RunPlan, entry: PlanEntry, upstream: dict[str, str | None], reporter: ConsoleReporter, *,
                 force: bool = False, verbose: bool = False) -> NotebookResult:
    """Reuse or run one notebook of a plan; after a run, write its ``.done`` marker.

    Parameters
    ----------
    rp : RunPlan
        The run (:func:`plan_run`).
    entry : PlanEntry
        The notebook's entry in ``rp.entries``: reused when its action is ``reuse``.
    upstream : dict
        Number -> run id of the earlier notebooks' results it reads (recorded in its marker).
    reporter : ConsoleReporter
        Receives every executed cell and the failure, if any.
    force : bool
        Sets ``UMCAM_FORCE=1`` in the kernel (:data:`FORCE_ENV`): recompute, no cache, no resume.
    verbose : bool
        Papermill's progress bar and the notebook's output on the console.

    Returns
    -------
    NotebookResult
        ``"reused"`` (with the marker's run id) or ``"ran"`` (with a new run id).

    Raises
    ------
    PipelineError
        The notebook failed: the message names the cell, the error's last lines and the run log.
    KeyboardInterrupt
        The user interrupted it (also when the kernel reports the interrupt as a cell's error).
    """
    number, nb_name = entry.number, entry.name
    output = rp.run_dir / "notebooks" / nb_name
    marker = rp.run_dir / ".done" / f"{number}.json"
    if entry.action == REUSE:
        return NotebookResult(number, nb_name, "reused", 0.0, output, (rp.markers[number] or {}).get("run_id"))
    marker.unlink(missing_ok=True)
    t0 = time.time()
    try:
        _papermill(rp.sources[number], output, rp.inject, reporter, force, verbose)
    except Exception as exc:  # papermill wraps cell errors; anything else alike
        if getattr(exc, "ename", "") == "KeyboardInterrupt":
            raise KeyboardInterrupt from exc
        message = _describe_failure(exc, number, nb_name, output)
        reporter.failed(number, output, message)
        raise PipelineError(message + f"\n  run log: {reporter.log_path}") from exc
    dt = time.time() - t0
    run_id = uuid.uuid4().hex[:16]
    inputs = rp.inputs[number]
    write_json(marker, {"fingerprint": inputs.digest(), "components": inputs.as_dict(),
                        "run_id": run_id, "upstream": upstream, "seconds": round(dt, 1),
                        "params": rp.inject, "depends": rp.depends[number]})
    return NotebookResult(number, nb_name, "ran", dt, output, run_id)


def _papermill(src: Path, output: Path, inject: dict[str, Any], reporter: ConsoleReporter, force: bool,
               verbose: bool) -> None:
    """Execute ``src`` into ``output`` with the parameters ``inject``, reporting cells to ``reporter``."""
    import papermill as pm

    with _kernel_force(force):
        pm.execute_notebook(
            str(src), str(output), parameters=dict(inject), kernel_name="python3",
            language="python", cwd=str(REPO_ROOT), progress_bar=verbose, log_output=True,
            stdout_file=sys.stdout if verbose else None,
            stderr_file=sys.stderr if verbose else None,
            engine_name=_progress_engine(), on_cell=reporter.cell_done)


@contextlib.contextmanager
def _kernel_force(force: bool) -> Iterator[None]:
    """:data:`FORCE_ENV` set for the kernel started meanwhile when ``force``, unset otherwise and after."""
    if force:
        os.environ[FORCE_ENV] = "1"
    else:
        os.environ.pop(FORCE_ENV, None)
    try:
        yield
    finally:
        os.environ.pop(FORCE_ENV, None)


def _record_run(rp: RunPlan, results: Sequence[NotebookResult], total: float, log_path: Path) -> str:
    """Write ``pipeline_last.json`` (what ran, how long); return the summary line."""
    write_json(rp.run_dir / "pipeline_last.json", {
        "profile": rp.name, "seconds": round(total, 1), "log": str(log_path),
        "notebooks": [{"number": r.number, "status": r.status, "seconds": round(r.seconds, 1)} for r in results]})
    ran = sum(r.status == "ran" for r in results)
    return (f"finished in {total / 60:.1f} min ({ran} ran, {len(results) - ran} reused); figures and tables "
            f"in {rp.fig_dir}; run log {log_path}")


def run_companions(params: dict[str, Any], overrides: Sequence[str], selected: Sequence[str], run_dir: Path,
                   fig_dir: Path, force: bool = False, verbose: bool = False, dry_run: bool = False,
                   allow_dirty: bool = False) -> list[NotebookResult]:
    """Run the profiles named in ``companions`` first, each into its own folders under this run.

    They get the same ``--set`` overrides and notebook selection, cut at the companion's own
    ``last_notebook`` (``real-slice`` and ``real-reverse`` stop after 05: their pseudo masks are
    what is compared, and UNets on them would cost most of the run); notebook 08 of this run then
    shows their Tables 1 and 2 beside this run's (:mod:`umcam_lib.compare`), a row a companion
    did not reach left empty. A companion may not name companions itself.
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
        last = sub.get("last_notebook")
        wanted = [n for n in selected if last is None or n <= str(last).zfill(2)]
        if not wanted:
            continue
        results += run_pipeline(profile=str(companion), overrides=overrides, only=wanted, out=c_run,
                                figures=c_fig, force=force, verbose=verbose, dry_run=dry_run,
                                allow_dirty=allow_dirty)
    return results
