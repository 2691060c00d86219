"""Trainings as tasks: one UNet of one row and seed, a function of the run folder and its parameters.

A notebook describes each independent training as a :class:`UNetTask` and hands the tasks to an
executor with the ``concurrent.futures`` interface (``submit(fn, *args) -> Future``,
:mod:`umcam_lib.train.executors`); it then reads the results and records them itself. A task

* reads only the run folder: the prepared slices (``data/``) and its targets, which the parent
  wrote before submitting (:func:`write_targets`, ``seg/_targets/<row>.npz``, or
  ``<row>__labels<s>.npz`` for a UNet seed paired with classifier seed ``s``,
  :mod:`umcam_lib.train.label_seeds`);
* writes only its own folder ``seg/<folder>/``: the checkpoints (atomically, resumable), the
  predictions of each split, then ``scores.csv`` and last ``task.json`` (its key), each through a
  temporary name. A folder without ``task.json``, or with another key, is never trusted: the
  task runs (and training resumes from its last finished epoch, or starts afresh when the code,
  data or recipe changed, as :mod:`umcam_lib.train.common` decides);
* sets torch's threads to its own share (``threads``), so a task gives the same result bit for
  bit whether it runs in the notebook's process or in a worker beside others.

The key of a finished task covers its specification, its targets and the source of the training
and prediction code, the same rule as a notebook's reuse (:mod:`umcam_lib.pipeline.plan`). Under
``pipeline --force`` (``UMCAM_FORCE=1``) every task runs again.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from .. import io, runtime
from ..data import SliceSet
from ..data.artifacts import load_slices
from ..hashing import array_hash, value_hash
from ..paths import resolve
from ..provenance import code_fingerprint
from .common import FORCE_ENV
from .seg_predict import evaluate_variant, variant_dir
from .seg_train import check_seg_config, train_variant

#: Modules whose source is part of a finished task's key.
TASK_CODE = ("umcam_lib.train.tasks", "umcam_lib.train.seg_train", "umcam_lib.train.seg_predict")

#: File names in a task's folder.
SCORES, MARKER = "scores.csv", "task.json"


@dataclass(frozen=True)
class UNetTask:
    """One UNet training, prediction and 3D scoring: everything a worker needs.

    Attributes
    ----------
    run_dir : str
        The run folder (absolute; shared with the workers).
    row : str
        The table row (method) the scores belong to, e.g. ``"UM-CAM+SPL"``.
    folder : str
        ``seg/<folder>`` holds this seed's UNet (``row``, or ``row__seed<s>``).
    seed : int
        The UNet seed.
    seg : dict
        The ``seg`` section (plain values).
    splits : tuple of str
        Splits predicted and scored after training.
    device : str
        ``auto``, ``cpu`` or ``cuda`` (resolved in the worker).
    amp : bool
    threads : int or None
        Torch threads of this task (None: leave the process's setting).
    labels : str
        Name of its targets (``seg/_targets/<labels>.npz``); empty: the row's own. A UNet seed
        paired with another classifier seed trains on ``row__labels<s>``
        (:func:`umcam_lib.train.label_seeds.labels_name`).
    """

    run_dir: str
    row: str
    folder: str
    seed: int
    seg: dict
    splits: tuple[str, ...] = ("val", "test")
    device: str = "auto"
    amp: bool = True
    threads: int | None = None
    labels: str = ""

    @property
    def targets(self) -> str:
        """Name of the targets it trains on (:func:`targets_path`)."""
        return self.labels or self.row

    def describe(self) -> str:
        """``UM-CAM+SPL seed 1``: how the console names the task."""
        return f"{self.row} seed {self.seed}" + (f" ({self.labels})" if self.labels and self.labels != self.row else "")


def targets_path(run_dir: str | Path, row: str) -> Path:
    """``seg/_targets/<row>.npz``: the training targets of a row, written by the parent."""
    return variant_dir(run_dir, "_targets") / f"{variant_dir(run_dir, row).name}.npz"


def write_targets(run_dir: str | Path, row: str, targets: Mapping[str, Any]) -> Path:
    """Store a row's targets (``index``, ``maps``, optional ``spl``, ``lambda``, ``main``) for its tasks.

    Returns the file; it is rewritten only when its content changed, so a finished task's key
    (which covers the targets) survives a rerun of the notebook.
    """
    arrays = {k: np.asarray(targets[k]) for k in ("index", "maps", "spl") if targets.get(k) is not None}
    meta = {k: targets[k] for k in ("lambda", "main") if targets.get(k) is not None}
    path = targets_path(run_dir, row)
    digest = targets_key(arrays, meta)
    if path.is_file():
        with np.load(path) as z:
            if str(z["key"]) == digest:
                return path
    path.parent.mkdir(parents=True, exist_ok=True)
    return io.save_npz(path, key=np.asarray(digest), meta=np.asarray(json.dumps(meta)), **arrays)


def targets_key(arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> str:
    """Short hash of a row's targets (arrays in name order, then the scalar settings)."""
    return value_hash([array_hash(*(arrays[k] for k in sorted(arrays))), sorted(arrays), dict(meta)])


def read_targets(run_dir: str | Path, row: str) -> tuple[dict[str, Any], str]:
    """The targets :func:`write_targets` stored, and their key."""
    with np.load(targets_path(run_dir, row)) as z:
        out: dict[str, Any] = {k: z[k] for k in ("index", "maps", "spl") if k in z.files}
        out.update(json.loads(str(z["meta"])))
        return out, str(z["key"])


def task_key(task: UNetTask, targets: str) -> str:
    """What a finished task's result was made from: its specification, targets and code."""
    spec = dataclasses.asdict(task)
    spec.pop("run_dir")  # a run folder moved elsewhere keeps its results
    return value_hash([spec, targets, code_fingerprint(TASK_CODE)])


def finished(task: UNetTask) -> pd.DataFrame | None:
    """The stored scores of a task whose folder holds its current key, else None."""
    if os.environ.get(FORCE_ENV) == "1":
        return None
    folder = variant_dir(task.run_dir, task.folder)
    marker = folder / MARKER
    if not (marker.is_file() and (folder / SCORES).is_file() and targets_path(task.run_dir, task.targets).is_file()):
        return None
    _, targets = read_targets(task.run_dir, task.targets)
    if json.loads(marker.read_text()).get("key") != task_key(task, targets):
        return None
    return pd.read_csv(folder / SCORES)


def run_unet_task(task: UNetTask, slices: SliceSet | None = None, progress: bool = False) -> pd.DataFrame:
    """Train (or resume), predict and score one UNet; write its folder; return its scores.

    Parameters
    ----------
    task : UNetTask
    slices : SliceSet, optional
        The run's slices when the caller has them in memory (the serial executor); a worker
        reads them from ``run_dir/data``.

    Returns
    -------
    DataFrame
        Per-volume scores of every split (:func:`umcam_lib.train.seg_predict.evaluate_variant`),
        with ``method`` = the row, ``seed`` and ``seconds`` (of the whole task).
    """
    done = finished(task)
    if done is not None:
        return done
    before = torch.get_num_threads()
    if task.threads:
        torch.set_num_threads(int(task.threads))
    try:
        t0 = time.perf_counter()
        slices = slices if slices is not None else load_slices(task.run_dir)
        targets, key = read_targets(task.run_dir, task.targets)
        cfg = check_seg_config(task.seg)
        device = runtime.select_device("auto") if task.device == "auto" else torch.device(task.device)
        model = train_variant(task.folder, slices, targets, cfg, task.run_dir, device, task.amp, task.seed,
                              progress=progress)
        frames = []
        for split in task.splits:
            sc = evaluate_variant(model, slices, split, device, task.amp, task.run_dir, task.folder,
                                  cfg.eval_batch_size, postprocess=cfg.postprocess, tta=cfg.tta)
            frames.append(sc.assign(method=task.row, seed=task.seed))
        scores = pd.concat(frames, ignore_index=True).assign(seconds=round(time.perf_counter() - t0, 2))
        folder = variant_dir(task.run_dir, task.folder)
        with io.atomic_path(folder / SCORES) as tmp:
            scores.to_csv(tmp, index=False)
        io.write_json(folder / MARKER, {"key": task_key(task, key), "task": task.describe()})
        return scores
    finally:
        torch.set_num_threads(before)


def seed_folder(row: str, seed: int, base: int) -> str:
    """The run-folder name of one seed's UNet: ``row`` for the base seed (what ``segment`` and the
    figures read), ``row__seed<s>`` for the others.

    Examples
    --------
    >>> seed_folder("SPL", 0, 0), seed_folder("SPL", 2, 0)
    ('SPL', 'SPL__seed2')
    """
    return row if int(seed) == int(base) else f"{row}__seed{int(seed)}"


def unet_tasks(run_dir: str | Path, row: str, seg: Mapping[str, Any], seeds: Sequence[int], base_seed: int,
               splits: Sequence[str] = ("val", "test"), device: str = "auto", amp: bool = True,
               threads: int | None = None, labels: Mapping[int, str] | None = None) -> list[UNetTask]:
    """The tasks of one row: one per UNet seed (folder ``row`` for ``base_seed``, ``row__seed<s>`` else);
    ``labels`` names the targets of the seeds that do not train on the row's own (UNet seed -> name)."""
    plain = check_seg_config(seg).to_dict()
    labels = labels or {}
    return [UNetTask(str(resolve(run_dir)), row, seed_folder(row, s, base_seed), int(s), plain,
                     tuple(splits), str(device), bool(amp), threads, labels.get(int(s), "")) for s in seeds]


__all__ = ["MARKER", "SCORES", "UNetTask", "finished", "read_targets", "run_unet_task", "seed_folder",
           "targets_path", "task_key", "unet_tasks", "write_targets"]
