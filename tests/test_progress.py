"""The quiet console (issue 12, item 6): the line format, the redrawn line, the run log."""
from __future__ import annotations

import io
import subprocess
import sys

from umcam_lib.pipeline import console as progress


def test_format_line_bar_count_and_time():
    line = progress.format_line("02", "classifier training", 12, 25, 185.4)
    assert line == "02 classifier training  [####......] 12/25 cells  3:05"
    assert progress.format_line("01", "data", 0, 0, 0).endswith("[..........] 0/0 cells  0:00")
    assert "[##########] 7/7" in progress.format_line("08", "report", 7, 7, 3725, status="failed")
    assert progress.format_line("08", "report", 7, 7, 3725, status="failed").endswith("1:02:05  failed")
    padded = progress.format_line("08", "report", 1, 2, 1, title_width=19)
    assert padded.index("[") == progress.format_line("02", "classifier training", 1, 2, 1).index("[")


def test_notebook_title():
    assert progress.notebook_title("02_classifier_training.ipynb") == "classifier training"
    assert progress.notebook_title("a.ipynb") == "a"


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_line_off_a_terminal_is_written_once_at_the_end():
    out, clock = io.StringIO(), _Clock()
    with progress.ProgressLine(out, "03", "cam variants", tty=False, clock=clock) as line:
        line.update(1, 4)
        line.update(4, 4)
        assert out.getvalue() == ""
        clock.now += 75
        line.finish()
    assert out.getvalue() == "03 cam variants  [##########] 4/4 cells  1:15\n"


def test_line_on_a_terminal_is_redrawn_in_place():
    out, clock = io.StringIO(), _Clock()
    line = progress.ProgressLine(out, "05", "spl generation", tty=True, clock=clock)
    line.update(2, 4)
    clock.now += 5
    line.update(3, 4)
    line.finish("failed")
    text = out.getvalue()
    assert text.count("\n") == 1 and text.endswith("failed\n")
    assert text.split("\r")[1].startswith("05 spl generation  [#####.....] 2/4 cells  0:00")
    assert "[#######...] 3/4 cells  0:05" in text


def test_redirect_output_catches_a_child_process_and_python_warnings(tmp_path):
    """What a kernel (a child process) writes to its inherited stderr lands in the log, not the console."""
    log_path = tmp_path / "run.log"
    console = io.StringIO()
    with open(log_path, "w", encoding="utf-8") as log:
        with progress.redirect_output(log):
            subprocess.run([sys.executable, "-c", "import sys; print('child out'); print('child err', file=sys.stderr)"],
                           check=True)
            print("parent print")
            console.write("console line\n")
    text = log_path.read_text()
    assert "child out" in text and "child err" in text and "parent print" in text
    assert console.getvalue() == "console line\n"


def test_progress_engine_is_registered_once_through_papermills_registry():
    from papermill.engines import NBClientEngine, papermill_engines

    from umcam_lib.pipeline.execute import _progress_engine

    name = _progress_engine()
    engine = papermill_engines.get_engine(name)
    assert name == "umcam-progress" and issubclass(engine, NBClientEngine)
    assert _progress_engine() == name and papermill_engines.get_engine(name) is engine   # not re-registered


def test_progress_engine_reports_every_finished_cell(monkeypatch):
    from types import SimpleNamespace

    from papermill.engines import NBClientEngine, papermill_engines

    from umcam_lib.pipeline.execute import _Progress, _progress_engine

    completed, seen = [], []

    class Manager:
        nb = SimpleNamespace(cells=["a", "b", "c"])

        def cell_complete(self, cell, cell_index=None, **kw):
            completed.append((cell, cell_index))

    def run_cells(cls, nb_man, kernel_name, **kwargs):  # stands in for nbclient: completes each cell
        for i, cell in enumerate(nb_man.nb.cells):
            nb_man.cell_complete(cell, cell_index=i)

    monkeypatch.setattr(NBClientEngine, "execute_managed_notebook", classmethod(run_cells))
    monkeypatch.setattr(_Progress, "callback", lambda done, total: seen.append((done, total)))
    papermill_engines.get_engine(_progress_engine()).execute_managed_notebook(Manager(), "python3")
    assert completed == [("a", 0), ("b", 1), ("c", 2)]        # papermill's own bookkeeping still runs
    assert seen == [(1, 3), (2, 3), (3, 3)]
