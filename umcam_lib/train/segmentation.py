"""Stage 2: train the 2D UNet on pseudo labels (METHOD Eq. 8), predict, score in 3D, record.

This module is what notebooks 06 and 07 call: one function per method (:func:`train_evaluate_record`)
or per table (:func:`run_variants`), and the recording of their scores in Tables 1 and 2. The
pieces live below it and are gathered here:

==========================  ===============================================================
:mod:`umcam_lib.losses`     the loss, Eq. 8, in both readings (``soft_cross_entropy``,
                            ``eq8_loss``, ``spl_share``)
:mod:`.seg_targets`         the training targets of each variant (``variant_targets``,
                            ``training_set``)
:mod:`.seg_train`           the training loop (``train_variant``, ``epoch_order``) and the
                            ``seg`` section's check (``check_seg_config``)
:mod:`.seg_predict`         prediction and 3D scoring (``evaluate_variant``,
                            ``oracle_comparison``, ``tta_comparison``), stored predictions
==========================  ===============================================================

Pseudo labels of a variant are a dict ``targets`` with

- ``index`` : int [n], slice rows (of the :class:`~umcam_lib.data.SliceSet`) of positive training
  slices,
- ``maps``  : float [n, H, W] in [0, 1], the label of the first CE term of Eq. 8,
- ``spl``   : optional float [n, H, W] in [0, 1], the label of the second term,
- ``lambda``: optional float, the weight of the second term (default ``seg.lambda_spl``).

Every training slice is used. A slice whose image-level label is 0 gets an all-background target
under every variant (its entry in ``targets``, if any, is ignored); a positive training slice
missing from ``targets['index']`` is an error, so no slice is silently dropped.

Variants of Table 1 (bottom) and Table 2, built by :func:`variant_targets`:

==============  ============================================================================
``Grad-CAM``    Grad-CAM maps thresholded at their validation-chosen threshold (hard 0/1)
``UM-CAM``      UM-CAM maps thresholded likewise
``SPL``         the SPL (soft) alone
``UM-CAM+SPL``  Eq. 8: CE(P, UM-CAM mask) + lambda * CE(P, SPL), lambda = ``seg.lambda_spl``
``FullySup``    the true masks (an upper bound, not weak supervision)
==============  ============================================================================

A positive training slice for which notebook 05 produced no SPL (its thresholded UM-CAM had no
connected component to seed from) takes its UM-CAM pseudo mask as SPL, so the slice is not
dropped and both terms of Eq. 8 agree on it. Under the ``grid`` threshold rule that mask is
usually empty too, so such a slice effectively trains as background, as a weak learner that
found nothing would; the number of such slices is printed.

Model selection: after each validated epoch every slice of every validation volume is
predicted (in batches) and the mean 3D DSC over validation volumes is computed; ``best.pt``
keeps the best epoch. ``seg.epochs`` is a cap: with ``seg.patience`` a run stops after that many
validations without a better score, and with ``seg.plateau_decay`` each such validation also
lowers the learning rate, so a run ends on a plateau rather than at a fixed budget. The test
split is never looked at during training.

Eq. 8 has two readings (``seg.loss_main``, :func:`umcam_lib.losses.eq8_loss`): ``umcam`` weights
the SPL term by lambda, ``spl`` weights the UM-CAM term. ``seg.postprocess: lcc`` keeps the largest
3D connected component of each predicted volume before scoring
(:func:`umcam_lib.scoring.largest_component_3d`).
"""
from __future__ import annotations

from pathlib import Path
from concurrent.futures import Executor
from typing import Any, Mapping, Sequence

import pandas as pd
import torch

from ..data.scores import record_scores
from ..config.schema import SegParams, choices
from ..data import SliceSet
from ..losses import LOSS_MAIN, PAPER_BETA, PAPER_LAMBDA, PAPER_MAIN, eq8_loss, soft_cross_entropy, spl_share
from .seg_predict import (evaluate_variant, load_predictions, load_variant, oracle_comparison, predict_probs,
                          predict_split, summary, tta_comparison, variant_dir)
from .seg_targets import CAM_MAPS, VARIANTS, all_targets, cam_pseudo_masks, label_examples, load_spl, training_set, variant_targets
from .seg_train import check_seg_config, epoch_order, stale_validations, train_variant
from .executors import SerialExecutor, run_tasks
from .label_seeds import labels_name
from .tasks import run_unet_task, unet_tasks, write_targets

