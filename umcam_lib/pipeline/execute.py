"""Executing one notebook with papermill: the kernel's environment, a cell-progress engine,
warnings read from the executed copy, and failure messages that name the cell.
"""
from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

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


_ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def error_tail(exc: Exception, lines: int = 6) -> list[str]:
    """The last ``lines`` non-empty lines of a failed cell's traceback, without colour codes."""
    tb = getattr(exc, "traceback", None) or []
    text = "\n".join(tb) if isinstance(tb, (list, tuple)) else str(tb)
    out = [ln.rstrip() for ln in _ANSI_RE.sub("", text).splitlines() if ln.strip()]
    return out[-lines:]


def _progress_engine() -> str:
    """Register (once) and name a papermill engine that reports finished cells.

    The engine takes one keyword argument of its own, ``on_cell``, which
    :func:`papermill.execute_notebook` hands to its engine with the other engine keyword
    arguments: a callable called as ``on_cell(done, total)`` after every executed cell.
    """
    from papermill.engines import NBClientEngine, papermill_engines
    from papermill.exceptions import PapermillException

    name = "umcam-progress"
    try:
        papermill_engines.get_engine(name)
    except PapermillException:  # not registered yet

        class ProgressEngine(NBClientEngine):
            @classmethod
            def execute_managed_notebook(cls, nb_man, kernel_name, on_cell=None, **kwargs):
                complete = nb_man.cell_complete
                total = len(nb_man.nb.cells)
                count = [0]

                def cell_complete(cell, cell_index=None, **kw):
                    complete(cell, cell_index=cell_index, **kw)
                    count[0] += 1
                    if on_cell is not None:
                        on_cell(count[0], total)

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
