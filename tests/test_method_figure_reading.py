"""The method figure recomputes UM-CAM under the reading notebook 04 chose on validation
(umcam_lib.report.method_figure.notebook04_cam), not under the profile's default reading."""
from __future__ import annotations

import pandas as pd

from umcam_lib.cam.study import READINGS_FILE
from umcam_lib.report.method_figure import READINGS_FILE as FIGURE_READS, notebook04_cam


def _readings(run, val: dict[str, float]) -> None:
    rows = [{"seed": s, "reading": r, "method": "UM-CAM", "split": split, "threshold": 0.5, "n": 10,
             "dsc": d if split == "val" else 50.0 - d}   # test prefers the opposite: it must not choose
            for s in (0, 1) for r, d in val.items() for split in ("val", "test")]
    path = run / READINGS_FILE
    path.parent.mkdir(parents=True)
    pd.DataFrame(rows).to_csv(path, index=False)


def test_the_figure_takes_validations_reading(tmp_path):
    _readings(tmp_path, {"paper": 10.0, "batch_max": 10.5, "t2": 9.0})
    assert notebook04_cam(tmp_path, {}).umcam_norm == "batch_max"
    assert notebook04_cam(tmp_path, {"readings": False}).umcam_norm == "max"   # no readings compared: the profile's


def test_without_a_readings_table_the_profiles_section_stands(tmp_path):
    assert notebook04_cam(tmp_path, {"entropy_temperature": 2.0}).entropy_temperature == 2.0


def test_the_figure_reads_the_file_notebook_04_writes():
    assert FIGURE_READS == READINGS_FILE
