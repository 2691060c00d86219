"""The beta / lambda sweep of UM-CAM+SPL (validation only), and its test check.

The paper sets "the hyper-parameters ... as 4 and 0.1" but its text lost the symbols; this study
reads them as beta = 4 (EGD scale, Eq. 6-7) and lambda = 0.1 (weight of the SPL term, Eq. 8).
The sweep trains the UM-CAM+SPL UNet at every (beta, lambda) of ``seg.sweep_beta`` x
``seg.sweep_lambda`` for ``seg.sweep_epochs`` epochs, scores the validation volumes only, and
picks the point with the best mean validation DSC. Only then are two models opened on the test
set: the validation-chosen point and the paper's point (trained the same way), so the choice is
never informed by test data.

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
from ..maps import load_maps, map_path
from ..paths import resolve
from . import segmentation as seg

SWEEP_COLUMNS = ["beta", "lambda", "n", "val_dsc_mean", "val_dsc_std", "val_hd95_mean", "val_hd95_std",
                 "val_hd95_mm_mean", "best_epoch"]


def point_dir(run_dir: str | Path, beta: float, lamb: float) -> Path:
    """``run_dir/seg/sweep/beta<b>_lambda<l>`` of one grid point."""
    return resolve(run_dir) / "seg" / "sweep" / f"beta{float(beta):g}_lambda{float(lamb):g}"


def spl_for_beta(slices: SliceSet, run_dir: str | Path, gse_cfg: Mapping[str, Any], beta: float,
                 workers: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """SPL maps of the positive training slices at EGD scale ``beta``.

    At ``beta == gse.beta`` the maps of notebook 05 (``spl/spl.npz``) are reused; otherwise they
    are recomputed with :func:`umcam_lib.gse.spl_batch` from the UM-CAM maps, with every other
    GSE setting (threshold rule, GeodisTK lambda, iterations, margin, SPL rule) as in ``gse``.

    Returns
    -------
    index : ndarray, int, shape (n,)
        Slice rows that have an SPL (slices without a seed component are absent; see
        :func:`umcam_lib.train.segmentation.load_spl` for their fallback).
    maps : ndarray, float32, shape (n, H, W)
    """
    if float(beta) == float(gse_cfg["beta"]) and map_path(run_dir, "spl", "spl").is_file():
        return load_maps(run_dir, "spl", "spl")
    from .. import gse
    from ..cam.pseudo_mask import take_rows

    rows = slices.indices("train", positive_only=True)
    cam_index, cam_maps = load_maps(run_dir, "cams", "umcam")
    cams = take_rows(cam_index, cam_maps, rows, name=str(map_path(run_dir, "cams", "umcam")))
    rule = str(gse_cfg.get("threshold_rule", "grid"))
    threshold: float | str = seg._threshold(run_dir, "umcam", "UM-CAM") if rule == "grid" else rule
    out = gse.spl_batch(slices.images[rows], cams, threshold, beta=float(beta), lamb=float(gse_cfg["lamb"]),
                        iterations=int(gse_cfg["iterations"]), margin=int(gse_cfg["margin"]),
                        spl_rule=str(gse_cfg.get("spl_rule", "ratio")), rows=rows, workers=int(workers))
    return np.asarray(out.index, dtype=np.int64), np.asarray(out.maps, dtype=np.float32)


def _point_cfg(seg_cfg: Mapping[str, Any], lamb: float) -> dict[str, Any]:
    return {**seg.check_seg_config(seg_cfg), "epochs": int(seg_cfg["sweep_epochs"]), "lambda_spl": float(lamb)}


def train_point(slices: SliceSet, run_dir: str | Path, seg_cfg: Mapping[str, Any], beta: float, lamb: float,
                spl: tuple[np.ndarray, np.ndarray], um: Mapping[str, Any], device: str | torch.device = "auto",
                amp: bool = True, seed: int = 0, progress: bool = True) -> torch.nn.Module:
    """Train UM-CAM+SPL at one (beta, lambda) for ``seg.sweep_epochs`` epochs (resumable)."""
    s = seg.load_spl(run_dir, slices, fallback=um, spl=spl)
    targets = {"index": um["index"], "maps": um["maps"], "spl": s["maps"], "lambda": float(lamb)}
    return seg.train_variant(f"UM-CAM+SPL b={beta:g} l={lamb:g}", slices, targets, _point_cfg(seg_cfg, lamb),
                             run_dir, device, amp, seed, out_dir=point_dir(run_dir, beta, lamb), progress=progress)


def run_sweep(slices: SliceSet, run_dir: str | Path, seg_cfg: Mapping[str, Any], gse_cfg: Mapping[str, Any],
              device: str | torch.device = "auto", amp: bool = True, seed: int = 0, workers: int = 1,
              progress: bool = True) -> pd.DataFrame:
    """Train and validate UM-CAM+SPL at every grid point; return one row per point.

    Parameters
    ----------
    seg_cfg : dict
        The ``seg`` section; uses ``sweep_beta``, ``sweep_lambda``, ``sweep_epochs``.
    gse_cfg : dict
        The ``gse`` section (SPL settings other than beta).

    Returns
    -------
    DataFrame
        Columns :data:`SWEEP_COLUMNS`; validation volumes only. Per-volume scores are kept in
        ``run_dir/seg/sweep/val_scores.csv``.
    """
    from ..io import atomic_path

    betas = [float(b) for b in seg_cfg["sweep_beta"]]
    lambdas = [float(lam) for lam in seg_cfg["sweep_lambda"]]
    if not betas or not lambdas:
        raise ValueError("seg.sweep_beta and seg.sweep_lambda must each list at least one value")
    um = seg.cam_pseudo_masks(run_dir, slices, "UM-CAM")
    rows, per_volume = [], []
    for beta in betas:
        spl = spl_for_beta(slices, run_dir, gse_cfg, beta, workers)
        for lamb in lambdas:
            model = train_point(slices, run_dir, seg_cfg, beta, lamb, spl, um, device, amp, seed, progress)
            sc = seg.evaluate_variant(model, slices, "val", device, amp,
                                      batch_size=int(seg.check_seg_config(seg_cfg)["eval_batch_size"]))
            best = torch.load(point_dir(run_dir, beta, lamb) / "best.pt", map_location="cpu", weights_only=True)
            per_volume.append(sc.assign(beta=beta, **{"lambda": lamb}))
            rows.append({"beta": beta, "lambda": lamb, "n": len(sc),
                         "val_dsc_mean": sc["dsc"].mean(), "val_dsc_std": sc["dsc"].std(ddof=1),
                         "val_hd95_mean": sc["hd95"].mean(), "val_hd95_std": sc["hd95"].std(ddof=1),
                         "val_hd95_mm_mean": sc["hd95_mm"].mean(), "best_epoch": int(best["epoch"])})
    with atomic_path(resolve(run_dir) / "seg" / "sweep" / "val_scores.csv") as tmp:
        pd.concat(per_volume, ignore_index=True).to_csv(tmp, index=False)
    return pd.DataFrame(rows, columns=SWEEP_COLUMNS)


def chosen_point(sweep: pd.DataFrame) -> tuple[float, float]:
    """The (beta, lambda) with the highest mean validation DSC (first in grid order on ties)."""
    if sweep.empty:
        raise ValueError("the sweep table is empty")
    best = sweep.loc[sweep["val_dsc_mean"].idxmax()]
    return float(best["beta"]), float(best["lambda"])


def sweep_choice(slices: SliceSet, run_dir: str | Path, seg_cfg: Mapping[str, Any], gse_cfg: Mapping[str, Any],
                 sweep: pd.DataFrame, device: str | torch.device = "auto", amp: bool = True, seed: int = 0,
                 workers: int = 1, progress: bool = True) -> pd.DataFrame:
    """Test scores of the validation-chosen point next to the paper's (beta 4, lambda 0.1).

    The paper's point is trained like every sweep point (``seg.sweep_epochs``) when the grid
    does not contain it. Both models are then evaluated on every slice of the test volumes.

    Returns
    -------
    DataFrame
        Rows ``validation-chosen`` and ``paper``: ``beta, lambda, val_dsc_mean, n, test_dsc_mean,
        test_dsc_std, test_hd95_mean, test_hd95_std, test_hd95_mm_mean, p_value`` (paired
        Wilcoxon on test DSC between the two rows; empty when they are the same point).
    """
    cfg = seg.check_seg_config(seg_cfg)
    points = {"validation-chosen": chosen_point(sweep), "paper": (seg.PAPER_BETA, seg.PAPER_LAMBDA)}
    out, test, done = [], {}, {}
    um = None
    for label, (beta, lamb) in points.items():
        if (beta, lamb) in done:  # the validation-chosen point is the paper's: score it once
            out.append({**done[(beta, lamb)], "point": label})
            test[label] = test["validation-chosen"]
            continue
        d = point_dir(run_dir, beta, lamb)
        hit = sweep[(sweep["beta"] == beta) & (sweep["lambda"] == lamb)]
        if not (d / "best.pt").is_file() or hit.empty:
            um = um if um is not None else seg.cam_pseudo_masks(run_dir, slices, "UM-CAM")
            spl = spl_for_beta(slices, run_dir, gse_cfg, beta, workers)
            model = train_point(slices, run_dir, seg_cfg, beta, lamb, spl, um, device, amp, seed, progress)
            val = seg.evaluate_variant(model, slices, "val", device, amp, batch_size=int(cfg["eval_batch_size"]))
            val_mean = float(val["dsc"].mean())
        else:
            model = seg.load_variant(run_dir, "", int(cfg["width"]), device, out_dir=d)
            val_mean = float(hit["val_dsc_mean"].iloc[0])
        sc = seg.evaluate_variant(model, slices, "test", device, amp, batch_size=int(cfg["eval_batch_size"]))
        test[label] = sc.set_index("volume")["dsc"]
        out.append({"point": label, "beta": beta, "lambda": lamb, "val_dsc_mean": val_mean, "n": len(sc),
                    "test_dsc_mean": sc["dsc"].mean(), "test_dsc_std": sc["dsc"].std(ddof=1),
                    "test_hd95_mean": sc["hd95"].mean(), "test_hd95_std": sc["hd95"].std(ddof=1),
                    "test_hd95_mm_mean": sc["hd95_mm"].mean()})
        done[(beta, lamb)] = out[-1]
    df = pd.DataFrame(out)
    same = points["validation-chosen"] == points["paper"]
    a, b = test["validation-chosen"], test["paper"].reindex(test["validation-chosen"].index)
    df["p_value"] = [np.nan if same else metrics.paired_test(a.to_numpy(), b.to_numpy()), np.nan]
    return df
