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


#: The Table 1 variant whose run a sweep point reuses when it is the same training.
TABLE_VARIANT, TABLE_SAME = "UM-CAM+SPL", "table:UM-CAM+SPL"


def _is_table_point(cfg: SegParams, main: str, lamb: float) -> bool:
    """True when the point is the Table 1 UM-CAM+SPL run itself (same reading, lambda and epochs)."""
    return (main, float(lamb)) == (cfg.loss_main, cfg.lambda_spl) \
        and cfg.sweep_epochs == cfg.epochs


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


def run_sweep(slices: SliceSet, run_dir: str | Path, seg_cfg: SegParams | Mapping[str, Any],
              gse_cfg: GseParams | Mapping[str, Any] | None = None,
              device: str | torch.device = "auto", amp: bool = True, seed: int = 0, workers: int = 1,
              progress: bool = True, share_table: bool = False) -> pd.DataFrame:
    """Train and validate UM-CAM+SPL at every grid point; return one row per point.

    Parameters
    ----------
    seg_cfg : dict
        The ``seg`` section; uses ``sweep_main``, ``sweep_lambda``, ``sweep_epochs``.
    gse_cfg : dict, optional
        Unused (kept for callers of the former beta sweep); the SPL is notebook 05's.
    share_table : bool
        Reuse Table 1's UM-CAM+SPL run for the configured point (when the sweep runs after it,
        at the configured point). Notebook 06 sweeps first and trains the row at the point the
        sweep chooses (:func:`row_section`), so it trains every point in ``seg/sweep/``.

    Returns
    -------
    DataFrame
        Columns :data:`SWEEP_COLUMNS`; validation volumes only. Per-volume scores are kept in
        ``run_dir/seg/sweep/val_scores.csv``.
    """
    cfg = check_seg_config(seg_cfg)
    um = cam_pseudo_masks(run_dir, slices, "UM-CAM")
    spl = load_spl(run_dir, slices, fallback=um)
    rows, per_volume, trained = [], [], {}
    for main, lamb in sweep_grid(cfg):
        key = _share_key(cfg, main, lamb)
        if key in trained:
            first = trained[key]
            rows.append({**first, "loss_main": main, "lambda": lamb,
                         "same_as": first["same_as"] or point_name(first["loss_main"], first["lambda"])})
            continue
        same = ""
        if share_table and _is_table_point(cfg, main, lamb):  # the Table 1 row's own run: reuse it
            targets = {"index": um["index"], "maps": um["maps"], "spl": spl["maps"], "lambda": float(lamb), "main": main}
            model = train_variant(TABLE_VARIANT, slices, targets, cfg, run_dir, device, amp, seed, progress=progress)
            d, same = variant_dir(run_dir, TABLE_VARIANT), TABLE_SAME
        else:
            model = train_point(slices, run_dir, cfg, main, lamb, spl, um, device, amp, seed, progress)
            d = point_dir(run_dir, main, lamb)
        sc = evaluate_variant(model, slices, "val", device, amp, batch_size=cfg.eval_batch_size,
                                  postprocess=cfg.postprocess, tta=cfg.tta)
        best = torch.load(d / "best.pt", map_location="cpu", weights_only=True)
        epochs_run = len(pd.read_csv(d / "history.csv"))
        per_volume.append(sc.assign(loss_main=main, **{"lambda": lamb}))
        row = {"loss_main": main, "lambda": lamb, "spl_share": spl_share(lamb, main), "same_as": same,
               "n": len(sc), "val_dsc_mean": sc["dsc"].mean(), "val_dsc_std": sc["dsc"].std(ddof=1),
               "val_hd95_mean": sc["hd95"].mean(), "val_hd95_std": sc["hd95"].std(ddof=1),
               "val_hd95_mm_mean": sc["hd95_mm"].mean(), "best_epoch": int(best["epoch"]), "epochs_run": epochs_run}
        trained[key] = row
        rows.append(row)
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
    if same == TABLE_SAME:
        d = variant_dir(run_dir, TABLE_VARIANT)
    else:
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
