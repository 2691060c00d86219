"""The Eq. 8 sweep of UM-CAM+SPL: both readings of the loss and its weight (validation only).

The paper sets "the hyper-parameters ... as 4 and 0.1" but its text lost the symbols; this study
reads them as beta = 4 (EGD scale, Eq. 6-7) and lambda = 0.1 (weight of the second term of
Eq. 8). Which label the first, unweighted term takes was lost too, so there are two readings
(``seg.loss_main``):

- ``umcam``: ``L = CE(P, Y_UM) + lambda CE(P, Y_SPL)`` (METHOD.md; the SPL refines the UM-CAM);
- ``spl``:   ``L = CE(P, Y_SPL) + lambda CE(P, Y_UM)`` (the UM-CAM regularises the SPL).

Beta is chosen in notebook 05 with the other GSE settings, where it changes the mask (the
``authors`` rule); under the ``ratio`` rule it only changes the SPL's softness.

The sweep trains UM-CAM+SPL at every (reading, lambda) of ``seg.sweep_main`` x
``seg.sweep_lambda`` for at most ``seg.sweep_epochs`` epochs (with the early stopping of
``seg.patience``), scores the validation volumes only, and picks the point with the best mean
validation DSC. With AdamW the loss scale does not matter, so reading ``umcam`` at lambda is the
same training as reading ``spl`` at 1 / lambda: both are the SPL share
``w = lambda / (1 + lambda)`` resp. ``1 / (1 + lambda)`` (:func:`~umcam_lib.losses.spl_share`),
and a point whose share was already trained is not trained again (column ``same_as``). Only
after the choice are models opened on the test set.

Every point starts from the same seed (same initial weights, same slice order): the grid
compares labels and weights, not luck of initialisation.
"""
from __future__ import annotations

from concurrent.futures import Executor
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
import torch

from .. import metrics
from ..data import SliceSet
from ..io import atomic_path
from ..losses import LOSS_MAIN, PAPER_LAMBDA, PAPER_MAIN, spl_share
from ..paths import resolve
from .seg_predict import evaluate_variant, load_variant, variant_dir
from .seg_targets import cam_pseudo_masks, load_spl
from ..config.schema import GseParams, SegParams
from .seg_train import check_seg_config, train_variant
from .executors import SerialExecutor, run_tasks
from .tasks import UNetTask, run_unet_task, write_targets
from ..data.scores import record_scores

SWEEP_COLUMNS = ["loss_main", "lambda", "spl_share", "same_as", "n", "val_dsc_mean", "val_dsc_std",
                 "val_hd95_mean", "val_hd95_std", "val_hd95_mm_mean", "best_epoch", "epochs_run"]


def point_name(main: str, lamb: float) -> str:
    """``<main>_lambda<l>``: the folder name of one grid point."""
    return f"{main}_lambda{float(lamb):g}"


def point_dir(run_dir: str | Path, main: str, lamb: float) -> Path:
    """``run_dir/seg/sweep/<main>_lambda<l>`` of one grid point."""
    return resolve(run_dir) / "seg" / "sweep" / point_name(main, lamb)


def _point_cfg(cfg: SegParams, main: str, lamb: float) -> SegParams:
    return cfg.replace(epochs=cfg.sweep_epochs, lambda_spl=float(lamb), loss_main=main)


def _share_key(cfg: SegParams, main: str, lamb: float) -> tuple[Any, ...]:
    """Points with equal keys train identically (AdamW ignores the loss scale; SGD does not)."""
    if cfg.optimizer == "adamw":
        return ("share", round(spl_share(lamb, main), 3))
    return (main, float(lamb))


def sweep_grid(seg_cfg: SegParams | Mapping[str, Any]) -> list[tuple[str, float]]:
    """(reading, lambda) of every grid point, readings outermost."""
    cfg = check_seg_config(seg_cfg)
    mains = [str(m) for m in cfg.sweep_main]
    lambdas = [float(lam) for lam in cfg.sweep_lambda]
    return [(m, lam) for m in mains for lam in lambdas]


