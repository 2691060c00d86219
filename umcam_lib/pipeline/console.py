"""The runner's quiet console: one line per notebook, everything else in a run log.

``python -m umcam_lib.pipeline`` shows, for each notebook, one line that it redraws while the
notebook runs (on a terminal; elsewhere it prints the line once the notebook ends)::

    02 classifier training  [#####.....] 12/25 cells  3:05

Papermill's log, the kernel's own messages, Python warnings and everything the notebooks print
go to the run log (:func:`redirect_output` points the process's file descriptors 1 and 2 at
it, so a kernel started meanwhile inherits it too). :class:`ConsoleReporter` receives the
runner's events (a notebook started, a cell done, a notebook finished, reused or failed) and
draws them on the console and in the run log.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Callable, Iterator, Sequence

from .execute import notebook_warnings
from .plan import REUSE, PlanEntry

if TYPE_CHECKING:
    from .run import NotebookResult

#: Characters of the bar.
BAR_WIDTH = 10


def format_duration(seconds: float) -> str:
    """``m:ss`` below an hour, ``h:mm:ss`` above (seconds rounded down)."""
    s = max(0, int(seconds))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def notebook_title(file_name: str) -> str:
    """``"02_classifier_training.ipynb"`` -> ``"classifier training"``."""
    stem = Path(file_name).stem
    head, _, rest = stem.partition("_")
    return (rest if head.isdigit() and rest else stem).replace("_", " ")


def format_line(number: str, title: str, done: int, total: int, seconds: float, *,
                title_width: int = 0, status: str = "") -> str:
    """One console line of a notebook: number, title, bar, cells done, elapsed time.

    Parameters
    ----------
    number, title : str
        ``"02"`` and ``"classifier training"``; the title is padded to ``title_width``.
    done, total : int
        Cells finished and cells in the executed notebook (``total`` 0: no bar is known yet).
    seconds : float
        Elapsed wall-clock time.
    status : str
        Appended after the time (``"failed"``, ...).

    Returns
    -------
    str
        E.g. ``"02 classifier training  [#####.....] 12/25 cells  3:05"``.
    """
    filled = BAR_WIDTH * done // total if total > 0 else 0
    bar = "#" * filled + "." * (BAR_WIDTH - filled)
    line = f"{number} {title.ljust(title_width)}  [{bar}] {done}/{total} cells  {format_duration(seconds)}"
    return f"{line}  {status}" if status else line


class ProgressLine:
    """The line of one running notebook on the console.

    On a terminal (``tty``) it is redrawn in place at every finished cell and once a second (so
    the clock moves during a long cell); elsewhere only the final line is written, by
    :meth:`finish`.

    Parameters
    ----------
    stream : text stream
        The console.
    number, title : str
        As in :func:`format_line`.
    title_width : int
        Width the titles of one run are padded to, so that the bars line up.
    tty : bool, optional
        Redraw in place; default: whether ``stream`` is a terminal.
    clock : callable
        Time source (seconds), replaceable in tests.
    """

    def __init__(self, stream: IO[str], number: str, title: str, title_width: int = 0,
                 tty: bool | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.stream, self.number, self.title, self.title_width = stream, number, title, title_width
        self.tty = _isatty(stream) if tty is None else tty
        self.clock = clock
        self.start = clock()
        self.done = self.total = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._width = 0

    def line(self, status: str = "") -> str:
        """The current text of the line."""
        return format_line(self.number, self.title, self.done, self.total, self.clock() - self.start,
                           title_width=self.title_width, status=status)

    def _draw(self, text: str, end: str = "") -> None:
        with self._lock:
            pad = " " * max(0, self._width - len(text))
            self.stream.write("\r" + text + pad + end)
            self.stream.flush()
            self._width = 0 if end else len(text)

    def update(self, done: int, total: int) -> None:
        """Record ``done`` of ``total`` cells finished (and redraw on a terminal)."""
        self.done, self.total = done, total
        if self.tty:
            self._draw(self.line())

    def __enter__(self) -> "ProgressLine":
        if self.tty:
            self._draw(self.line())
            self._ticker = threading.Thread(target=self._tick, daemon=True)
            self._ticker.start()
        return self

    def _tick(self) -> None:
        while not self._stop.wait(1.0):
            self._draw(self.line())

    def finish(self, status: str = "") -> str:
        """Stop redrawing and write the final line (with a newline); return its text."""
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
            self._ticker = None
        text = self.line(status)
        if self.tty:
            self._draw(text, end="\n")
        else:
            with self._lock:
                self.stream.write(text + "\n")
                self.stream.flush()
        return text

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
            self._ticker = None


def _isatty(stream: IO[str]) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


@contextlib.contextmanager
def console_stream(stream: IO[str] | None = None) -> Iterator[IO[str]]:
    """The console as a stream that keeps pointing at it while :func:`redirect_output` is active.

    Parameters
    ----------
    stream : text stream, optional
        ``sys.stdout`` (default) or ``sys.stderr``.

    Yields
    ------
    text stream
        Where ``stream`` is a real file descriptor, a duplicate of that descriptor (closed on
        exit); otherwise (a test's captured stream) ``stream`` itself.
    """
    stream = sys.stdout if stream is None else stream
    try:
        fd = stream.fileno()
    except (AttributeError, ValueError, OSError, io.UnsupportedOperation):
        yield stream
        return
    stream.flush()
    dup = os.fdopen(os.dup(fd), "w", buffering=1, encoding=getattr(stream, "encoding", None) or "utf-8",
                    errors="replace")
    try:
        yield dup
    finally:
        dup.close()


@contextlib.contextmanager
def redirect_output(log: IO[str]) -> Iterator[None]:
    """Send file descriptors 1 and 2 (and ``sys.stdout`` / ``sys.stderr``) to ``log`` meanwhile.

    Whatever the process and any child it starts (a Jupyter kernel) write to standard output or
    error lands in the log: papermill's messages, the kernel's warnings, Python warnings.
    Restored on exit, also after an exception.
    """
    for s in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            s.flush()
    log.flush()
    saved = []
    try:
        for fd in (1, 2):
            saved.append((fd, os.dup(fd)))
            os.dup2(log.fileno(), fd)
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            yield
    finally:
        for s in (sys.stdout, sys.stderr, log):
            with contextlib.suppress(Exception):
                s.flush()
        for fd, copy in saved:
            os.dup2(copy, fd)
            os.close(copy)


class ConsoleReporter:
    """The console and the run log of one run: draws the runner's events.

    Without ``verbose`` each notebook that runs gets a :class:`ProgressLine` on ``console``; the
    header, the reused notebooks and the summary are printed there too, warnings found in an
    executed notebook go to ``err_console``, and the run log gets a line for every event. With
    ``verbose`` there are no progress lines, and the log's lines are also printed to standard
    output (which then shows papermill's own bars and the notebooks' output).

    Parameters
    ----------
    log : text stream
        The run log.
    console, err_console : text stream
        The console's standard output and error (:func:`console_stream`: they keep pointing at
        the terminal while :meth:`quiet` sends file descriptors 1 and 2 to the log).
    names : sequence of str
        File names of the notebooks the run goes through, in order (numbers them ``[i/n]`` and
        pads the titles so that the bars line up).
    log_path : Path
        Where ``log`` is (named in failure messages).
    verbose : bool
        ``--verbose``.
    """

    def __init__(self, log: IO[str], console: IO[str], err_console: IO[str], names: Sequence[str],
                 log_path: Path, verbose: bool = False) -> None:
        self.log, self.console, self.err_console = log, console, err_console
        self.log_path, self.verbose = Path(log_path), verbose
        self.count = len(names)
        self.width = max((len(notebook_title(n)) for n in names), default=0)
        self.running: tuple[str, str] | None = None   # (number, file name) of the notebook executing
        self._index = 0
        self._line: ProgressLine | None = None
        self._drawing = contextlib.ExitStack()

    @classmethod
    @contextlib.contextmanager
    def open(cls, log_path: Path, names: Sequence[str], verbose: bool = False) -> Iterator["ConsoleReporter"]:
        """A reporter on the process's console that appends to the run log ``log_path`` meanwhile."""
        with (open(log_path, "a", encoding="utf-8", buffering=1) as log, console_stream() as console,
              console_stream(sys.stderr) as err_console):
            reporter = cls(log, console, err_console, names, log_path, verbose)
            try:
                yield reporter
            finally:
                reporter.stop()

    def quiet(self) -> contextlib.AbstractContextManager[Any]:
        """Unless verbose, send file descriptors 1 and 2 to the run log meanwhile (:func:`redirect_output`)."""
        return contextlib.nullcontext() if self.verbose else redirect_output(self.log)

    def say(self, text: str) -> None:
        """Print a line on the console (standard output with ``verbose``)."""
        if self.verbose:
            print(text, flush=True)
        else:
            print(text, file=self.console, flush=True)

    def _note(self, text: str) -> None:
        """A line of the run log, also printed with ``verbose``."""
        self.log.write(text + "\n")
        if self.verbose:
            print(text, flush=True)

    def _echo_warnings(self, number: str, output: Path) -> None:
        stream = sys.stderr if self.verbose else self.err_console
        for w in notebook_warnings(output):
            print(f"  warning from notebook {number}: {w}", file=stream, flush=True)

    def begin(self, header: str, params: dict[str, Any], plan: Sequence[str]) -> None:
        """The run starts: the header, the parameters and the plan (:func:`umcam_lib.pipeline.plan.format_plan`)."""
        self.log.write(header + "\n" + f"parameters: {json.dumps(params, sort_keys=True, default=str)}\n")
        self.log.write("plan:\n" + "".join(f"  {line}\n" for line in plan))
        self.say(header)

    def start(self, index: int, entry: PlanEntry) -> None:
        """Notebook ``index`` (1-based) of the run comes up; one that runs gets its progress line."""
        self._index = index
        if entry.action == REUSE:
            return
        self._note(f"[{index}/{self.count}] {entry.name}: running ({'; '.join(entry.reasons)}) ...")
        self.running = (entry.number, entry.name)
        if not self.verbose:
            line = ProgressLine(self.console, entry.number, notebook_title(entry.name), self.width)
            self._line = self._drawing.enter_context(line)

    def cell_done(self, done: int, total: int) -> None:
        """``done`` of the running notebook's ``total`` cells are executed."""
        if self._line is not None:
            self._line.update(done, total)

    def done(self, result: "NotebookResult") -> None:
        """The notebook of the last :meth:`start` ran (``result.status == "ran"``) or was reused."""
        prefix = f"[{self._index}/{self.count}] {result.name}"
        if result.status == "reused":
            self._note(f"{prefix}: parameters, code, inputs and earlier results unchanged, reusing {result.output}")
            if not self.verbose:
                self.say(f"{result.number} {notebook_title(result.name).ljust(self.width)}  reused (parameters, "
                         f"code, inputs and earlier results unchanged)")
            return
        self.running = None
        if self._line is not None:
            self._line.finish()
        self.stop()
        self._echo_warnings(result.number, result.output)
        self._note(f"{prefix}: done in {result.seconds:.1f} s")

    def failed(self, number: str, output: Path, message: str) -> None:
        """The running notebook failed: its line ends in ``failed``; ``message`` goes to the log."""
        if self._line is not None:
            self._line.finish("failed")
        self.stop()
        self._echo_warnings(number, output)
        self.log.write(message + "\n")

    def where(self) -> str:
        """Where the run stands: ``"in notebook 03 (03_cam_variants.ipynb)"`` or ``"between notebooks"``."""
        return f"in notebook {self.running[0]} ({self.running[1]})" if self.running else "between notebooks"

    def interrupted(self) -> str:
        """Ctrl-C: stop drawing, log where the run stood, and return it (:meth:`where`)."""
        self.stop()
        where = self.where()
        self.log.write(f"interrupted {where}\n")
        return where

    def summary(self, text: str) -> None:
        """The run's last line, in the log and on the console."""
        self.log.write(text + "\n")
        self.say(text)

    def stop(self) -> None:
        """Stop redrawing a progress line that is still on (after an error or an interrupt)."""
        self._drawing.close()
        self._line = None
