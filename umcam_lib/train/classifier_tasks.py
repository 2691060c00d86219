"""The classifier seeds of notebook 02 as tasks: one classifier of one seed, trained and scored.

Each seed of the classifier-and-CAM stage (:func:`umcam_lib.train.classifier.stage_seeds`) is
independent of the others, so notebook 02 submits them to the profile's executor
(:mod:`umcam_lib.train.executors`) as :class:`ClassifierSeedTask` objects, as notebooks 06-07 do
with their UNets (:mod:`umcam_lib.train.tasks`). A task

* reads only the run folder's prepared slices (``data/``);
* writes only its seed's classifier folder (``classifier/`` for the primary seed,
  ``seeds/seed-<s>/classifier/`` for the others), through the checkpoints of
  :mod:`umcam_lib.train.common`: a finished classifier is reused, an interrupted one resumes
  from its last epoch, and one made from other data, code or recipe is trained afresh;
* sets torch's threads to its own share while it runs, so it gives the same weights in the
  notebook's process and in a worker beside others, for the same threads per task.
"""
from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd
import torch

from .. import runtime
from ..config.schema import ClassifierParams, check_section
from ..data.artifacts import SliceSet, load_slices
from ..paths import resolve
from .classifier import build_classifier, classifier_dir, load_classifier, metrics_table, train_classifier
from .executors import SerialExecutor, run_tasks


@dataclass(frozen=True)
class ClassifierSeedTask:
    """One classifier seed: everything a worker needs.

    Attributes
    ----------
    run_dir : str
        The run folder (absolute; shared with the workers).
    seed : int
        This classifier's seed.
    primary_seed : int
        The stage's first seed (its classifier lives in ``classifier/``).
    classifier : dict
        The ``classifier`` section (plain values).
    device : str
        ``auto``, ``cpu`` or ``cuda`` (resolved in the worker).
    amp : bool
    threads : int or None
        Torch threads of this task (None: leave the process's setting).
    splits : tuple of str
        Splits scored with the best-F1 checkpoint.
    """

    run_dir: str
    seed: int
    primary_seed: int
    classifier: dict = field(hash=False)
    device: str = "auto"
    amp: bool = True
    threads: int | None = None
    splits: tuple[str, ...] = ("val", "test")

    @property
    def where(self) -> str:
        """The folder this task writes."""
        return str(classifier_dir(self.run_dir, self.seed, self.primary_seed))

    def describe(self) -> str:
        """``classifier seed 2``: the task in a progress line or an error."""
        return f"classifier seed {self.seed}"


def classifier_seed_tasks(run_dir: str | Path, cfg: ClassifierParams | Mapping[str, Any], seeds: Sequence[int],
                          device: str = "auto", amp: bool = True,
                          threads: int | None = None) -> list[ClassifierSeedTask]:
    """One task per seed; the first seed is the primary one."""
    plain = check_section("classifier", cfg).to_dict()
    return [ClassifierSeedTask(str(resolve(run_dir)), int(s), int(seeds[0]), plain, str(device), bool(amp), threads)
            for s in seeds]


def run_classifier_seed(task: ClassifierSeedTask, slices: SliceSet | None = None,
                        progress: bool = False) -> list[dict[str, Any]]:
    """Train (or reuse, or resume) one seed's classifier and score its best-F1 checkpoint.

    Parameters
    ----------
    task : ClassifierSeedTask
    slices : SliceSet, optional
        The run's slices when the caller has them in memory (the serial executor); a worker
        reads them from ``run_dir/data``.
    progress : bool
        Show the epochs' progress bar.

    Returns
    -------
    list of dict
        One row per split: ``seed, split, n, positives, accuracy, precision, recall, f1,
        best_epoch`` (``best_epoch`` -1 when no epoch had a validation F1).
    """
    before = torch.get_num_threads()
    if task.threads:
        torch.set_num_threads(int(task.threads))
    try:
        slices = slices if slices is not None else load_slices(task.run_dir)
        device = runtime.select_device(task.device)
        out = Path(task.where)
        model = build_classifier(task.classifier, seed=task.seed)
        history = train_classifier(model, slices, task.classifier, out, device=device, amp=task.amp, seed=task.seed,
                                   progress=progress)
        best = load_classifier(out, task.classifier, device=device)
        table = metrics_table(best, slices, task.splits, device=device, amp=task.amp)
        f1 = history["val_f1"]
        best_epoch = int(history.loc[f1.idxmax(), "epoch"]) if f1.notna().any() else -1
        return [{"seed": task.seed, **r, "best_epoch": best_epoch} for r in table.to_dict("records")]
    finally:
        torch.set_num_threads(before)


def train_seed_tasks(slices: SliceSet, cfg: ClassifierParams | Mapping[str, Any], run_dir: str | Path,
                     seeds: Sequence[int], device: str = "auto", amp: bool = True, executor: Executor | None = None,
                     threads: int | None = None, progress: bool = True) -> pd.DataFrame:
    """Every seed's classifier through ``executor`` (serial, in this process, by default).

    Returns
    -------
    DataFrame
        One row per seed and split (val, test), in seed order: ``seed, split, n, positives,
        accuracy, precision, recall, f1, best_epoch``.
    """
    executor = executor if executor is not None else SerialExecutor()
    tasks = classifier_seed_tasks(run_dir, cfg, seeds, str(device), amp, threads)
    in_process = isinstance(executor, SerialExecutor)
    extra = (slices, progress) if in_process else ()
    results = run_tasks(executor, run_classifier_seed, tasks, *extra, progress=progress)
    return pd.DataFrame([row for rows in results for row in rows])


__all__ = ["ClassifierSeedTask", "classifier_seed_tasks", "run_classifier_seed", "train_seed_tasks"]
