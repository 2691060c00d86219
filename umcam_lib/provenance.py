"""Provenance: what produced a result (commit, dirty flag, package versions, device, seed, params),
and what a piece of code depends on.

- :func:`git_state` and :func:`record`: the commit and whether the tracked files differ from it,
  written by every notebook into ``<run>/provenance/NN.json`` (notebook 08 gathers them into
  ``provenance.json`` beside the figures). Folders the pipeline is writing into (named in the
  environment variable :data:`OUTPUTS_ENV`) do not count as changes: a run that rewrites the
  committed ``figures/<profile>/`` does not make its own later notebooks look dirty.
- :func:`check_figures_write`: the pipeline's refusal to write figures that git would track
  from a tree with uncommitted changes (``--allow-dirty`` turns it into a loud warning).
- :func:`module_closure` and :func:`code_fingerprint`: the ``umcam_lib`` modules a piece of code
  imports, transitively (read from the source with ``ast``, imports inside functions
  included), hashed by their source. A notebook's reuse and a training run's resume depend on
  these modules only, so an edit elsewhere in the library changes neither.
"""
from __future__ import annotations

import ast
import datetime as _dt
import functools
import importlib.metadata as md
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any, Iterable, Sequence

from .io import write_json
from .paths import PACKAGE_DIR, REPO_ROOT, resolve
from .hashing import SHORT, file_sha256, files_hash, value_hash

PACKAGES = ("numpy", "scipy", "torch", "torchvision", "monai", "grad-cam", "GeodisTK", "nibabel",
            "scikit-image", "pandas", "matplotlib", "papermill")


#: Environment variable holding the folders a pipeline run writes into (``os.pathsep``-separated):
#: changes under them are the run's own output, not uncommitted changes of its inputs.
OUTPUTS_ENV = "UMCAM_OUTPUT_DIRS"


class DirtyTreeError(RuntimeError):
    """Figures that git would track were to be written from a tree with uncommitted changes."""


def _git(repo: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=10, check=True).stdout
        return out.rstrip() if args[0] == "status" else out.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


def git_state(repo: Path = REPO_ROOT, exclude: Iterable[str | Path] | None = None) -> dict[str, Any]:
    """Commit hash and whether tracked files differ from it (``None`` outside a git checkout).

    Parameters
    ----------
    repo : Path
        The checkout.
    exclude : iterable of paths, optional
        Folders whose changes do not count (the run's own outputs). Default: those named in
        the environment variable :data:`OUTPUTS_ENV` (set by the pipeline).

    Returns
    -------
    dict
        ``commit`` (str or None), ``dirty`` (bool or None) and ``changed``: the changed tracked
        files (paths relative to the checkout; at most 20).
    """
    if exclude is None:
        exclude = [p for p in os.environ.get(OUTPUTS_ENV, "").split(os.pathsep) if p]
    commit = _git(repo, "rev-parse", "HEAD")
    status = _git(repo, "status", "--porcelain", "--untracked-files=no", "--no-renames")
    if status is None:
        return {"commit": commit, "dirty": None, "changed": []}
    skip = [Path(e) for e in exclude]
    changed = []
    for line in status.splitlines():
        name = line[3:].strip().strip('"')
        if name and not any(_inside(Path(repo) / name, e) for e in skip):
            changed.append(name)
    return {"commit": commit, "dirty": bool(changed), "changed": changed[:20]}


def tracked_location(path: str | Path, repo: Path = REPO_ROOT) -> bool:
    """Whether files written under ``path`` would be tracked by git: inside the checkout and not
    ignored (``figures/quick``: yes; ``runs/x``, ``/tmp/x``: no; no git checkout: no)."""
    path = Path(path)
    if not _inside(path, repo) or _git(repo, "rev-parse", "--show-toplevel") is None:
        return False
    rel = path.resolve().relative_to(Path(repo).resolve()).as_posix() or "."
    try:  # exit status 0: ignored, 1: not ignored
        rc = subprocess.run(["git", "check-ignore", "-q", "--no-index", rel + "/x"], cwd=repo,
                            capture_output=True, timeout=10).returncode
    except (OSError, subprocess.SubprocessError):
        return False
    return rc == 1


