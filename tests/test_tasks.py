"""Trainings as tasks: serial, worker processes and a local Dask cluster give the same result."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import SEG_CFG, fake_slices
from umcam_lib.data.artifacts import save_slices
from umcam_lib.train import executors, tasks
from umcam_lib.train.segmentation import train_rows

CFG = {**SEG_CFG, "epochs": 1, "seeds": 2}


@pytest.fixture
def run(tmp_path):
    """A run folder with prepared slices and two rows' targets written (as notebook 06 does)."""
    s = fake_slices()
    save_slices(tmp_path, s)
    pos = s.indices("train", positive_only=True)
    for row in ("FullySup", "Noisy"):
        maps = s.masks[pos].astype(np.float32)
        if row == "Noisy":
            maps = np.clip(maps + np.random.default_rng(0).normal(0, 0.3, maps.shape).astype(np.float32), 0, 1)
        tasks.write_targets(tmp_path, row, {"index": pos, "maps": maps})
    return tmp_path, s


def _tasks(run_dir, threads=1):
    return [t for row in ("FullySup", "Noisy") for t in tasks.unet_tasks(run_dir, row, CFG, [0, 1], 0, device="cpu",
                                                                           amp=False, threads=threads)]


def _weights(run_dir, folder):
    return torch.load(run_dir / "seg" / folder / "best.pt", map_location="cpu", weights_only=True)["model"]


def _compare(a_dir, b_dir, folders):
    for f in folders:
        wa, wb = _weights(a_dir, f), _weights(b_dir, f)
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa), f
        sa = pd.read_csv(a_dir / "seg" / f / tasks.SCORES).drop(columns="seconds")
        sb = pd.read_csv(b_dir / "seg" / f / tasks.SCORES).drop(columns="seconds")
        pd.testing.assert_frame_equal(sa, sb)


def test_serial_and_two_worker_processes_give_the_same_unets_bit_for_bit(run, tmp_path_factory):
    run_dir, s = run
    other = tmp_path_factory.mktemp("parallel")
    save_slices(other, s)
    for row in ("FullySup", "Noisy"):
        tasks.write_targets(other, row, tasks.read_targets(run_dir, row)[0])
    serial = executors.run_tasks(executors.SerialExecutor(), tasks.run_unet_task, _tasks(run_dir), progress=False)
    pool = executors.make_executor({"kind": "processes", "jobs": 2})
    try:
        parallel = executors.run_tasks(pool, tasks.run_unet_task, _tasks(other), progress=False)
    finally:
        pool.shutdown()
    assert [len(x) for x in serial] == [len(x) for x in parallel]
    _compare(run_dir, other, ["FullySup", "FullySup__seed1", "Noisy", "Noisy__seed1"])


def test_a_local_dask_cluster_of_two_workers_gives_the_serial_results(run, tmp_path_factory):
    pytest.importorskip("distributed", reason="dask is part of the dev install (pyproject [dev])")
    run_dir, s = run
    other = tmp_path_factory.mktemp("dask")
    save_slices(other, s)
    for row in ("FullySup", "Noisy"):
        tasks.write_targets(other, row, tasks.read_targets(run_dir, row)[0])
    executors.run_tasks(executors.SerialExecutor(), tasks.run_unet_task, _tasks(run_dir), progress=False)
    dask = executors.make_executor({"kind": "dask", "jobs": 2})
    try:
        executors.run_tasks(dask, tasks.run_unet_task, _tasks(other), progress=False)
    finally:
        dask.shutdown()
    _compare(run_dir, other, ["FullySup", "FullySup__seed1", "Noisy", "Noisy__seed1"])


def test_a_finished_task_is_not_run_again_and_changed_targets_run_it(run, capsys):
    run_dir, s = run
    task = _tasks(run_dir)[0]
    first = tasks.run_unet_task(task, s)
    best = run_dir / "seg" / task.folder / "best.pt"
    stamp = best.stat().st_mtime_ns
    assert tasks.finished(task) is not None
    again = tasks.run_unet_task(task, s)
    assert best.stat().st_mtime_ns == stamp
    pd.testing.assert_frame_equal(first, again)
    index = tasks.read_targets(run_dir, task.row)[0]["index"]
    tasks.write_targets(run_dir, task.row, {"index": index, "maps": np.zeros((len(index), 32, 32), np.float32)})
    assert tasks.finished(task) is None  # the key covers the targets


def test_a_failing_task_is_named_with_its_error_and_its_output_is_not_trusted(run):
    run_dir, s = run
    good = _tasks(run_dir)[0]
    bad = tasks.UNetTask(str(run_dir), "Missing", "Missing", 0, good.seg, device="cpu", amp=False, threads=1)
    with pytest.raises(executors.TaskError, match=r"Missing seed 0: FileNotFoundError.*seg/Missing.*not trusted"):
        executors.run_tasks(executors.SerialExecutor(), tasks.run_unet_task, [good, bad], s, False, progress=False)
    assert tasks.finished(good) is not None  # the other task still finished
    assert not (run_dir / "seg" / "Missing" / tasks.MARKER).exists()