def train_point(slices: SliceSet, run_dir: str | Path, seg_cfg: SegParams | Mapping[str, Any], main: str, lamb: float,
                spl: Mapping[str, Any], um: Mapping[str, Any], device: str | torch.device = "auto",
                amp: bool = True, seed: int = 0, progress: bool = True) -> torch.nn.Module:
    """Train UM-CAM+SPL under one reading and lambda for at most ``seg.sweep_epochs`` epochs (resumable)."""
    targets = {"index": um["index"], "maps": um["maps"], "spl": spl["maps"], "lambda": float(lamb), "main": main}
    return train_variant(f"UM-CAM+SPL {main} l={lamb:g}", slices, targets, _point_cfg(check_seg_config(seg_cfg), main, lamb),
                             run_dir, device, amp, seed, out_dir=point_dir(run_dir, main, lamb), progress=progress)


def sweep_tasks(run_dir: str | Path, seg_cfg: SegParams | Mapping[str, Any], spl: Mapping[str, Any],
                um: Mapping[str, Any], seed: int = 0, device: str = "auto", amp: bool = True,
                threads: int | None = None) -> dict[tuple[Any, ...], UNetTask]:
    """One task per distinct training of the grid (points with one SPL share train once), keyed
    by :func:`_share_key`; the targets of each are written to the run folder for its worker.

    A point trains UM-CAM+SPL under its reading and lambda for at most ``seg.sweep_epochs``
    epochs into ``seg/sweep/<main>_lambda<l>/`` and is scored on the validation volumes only.
    """
    cfg = check_seg_config(seg_cfg)
    out: dict[tuple[Any, ...], UNetTask] = {}
    for main, lamb in sweep_grid(cfg):
        key = _share_key(cfg, main, lamb)
        if key in out:
            continue
        name = point_name(main, lamb)
        row = f"UM-CAM+SPL {name}"
        write_targets(run_dir, row, {"index": um["index"], "maps": um["maps"], "spl": spl["maps"],
                                     "lambda": float(lamb), "main": main})
        out[key] = UNetTask(str(resolve(run_dir)), row, f"sweep/{name}", int(seed),
                            _point_cfg(cfg, main, lamb).to_dict(), ("val",), str(device), bool(amp), threads)
    return out


def run_sweep(slices: SliceSet, run_dir: str | Path, seg_cfg: SegParams | Mapping[str, Any],
              gse_cfg: GseParams | Mapping[str, Any] | None = None,
              device: str | torch.device = "auto", amp: bool = True, seed: int = 0, workers: int = 1,
              progress: bool = True, executor: Executor | None = None, threads: int | None = None) -> pd.DataFrame:
    """Train and validate UM-CAM+SPL at every grid point; return one row per point.

    Each distinct training is a task (:func:`sweep_tasks`) submitted to ``executor`` (serial, in
    this process, by default; :mod:`umcam_lib.train.executors`), so the points train side by side
    under ``--jobs N`` or on a cluster, and a finished point is not trained again.

    Parameters
    ----------
    seg_cfg : dict
        The ``seg`` section; uses ``sweep_main``, ``sweep_lambda``, ``sweep_epochs``.
    gse_cfg : dict, optional
        Unused (kept for callers of the former beta sweep); the SPL is notebook 05's.
    workers : int
        Unused (kept for callers); ``threads`` sets each task's torch threads.
    executor : concurrent.futures.Executor, optional
        Where the points train.
    threads : int, optional
        Torch threads of each task (:func:`umcam_lib.train.executors.threads_per_task`).

    Returns
    -------
    DataFrame
        Columns :data:`SWEEP_COLUMNS`; validation volumes only. Per-volume scores are kept in
        ``run_dir/seg/sweep/val_scores.csv``.
    """
    cfg = check_seg_config(seg_cfg)
    um = cam_pseudo_masks(run_dir, slices, "UM-CAM")
    spl = load_spl(run_dir, slices, fallback=um)
    tasks = sweep_tasks(run_dir, cfg, spl, um, seed, str(device), amp, threads)
    executor = executor if executor is not None else SerialExecutor()
    extra = (slices, progress) if isinstance(executor, SerialExecutor) else ()
    scores = dict(zip(tasks, run_tasks(executor, run_unet_task, list(tasks.values()), *extra, progress=progress)))
    rows, per_volume, first = [], [], {}
    for main, lamb in sweep_grid(cfg):
        key = _share_key(cfg, main, lamb)
        if key in first:
            rows.append({**first[key], "loss_main": main, "lambda": lamb,
                         "same_as": point_name(first[key]["loss_main"], first[key]["lambda"])})
            continue
        sc = scores[key]
        d = variant_dir(run_dir, tasks[key].folder)
        best = torch.load(d / "best.pt", map_location="cpu", weights_only=True)
        per_volume.append(sc.drop(columns=["method", "seed", "seconds"], errors="ignore")
                          .assign(loss_main=main, **{"lambda": lamb}))
        first[key] = {"loss_main": main, "lambda": lamb, "spl_share": spl_share(lamb, main), "same_as": "",
                      "n": len(sc), "val_dsc_mean": sc["dsc"].mean(), "val_dsc_std": sc["dsc"].std(ddof=1),
                      "val_hd95_mean": sc["hd95"].mean(), "val_hd95_std": sc["hd95"].std(ddof=1),
                      "val_hd95_mm_mean": sc["hd95_mm"].mean(), "best_epoch": int(best["epoch"]),
                      "epochs_run": len(pd.read_csv(d / "history.csv"))}
        rows.append(first[key])
    with atomic_path(resolve(run_dir) / "seg" / "sweep" / "val_scores.csv") as tmp:
        pd.concat(per_volume, ignore_index=True).to_csv(tmp, index=False)
    return pd.DataFrame(rows, columns=SWEEP_COLUMNS)


