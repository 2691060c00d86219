"""Where things live: the repository root, run folders and figure folders."""
from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent
NOTEBOOK_DIR = REPO_ROOT / "notebooks"
PARAMS_DIR = REPO_ROOT / "params"
SHARED_DATA = REPO_ROOT.parent / "shared" / "data" / "fetal-mri-cc0"


def resolve(path: str | Path) -> Path:
    """Resolve ``path`` against the repository root when it is relative.

    Notebooks run with the repository root as working directory under the pipeline but with
    ``notebooks/`` under JupyterLab; resolving against the root makes both see the same files.
    """
    p = Path(path).expanduser()
    return p if p.is_absolute() else (REPO_ROOT / p)
