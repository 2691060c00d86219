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

    from umcam_lib.pipeline.execute import _progress_engine

    completed, seen = [], []

    class Manager:
        nb = SimpleNamespace(cells=["a", "b", "c"])

        def cell_complete(self, cell, cell_index=None, **kw):
            completed.append((cell, cell_index))

    def run_cells(cls, nb_man, kernel_name, **kwargs):  # stands in for nbclient: completes each cell
        assert "on_cell" not in kwargs                         # the engine's own argument is not passed on
        for i, cell in enumerate(nb_man.nb.cells):
            nb_man.cell_complete(cell, cell_index=i)

    monkeypatch.setattr(NBClientEngine, "execute_managed_notebook", classmethod(run_cells))
    engine = papermill_engines.get_engine(_progress_engine())
    engine.execute_managed_notebook(Manager(), "python3", on_cell=lambda done, total: seen.append((done, total)))
    assert completed == [("a", 0), ("b", 1), ("c", 2)]        # papermill's own bookkeeping still runs
    assert seen == [(1, 3), (2, 3), (3, 3)]
    engine.execute_managed_notebook(Manager(), "python3")     # without a callback: cells are only counted
    assert len(completed) == 6 and len(seen) == 3


def test_console_reporter_draws_the_runners_events(tmp_path):
    """The reporter (off a terminal): a line per notebook, reused ones named, a failure's line and log entry."""
    from umcam_lib.pipeline.plan import REUSE, RUN, PlanEntry
    from umcam_lib.pipeline.run import NotebookResult

    log, out, err = io.StringIO(), io.StringIO(), io.StringIO()
    names = ["01_data_preparation.ipynb", "02_classifier_training.ipynb", "03_cam_variants.ipynb"]
    reporter = progress.ConsoleReporter(log, out, err, names, tmp_path / "run.log")
    reporter.begin("header", {"seed": 1}, ["01 reuse"])
    reporter.start(1, PlanEntry("01", names[0], REUSE, ()))
    reporter.done(NotebookResult("01", names[0], "reused", 0.0, tmp_path / "01.ipynb"))
    reporter.start(2, PlanEntry("02", names[1], RUN, ("no result yet",)))
    assert reporter.where() == "in notebook 02 (02_classifier_training.ipynb)"
    reporter.cell_done(3, 3)
    reporter.done(NotebookResult("02", names[1], "ran", 1.25, tmp_path / "02.ipynb", "abc"))
    assert reporter.where() == "between notebooks"
    reporter.start(3, PlanEntry("03", names[2], RUN, ("upstream 02 reruns",)))
    reporter.cell_done(1, 4)
    reporter.failed("03", tmp_path / "03.ipynb", "notebook 03 failed")
    assert reporter.interrupted() == "in notebook 03 (03_cam_variants.ipynb)"
    lines = out.getvalue().splitlines()
    assert lines[0] == "header"
    assert lines[1] == "01 data preparation     reused (parameters, code, inputs and earlier results unchanged)"
    assert lines[2].startswith("02 classifier training  [##########] 3/3 cells  0:0")
    assert lines[3].startswith("03 cam variants         [##........] 1/4 cells  0:0") and lines[3].endswith("failed")
    assert err.getvalue() == ""  # no executed copy, so no warnings to echo
    assert log.getvalue().splitlines() == [
        "header", 'parameters: {"seed": 1}', "plan:", "  01 reuse",
        f"[1/3] {names[0]}: parameters, code, inputs and earlier results unchanged, reusing {tmp_path / '01.ipynb'}",
        f"[2/3] {names[1]}: running (no result yet) ...", f"[2/3] {names[1]}: done in 1.2 s",
        f"[3/3] {names[2]}: running (upstream 02 reruns) ...", "notebook 03 failed", "interrupted in notebook 03 (03_cam_variants.ipynb)"]