def chosen_point(sweep: pd.DataFrame, main: str | None = None) -> tuple[str, float]:
    """The (reading, lambda) with the highest mean validation DSC (first in grid order on ties),
    among the rows of reading ``main`` when given."""
    rows = sweep if main is None else sweep[sweep["loss_main"] == main]
    if rows.empty:
        raise ValueError("the sweep table is empty" if main is None else f"the sweep has no {main!r} rows")
    best = rows.loc[rows["val_dsc_mean"].idxmax()]
    return str(best["loss_main"]), float(best["lambda"])


#: The sensitivity row of Tables 1-2: UM-CAM+SPL at the paper's literal Eq. 8 point (reading
#: ``umcam``, lambda 0.1), beside the row at the point validation chose.
PAPER_ROW = "UM-CAM+SPL (paper's Eq. 8)"


def row_section(seg_cfg: SegParams | Mapping[str, Any], sweep: pd.DataFrame) -> tuple[SegParams, tuple[str, float]]:
    """The ``seg`` section of the UM-CAM+SPL row: Eq. 8's reading and lambda as validation chose.

    Returns the section with ``loss_main`` and ``lambda_spl`` set to :func:`chosen_point` of the
    sweep (the configured values when the sweep is empty), and that point.
    """
    cfg = check_seg_config(seg_cfg)
    point = chosen_point(sweep) if len(sweep) else (cfg.loss_main, cfg.lambda_spl)
    return cfg.replace(loss_main=point[0], lambda_spl=float(point[1])), point


def record_paper_point(slices: SliceSet, run_dir: str | Path, seg_cfg: SegParams | Mapping[str, Any],
                       sweep: pd.DataFrame, device: str | torch.device = "auto", amp: bool = True, seed: int = 0,
                       progress: bool = True, tables: tuple[str, ...] = ("table1",)) -> pd.DataFrame:
    """Score the paper's Eq. 8 point on validation and test and record it as :data:`PAPER_ROW`.

    The sweep's model of that point is used (trained like a sweep point when the grid lacks it):
    one UNet seed, a sensitivity row that never replaces the row validation chose.

    Returns
    -------
    DataFrame
        Per-volume scores of both splits (``method`` = :data:`PAPER_ROW`).
    """
    cfg = check_seg_config(seg_cfg)
    d = _trained_dir(run_dir, sweep, PAPER_MAIN, PAPER_LAMBDA)
    if d is None:
        um = cam_pseudo_masks(run_dir, slices, "UM-CAM")
        spl = load_spl(run_dir, slices, fallback=um)
        model = train_point(slices, run_dir, cfg, PAPER_MAIN, PAPER_LAMBDA, spl, um, device, amp, seed, progress)
    else:
        model = load_variant(run_dir, "", cfg.width, device, out_dir=d)
    frames = []
    for split in ("val", "test"):
        sc = evaluate_variant(model, slices, split, device, amp, batch_size=cfg.eval_batch_size,
                              postprocess=cfg.postprocess, tta=cfg.tta).assign(method=PAPER_ROW)
        for table in tables:
            record_scores(run_dir, table, "segmentation", PAPER_ROW, split, sc["volume"].to_numpy(),
                          sc["dsc"].to_numpy(), sc["hd95"].to_numpy(), sc["hd95_mm"].to_numpy())
        frames.append(sc)
    return pd.concat(frames, ignore_index=True)


