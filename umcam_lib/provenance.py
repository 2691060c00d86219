"""Provenance: what produced a result (commit, dirty flag, package versions, device, seed, params)."""
from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import importlib.metadata as md
import json
import platform
import subprocess
from pathlib import Path
from typing import Any

from .io import write_json
from .paths import PACKAGE_DIR, REPO_ROOT, resolve

PACKAGES = ("numpy", "scipy", "torch", "torchvision", "monai", "grad-cam", "GeodisTK", "nibabel",
            "scikit-image", "pandas", "matplotlib", "papermill")


def git_state(repo: Path = REPO_ROOT) -> dict[str, Any]:
    """Commit hash and whether tracked files differ from it (``None`` outside a git checkout)."""
    def run(*args: str) -> str | None:
        try:
            return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True,
                                  timeout=10, check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    commit = run("rev-parse", "HEAD")
    status = run("status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": None if status is None else bool(status)}


@functools.lru_cache(maxsize=None)
def library_fingerprint(package_dir: Path = PACKAGE_DIR) -> str:
    """Short hash of the library's source: every ``*.py`` file under ``umcam_lib`` (path and bytes).

    The pipeline's reuse decisions and the training checkpoints' resume check include it, so a
    result or a half-finished training run is never carried over an edit of the library. It is
    computed once per process (a running notebook does not see later edits).
    """
    h = hashlib.sha256()
    for path in sorted(Path(package_dir).rglob("*.py")):
        h.update(path.relative_to(package_dir).as_posix().encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


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
        "git": git_state(),
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