def check_figures_write(figures_dir: str | Path, allow_dirty: bool = False, repo: Path = REPO_ROOT,
                        outputs: Sequence[str | Path] = (), state: dict[str, Any] | None = None) -> dict[str, Any]:
    """Refuse to write figures that git tracks from a tree with uncommitted changes.

    Committed figures must be traceable to a commit: when ``figures_dir`` is a location git
    would track (:func:`tracked_location`) and the tracked files (other than ``outputs``, the
    run's own output folders) differ from the commit, writing is refused unless
    ``allow_dirty``. Figures written outside the checkout or under an ignored folder are not
    checked (tests, ``/tmp``, ``runs/``).

    Parameters
    ----------
    figures_dir : path
        Where the run writes its figures and tables.
    allow_dirty : bool
        ``--allow-dirty``: write anyway (the provenance then records ``dirty: true``).
    repo : Path
        The checkout.
    outputs : sequence of paths
        Folders the run writes into; their changes do not count.
    state : dict, optional
        A :func:`git_state` result to judge (default: read it now).

    Returns
    -------
    dict
        The git state with ``guarded`` (whether the folder is tracked) added.

    Raises
    ------
    DirtyTreeError
        The folder is tracked, the tree is dirty and ``allow_dirty`` is false; the message
        names the changed files and the two ways out.
    """
    guarded = tracked_location(figures_dir, repo)
    if state is None:
        state = git_state(repo, exclude=[figures_dir, *outputs]) if guarded else {"commit": None, "dirty": None,
                                                                                  "changed": []}
    state = {**state, "guarded": guarded}
    if guarded and state.get("dirty") and not allow_dirty:
        changed = state.get("changed") or []
        raise DirtyTreeError(
            f"refusing to write the figures into {figures_dir}: git tracks that folder, and the working tree has "
            f"uncommitted changes ({', '.join(changed[:8])}{' ...' if len(changed) > 8 else ''}), so no commit would "
            f"reproduce them. Commit (or set aside) the changes, or write elsewhere (--figures /tmp/fig), or pass "
            f"--allow-dirty to write anyway (provenance.json then records dirty: true)")
    return state


@functools.lru_cache(maxsize=None)
def library_fingerprint(package_dir: Path = PACKAGE_DIR) -> str:
    """Short hash of the library's source: every ``*.py`` file under ``umcam_lib`` (path and bytes).

    The pipeline's reuse decisions and the training checkpoints' resume check include it, so a
    result or a half-finished training run is never carried over an edit of the library. It is
    computed once per process (a running notebook does not see later edits).
    """
    return files_hash(Path(package_dir).rglob("*.py"), package_dir)


def module_index(package_dir: Path = PACKAGE_DIR) -> dict[str, Path]:
    """Module name -> file of every module of the package (``pkg/__init__.py`` is ``pkg``)."""
    package_dir = Path(package_dir)
    out: dict[str, Path] = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def imports_in(source: str, index: dict[str, Path], module: str | None = None) -> set[str]:
    """The package's modules that ``source`` imports, at any depth (inside functions too).

    ``from pkg import name`` imports ``pkg`` (its ``__init__`` runs) and the module ``pkg.name``
    when there is one; ``import a.b.c`` and relative imports (resolved against ``module``) alike.
    Parent packages are not added here (:func:`module_closure` adds them).

    Parameters
    ----------
    source : str
        Python source (IPython magic lines, starting with ``%`` or ``!``, are ignored).
    index : dict
        :func:`module_index` of the package.
    module : str, optional
        The dotted name of the module ``source`` belongs to (needed for relative imports).
    """
    source = "\n".join("" if ln.lstrip().startswith(("%", "!")) else ln for ln in source.splitlines())
    tree = ast.parse(source)
    is_package = module is not None and index.get(module, Path()).name == "__init__.py"
    here = (module if is_package else module.rpartition(".")[0]) if module else ""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name in index)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if not here:
                    continue
                base_parts = here.split(".")
                base_parts = base_parts[:len(base_parts) - (node.level - 1)]
                target = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target in index:
                found.add(target)
            for a in node.names:
                if f"{target}.{a.name}" in index:
                    found.add(f"{target}.{a.name}")
    return found