def test_a_task_killed_before_its_marker_is_run_again(run):
    """Interrupted after its checkpoints but before scores.csv / task.json: never trusted."""
    run_dir, s = run
    task = _tasks(run_dir)[0]
    tasks.run_unet_task(task, s)
    (run_dir / "seg" / task.folder / tasks.MARKER).unlink()
    assert tasks.finished(task) is None
    marker = run_dir / "seg" / task.folder / tasks.MARKER
    tasks.run_unet_task(task, s)
    assert json.loads(marker.read_text())["task"] == "FullySup seed 0"


def test_train_rows_records_each_seed_and_prints_the_task_board(run, capsys):
    run_dir, s = run
    rows = {row: tasks.read_targets(run_dir, row)[0] for row in ("FullySup", "Noisy")}
    scores = train_rows(rows, s, {**CFG, "tta": False}, run_dir, device="cpu", amp=False, seed=0, threads=1)
    assert sorted(scores["seed"].unique()) == [0, 1] and set(scores["method"]) == {"FullySup", "Noisy"}
    out = capsys.readouterr().out
    assert "tasks: 4 done, 0 running, 0 queued | Noisy seed 1 done" in out
    from umcam_lib.data.scores import load_scores
    recorded = load_scores(run_dir)
    assert set(recorded["method"]) == {"FullySup", "Noisy"} and sorted(recorded["seed"].unique()) == [0, 1]


def test_threads_per_task_and_the_jobs_option():
    assert executors.threads_per_task({"kind": "processes", "jobs": 2}, 2) == 1
    assert executors.threads_per_task({}, 2) == 2
    from umcam_lib.config import ParameterError, check_section
    with pytest.raises(ParameterError, match="executor.scheduler"):
        check_section("executor", {"kind": "serial", "scheduler": "tcp://x:1"})
    from umcam_lib.pipeline.cli import jobs_overrides
    assert jobs_overrides(2) == ["executor.kind=processes", "executor.jobs=2"]


# ---------------------------------------------------------------- classifier seeds (notebook 02)
CLS_CFG = {"width": 0.0625, "epochs": 1, "batch_size": 4, "augment": False, "pooling": "lse",
           "input_norm": "zero_background", "padding": "reflect", "equivariance": 0.0}


def test_classifier_seeds_in_two_worker_processes_match_the_serial_ones_bit_for_bit(run, tmp_path_factory):
    from umcam_lib.train.classifier_tasks import train_seed_tasks

    run_dir, s = run
    other = tmp_path_factory.mktemp("parallel-classifier")
    save_slices(other, s)
    serial = train_seed_tasks(s, CLS_CFG, run_dir, [3, 4], device="cpu", amp=False, threads=1, progress=False)
    pool = executors.make_executor({"kind": "processes", "jobs": 2})
    try:
        parallel = train_seed_tasks(s, CLS_CFG, other, [3, 4], device="cpu", amp=False, executor=pool, threads=1,
                                    progress=False)
    finally:
        pool.shutdown()
    pd.testing.assert_frame_equal(serial, parallel)
    assert list(serial["seed"].unique()) == [3, 4]
    for sub in ("classifier", "seeds/seed-4/classifier"):
        wa = torch.load(run_dir / sub / "best.pt", map_location="cpu", weights_only=True)["model"]
        wb = torch.load(other / sub / "best.pt", map_location="cpu", weights_only=True)["model"]
        assert all(torch.equal(wa[k], wb[k]) for k in wa), sub


def test_drs_and_amr_fine_tunes_in_two_worker_processes_match_the_serial_ones(run, tmp_path_factory):
    import shutil

    from umcam_lib.baselines.tasks import fine_tune_baselines
    from umcam_lib.train.classifier_tasks import train_seed_tasks

    run_dir, s = run
    cfg = {**CLS_CFG, "padding": "zeros"}  # 32-px slices: the DRS head meets 1-px maps
    train_seed_tasks(s, cfg, run_dir, [0], device="cpu", amp=False, threads=1, progress=False)
    other = tmp_path_factory.mktemp("parallel-baselines")
    save_slices(other, s)
    shutil.copytree(run_dir / "classifier", other / "classifier")
    bas = {"epochs": 1}
    serial = fine_tune_baselines(s, run_dir, cfg, bas, seed=0, device="cpu", amp=False, threads=1, progress=False)
    pool = executors.make_executor({"kind": "processes", "jobs": 2})
    try:
        parallel = fine_tune_baselines(s, other, cfg, bas, seed=0, device="cpu", amp=False, executor=pool,
                                       threads=1, progress=False)
    finally:
        pool.shutdown()
    assert list(serial) == ["drs", "amr"]
    for kind in serial:
        cols = [c for c in serial[kind].columns if c != "seconds"]
        pd.testing.assert_frame_equal(serial[kind][cols], parallel[kind][cols])
        wa = torch.load(run_dir / "baselines" / kind / "best.pt", map_location="cpu", weights_only=True)["model"]
        wb = torch.load(other / "baselines" / kind / "best.pt", map_location="cpu", weights_only=True)["model"]
        assert all(torch.equal(wa[k], wb[k]) for k in wa), kind