def _trained_dir(run_dir: str | Path, sweep: pd.DataFrame, main: str, lamb: float) -> Path | None:
    hit = sweep[(sweep["loss_main"] == main) & (sweep["lambda"] == lamb)]
    if hit.empty:
        return None
    same = str(hit["same_as"].iloc[0]) if isinstance(hit["same_as"].iloc[0], str) else ""
    d = resolve(run_dir) / "seg" / "sweep" / (same or point_name(main, lamb))
    return d if (d / "best.pt").is_file() else None


def sweep_choice(slices: SliceSet, run_dir: str | Path, seg_cfg: SegParams | Mapping[str, Any],
                 gse_cfg: GseParams | Mapping[str, Any] | None,
                 sweep: pd.DataFrame, device: str | torch.device = "auto", amp: bool = True, seed: int = 0,
                 workers: int = 1, progress: bool = True) -> pd.DataFrame:
    """Test scores of the validation-chosen point, the best point of each reading, and the paper's.

    The paper's point (reading ``umcam``, lambda 0.1) is trained like every sweep point when the
    grid lacks it. Every model is evaluated on every slice of the test volumes; the choice was
    fixed on validation before.

    Returns
    -------
    DataFrame
        Rows ``validation-chosen``, ``best umcam reading``, ``best spl reading`` (readings the grid
        has) and ``paper``: ``loss_main, lambda, spl_share, val_dsc_mean, n, test_dsc_mean,
        test_dsc_std, test_hd95_mean, test_hd95_std, test_hd95_mm_mean, p_value`` (paired Wilcoxon on
        test DSC against the validation-chosen row; empty for that row and for the same model).
    """
    cfg = check_seg_config(seg_cfg)
    points = {"validation-chosen": chosen_point(sweep)}
    for main in LOSS_MAIN:
        if (sweep["loss_main"] == main).any():
            points[f"best {main} reading"] = chosen_point(sweep, main)
    points["paper"] = (PAPER_MAIN, PAPER_LAMBDA)
    out, test, cache = [], {}, {}
    um = spl = None
    for label, (main, lamb) in points.items():
        d = _trained_dir(run_dir, sweep, main, lamb)
        key = str(d) if d is not None else point_name(main, lamb)
        if key not in cache:
            if d is None:
                um = um if um is not None else cam_pseudo_masks(run_dir, slices, "UM-CAM")
                spl = spl if spl is not None else load_spl(run_dir, slices, fallback=um)
                model = train_point(slices, run_dir, cfg, main, lamb, spl, um, device, amp, seed, progress)
                val = evaluate_variant(model, slices, "val", device, amp, batch_size=cfg.eval_batch_size,
                                           postprocess=cfg.postprocess, tta=cfg.tta)
                val_mean = float(val["dsc"].mean())
            else:
                model = load_variant(run_dir, "", cfg.width, device, out_dir=d)
                hit = sweep[(sweep["loss_main"] == main) & (sweep["lambda"] == lamb)]
                val_mean = float(hit["val_dsc_mean"].iloc[0])
            sc = evaluate_variant(model, slices, "test", device, amp, batch_size=cfg.eval_batch_size,
                                      postprocess=cfg.postprocess, tta=cfg.tta)
            cache[key] = (val_mean, sc)
        val_mean, sc = cache[key]
        test[label] = (key, sc.set_index("volume")["dsc"])
        out.append({"point": label, "loss_main": main, "lambda": lamb, "spl_share": spl_share(lamb, main),
                    "val_dsc_mean": val_mean, "n": len(sc),
                    "test_dsc_mean": sc["dsc"].mean(), "test_dsc_std": sc["dsc"].std(ddof=1),
                    "test_hd95_mean": sc["hd95"].mean(), "test_hd95_std": sc["hd95"].std(ddof=1),
                    "test_hd95_mm_mean": sc["hd95_mm"].mean()})
    df = pd.DataFrame(out)
    ref_key, ref = test["validation-chosen"]
    df["p_value"] = [np.nan if test[lab][0] == ref_key else
                     metrics.paired_test(ref.to_numpy(), test[lab][1].reindex(ref.index).to_numpy())
                     for lab in df["point"]]
    return df