#: ``seg.optimizer`` and ``seg.postprocess`` values (from the schema, :class:`umcam_lib.config.SegParams`).
OPTIMIZERS: tuple[str, ...] = choices("seg.optimizer")
POSTPROCESS: tuple[str, ...] = choices("seg.postprocess")

__all__ = [
    "CAM_MAPS", "LOSS_MAIN", "OPTIMIZERS", "PAPER_BETA", "PAPER_LAMBDA", "PAPER_MAIN", "POSTPROCESS", "VARIANTS",
    "VARIANT_TABLES", "all_targets", "cam_pseudo_masks", "check_seg_config", "epoch_order", "eq8_loss",
    "evaluate_variant", "label_examples", "load_predictions", "load_spl", "load_variant", "oracle_comparison",
    "predict_probs", "predict_split", "record_variant", "run_variants", "soft_cross_entropy", "spl_share",
    "stale_validations", "summary", "train_evaluate_record", "train_variant", "training_set", "tta_comparison",
    "variant_dir", "variant_targets",
]

#: Tables each variant's scores go to (Table 1 bottom: the ablation; Table 2: the comparison).
VARIANT_TABLES: dict[str, tuple[str, ...]] = {
    "Grad-CAM": ("table1",), "UM-CAM": ("table1",), "SPL": ("table1",),
    "UM-CAM+SPL": ("table1", "table2"), "FullySup": ("table2",),
}


def unet_seeds(seed: int, n: int) -> list[int]:
    """The UNet seeds of a row: ``seed, seed + 1, ...`` (``seg.seeds`` of them).

    Examples
    --------
    >>> unet_seeds(0, 3), unet_seeds(7, 1)
    ([0, 1, 2], [7])
    """
    return [int(seed) + k for k in range(int(n))]


def record_variant(run_dir: str | Path, scores: pd.DataFrame, tables: Sequence[str] | None = None,
                   seed: int | None = None) -> None:
    """Record per-volume scores (from :func:`evaluate_variant`) in Tables 1 / 2 (section segmentation).

    Parameters
    ----------
    scores : DataFrame
        Rows of one method and one split (columns ``method, split, volume, dsc, hd95, hd95_mm``).
    tables : sequence of {"table1", "table2"}, optional
        Default :data:`VARIANT_TABLES` of the method; methods not listed there (e.g. ``DRS``,
        ``AMR``) default to ``("table2",)``.
    seed : int, optional
        The UNet seed these scores come from (a row of several seeds is their mean, with a spread).
    """
    methods, splits = scores["method"].unique(), scores["split"].unique()
    if len(methods) != 1 or len(splits) != 1:
        raise ValueError(f"record_variant expects one method and one split, got {list(methods)} / {list(splits)}")
    method, split = str(methods[0]), str(splits[0])
    for table in tables if tables is not None else VARIANT_TABLES.get(method, ("table2",)):
        record_scores(run_dir, table, "segmentation", method, split, scores["volume"].to_numpy(),
                      scores["dsc"].to_numpy(), scores["hd95"].to_numpy(), scores["hd95_mm"].to_numpy(), seed=seed)