def module_closure(roots: Iterable[str] = (), sources: Iterable[str] = (),
                   package_dir: Path = PACKAGE_DIR) -> list[str]:
    """The package's modules that ``roots`` and ``sources`` need, transitively.

    Parameters
    ----------
    roots : iterable of str
        Dotted module names (``"umcam_lib.train.classifier"``); they are part of the result.
    sources : iterable of str
        Code that imports the package (a notebook's code cells).
    package_dir : Path
        The package folder (default ``umcam_lib``).

    Returns
    -------
    list of str
        Sorted dotted names: every module imported, what they import, and every parent
        package of each (importing ``a.b.c`` runs ``a/__init__`` and ``a/b/__init__``).
    """
    index = module_index(package_dir)
    todo = [r for r in roots if r in index]
    for src in sources:
        todo += sorted(imports_in(src, index))
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts)) if ".".join(parts[:i]) in index]
        todo += sorted(imports_in(index[name].read_text(encoding="utf-8"), index, name) - seen)
    return sorted(seen)


def module_hashes(modules: Iterable[str], package_dir: Path = PACKAGE_DIR) -> dict[str, str]:
    """``{"umcam_lib/cam/fusion.py": hash of its bytes}`` for each dotted module name."""
    index = module_index(package_dir)
    out = {}
    for name in modules:
        path = index[name]
        out[path.relative_to(Path(package_dir).parent).as_posix()] = file_sha256(path)[:SHORT]
    return dict(sorted(out.items()))


@functools.lru_cache(maxsize=None)
def code_fingerprint(roots: tuple[str, ...], package_dir: Path = PACKAGE_DIR) -> str:
    """Short hash of the source of ``roots`` and every package module they import, transitively.

    Computed once per process and set of roots (a running kernel does not see later edits).
    The training checkpoints' resume check keys on it (:mod:`umcam_lib.train.common`).
    """
    hashes = module_hashes(module_closure(roots, package_dir=package_dir), package_dir)
    return value_hash(hashes)


def package_versions() -> dict[str, str | None]:
    """Installed versions of the study's main dependencies."""
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


def device_info() -> dict[str, Any]:
    """The compute device torch sees."""
    import torch

    info: dict[str, Any] = {"cuda": torch.cuda.is_available(), "cpu": platform.processor() or platform.machine(),
                            "torch_threads": torch.get_num_threads()}
    if info["cuda"]:
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def record(run_dir: str | Path, notebook: str, params: dict[str, Any]) -> dict[str, Any]:
    """Record and print the provenance of one notebook run under ``run_dir/provenance/NN.json``.

    Parameters
    ----------
    run_dir : str or Path
        The run folder (relative paths resolve against the repository root).
    notebook : str
        Notebook number, e.g. ``"01"``.
    params : dict
        The parameters the notebook ran with.
    """
    prov = {
        "notebook": notebook,
        "time_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "git": {k: v for k, v in git_state().items() if k != "changed"},
        "library": library_fingerprint(),
        "python": platform.python_version(),
        "packages": package_versions(),
        "device": device_info(),
        "seed": params.get("seed"),
        "params": params,
    }
    write_json(resolve(run_dir) / "provenance" / f"{notebook}.json", prov)
    g = prov["git"]
    dev = prov["device"].get("gpu") or "CPU"
    print(f"notebook {notebook} | commit {str(g['commit'])[:10]}{' (dirty)' if g['dirty'] else ''} | "
          f"torch {prov['packages']['torch']} | device {dev} | seed {prov['seed']}")
    return prov


def collect(run_dir: str | Path) -> dict[str, Any]:
    """All notebooks' provenance records of a run, keyed by notebook number."""
    folder = resolve(run_dir) / "provenance"
    return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}
