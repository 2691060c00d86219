"""The DRS and AMR fine-tunes of notebook 07 as tasks, trained side by side when the executor allows.

Both fine-tunes start from notebook 02's classifier and are independent of each other, so the
notebook submits them to the profile's executor (:mod:`umcam_lib.train.executors`) before it
reads their maps. A task

* reads only the run folder: the prepared slices (``data/``) and notebook 02's classifier
  (``classifier/best.pt``), or, for another classifier seed whose labels a UNet seed trains on
  (the crossed design, :mod:`umcam_lib.train.label_seeds`), that seed's classifier
  (``seeds/seed-<s>/classifier/``);
* writes only ``baselines/<kind>/`` (``seeds/seed-<s>/baselines/<kind>/`` for another seed)
  through the checkpoints of :mod:`umcam_lib.train.common`,
  so a finished fine-tune is reused and an interrupted one resumes; the notebook's own call of
  :func:`~umcam_lib.baselines.drs.train_drs` / :func:`~umcam_lib.baselines.amr.train_amr` then
  loads the finished weights instead of training;
* sets torch's threads to its own share while it runs (same weights for the same threads per
  task, in the notebook's process or in a worker).
"""
from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import pandas as pd
import torch

from .. import runtime
from ..config.schema import BaselinesParams, ClassifierParams, check_section
from ..data.artifacts import SliceSet, load_slices
from ..models.vgg import VGGClassifier
from ..paths import resolve
from ..train.classifier import load_classifier
from ..train.executors import SerialExecutor, run_tasks
from .amr import train_amr
from .drs import train_drs

#: The fine-tunes, in the order the notebook shows them.
KINDS = ("drs", "amr")


@dataclass(frozen=True)
class FineTuneTask:
    """One baseline fine-tune (``kind`` ``drs`` or ``amr``): everything a worker needs."""

    run_dir: str
    kind: str
    classifier: dict = field(hash=False)
    baselines: dict = field(hash=False)
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    threads: int | None = None
    labels_dir: str = ""   # another classifier seed's folder (seeds/seed-<s>); empty: the run folder's

    @property
    def home(self) -> Path:
        """The folder of the classifier it starts from and of its ``baselines/``."""
        return Path(self.labels_dir) if self.labels_dir else resolve(self.run_dir)

    @property
    def where(self) -> str:
        """The folder this task writes."""
        return str(fine_tune_dir(self.home, self.kind))

    def describe(self) -> str:
        """``DRS fine-tune``: the task in a progress line or an error."""
        return f"{self.kind.upper()} fine-tune" + (f" of {self.home.name}" if self.labels_dir else "")


def fine_tune_dir(run_dir: str | Path, kind: str) -> Path:
    """``run_dir/baselines/<kind>``: checkpoints of one fine-tune."""
    return resolve(run_dir) / "baselines" / kind


def run_fine_tune(task: FineTuneTask, slices: SliceSet | None = None, spotlight: VGGClassifier | None = None,
                  progress: bool = False) -> pd.DataFrame:
    """Train (or reuse, or resume) one fine-tune; return its history (one row per epoch).

    ``slices`` and ``spotlight`` (notebook 02's classifier) are passed by a caller that has
    them in memory; a worker reads them from the run folder.
    """
    if task.kind not in KINDS:
        raise ValueError(f"fine-tune kind must be one of {KINDS}, got {task.kind!r}")
    before = torch.get_num_threads()
    if task.threads:
        torch.set_num_threads(int(task.threads))
    try:
        device = runtime.select_device(task.device)
        slices = slices if slices is not None else load_slices(task.run_dir)
        if spotlight is None:
            spotlight = load_classifier(task.home / "classifier", task.classifier, device=device)
        train = train_drs if task.kind == "drs" else train_amr
        _, history = train(slices, task.classifier, task.baselines, Path(task.where), spotlight, device=device,
                           amp=task.amp, seed=task.seed, progress=progress)
        return history
    finally:
        torch.set_num_threads(before)


def fine_tune_baselines(slices: SliceSet, run_dir: str | Path, classifier: ClassifierParams | Mapping[str, Any],
                        baselines: BaselinesParams | Mapping[str, Any], spotlight: VGGClassifier | None = None,
                        seed: int = 0, device: str = "auto", amp: bool = True, executor: Executor | None = None,
                        threads: int | None = None, progress: bool = True,
                        extra_seeds: Mapping[int, str | Path] | None = None) -> dict[str, pd.DataFrame]:
    """Both fine-tunes through ``executor`` (serial, in this process, by default).

    ``extra_seeds`` (classifier seed -> its labels folder, the crossed design) adds both
    fine-tunes of each of those seeds' classifiers, seeded with that seed, as more tasks.

    Returns
    -------
    dict
        ``kind -> history`` (one row per epoch) of the run's own fine-tunes, and
        ``"<kind>@<seed>"`` for those of ``extra_seeds``.
    """
    cls = check_section("classifier", classifier).to_dict()
    bas = check_section("baselines", baselines).to_dict()
    tasks = [FineTuneTask(str(resolve(run_dir)), kind, cls, bas, int(seed), str(device), bool(amp), threads)
             for kind in KINDS]
    names = list(KINDS)
    for s, folder in (extra_seeds or {}).items():
        tasks += [FineTuneTask(str(resolve(run_dir)), kind, cls, bas, int(s), str(device), bool(amp), threads,
                               str(resolve(folder))) for kind in KINDS]
        names += [f"{kind}@{int(s)}" for kind in KINDS]
    executor = executor if executor is not None else SerialExecutor()
    if isinstance(executor, SerialExecutor):  # in this process: the slices in memory, the run's spotlight given
        results = run_tasks(executor, run_fine_tune, tasks[:len(KINDS)], slices, spotlight, progress,
                            progress=progress)
        if len(tasks) > len(KINDS):
            results += run_tasks(executor, run_fine_tune, tasks[len(KINDS):], slices, None, progress,
                                 progress=progress)
    else:
        results = run_tasks(executor, run_fine_tune, tasks, progress=progress)
    return dict(zip(names, results))


__all__ = ["FineTuneTask", "KINDS", "fine_tune_baselines", "fine_tune_dir", "run_fine_tune"]
