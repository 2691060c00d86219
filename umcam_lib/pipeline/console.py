"""The runner's quiet console: one line per notebook, everything else in a run log.

``python -m umcam_lib.pipeline`` shows, for each notebook, one line that it redraws while the
notebook runs (on a terminal; elsewhere it prints the line once the notebook ends)::

    02 classifier training  [#####.....] 12/25 cells  3:05

Papermill's log, the kernel's own messages, Python warnings and everything the notebooks print
go to the run log (:func:`redirect_output` points the process's file descriptors 1 and 2 at
it, so a kernel started meanwhile inherits it too).
"""
from __future__ import annotations

import contextlib
import io
import os
import sys
import threading
import time
from pathlib import Path
from typing import IO, Callable, Iterator

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