def train_rows(rows: Mapping[str, Mapping[str, Any]], slices: SliceSet, seg_cfg: SegParams | Mapping[str, Any],
               run_dir: str | Path, device: str | torch.device = "auto", amp: bool = True, seed: int = 0,
               splits: Sequence[str] = ("val", "test"), tables: Mapping[str, Sequence[str]] | None = None,
               executor: Executor | None = None, threads: int | None = None, progress: bool = True,
               seed_targets: Mapping[str, Mapping[int, Mapping[str, Any]]] | None = None,
               pairs: Mapping[int, int] | None = None) -> pd.DataFrame:
    """Train, predict and score every UNet of ``rows`` (each row x each UNet seed) as tasks; record.

    Each row's targets are written to the run folder (:func:`~umcam_lib.train.tasks.write_targets`),
    one :class:`~umcam_lib.train.tasks.UNetTask` per row and seed is submitted to ``executor``
    (default: serial, in this process), and the scores are recorded here, in the parent, once
    every task has finished: with ``seg.seeds`` = n > 1 each seed as a replicate of its row
    (``record_scores(..., seed=s)``), with one seed without a seed.

    Parameters
    ----------
    rows : mapping
        Row (method) name -> its targets (see the module docstring).
    tables : mapping, optional
        Row -> tables its scores go to (default :data:`VARIANT_TABLES`, else ``table2``).
    executor : concurrent.futures.Executor, optional
        :func:`umcam_lib.train.executors.make_executor` of the profile's ``executor`` section.
    threads : int, optional
        Torch threads of each task (:func:`umcam_lib.train.executors.threads_per_task`).
    seed_targets, pairs : mapping, optional
        The crossed design (:mod:`umcam_lib.train.label_seeds`): row -> UNet seed -> the targets
        made from the labels of its paired classifier seed (``pairs``: UNet seed -> classifier
        seed). A UNet seed not listed trains on ``rows[row]``.

    Returns
    -------
    DataFrame
        Per-volume scores of every row, seed and split (``method``, ``seed``, ``seconds`` per task).
    """
    cfg = check_seg_config(seg_cfg)
    seeds = unet_seeds(seed, cfg.seeds)
    device_name = str(device) if isinstance(device, torch.device) else str(device)
    tasks = []
    for row, targets in rows.items():
        write_targets(run_dir, row, targets)
        names = {}
        for unet_seed, own in (seed_targets or {}).get(row, {}).items():
            names[int(unet_seed)] = labels_name(row, (pairs or {})[int(unet_seed)], seed)
            write_targets(run_dir, names[int(unet_seed)], own)
        tasks += unet_tasks(run_dir, row, cfg, seeds, seed, splits, device_name, amp, threads, labels=names)
    executor = executor if executor is not None else SerialExecutor()
    in_process = isinstance(executor, SerialExecutor)
    extra = (slices, progress) if in_process else ()
    results = run_tasks(executor, run_unet_task, tasks, *extra, progress=progress)
    for task, scores in zip(tasks, results):
        for split in splits:
            sc = scores[scores["split"] == split]
            record_variant(run_dir, sc, (tables or {}).get(task.row), seed=task.seed if len(seeds) > 1 else None)
    return pd.concat(results, ignore_index=True)


def train_evaluate_record(name: str, slices: SliceSet, targets: Mapping[str, Any],
                          seg_cfg: SegParams | Mapping[str, Any],
                          run_dir: str | Path, device: str | torch.device = "auto", amp: bool = True,
                          seed: int = 0, splits: Sequence[str] = ("val", "test"),
                          tables: Sequence[str] | None = None, progress: bool = True,
                          executor: Executor | None = None, threads: int | None = None) -> pd.DataFrame:
    """One row: for each UNet seed, train (or resume), predict every slice of ``splits``, score,
    record (:func:`train_rows` with one row).

    With ``seg.seeds`` = n > 1 the UNet is trained n times (seeds :func:`unet_seeds`, folders
    :func:`~umcam_lib.train.tasks.seed_folder`) on the same targets, and each seed's scores are
    recorded as a replicate of the row: the tables report their mean and spread.

    Returns
    -------
    DataFrame
        Per-volume scores of every seed and split (see :func:`evaluate_variant`), with a ``seed``
        column; ``method`` is ``name`` for every seed.
    """
    return train_rows({name: targets}, slices, seg_cfg, run_dir, device, amp, seed, splits,
                      {name: tables} if tables is not None else None, executor, threads, progress)


def run_variants(slices: SliceSet, run_dir: str | Path, seg_cfg: SegParams | Mapping[str, Any],
                 variants: Sequence[str] = VARIANTS, device: str | torch.device = "auto", amp: bool = True,
                 seed: int = 0, targets: Mapping[str, Mapping[str, Any]] | None = None,
                 progress: bool = True, executor: Executor | None = None, threads: int | None = None,
                 seed_targets: Mapping[str, Mapping[int, Mapping[str, Any]]] | None = None,
                 pairs: Mapping[int, int] | None = None) -> pd.DataFrame:
    """Train, evaluate (val and test, 3D) and record every variant of :data:`VARIANTS`.

    Parameters
    ----------
    targets : dict, optional
        Variant name -> targets (:func:`all_targets`); built from the run's artifacts when None.
    executor, threads
        Where the trainings run (:func:`train_rows`): every variant and seed is one task.
    seed_targets, pairs
        The crossed design (:func:`train_rows`).

    Returns
    -------
    DataFrame
        Per-volume scores of all variants and both splits.
    """
    rows = {name: targets[name] if targets is not None and name in targets
            else variant_targets(name, slices, run_dir, seg_cfg) for name in variants}
    return train_rows(rows, slices, seg_cfg, run_dir, device, amp, seed, executor=executor, threads=threads,
                      progress=progress, seed_targets=seed_targets, pairs=pairs)
